"""A worker killed around a delivery: the message still arrives, and not twice. (On SQLite
only: these are about the worker and Temporal; the record store is tested on both databases.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from activities.channels import message_id
from domain import commands as c
from domain.models import ReferralStatus
from service.facade import CaseOps
from store.tables import delivery_attempts
from tests.integration.test_devserver import eventually
from tests.processes import background, environment
from tests.receivers import MailSink, is_msg_id
from tests.scenario import ALICE, PROGRAMS, opening, quiet_referral
from workflows.search import workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")
SHELTER_INBOX = "intake@shelter-north.example.org"


async def referral_delivered_across_a_crash(
    failpoint: str,
    dev_env: WorkflowEnvironment,
    store: AsyncEngine,
    database_url: str,
    mail: MailSink,
    tmp_path: Path,
) -> tuple[str, list[EmailMessage], list[tuple[str, str]]]:
    """The referral's key, the messages the SMTP server got for it, and its attempts (outcome, detail)."""
    task_queue = f"crash-{uuid.uuid4().hex[:8]}"
    # the first command after the crash waits out the dead worker's tasks: give it time
    ops = CaseOps(dev_env.client, PROGRAMS, task_queue, command_timeout=timedelta(seconds=60))
    settings = {
        "temporal_address": dev_env.client.service_client.config.target_host,
        "task_queue": task_queue,
        "database_url": database_url,
        "smtp_port": str(mail.port),
        "programs_dir": str(Path(__file__).parents[1] / "programs"),
    }
    dying = environment(**settings, failpoint=failpoint, failpoint_marker=str(tmp_path / "fired"))
    with background(["worker"], dying, ready="worker started", log=tmp_path / "worker1.log") as first:
        number = (await ops.open_case(opening("weekly"))).case.number
        await ops.act(number, c.Accept(actor=ALICE))
        done = await ops.act(number, quiet_referral())
        await asyncio.wait_for(asyncio.to_thread(first.wait), timeout=30)
        assert first.returncode == 137, (tmp_path / "worker1.log").read_text()[-2000:]
    key = f"{number}:referral:R{done.seq}"
    with background(
        ["worker"], environment(**settings), ready="worker started", log=tmp_path / "worker2.log"
    ):

        async def sent() -> bool:
            return (await ops.view(number)).case.referrals[-1].status is ReferralStatus.SENT

        await eventually(sent, within=60)  # the dead worker's attempt times out first (20 s)
    await dev_env.client.get_workflow_handle(workflow_id(number)).terminate(reason="test finished")
    received = [m for m in mail.to(SHELTER_INBOX) if m["X-Casework-Delivery"] == key]
    async with store.connect() as conn:
        attempts = [
            (r.outcome, r.detail)
            for r in await conn.execute(
                select(delivery_attempts.c.outcome, delivery_attempts.c.detail)
                .where(delivery_attempts.c.idempotency_key == key)
                .order_by(delivery_attempts.c.id)
            )
        ]
    return key, received, attempts


async def test_killed_after_recording_the_delivery_the_message_is_not_sent_again(
    dev_env: WorkflowEnvironment,
    sqlite_store: AsyncEngine,
    sqlite_url: str,
    mail_sink: MailSink,
    tmp_path: Path,
) -> None:
    _, received, attempts = await referral_delivered_across_a_crash(
        "delivery-recorded", dev_env, sqlite_store, sqlite_url, mail_sink, tmp_path
    )
    # one message at the receiver; one attempt on record (the retry found it delivered and sent nothing)
    assert len(received) == 1
    assert [outcome for outcome, _ in attempts] == ["delivered"]


async def test_killed_between_sending_and_recording_the_duplicate_carries_the_same_delivery_id(
    dev_env: WorkflowEnvironment,
    sqlite_store: AsyncEngine,
    sqlite_url: str,
    mail_sink: MailSink,
    tmp_path: Path,
) -> None:
    """The one window no sender can close alone: the message left, the worker died before
    writing that down. The retry sends again with the same delivery id and Message-ID, so
    the receiver can recognise it; the record shows the interrupted attempt."""
    key, received, attempts = await referral_delivered_across_a_crash(
        "delivery-sent", dev_env, sqlite_store, sqlite_url, mail_sink, tmp_path
    )
    assert len(received) == 2
    assert {str(m["X-Casework-Delivery"]) for m in received} == {key}
    [msg_id] = {str(m["Message-ID"]) for m in received}  # one Message-ID for both copies
    assert is_msg_id(msg_id), msg_id  # <local@domain>, no spaces: a receiver can parse and match it
    assert msg_id == message_id(key, str(received[0]["From"]))  # from the key alone, nothing per attempt
    [(first, why), (second, _)] = attempts
    assert (first, second) == ("interrupted", "delivered")  # not left `sending` forever
    assert "worker stopped" in why
