"""A provider without a system answers a referral through the signed link in its email: the
page shows only what the referral shared, applies one answer as the provider, and refuses a
forged, used or expired link (time-skipping server, real SMTP receiver)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from activities.answer_links import AnswerLinks
from api.app import create_app
from config.settings import Settings
from domain import commands as c
from domain.answer_links import LinkStep
from domain.directory import Directory, EmailChannel, Provider
from domain.models import ReferralStatus, Role, ServiceType, SharedField
from service.facade import CaseOps
from tests.conftest import TrackingOps, case_worker
from tests.receivers import MailSink
from tests.scenario import ALICE, opening
from worker import answer_links

pytestmark = pytest.mark.asyncio(loop_scope="session")
INBOX = "intake@shelter.example.org"
DIRECTORY = Directory(
    providers={
        "shelter-north": Provider(
            id="shelter-north",
            name="North Shelter",
            services=frozenset({ServiceType.HOUSING}),
            channel=EmailChannel(address=INBOX),
        )
    }
)


def links() -> AnswerLinks:
    """The links the worker signs (the test suite's actor key derives their secret)."""
    made = answer_links(Settings())
    assert made is not None
    return made


@asynccontextmanager
async def answering(
    env: WorkflowEnvironment, store: AsyncEngine
) -> AsyncIterator[tuple[TrackingOps, httpx.AsyncClient]]:
    async with case_worker(env, store, DIRECTORY) as ops:
        app = create_app(ops, DIRECTORY, {}, store, answer_links=links())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://casework"
        ) as http:
            yield ops, http


async def referred(ops: CaseOps, respond_within: timedelta = timedelta(days=2)) -> tuple[str, str]:
    """Maria Okafor referred to the shelter, sharing her name only (her phone is consented, not shared)."""
    number = (await ops.open_case(opening("general"))).case.number
    await ops.act(number, c.Accept(actor=ALICE))
    consent = frozenset({SharedField.NAME, SharedField.CONTACT})
    await ops.act(number, c.RecordConsent(actor=ALICE, share=consent))
    done = await ops.act(
        number,
        c.Refer(
            actor=ALICE,
            provider="shelter-north",
            service=ServiceType.HOUSING,
            reason="needs a bed tonight",
            share=frozenset({SharedField.NAME}),
            respond_within=respond_within,
        ),
    )
    return number, f"R{done.seq}"


async def link_in_email(sink: MailSink, env: WorkflowEnvironment, number: str, referral: str) -> str:
    """The answer link's path, from the referral email the provider received."""
    subject = f"Referral request {number}/{referral}"
    for _ in range(200):
        mails = [m for m in sink.to(INBOX) if str(m["Subject"]).startswith(subject)]
        if mails:
            found = re.search(r"https?://\S+(/answer/\S+)", mails[0].get_content())
            assert found, mails[0].get_content()
            return found.group(1)
        await env.sleep(timedelta(seconds=5))  # lets the delivery activity run
        await asyncio.sleep(0.05)
    raise AssertionError(f"no mail {subject!r}")


async def status_of(ops: CaseOps, number: str, referral: str) -> ReferralStatus:
    return next(r.status for r in (await ops.view(number)).case.referrals if r.id == referral)


