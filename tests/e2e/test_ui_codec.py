"""The Temporal UI of `casework dev` with encrypted payloads, in a real browser: client data
is readable only after signing in at the API, and only in the signed-in person's cases."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.processes import background, environment, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FAMILY_NAME = "Valderrama"  # the client's name: in the case's input payload only


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium (apt-get install chromium)")
        pytest.skip("no Chromium here: apt-get install chromium to run the browser tests")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`casework dev` with a payload key, on free ports; stopped at the end."""
    home = tmp_path_factory.mktemp("dev-codec")
    port, ui_port, api_port = free_port(), free_port(), free_port()
    env = environment(
        var_dir=str(home / "var"),
        database_url=f"sqlite:///{home / 'var' / 'casework.db'}",
        temporal_address=f"127.0.0.1:{port}",
        smtp_port=str(free_port()),
        api_port=str(api_port),
        callback_url=f"http://127.0.0.1:{api_port}/callbacks/referrals",
        payload_key=base64.b64encode(os.urandom(32)).decode(),
    )
    log = home / "dev.log"
    with background(
        ["dev", "--port", str(port), "--ui-port", str(ui_port)], env, "Worker running", log
    ) as dev:
        ui, api = f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{api_port}"
        wait_until_answering(f"{ui}/api/v1/settings", log)  # the UI's proxy starts with the worker
        yield {"UI": ui, "API": api, "LOG": str(log)}
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=30) == 0, Path(log).read_text()[-3000:]


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


@pytest.fixture(scope="module")
def alices_case(stack: dict[str, str]) -> str:
    opened = httpx.post(
        f"{stack['API']}/cases",
        headers={"Authorization": "Bearer dev-alice"},
        json={"client": {"given_name": "Rosa", "family_name": FAMILY_NAME}, "supervisor": "sam"},
        timeout=30,
    )
    assert opened.status_code == 201, opened.text
    number: str = opened.json()["case"]["number"]
    return number


def sign_in(page: Page, stack: dict[str, str], key: str) -> None:
    page.goto(f"{stack['API']}/signin")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.locator("#signed-in").wait_for(timeout=10_000)


def open_case_page(page: Page, stack: dict[str, str], number: str) -> int:
    """Opens the case's workflow page; the status of the UI's first decode request."""
    with page.expect_response(lambda r: "/codec/decode" in r.url and r.request.method == "POST") as decoded:
        page.goto(f"{stack['UI']}/namespaces/default/workflows/case-{number}")
    status: int = decoded.value.status
    page.locator(".cm-content").first.wait_for(state="attached", timeout=20_000)  # the input is drawn
    return status


# The UI shows payloads in CodeMirror views, which draw only the lines in sight: scroll each
# view through, a frame at a time, and collect what it shows.
ALL_CODE_TEXT = """async () => {
  const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  let seen = "";
  for (const view of document.querySelectorAll(".cm-scroller")) {
    for (view.scrollTop = 0; ; view.scrollTop += view.clientHeight / 2) {
      await frame();
      seen += view.textContent;
      if (view.scrollTop + view.clientHeight >= view.scrollHeight) break;
    }
  }
  return seen;
}"""


def code_text(page: Page) -> str:
    text: str = page.evaluate(ALL_CODE_TEXT)
    return text


def test_before_signing_in_the_input_is_not_readable(
    browser: Browser, stack: dict[str, str], alices_case: str
) -> None:
    with browser.new_context() as context:
        page = context.new_page()
        assert open_case_page(page, stack, alices_case) == 401
        assert FAMILY_NAME not in page.content() + code_text(page)


def test_signed_in_as_alice_her_case_input_is_readable(
    browser: Browser, stack: dict[str, str], alices_case: str
) -> None:
    with browser.new_context() as context:
        page = context.new_page()
        sign_in(page, stack, "dev-alice")
        assert open_case_page(page, stack, alices_case) == 200
        decoded_input = page.locator(".cm-content", has_text='"program"').first
        expect(decoded_input).to_be_attached(timeout=20_000)
        assert FAMILY_NAME in code_text(page)


def test_signed_in_as_bob_alices_case_is_not_decoded(
    browser: Browser, stack: dict[str, str], alices_case: str
) -> None:
    with browser.new_context() as context:
        page = context.new_page()
        sign_in(page, stack, "dev-bob")
        assert open_case_page(page, stack, alices_case) == 404
        assert FAMILY_NAME not in page.content() + code_text(page)
