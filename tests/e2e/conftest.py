"""One `casework dev` stack for the end-to-end tests, as a person would run it: no payload key
given, so it makes its own (var/payload.key) and the UI decodes for signed-in people only.
One Chromium for the browser tests, and signing in as they do."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.processes import background, environment, free_port

LEGAL_AID_SECRET = "legal-aid-east-test-secret"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


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
    log = home / "dev.log"
    with background(
        ["dev", "--port", str(port), "--ui-port", str(ui_port)], env, "Worker running", log
    ) as dev:
        ui = f"http://127.0.0.1:{ui_port}"
        wait_until_answering(f"{ui}/api/v1/settings", log)  # the UI's proxy starts with the worker
        yield env | {
            "UI": ui,
            "LOG": str(log),
            "MAIL": str(home / "var" / "mail"),
            "API": f"http://127.0.0.1:{api_port}",
        }
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=30) == 0, log.read_text()[-3000:]


def wait_until_answering(url: str, log: Path, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} does not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


# Per module, never per session: Playwright's sync API keeps an event loop running in this
# thread while the browser is open, and every asyncio test after it would fail to start its own.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium (apt-get install chromium)")
        pytest.skip("no Chromium here: apt-get install chromium to run the browser tests")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


def sign_in(page: Page, stack: dict[str, str], key: str) -> None:
    """Sign in at the API, as a person does before the Temporal UI may decode their cases."""
    page.goto(f"{stack['API']}/signin")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.locator("#signed-in").wait_for(timeout=10_000)
