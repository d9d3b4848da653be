"""Erasing a client: the right to be forgotten, by destroying their data key (crypto-shredding).

Temporal's history cannot be edited, and a database keeps old copies of rows (free pages, WAL,
backups). What was sealed with the client's data key (store/keys.py) can be made unreadable in
all of them at once by destroying the key. After an erasure:

- the case's workflow is ended (its payloads no longer decrypt, so a worker could not run it),
- the key is gone, and the record's sealed fields are overwritten with ERASED (so a view knows
  "erased" without a key, and rows written in clear before keys existed are scrubbed too),
- an `erase_client` event says who erased and why; the case's facts (stage, dates, manager,
  program, risk, outcome, referral providers and statuses) stay for statistics.

Doing it twice has the effect of doing it once: the second answer is the first erasure.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pydantic import Field
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import WorkflowExecutionStatus

from domain.access import may_erase
from domain.errors import Refusal
from domain.events import EraseClient
from domain.models import Actor, Model, Stage
from service.facade import CaseOps, workflow_status
from service.refusals import CaseError
from store.db import writing
from store.keys import ERASED
from store.tables import case_events, case_goals, cases, delivery_attempts, outbox
from workflows import search


class Erasure(Model):
    """What an erasure did (or, asked again, had done)."""

    number: str
    seq: int = Field(description="the erase_client event")
    erased_at: datetime
    erased_by: str
    reason: str
    repeated: bool = Field(False, description="the client had been erased before: nothing new happened")


async def erase_client(ops: CaseOps, actor: Actor, number: str, reason: str) -> Erasure:
    """Erase case `number`'s client (a program lead, once the case is closed). Raises CaseError."""
    record = ops.record_engine()
    recorded = await ops.recorded_case(number)
    if recorded is None:
        if await ops.status(number) is None:
            raise CaseError(Refusal.NOT_FOUND, f"no case {number}")
        raise CaseError(Refusal.UNAVAILABLE, f"case {number} is not in the record yet; try again shortly")
    case, seq = recorded
    # who may erase is asked first, of an erased case too (its facts say its program): a retry is
    # answered only to someone who could have erased it
    if refused := may_erase(actor, case, ops.programs):
        raise CaseError.rejected(refused)
    if (before := await _erasure(ops, number)) is not None:
        return before.model_copy(update={"repeated": True})
    await _end_workflow(ops, number)
    now = datetime.now(UTC)
    async with writing(record) as conn:
        last_seq = await conn.scalar(select(cases.c.last_seq).where(cases.c.number == number))
        seq = int(last_seq or seq) + 1
        await ops.data_keys_for_record().destroy(conn, number, now)
        await _overwrite(conn, number)
        await conn.execute(
            case_events.insert().values(
                case_number=number,
                seq=seq,
                at=now,
                action="erase_client",
                actor_id=actor.id,
                actor_role=actor.role.value,
                stage_before=Stage.CLOSED.value,
                stage_after=Stage.CLOSED.value,
                change=EraseClient(actor=actor, reason=reason).model_dump(mode="json"),
                recorded_at=now,
            )
        )
        await conn.execute(
            update(cases)
            .where(cases.c.number == number)
            .values(state=ERASED, erased_at=now, last_seq=seq, updated_at=now)
        )
    return Erasure(number=number, seq=seq, erased_at=now, erased_by=str(actor), reason=reason)


async def _end_workflow(ops: CaseOps, number: str) -> None:
    """End the case's workflow if it still runs (a closed case waits out its reopen window):
    once its key is gone its payloads cannot be read, and its tasks would fail for ever. The
    workflow must agree the case is closed, and have settled: every event recorded and every
    message sent (a provider is told of a cancellation before the client is erased). Waits up
    to the command timeout for that, then says why it cannot erase yet."""
    workflow_id = search.workflow_id(number)
    if await workflow_status(ops.client, workflow_id) != WorkflowExecutionStatus.RUNNING:
        return
    deadline = asyncio.get_running_loop().time() + ops.command_timeout.total_seconds()
    while True:
        view = await ops.view(number)
        if view.case.is_open:
            raise CaseError(
                Refusal.GUARD_FAILED, f"case {number} was reopened ({view.stage}): it cannot be erased now"
            )
        unsent = await _unsent(ops, number)
        if not view.unrecorded and not unsent:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise CaseError(
                Refusal.UNAVAILABLE,
                f"case {number} is still settling ({view.unrecorded} events to record, {unsent} messages "
                "to deliver): erase it when they are done (casework show says)",
            )
        await asyncio.sleep(0.2)
    await ops.client.get_workflow_handle(workflow_id).terminate(reason="the client's data was erased")


async def _unsent(ops: CaseOps, number: str) -> int:
    async with ops.record_engine().connect() as conn:
        found = await conn.scalar(
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.case_number == number, outbox.c.status == "pending")
        )
    return int(found or 0)


async def _overwrite(conn: AsyncConnection, number: str) -> None:
    """Overwrite the case's sealed fields with ERASED (in the erasure's transaction)."""
    await conn.execute(update(case_events).where(case_events.c.case_number == number).values(change=ERASED))
    messages = select(outbox.c.idempotency_key).where(outbox.c.case_number == number)
    await conn.execute(
        update(delivery_attempts)
        .where(delivery_attempts.c.idempotency_key.in_(messages))
        .values(address=ERASED, detail=ERASED)
    )
    await conn.execute(
        update(outbox)
        .where(outbox.c.case_number == number)
        .values(body=ERASED, payload=None, attachment=None, last_error=None)
    )
    await conn.execute(
        update(outbox)
        .where(outbox.c.case_number == number, outbox.c.recipient_role == "client")
        .values(recipient=ERASED)
    )
    await conn.execute(
        update(case_goals)
        .where(case_goals.c.case_number == number)
        .values(description=ERASED, objective=ERASED)
    )


async def _erasure(ops: CaseOps, number: str) -> Erasure | None:
    """The case's erasure, if it had one."""
    async with ops.record_engine().connect() as conn:
        row = (
            await conn.execute(
                select(case_events)
                .where(case_events.c.case_number == number, case_events.c.action == "erase_client")
                .order_by(case_events.c.seq.desc())
                .limit(1)
            )
        ).first()
    if row is None:
        return None
    erased = EraseClient.model_validate(row.change)
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    return Erasure(
        number=number, seq=row.seq, erased_at=at, erased_by=str(erased.actor), reason=erased.reason
    )
