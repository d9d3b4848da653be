"""One `casework dev` stack for the end-to-end tests, as a person would run it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import background, environment, free_port

LEGAL_AID_SECRET = "legal-aid-east-test-secret"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`casework dev` on free ports, with its data in a temporary folder; stopped at the end."""
    home = tmp_path_factory.mktemp("dev")
    port, ui_port, api_port = free_port(), free_port(), free_port()
    env = environment(
        var_dir=str(home / "var"),
        database_url=f"sqlite:///{home / 'var' / 'casework.db'}",
        temporal_address=f"127.0.0.1:{port}",
        smtp_port=str(free_port()),  # the stack's own mail sink, filing into var/mail
        api_port=str(api_port),
        callback_url=f"http://127.0.0.1:{api_port}/callbacks/referrals",
        secret_legal_aid_east=LEGAL_AID_SECRET,
    )
    with background(
        ["dev", "--port", str(port), "--ui-port", str(ui_port)],
        env,
        ready="Worker running",
        log=home / "dev.log",
    ) as dev:
        yield env | {
            "UI": f"http://127.0.0.1:{ui_port}",
            "LOG": str(home / "dev.log"),
            "MAIL": str(home / "var" / "mail"),
            "API": f"http://127.0.0.1:{api_port}",
        }
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=30) == 0, Path(home / "dev.log").read_text()[-3000:]
