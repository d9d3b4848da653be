"""The CLI's way in: the HTTP API, with the caller's credential.

Staff commands and reads from the terminal go through the same door as every other caller:
the API decides who the caller is (from the API key), what they may see and do, and logs what
they read. The CLI never chooses an actor or a role.

The credential is `CASEWORK_API_KEY`, or the one `casework login` saved (owner-only file);
the API's address is `CASEWORK_API_URL`, or the one saved at login, or the local stack's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from config.settings import Settings

IDEMPOTENCY_HEADER = "Idempotency-Key"


class ApiError(Exception):
    """The API refused or could not be reached. `kind` is the refusal kind the API names
    (`unreachable` when there was no answer); `key` the command's idempotency key."""

    def __init__(self, kind: str, message: str, status: int = 0, key: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.status, self.key = kind, message, status, key


@dataclass(frozen=True)
class Credential:
    api_url: str
    api_key: str


def credentials_file(settings: Settings) -> Path:
    if settings.credentials_file is not None:
        return settings.credentials_file
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "casework" / "credentials.json"


def local_api_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def saved_credential(settings: Settings) -> Credential | None:
    path = credentials_file(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Credential(api_url=str(data["api_url"]), api_key=str(data["api_key"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApiError("unauthenticated", f"cannot read the saved sign-in {path}: {exc}") from None


def save_credential(settings: Settings, credential: Credential) -> Path:
    """Saved owner-only (0600, folder 0700): the key is as good as the person's password."""
    path = credentials_file(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"api_url": credential.api_url, "api_key": credential.api_key}, f)
    tmp.replace(path)
    return path


def forget_credential(settings: Settings) -> bool:
    path = credentials_file(settings)
    if path.exists():
        path.unlink()
        return True
    return False


def credential(settings: Settings) -> Credential:
    """The environment's key first (scripts, CI), then the saved sign-in."""
    saved = saved_credential(settings)
    url = settings.api_url or (saved.api_url if saved else local_api_url(settings))
    # an empty CASEWORK_API_KEY (a script's unset variable) is no key: the saved sign-in counts
    given = settings.api_key.get_secret_value().strip() if settings.api_key is not None else ""
    if given:
        return Credential(api_url=url, api_key=given)
    if saved is None:
        raise ApiError(
            "unauthenticated", "not signed in: run `casework login` (or set CASEWORK_API_KEY to your API key)"
        )
    return Credential(api_url=url, api_key=saved.api_key)


class Api:
    """A few calls to the casework HTTP API; every failure becomes one ApiError."""

    def __init__(self, cred: Credential, timeout: float = 60.0) -> None:
        self.cred = cred
        self.http = httpx.Client(
            base_url=cred.api_url,
            headers={"Authorization": f"Bearer {cred.api_key}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def get_bytes(self, path: str, **params: Any) -> bytes:
        return self._send("GET", path, params={k: v for k, v in params.items() if v is not None}).content

    def download(self, path: str, dest: Path, **params: Any) -> None:
        """Stream a GET's body into `dest` (written beside it first, so a failed download
        leaves no partial file under the name)."""
        part = dest.with_name(dest.name + ".part")
        try:
            with self.http.stream("GET", path, params=params) as response:
                if not response.is_success:
                    response.read()
                    raise refusal(response, None)
                with part.open("wb") as f:
                    for chunk in response.iter_bytes():
                        f.write(chunk)
        except httpx.HTTPError as exc:
            part.unlink(missing_ok=True)
            raise ApiError(
                "unreachable", f"the download from {self.cred.api_url} failed ({type(exc).__name__}: {exc})"
            ) from None
        part.replace(dest)

    def post(self, path: str, body: Any, key: str | None = None) -> tuple[int, Any]:
        headers = {IDEMPOTENCY_HEADER: key} if key else {}
        response = self._send("POST", path, json=body, headers=headers, key=key)
        return response.status_code, response.json()

    def _send(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                "unreachable",
                f"cannot reach the casework API at {self.cred.api_url} ({type(exc).__name__}: {exc}); "
                "is `casework dev` (or `casework api`) running?",
                key=key,
            ) from None
        if response.is_success:
            return response
        raise refusal(response, key)


def refusal(response: httpx.Response, key: str | None) -> ApiError:
    """An ApiError from a problem+json answer (or whatever the server said instead)."""
    try:
        problem = response.json()
        detail = str(problem.get("detail") or problem.get("title"))
        kind = str(problem.get("kind") or problem.get("title", "")).lower().replace(" ", "_")
        key = problem.get("idempotency_key") or key
    except (ValueError, AttributeError):
        detail, kind = response.text.strip()[:300] or response.reason_phrase, "unavailable"
    return ApiError(kind or "bad_request", detail, response.status_code, key)
