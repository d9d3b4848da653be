"""Client data in Temporal under `casework dev` as installed (no key given: it makes
var/payload.key): encrypted in Temporal's database, and in the Temporal UI, in a real browser,
readable only after signing in at the API, and only in the signed-in person's cases."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import sign_in

FAMILY_NAME = "Valderrama"  # the client's name: in the case's input payload only


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


def test_casework_dev_says_which_key_and_where_to_sign_in(stack: dict[str, str]) -> None:
    said = Path(stack["LOG"]).read_text()
    key = Path(stack["CASEWORK_VAR_DIR"]) / "payload.key"
    assert f"Client data:  encrypted in Temporal and the record, each client's key wrapped by {key}" in said
    assert f"sign in first at {stack['API']}/signin" in said


def temporal_database(stack: dict[str, str]) -> bytes:
    """Temporal's SQLite file as it is on disk, with its write-ahead log (recent writes)."""
    var = Path(stack["CASEWORK_VAR_DIR"])
    return b"".join(p.read_bytes() for p in (var / "temporal.db", var / "temporal.db-wal") if p.exists())


def test_temporals_database_holds_no_client_data_in_clear(stack: dict[str, str]) -> None:
    """The privacy scan of Temporal's database: after a case with a note went through, neither
    the client's name nor the note is anywhere in its bytes."""
    name, note = "Oyelaran-Quist", "stays with her cousin on Larkspur Lane"
    alice = {"Authorization": "Bearer dev-alice"}
    opened = httpx.post(
        f"{stack['API']}/cases",
        headers=alice,
        json={"client": {"given_name": "Rosa", "family_name": name}, "supervisor": "sam"},
        timeout=30,
    )
    assert opened.status_code == 201, opened.text
    number = opened.json()["case"]["number"]
    accepted = httpx.post(
        f"{stack['API']}/cases/{number}/accept", headers=alice, json={"note": note}, timeout=30
    )
    assert accepted.status_code == 200, accepted.text  # the update is in the history now
    kept = temporal_database(stack)
    assert f"case-{number}".encode() in kept  # the scan sees the case (its id is no client data)
    assert name.encode() not in kept and note.encode() not in kept
