"""Deliveries reach real receivers: an SMTP server and an HTTP endpoint, on the time-skipping server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import WorkflowEnvironment

from activities.channels import Attachment, email_message, message_id
from activities.signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from domain import commands as c
from domain.directory import Directory, EmailChannel, Person, Provider, WebhookChannel
from domain.models import ReferralStatus, ServiceType
from domain.views import CaseView
from service.facade import CaseOps
from store.tables import delivery_attempts, outbox
from tests.conftest import case_worker
from tests.receivers import MailSink, WebhookReceiver, is_msg_id
from tests.scenario import ALICE, SAM, TO_MONITORING, opening
from workflows.search import workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")
DAY = timedelta(days=1)
SECRET_ENV = "CASEWORK_TEST_WEBHOOK_SECRET"
SECRET = "s3cret-for-tests"


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    os.environ[SECRET_ENV] = SECRET
    yield receiver
    receiver.stop()


def directory(webhook_url: str = "http://127.0.0.1:9/unused") -> Directory:
    return Directory(
        providers={
            "shelter-north": Provider(
                id="shelter-north",
                name="North Shelter",
                services=frozenset({ServiceType.HOUSING}),
                channel=EmailChannel(address="intake@shelter.example.org"),
            ),
            "bad-address": Provider(
                id="bad-address",
                name="Gone Away",
                services=frozenset({ServiceType.HOUSING}),
                channel=EmailChannel(address="nobody@gone.example.org"),
            ),
            "harbour": Provider(
                id="harbour",
                name="Harbour Counselling",
                services=frozenset({ServiceType.COUNSELING}),
                channel=WebhookChannel(url=webhook_url, secret_env=SECRET_ENV),
            ),
        },
        staff={"alice": Person(id="alice", name="Alice", email="alice@casework.example.org")},
        staff_email_domain="casework.example.org",
    )


async def referred(ops: CaseOps, provider: str, service: str) -> tuple[str, str]:
    number = (await ops.open_case(opening("weekly"))).case.number
    await ops.act(number, c.Accept(actor=ALICE))
    await ops.act(number, c.RecordConsent(actor=ALICE, share=frozenset({"name"})))
    done = await ops.act(
        number,
        c.Refer(
            actor=ALICE, provider=provider, service=service, reason="urgent need", share=frozenset({"name"})
        ),
    )
    return number, f"R{done.seq}"


async def referral_status(
    ops: CaseOps, number: str, env: WorkflowEnvironment, until: set[ReferralStatus]
) -> ReferralStatus:
    """Advance time a little at a time until the referral reaches one of `until`."""
    for _ in range(100):
        status = (await ops.view(number)).case.referrals[-1].status
        if status in until:
            return status
        await env.sleep(timedelta(seconds=5))
        await asyncio.sleep(0.05)
    raise AssertionError(f"referral stayed {status}")


async def attempts(store: AsyncEngine, key: str) -> list[str]:
    async with store.connect() as conn:
        rows = await conn.execute(
            select(delivery_attempts.c.outcome)
            .where(delivery_attempts.c.idempotency_key == key)
            .order_by(delivery_attempts.c.id)
        )
        return [r.outcome for r in rows]


@pytest.mark.parametrize(
    ("sender", "domain"),
    [
        ("casework@casework.example.org", "casework.example.org"),
        ("Casework <Notices@Mail.Example.ORG>", "mail.example.org"),
        ("casework", "casework"),  # no domain to borrow
    ],
    ids=["address", "display-name", "no-domain"],
)
async def test_the_message_id_comes_from_the_key_alone_and_is_a_valid_msg_id(
    sender: str, domain: str
) -> None:
    """No servers (async only for the module's asyncio mark): keys have spaces, `#`, `:` and `@`
    in them; the Message-ID must not."""
    key = "C-2026-0001:follow_up:follow-up contact@2026-01-05T09:00:00+00:00#L0"
    invitation = Attachment("invitation.ics", "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")
    first = email_message(sender, "intake@shelter.example.org", "Reminder", "body", key)
    again = email_message(sender, "intake@shelter.example.org", "Reminder, again", "other", key, invitation)
    msg_id = str(first["Message-ID"])
    assert msg_id == str(again["Message-ID"])  # the same on every attempt
    assert is_msg_id(msg_id), msg_id
    assert msg_id.endswith(f"@{domain}>") and len(msg_id.split("@")[0]) - 1 >= 32
    assert msg_id != str(email_message(sender, "x@example.org", "s", "b", key + "x")["Message-ID"])
    # as it goes over the wire and a receiver reads it back: one unbroken, defect-free msg-id
    wire = first.as_bytes()
    assert f"Message-ID: {msg_id}\n".encode() in wire
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert str(parsed["Message-ID"]) == msg_id and not parsed["Message-ID"].defects
    sent = parsed["Date"].datetime  # the header every message must have, in UTC
    assert sent.utcoffset() == timedelta(0) and abs(datetime.now(UTC) - sent) < timedelta(minutes=1)
    # a key this long is folded onto the next line (or RFC 2047-encoded): a reader gets it back
    # after unfolding, give or take the leading space Python's parser keeps
    assert str(parsed["X-Casework-Delivery"]).strip() == key


async def test_a_referral_email_reaches_the_provider_with_only_consented_data(
    time_env: WorkflowEnvironment, record_store: AsyncEngine, mail_sink: MailSink
) -> None:
    async with case_worker(time_env, record_store, directory()) as ops:
        number, referral = await referred(ops, "shelter-north", "housing")
        assert await referral_status(ops, number, time_env, {ReferralStatus.SENT}) is ReferralStatus.SENT
        [mail] = [m for m in mail_sink.to("intake@shelter.example.org") if number in str(m["Subject"])]
        assert mail["Subject"] == f"Referral request {number}/{referral}: housing"
        body = mail.get_content().replace("\r\n", "\n")
        assert "Name: Maria Okafor" in body and "555-0101" not in body  # contact was not consented
        # the words the callback takes, and by when (weekly's response time, from the referral)
        assert "\n  accepted - you take the client on\n  declined - " in body
        assert "\n  completed - the service was given\n  no_show - the client did not come\n" in body
        assert "no-show" not in body and "accept," not in body
        referred_at = (await ops.view(number)).case.referrals[-1]
        assert referred_at.respond_within is not None
        assert f"by {referred_at.requested_at + referred_at.respond_within:%A %d %B %Y, %H:%M} UTC" in body
        assert mail["X-Casework-Delivery"] == f"{number}:referral:{referral}"
        assert mail["Message-ID"] == message_id(
            f"{number}:referral:{referral}", "casework@casework.example.org"
        )
        assert await attempts(record_store, f"{number}:referral:{referral}") == ["delivered"]


async def test_a_refused_address_is_a_failed_delivery_for_the_case_manager(
    time_env: WorkflowEnvironment, record_store: AsyncEngine, mail_sink: MailSink
) -> None:
    mail_sink.refuse.add("nobody@gone.example.org")
    async with case_worker(time_env, record_store, directory()) as ops:
        number, referral = await referred(ops, "bad-address", "housing")
        status = await referral_status(
            ops, number, time_env, {ReferralStatus.DELIVERY_FAILED, ReferralStatus.SENT}
        )
        assert status is ReferralStatus.DELIVERY_FAILED
        key = f"{number}:referral:{referral}"
        assert await attempts(record_store, key) == ["failed"]  # a 550 is not retried
        history = await ops.history(number)
        [failed] = [e.change for e in history if e.change.action == "record_delivery"]
        assert "550" in failed.detail
        view = await ops.view(number)
        assert view.case.referrals[-1].status is ReferralStatus.DELIVERY_FAILED
        [shown] = view.case.failed_deliveries  # for the case manager, in the view and the UI's details
        assert shown.key == key and "550" in shown.detail


async def test_a_webhook_retried_through_two_503s_is_delivered_once_with_three_attempts(
    time_env: WorkflowEnvironment, record_store: AsyncEngine, webhook: WebhookReceiver
) -> None:
    webhook.script = [503, 503]
    async with case_worker(time_env, record_store, directory(webhook.url)) as ops:
        number, referral = await referred(ops, "harbour", "counseling")
        assert (
            await referral_status(
                ops, number, time_env, {ReferralStatus.SENT, ReferralStatus.DELIVERY_FAILED}
            )
            is ReferralStatus.SENT
        )
        key = f"{number}:referral:{referral}"
        assert await attempts(record_store, key) == ["retrying", "retrying", "delivered"]
        assert len(webhook.calls) == 3
        assert {call.headers[DELIVERY_HEADER] for call in webhook.calls} == {
            key
        }  # one delivery id throughout
        last = webhook.calls[-1]
        assert (
            verify(
                SECRET,
                last.headers[TIMESTAMP_HEADER],
                last.body,
                last.headers[SIGNATURE_HEADER],
                now=time.time(),
            )
            is None
        )
        payload = last.json()
        assert payload["case"] == number and payload["referral"] == referral
        assert payload["client"] == {"name": "Maria Okafor"}
        assert payload["answers"] == ["accepted", "declined"]
        assert payload["answers_once_accepted"] == ["completed", "no_show"]
        assert payload["respond_within_hours"] > 0 and payload["answer_by"].endswith("+00:00")
        async with record_store.connect() as conn:
            status, tries = (
                await conn.execute(
                    select(outbox.c.status, outbox.c.attempts).where(outbox.c.idempotency_key == key)
                )
            ).one()
        assert (status, tries) == ("delivered", 3)


async def test_a_webhook_answering_400_is_not_retried(
    time_env: WorkflowEnvironment, record_store: AsyncEngine, webhook: WebhookReceiver
) -> None:
    webhook.script = [400]
    async with case_worker(time_env, record_store, directory(webhook.url)) as ops:
        number, referral = await referred(ops, "harbour", "counseling")
        status = await referral_status(
            ops, number, time_env, {ReferralStatus.SENT, ReferralStatus.DELIVERY_FAILED}
        )
        assert status is ReferralStatus.DELIVERY_FAILED
        assert len(webhook.calls) == 1
        assert await attempts(record_store, f"{number}:referral:{referral}") == ["failed"]


async def test_reminders_escalations_and_invitations_arrive_by_email(
    time_env: WorkflowEnvironment, record_store: AsyncEngine, mail_sink: MailSink
) -> None:
    async with case_worker(time_env, record_store, directory()) as ops:
        number = (await ops.open_case(opening("weekly"))).case.number
        for change in TO_MONITORING[:-1]:  # to coordination
            await ops.act(number, change)
        visit = await time_env.get_current_time() + 2 * DAY
        view = await ops.do(number, c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=visit))
        follow_up = view.case.follow_ups[-1].id
        await time_env.sleep(6 * DAY)  # the visit passes with no outcome: reminder, then the ladder
        await time_env.sleep(timedelta(seconds=30))
        mine = [m for m in mail_sink.messages if number in str(m["Subject"])]
        subjects = [str(m["Subject"]) for m in mine]
        assert any(s.startswith(f"Case {number}: home visit on ") for s in subjects)
        assert f"Case {number}: home visit {follow_up} overdue (escalation level 0)" in subjects
        assert f"Case {number}: home visit {follow_up} overdue (escalation level 1)" in subjects
        assert all("Maria" not in s and "Okafor" not in s for s in subjects)
        [invitation] = [m for m in mine if "home visit on" in str(m["Subject"])]
        [ics] = [part for part in invitation.iter_attachments() if part.get_content_type() == "text/calendar"]
        calendar = ics.get_content()
        assert "BEGIN:VEVENT" in calendar and f"Case {number}: home visit" in calendar
        assert visit.strftime("%Y%m%dT%H%M") in calendar
        to_sam = [m for m in mine if "escalation level 1" in str(m["Subject"])]
        assert to_sam and all(str(m["To"]) == "sam@casework.example.org" for m in to_sam)
        await ops.act(
            number,
            c.RecordFollowUpOutcome(
                actor=SAM, follow_up_id=follow_up, outcome="missed", notes="client not at home"
            ),
        )


async def view_when(
    ops: CaseOps, number: str, env: WorkflowEnvironment, wanted: Callable[[CaseView], bool]
) -> CaseView:
    """Advance time a little at a time until the case's view shows what is wanted."""
    for _ in range(200):
        view = await ops.view(number)
        if wanted(view):
            return view
        await env.sleep(timedelta(seconds=20))
        await asyncio.sleep(0.05)
    raise AssertionError(f"the case never showed it: {view.failing_deliveries}")


async def mail_about(sink: MailSink, number: str) -> list[EmailMessage]:
    """The case manager's mail about the case, once some has arrived."""
    async with asyncio.timeout(10):
        while not (mail := [m for m in sink.to("alice@casework.example.org") if number in str(m["Subject"])]):
            await asyncio.sleep(0.05)
    return mail


async def current_details(ops: CaseOps, number: str) -> str:
    """What the Temporal UI shows as the case workflow's current details (a payload, sealed)."""
    handle = ops.client.get_workflow_handle(workflow_id(number))
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def test_a_webhook_provider_that_is_down_shows_as_failing_early_and_the_manager_is_told_once(
    time_env: WorkflowEnvironment, record_store: AsyncEngine, webhook: WebhookReceiver, mail_sink: MailSink
) -> None:
    webhook.script = [503] * 1000  # down until the test says otherwise
    async with case_worker(time_env, record_store, directory(webhook.url)) as ops:
        number, referral = await referred(ops, "harbour", "counseling")
        key = f"{number}:referral:{referral}"

        # the first attempts fail: the case says so at once, not after three days
        view = await view_when(ops, number, time_env, lambda v: bool(v.failing_deliveries))
        [failing] = view.failing_deliveries
        assert (failing.key, failing.to) == (key, "harbour")
        assert failing.attempts >= 2 and "503" in failing.last_error
        assert view.case.referrals[-1].status is ReferralStatus.PENDING
        assert "delivery to harbour failing since" in await current_details(ops, number)

        # more attempts fail: the count grows, the case manager is still told only once
        view = await view_when(
            ops, number, time_env, lambda v: v.failing_deliveries[0].attempts > 2 * failing.attempts
        )
        told = await mail_about(mail_sink, number)
        assert [str(m["Subject"]) for m in told] == [f"Case {number}: delivery to harbour failing"]
        assert "503" in told[0].get_content()

        # the provider is back: the next attempt delivers and the failing note clears
        webhook.script.clear()
        status = await referral_status(
            ops, number, time_env, {ReferralStatus.SENT, ReferralStatus.DELIVERY_FAILED}
        )
        assert status is ReferralStatus.SENT
        view = await ops.view(number)
        assert view.failing_deliveries == []
        assert "failing" not in await current_details(ops, number)
        outcomes = await attempts(record_store, key)
        assert outcomes[-1] == "delivered" and outcomes[:-1] == ["retrying"] * (len(outcomes) - 1)
        assert len(outcomes) == len(webhook.calls) > 2 * failing.attempts
        history = await ops.history(number)
        assert [e.action for e in history].count("delivery_failing") == 1
        assert len(await mail_about(mail_sink, number)) == 1
