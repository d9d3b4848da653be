"""Settings from the environment (CASEWORK_*), with defaults for one machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    # With CASEWORK_SECRETS_DIR (e.g. /run/secrets, where Docker and Kubernetes mount secrets), a
    # setting may also come from a file named after it there: casework_actor_key, ...
    model_config = SettingsConfigDict(
        env_prefix="CASEWORK_", extra="ignore", secrets_dir=os.environ.get("CASEWORK_SECRETS_DIR")
    )

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "casework"
    database_url: str = f"sqlite+aiosqlite:///{ROOT / 'var' / 'casework.db'}"
    programs_dir: Path = ROOT / "programs"
    directory_dir: Path = ROOT / "directory"
    api_keys_file: Path = ROOT / "directory" / "api_keys.toml"
    # Email (SMTP). `casework dev` runs a local mail sink on this port that keeps messages in var/mail.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = 15.0
    mail_from: str = "casework@casework.example.org"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Signs list page tokens and sign-in cookies; give every API replica the same one (default:
    # random per process, and a restart signs everyone out).
    api_token_secret: SecretStr | None = None
    # Public address of the provider callback, put into referral messages. Unset: this API's
    # own, http://api_host:api_port/callbacks/referrals (127.0.0.1 when it listens everywhere).
    callback_url: str = ""
    # Signs the answer links in referral emails (the API checks them); the same for the workers
    # and the API; comma-separated to rotate (the first signs, all verify). Unset: derived from
    # the actor key. The links point at public_url (unset: callback_url before /callbacks/).
    answer_link_secret: SecretStr | None = None
    public_url: str | None = None
    var_dir: Path = ROOT / "var"
    ui_port: int = 8233
    log_level: str = "INFO"
    # Seconds a staff command waits for a worker before the caller is told (and given the key to
    # retry with: the command is kept, and applies once however often it is retried).
    command_timeout: float = 10.0
    # Cases a worker keeps in memory between their workflow tasks (Temporal's sticky cache). A
    # case not kept is rebuilt from its history when it next wakes (a replay: milliseconds for
    # a run's bounded history). Memory per kept case: docs/architecture.md, "A worker's memory".
    cached_cases: int = 500
    # Encrypts workflow payloads (client data) at rest in Temporal: base64 of 32 random bytes,
    # e.g. python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'
    payload_key: SecretStr | None = None
    # Signs who acts on every command casework sends to a case (the worker refuses unsigned
    # ones). The same for every process; comma-separated to rotate: the first signs, all verify.
    # Unset: the key `casework dev` creates in var/actor.key.
    actor_key: SecretStr | None = None
    # The CLI's way in: the API's address and the caller's API key (else `casework login`'s,
    # saved in credentials_file, default ~/.config/casework/credentials.json).
    api_url: str | None = None
    api_key: SecretStr | None = None
    credentials_file: Path | None = None
    # Browser origins of the Temporal UI allowed to call the API's codec endpoints (with the
    # sign-in cookie). Unset: the UI on ui_port at 127.0.0.1 and localhost.
    ui_origins: list[str] = []
    # Hours a sign-in at the API's /signin (the cookie the Temporal UI's decoder sends) lasts.
    session_hours: float = 8.0

    @model_validator(mode="after")
    def _callback_follows_the_api(self) -> Self:
        """A stack on other ports tells providers to answer where its API is, not at 8000."""
        if not self.callback_url:
            host = self.api_host.strip("[]")
            host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
            host = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
            self.callback_url = f"http://{host}:{self.api_port}/callbacks/referrals"
        return self

    @model_validator(mode="after")
    def _ui_origins_follow_the_ui_port(self) -> Self:
        if not self.ui_origins:
            self.ui_origins = [f"http://127.0.0.1:{self.ui_port}", f"http://localhost:{self.ui_port}"]
        return self
