"""Ending a referral tells its provider; ending a case cancels what it had booked.

Real receivers (an SMTP server, an HTTP webhook endpoint), the time-skipping server, the record on
SQLite and PostgreSQL, and the provider callback over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import NamedTuple

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from activities.channels import email_message
from activities.messages import calendar_cancellation, messages_for
from api.app import create_app
from domain import commands as c
from domain.case import notice_for, replay
from domain.models import ReferralStatus, SharedField, Stage
from domain.schedule import next_due
from tests.conftest import TrackingOps, case_worker
from tests.integration.test_callback import DIRECTORY as CALLBACK_DIRECTORY
from tests.integration.test_callback import SECRETS, serving, signed
from tests.integration.test_deliveries import SECRET, SECRET_ENV, directory
from tests.receivers import MailSink, WebhookReceiver, is_msg_id
from tests.scenario import ALICE, TO_MONITORING, opening, quiet_referral, story_in

pytestmark = pytest.mark.asyncio(loop_scope="session")
SHELTER = "intake@shelter.example.org"  # shelter-north's email channel (tests/integration/test_deliveries.py)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    os.environ[SECRET_ENV] = SECRET
    yield receiver
    receiver.stop()


async def until(env: WorkflowEnvironment, what: str, condition: Callable[[], bool]) -> None:
    """Let the case's deliveries run (time skips a little at a time) until `condition` holds."""
    for _ in range(200):
        if condition():
            return
        await env.sleep(timedelta(seconds=5))
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def mail_about(sink: MailSink, number: str, to: str, subject_starts: str) -> list[EmailMessage]:
    return [
        m for m in sink.to(to) if number in str(m["Subject"]) and str(m["Subject"]).startswith(subject_starts)
    ]


def calendar_of(mail: EmailMessage) -> tuple[str, Calendar]:
    [part] = [p for p in mail.iter_attachments() if p.get_content_type() == "text/calendar"]
    return str(part.get_param("method") or ""), Calendar.from_ical(part.get_content())


class Booked(NamedTuple):
    number: str
    by_email: str  # the referral to shelter-north, by email
    by_webhook: str  # the referral to harbour, by webhook
    visit: str  # the home visit, the client invited
    client_email: str  # the client's own (one per case: the SMTP sink is shared by the session)


async def a_case_with_two_referrals_and_a_visit(ops: TrackingOps, env: WorkflowEnvironment) -> Booked:
    """In coordination: referred to the shelter (email) and to Harbour (webhook), both sent; a home
    visit booked with the client invited (her email given after opening: she had none then)."""
    maria = f"maria.{uuid.uuid4().hex[:8]}@client.example.org"
    assert opening("weekly").client.email is None
    number = (await ops.open_case(opening("weekly"))).case.number
    for change in TO_MONITORING[:-1]:
        await ops.act(number, change)
    share = frozenset({SharedField.NAME, SharedField.CONTACT, SharedField.NEEDS})
    await ops.act(number, c.RecordConsent(actor=ALICE, share=share))
    await ops.act(number, c.UpdateContact(actor=ALICE, email=maria, note="she gave her email today"))
    email = await ops.act(
        number,
        c.Refer(actor=ALICE, provider="shelter-north", service="housing", reason="evicted", share=share),
    )
    hook = await ops.act(
        number,
        c.Refer(
            actor=ALICE,
            provider="harbour",
            service="counseling",
            reason="distress",
            share=frozenset({"name"}),
        ),
    )
    visit_at = await env.get_current_time() + timedelta(days=2)
    view = await ops.do(
        number, c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=visit_at, invite_client=True)
    )

    async def both_sent() -> bool:
        referrals = (await ops.view(number)).case.referrals
        return all(r.status is ReferralStatus.SENT for r in referrals)

    for _ in range(200):
        if await both_sent():
            break
        await env.sleep(timedelta(seconds=5))
    return Booked(number, f"R{email.seq}", f"R{hook.seq}", view.case.follow_ups[-1].id, maria)


