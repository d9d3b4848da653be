"""A provider with no system answers a referral in a real browser (Chromium), from the link in
the referral email that reached the `casework dev` stack's SMTP receiver (aiosmtpd, filing mail
in var/mail): accept, and the case shows it; the same link again, or an expired one, is refused."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.e2e.test_cli import wait_for_mail

ALICE = {"Authorization": "Bearer dev-alice"}
LINK = re.compile(r"https?://\S+/answer/\S+")


def api(stack: dict[str, str], path: str, body: object) -> dict[str, object]:
    answered = httpx.post(f"{stack['API']}{path}", headers=ALICE, json=body, timeout=30)
    assert answered.status_code in (200, 201), answered.text
    result: dict[str, object] = answered.json()
    return result


def case_in_assessment(stack: dict[str, str]) -> str:
    """Alice's case for Noor Rahimi, who consented to share her name."""
    opened = api(
        stack, "/cases", {"client": {"given_name": "Noor", "family_name": "Rahimi", "phone": "555-0177"}}
    )
    number = str(opened["case"]["number"])  # type: ignore[index]
    api(stack, f"/cases/{number}/accept", {})
    api(stack, f"/cases/{number}/record-consent", {"share": ["name"]})
    return number


def refer(stack: dict[str, str], number: str, respond_within: str) -> str:
    done = api(
        stack,
        f"/cases/{number}/refer",
        {
            "provider": "shelter-north",
            "service": "housing",
            "reason": "evicted this week",
            "share": ["name"],
            "respond_within": respond_within,
        },
    )
    return f"R{done['seq']}"


def emailed_link(stack: dict[str, str], number: str, referral: str) -> str:
    mail = wait_for_mail(Path(stack["MAIL"]), f"Referral request {number}/{referral}:")
    assert mail["To"] == "intake@shelter-north.example.org"
    found = LINK.search(mail.get_content())
    assert found, mail.get_content()
    assert found.group(0).startswith(f"{stack['API']}/answer/")
    return found.group(0)


def referral_status(stack: dict[str, str], number: str, referral: str) -> str:
    case = httpx.get(f"{stack['API']}/cases/{number}", headers=ALICE, timeout=30).json()["case"]
    return str(next(r["status"] for r in case["referrals"] if r["id"] == referral))


def test_the_provider_accepts_in_the_browser_once(browser: Browser, stack: dict[str, str]) -> None:
    number = case_in_assessment(stack)
    referral = refer(stack, number, "P2D")
    link = emailed_link(stack, number, referral)
    with browser.new_context(java_script_enabled=False) as context:  # it works without JavaScript
        page = context.new_page()
        shown = page.goto(link)
        assert shown is not None and shown.status == 200
        assert shown.headers["cache-control"] == "no-store"
        expect(page.locator("#referral")).to_contain_text(number)
        expect(page.locator("#referral")).to_contain_text("evicted this week")
        expect(page.locator("#client")).to_contain_text("Noor Rahimi")
        assert "555-0177" not in page.content()  # her phone was not shared

        page.get_by_label("Accept: we take the client on").check()
        page.get_by_role("button", name="Send answer").click()
        expect(page.locator("#answered")).to_contain_text("accepted")
        assert referral_status(stack, number, referral) == "accepted"

        again = page.goto(link)
        assert again is not None and again.status == 409
        expect(page.locator("#refused")).to_contain_text("already accepted")
        assert page.locator("form").count() == 0
    assert referral_status(stack, number, referral) == "accepted"


def test_an_expired_link_is_refused(browser: Browser, stack: dict[str, str]) -> None:
    number = case_in_assessment(stack)
    referral = refer(stack, number, "PT1S")  # the provider has one second to answer
    link = emailed_link(stack, number, referral)
    deadline = time.monotonic() + 20
    while httpx.get(link, timeout=10).status_code != 410:  # wait for the deadline to pass
        assert time.monotonic() < deadline, "the link never expired"
        time.sleep(0.2)
    with browser.new_context() as context:
        page = context.new_page()
        shown = page.goto(link)
        assert shown is not None and shown.status == 410
        expect(page.locator("h1")).to_have_text("Link expired")
        expect(page.locator("#refused")).to_contain_text("expired at")
        assert page.locator("form").count() == 0
    assert referral_status(stack, number, referral) in ("pending", "sent", "expired")
