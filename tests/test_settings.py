"""Settings from the environment, or from secret files where a container platform mounts them;
the payload key found by one rule."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli.main import api_settings, dev_settings
from config.settings import Settings
from config.temporal import payload_key
from devstack.run import ensure_payload_key
from tests.processes import environment


def test_secrets_come_from_files_in_the_secrets_dir(tmp_path: Path) -> None:
    (tmp_path / "casework_actor_key").write_text("a-key-from-a-file\n")
    (tmp_path / "casework_database_url").write_text("postgresql://casework@records-db/casework\n")
    env = environment(secrets_dir=str(tmp_path))
    del env["CASEWORK_ACTOR_KEY"]  # the environment wins over a file; here there is only the file
    read = (
        "from config.settings import Settings; s = Settings(); "
        "print(s.actor_key.get_secret_value(), s.database_url)"
    )
    done = subprocess.run([sys.executable, "-c", read], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["a-key-from-a-file", "postgresql://casework@records-db/casework"]


def test_the_payload_key_is_the_setting_else_the_one_casework_dev_made_else_none(tmp_path: Path) -> None:
    assert payload_key(Settings(var_dir=tmp_path, payload_key=None)) is None
    assert ensure_payload_key(Settings(var_dir=tmp_path, payload_key=None))
    made = (tmp_path / "payload.key").read_text()
    assert len(base64.b64decode(made, validate=True)) == 32
    assert (tmp_path / "payload.key").stat().st_mode & 0o777 == 0o600
    assert payload_key(Settings(var_dir=tmp_path, payload_key=None)) == made
    given = base64.b64encode(bytes(32)).decode()
    assert payload_key(Settings(var_dir=tmp_path, payload_key=SecretStr(given))) == given  # the setting wins


def test_casework_dev_never_replaces_a_payload_key(tmp_path: Path) -> None:
    """A new key would leave every history written with the old one unreadable."""
    (tmp_path / "payload.key").write_text("kept")
    assert not ensure_payload_key(Settings(var_dir=tmp_path, payload_key=None))
    assert (tmp_path / "payload.key").read_text() == "kept"
    given = Settings(var_dir=tmp_path / "other", payload_key=SecretStr(base64.b64encode(bytes(32)).decode()))
    assert not ensure_payload_key(given) and not (tmp_path / "other").exists()  # given: none made


def test_casework_dev_runs_where_the_environment_says_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CASEWORK_TEMPORAL_ADDRESS and CASEWORK_UI_PORT hold for `casework dev` (its options once
    replaced them with 7233 and 8233 whatever the environment said); an option given wins."""
    monkeypatch.setenv("CASEWORK_TEMPORAL_ADDRESS", "127.0.0.1:17233")
    monkeypatch.setenv("CASEWORK_UI_PORT", "18233")
    chosen = dev_settings(None, None)
    assert (chosen.temporal_address, chosen.ui_port) == ("127.0.0.1:17233", 18233)
    assert "http://127.0.0.1:18233" in chosen.ui_origins
    told = dev_settings(27233, 28233)
    assert (told.temporal_address, told.ui_port) == ("127.0.0.1:27233", 28233)
    assert "http://127.0.0.1:28233" in told.ui_origins


def test_providers_are_told_to_answer_where_the_api_listens_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stack started on other ports once put :8000 into every referral it sent."""
    monkeypatch.setenv("CASEWORK_API_PORT", "18000")
    assert Settings().callback_url == "http://127.0.0.1:18000/callbacks/referrals"
    monkeypatch.setenv("CASEWORK_API_HOST", "0.0.0.0")
    assert Settings().callback_url == "http://127.0.0.1:18000/callbacks/referrals"
    monkeypatch.setenv("CASEWORK_API_HOST", "::1")
    assert Settings().callback_url == "http://[::1]:18000/callbacks/referrals"
    monkeypatch.setenv("CASEWORK_API_HOST", "[::]")
    assert Settings().callback_url == "http://127.0.0.1:18000/callbacks/referrals"
    monkeypatch.setenv("CASEWORK_CALLBACK_URL", "https://casework.example.org/callbacks/referrals")
    assert Settings().callback_url == "https://casework.example.org/callbacks/referrals"


def test_casework_api_on_another_port_tells_providers_that_port() -> None:
    assert api_settings(None, 18001).callback_url == "http://127.0.0.1:18001/callbacks/referrals"
    assert api_settings("0.0.0.0", 18002).api_host == "0.0.0.0"