async def test_withdrawing_tells_both_providers_and_cancels_the_visit_for_everyone_invited(
    time_env: WorkflowEnvironment, record_store: AsyncEngine, mail_sink: MailSink, webhook: WebhookReceiver
) -> None:
    async with case_worker(time_env, record_store, directory(webhook.url)) as ops:
        number, by_email, by_webhook, visit, maria = await a_case_with_two_referrals_and_a_visit(
            ops, time_env
        )
        [invitation] = mail_about(
            mail_sink, number, "alice@casework.example.org", f"Case {number}: home visit"
        )
        _, invited = calendar_of(invitation)
        [booked] = invited.walk("VEVENT")

        done = await ops.act(number, c.Withdraw(actor=ALICE, reason="the client moved away"))
        assert f"revoked {by_email} (shelter-north)" in done.summary
        assert f"revoked {by_webhook} (harbour)" in done.summary and f"cancelled {visit}" in done.summary

        def cancelled_everywhere() -> bool:
            return (
                len(mail_about(mail_sink, number, SHELTER, "Referral cancelled")) == 1
                and any(call.json()["type"] == "referral_cancellation" for call in webhook.calls)
                and len(mail_about(mail_sink, number, "alice@casework.example.org", "Cancelled:")) == 1
                and len(mail_about(mail_sink, "", maria, "Cancelled:")) == 1
            )

        await until(time_env, "two cancellations and two calendar CANCELs", cancelled_everywhere)

        [to_shelter] = mail_about(mail_sink, number, SHELTER, "Referral cancelled")
        assert to_shelter["X-Casework-Delivery"] == f"{number}:referral-cancel:{by_email}"
        body = to_shelter.get_content()
        assert "the case was withdrawn" in body and "No answer is needed" in body and "delete" in body
        assert not any(word in body for word in ("Maria", "Okafor", "555-0101", "housing (", "moved away"))

        [cancel_call] = [call for call in webhook.calls if call.json()["type"] == "referral_cancellation"]
        payload = cancel_call.json()
        assert payload == {
            "type": "referral_cancellation",
            "case": number,
            "referral": by_webhook,
            "service": "counseling",
            "cancelled_at": payload["cancelled_at"],
            "why": "the case was withdrawn",
            "answer_needed": False,
            "dispose_of_client_data": True,
        }
        assert cancel_call.headers["X-Casework-Delivery"] == f"{number}:referral-cancel:{by_webhook}"

        cancels = [
            *mail_about(mail_sink, number, "alice@casework.example.org", "Cancelled:"),
            *mail_about(mail_sink, "", maria, "Cancelled:"),  # the client's subject names no case
        ]
        for mail in cancels:
            method, calendar = calendar_of(mail)
            [entry] = calendar.walk("VEVENT")
            assert method == "CANCEL" and str(calendar["METHOD"]) == "CANCEL"
            assert str(entry["UID"]) == str(booked["UID"]) == f"{number}-{visit}@casework"
            assert entry.decoded("SEQUENCE") == booked.decoded("SEQUENCE", 0) + 1
            assert str(entry["STATUS"]) == "CANCELLED"
            assert entry.decoded("DTSTART") == booked.decoded("DTSTART")

        case = (await ops.view(number)).case
        assert {r.id: r.status for r in case.referrals} == {
            by_email: ReferralStatus.REVOKED,
            by_webhook: ReferralStatus.REVOKED,
        }
        assert all(is_msg_id(str(m["Message-ID"])) for m in mail_sink.messages)