async def test_the_provider_answers_once_through_the_emailed_link(
    time_env: WorkflowEnvironment, sqlite_store: AsyncEngine, mail_sink: MailSink
) -> None:
    async with answering(time_env, sqlite_store) as (ops, http):
        number, referral = await referred(ops)
        path = await link_in_email(mail_sink, time_env, number, referral)

        page = await http.get(path)
        assert page.status_code == 200, page.text
        assert (
            page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
        )
        assert number in page.text and "housing" in page.text and "needs a bed tonight" in page.text
        assert "Maria Okafor" in page.text  # shared
        assert "555-0101" not in page.text and "1988" not in page.text  # consented or not, not shared
        assert '<label for="answer-accepted">' in page.text and 'value="completed"' not in page.text

        no_reason = await http.post(path, data={"answer": "declined", "reason": ""})
        assert no_reason.status_code == 422 and "needs a reason" in no_reason.text
        not_offered = await http.post(path, data={"answer": "completed"})
        assert not_offered.status_code == 422
        assert await status_of(ops, number, referral) in (ReferralStatus.PENDING, ReferralStatus.SENT)

        accepted = await http.post(path, data={"answer": "accepted", "reason": "bed 12 is free"})
        assert accepted.status_code == 200 and "accepted" in accepted.text, accepted.text
        answer = next(r for r in (await ops.view(number)).case.referrals if r.id == referral)
        assert answer.status is ReferralStatus.ACCEPTED and answer.answer_reason == "bed 12 is free"
        assert answer.answered_by is not None
        assert (answer.answered_by.id, answer.answered_by.role) == ("shelter-north", Role.PROVIDER)

        for used in (
            await http.get(path),
            await http.post(path, data={"answer": "declined", "reason": "full"}),
        ):
            assert used.status_code == 409 and "Already answered" in used.text
        assert await status_of(ops, number, referral) is ReferralStatus.ACCEPTED

        # the accept page gives the link for the next step: how it went
        outcome = re.search(r'id="outcome-link" href="https?://[^/"]+(/answer/[^"]+)"', accepted.text)
        assert outcome is not None
        form = await http.get(outcome.group(1))
        assert (
            form.status_code == 200
            and 'value="completed"' in form.text
            and 'value="accepted"' not in form.text
        )
        done = await http.post(outcome.group(1), data={"answer": "completed"})
        assert done.status_code == 200 and await status_of(ops, number, referral) is ReferralStatus.COMPLETED
        assert (await http.get(outcome.group(1))).status_code == 409


async def test_a_double_submit_applies_once(
    time_env: WorkflowEnvironment, sqlite_store: AsyncEngine, mail_sink: MailSink
) -> None:
    async with answering(time_env, sqlite_store) as (ops, http):
        number, referral = await referred(ops)
        path = await link_in_email(mail_sink, time_env, number, referral)
        first, second = await asyncio.gather(
            http.post(path, data={"answer": "accepted"}),
            http.post(path, data={"answer": "declined", "reason": "no beds"}),
        )
        assert sorted([first.status_code, second.status_code])[0] == 200
        # the other answer is not taken for done: the same link's key with another command
        assert sorted([first.status_code, second.status_code]) == [200, 409]
        assert "Already answered" in (second if second.status_code == 409 else first).text
        answers = [e for e in await ops.history(number) if e.action == "answer_referral"]
        assert len(answers) == 1
        # the link sent once more with the other answer: the first stands, and the page says so
        given = answers[0].change.answer.value  # type: ignore[union-attr]
        other = "declined" if given == "accepted" else "accepted"
        late = await http.post(path, data={"answer": other, "reason": "no beds"})
        assert late.status_code == 409 and "Already answered" in late.text
        assert len([e for e in await ops.history(number) if e.action == "answer_referral"]) == 1


async def test_forged_and_expired_links_are_refused(
    time_env: WorkflowEnvironment, sqlite_store: AsyncEngine, mail_sink: MailSink
) -> None:
    async with answering(time_env, sqlite_store) as (ops, http):
        number, referral = await referred(ops, respond_within=timedelta(hours=1))
        path = await link_in_email(mail_sink, time_env, number, referral)
        body, _, mac = path.removeprefix("/answer/").partition(".")
        forged = AnswerLinks([b"a guessed secret"], "").token(number, referral, LinkStep.RESPOND)
        for bad in (f"/answer/{forged}", f"/answer/{body}.{mac[::-1]}", "/answer/nothing"):
            refused = await http.get(bad)
            assert refused.status_code == 404 and "not valid" in refused.text
            assert (await http.post(bad, data={"answer": "accepted"})).status_code == 404

        await time_env.sleep(timedelta(hours=2))
        for expired in (await http.get(path), await http.post(path, data={"answer": "accepted"})):
            assert expired.status_code == 410 and "expired at" in expired.text
        assert await status_of(ops, number, referral) is ReferralStatus.EXPIRED