async def test_revoking_one_referral_tells_only_its_provider(
    time_env: WorkflowEnvironment, record_store: AsyncEngine, mail_sink: MailSink, webhook: WebhookReceiver
) -> None:
    async with case_worker(time_env, record_store, directory(webhook.url)) as ops:
        number, by_email, by_webhook, _, _ = await a_case_with_two_referrals_and_a_visit(ops, time_env)
        await ops.act(
            number, c.RevokeReferral(actor=ALICE, referral_id=by_email, reason="found a place with family")
        )
        await until(
            time_env,
            "the shelter's cancellation",
            lambda: bool(mail_about(mail_sink, number, SHELTER, "Referral cancelled")),
        )
        [cancel] = mail_about(mail_sink, number, SHELTER, "Referral cancelled")
        assert "the case manager revoked it" in cancel.get_content()
        assert "family" not in cancel.get_content()  # the staff's words stay in the case
        assert not [call for call in webhook.calls if call.json()["type"] == "referral_cancellation"]
        assert not mail_about(mail_sink, number, "alice@casework.example.org", "Cancelled:")
        referrals = {r.id: r.status for r in (await ops.view(number)).case.referrals}
        assert referrals == {by_email: ReferralStatus.REVOKED, by_webhook: ReferralStatus.SENT}


async def test_a_late_answer_to_a_closed_case_is_told_that_no_answer_is_needed(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    for pid, secret in SECRETS.items():
        os.environ[f"CASEWORK_TEST_CALLBACK_{pid.upper().replace('-', '_')}"] = secret
    async with case_worker(time_env, record_store, CALLBACK_DIRECTORY) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        await ops.act(number, c.Accept(actor=ALICE))
        referral = f"R{(await ops.act(number, quiet_referral())).seq}"
        await ops.act(number, c.Withdraw(actor=ALICE, reason="the client moved away"))
        closed_on = f"{(await ops.view(number)).case.closed_at:%Y-%m-%d}"
        async with (
            serving(create_app(ops, CALLBACK_DIRECTORY, {}, None)) as base,
            httpx.AsyncClient(base_url=base) as http,
        ):
            raw, headers = signed(
                "shelter-north", {"case": number, "referral": referral, "answer": "accepted"}
            )
            late = await http.post("/callbacks/referrals", content=raw, headers=headers)
        assert late.status_code == 409
        assert late.headers["content-type"] == "application/problem+json"
        assert late.json()["detail"] == (
            f"case {number} was closed on {closed_on}; referral {referral} was cancelled then, "
            "so no answer is needed"
        )


async def test_every_message_kind_has_a_valid_message_id() -> None:
    """No servers (async only for the module's asyncio mark). Reminders, escalations, referral
    requests and cancellations, invitations and their cancellations: each message's key (with its
    `:`, `#`, `@` and spaces) makes a valid RFC 5322 msg-id, and never the old malformed one."""
    story = story_in(Stage.ASSESSMENT)  # referred to the shelter, a home visit booked
    for _ in range(4):  # reminders, then the ladder, each when it comes due
        due = next_due(story.case, story.program, story.now)
        assert due is not None
        story.do(notice_for(story.case, due, story.program), after=max(due.at - story.now, timedelta(0)))
    story.do(c.Withdraw(actor=ALICE, reason="the client moved away"))
    rows = [
        row
        for i, event in enumerate(story.events)  # each event with the case as it left it
        for row in messages_for(
            replay(story.events[: i + 1], story.program), event, story.now, "https://x.example/cb"
        )
    ]
    [invitation] = [r for r in rows if r["kind"] == "invitation"]
    rows.append(calendar_cancellation(invitation, story.events[-1], story.now))
    assert {r["kind"] for r in rows} == {
        "reminder",
        "escalation",
        "referral_request",
        "referral_cancellation",
        "invitation",
        "invitation_cancellation",
    }
    for row in rows:
        key = row["idempotency_key"]
        msg = email_message(
            "casework@casework.example.org", "x@example.org", row["subject"], row["body"], key
        )
        assert is_msg_id(str(msg["Message-ID"])), (row["kind"], key, msg["Message-ID"])
