"""CaseOps: the one way the CLI (and later the HTTP API) reach cases in Temporal.

Every error a person can cause comes out as a CaseError with a kind and a
message saying what to do, never a stack trace.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.commands import OpenCase, Refer, StaffCommand
from domain.directory import Directory
from domain.events import Event
from domain.models import Case, Stage
from domain.policy import Program
from domain.views import CaseView, case_view
from store.tables import cases
from workflows import search
from workflows.case import CaseInput, CaseWorkflow


class CaseError(Exception):
    """kind: not_found | invalid_transition | forbidden | guard_failed | validation | conflict | closed"""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


class CaseSummary(BaseModel):
    """One row of `casework list`: search attributes only (no personal data)."""

    number: str
    stage: str
    manager: str
    program: str
    risk: str
    next_due: datetime | None
    overdue: bool
    running: bool


@dataclass
class ListFilter:
    stage: Stage | None = None
    manager: str | None = None
    program: str | None = None
    risk: str | None = None
    overdue: bool | None = None
    include_archived: bool = False
    supervisor: str | None = None
    programs: list[str] | None = None  # any of these (a program lead's scope)
    next_due_before: datetime | None = None

    def query(self) -> str:
        clauses = ["WorkflowType = 'CaseWorkflow'"]
        equal = (
            (search.CASE_STAGE, self.stage),
            (search.CASE_MANAGER, self.manager),
            (search.CASE_PROGRAM, self.program),
            (search.CASE_RISK, self.risk),
            (search.CASE_SUPERVISOR, self.supervisor),
        )
        for key, value in equal:
            if value is not None:
                clauses.append(f"{key.name} = '{_quote(str(value))}'")
        if self.programs is not None:
            listed = ", ".join(f"'{_quote(p)}'" for p in self.programs) or "''"
            clauses.append(f"{search.CASE_PROGRAM.name} IN ({listed})")
        if self.overdue is not None:
            clauses.append(f"{search.CASE_OVERDUE.name} = {str(self.overdue).lower()}")
        if self.next_due_before is not None:
            clauses.append(f"{search.CASE_NEXT_DUE.name} < '{self.next_due_before.isoformat()}'")
        if not self.include_archived:
            clauses.append("ExecutionStatus = 'Running'")
        return " AND ".join(clauses)


def summary(wf: WorkflowExecution) -> CaseSummary:
    sa = wf.typed_search_attributes
    return CaseSummary(
        number=wf.id.removeprefix("case-"),
        stage=sa.get(search.CASE_STAGE) or "?",
        manager=sa.get(search.CASE_MANAGER) or "?",
        program=sa.get(search.CASE_PROGRAM) or "?",
        risk=sa.get(search.CASE_RISK) or "?",
        next_due=sa.get(search.CASE_NEXT_DUE),
        overdue=bool(sa.get(search.CASE_OVERDUE)),
        running=wf.status == WorkflowExecutionStatus.RUNNING,
    )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def intake_case_number(intake_reference: str) -> str:
    """The case number for an intake reference: the same reference always names the same case,
    so a retried open never opens a second one."""
    return "I-" + hashlib.sha256(intake_reference.encode()).hexdigest()[:10].upper()


def new_case_number(now: datetime) -> str:
    """Short, unguessable, sortable by day: 261125-7KQ2."""
    return f"{now:%y%m%d}-{secrets.token_hex(2).upper()}"


class CaseOps:
    def __init__(
        self,
        client: Client,
        programs: dict[str, Program],
        task_queue: str,
        directory: Directory | None = None,
        record: AsyncEngine | None = None,
    ) -> None:
        self.client, self.programs, self.task_queue = client, programs, task_queue
        self.directory = directory
        self.record = record  # the SQL record: cases stay readable after Temporal forgets them

    def program(self, key: str) -> Program:
        try:
            return self.programs[key]
        except KeyError:
            known = ", ".join(sorted(self.programs))
            raise CaseError("validation", f"unknown program {key!r} (known: {known})") from None

    async def open_case(self, command: OpenCase) -> CaseView:
        """Open a case. With an intake reference the case number comes from it, and a repeated
        request returns the case it opened before (its `opening_request` tells which request)."""
        program = self.program(command.program)
        if command.intake_reference:
            command = command.model_copy(update={"number": intake_case_number(command.intake_reference)})
        conflict = (
            WorkflowIDConflictPolicy.USE_EXISTING
            if command.intake_reference
            else WorkflowIDConflictPolicy.FAIL
        )
        try:
            handle = await self.client.start_workflow(
                CaseWorkflow.run,
                CaseInput(program=program, opening=command),
                id=search.workflow_id(command.number),
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=conflict,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(search.CASE_STAGE, Stage.INTAKE.value),
                        SearchAttributePair(search.CASE_MANAGER, command.manager),
                        SearchAttributePair(search.CASE_PROGRAM, command.program),
                        SearchAttributePair(search.CASE_RISK, command.risk.value),
                        SearchAttributePair(
                            search.CASE_SUPERVISOR, command.supervisor or search.NO_SUPERVISOR
                        ),
                    ]
                ),
                static_summary=f"Case {command.number} · {program.name}",
            )
        except WorkflowAlreadyStartedError:
            raise CaseError("conflict", f"case {command.number} already exists") from None
        return await self._view(handle, command.number)

    async def act(self, number: str, command: StaffCommand) -> CaseView:
        if isinstance(command, Refer):
            command = self.checked_referral(command)
        handle = self._handle(number)
        try:
            return await handle.execute_update(CaseWorkflow.act, command.model_dump(mode="json"))
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise CaseError(cause.type or "invalid_transition", cause.message) from None
            raise CaseError("invalid_transition", str(cause or exc)) from None
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND and await self._archived(handle):
                raise CaseError(
                    "closed", f"case {number} is archived: its reopen window has passed"
                ) from None
            raise self._rpc_error(number, exc) from None

    async def _archived(self, handle: WorkflowHandle[Any, Any]) -> bool:
        """Whether the case's workflow exists but has completed (its reopen window passed)."""
        status = await workflow_status(self.client, handle.id)
        return status is not None and status != WorkflowExecutionStatus.RUNNING

    def checked_referral(self, command: Refer) -> Refer:
        """A referral names a provider in the directory that offers the service; the
        provider's own response time applies unless the referral sets one."""
        if self.directory is None:
            return command
        provider = self.directory.provider(command.provider)
        if provider is None:
            known = ", ".join(sorted(self.directory.providers)) or "none"
            raise CaseError("validation", f"unknown provider {command.provider!r} (known: {known})")
        if command.service not in provider.services:
            offered = ", ".join(sorted(s.value for s in provider.services))
            raise CaseError(
                "validation", f"{provider.id} does not offer {command.service.value} (offers: {offered})"
            )
        if command.respond_within is None and provider.response_time is not None:
            return command.model_copy(update={"respond_within": provider.response_time})
        return command

    async def view(self, number: str) -> CaseView:
        try:
            return await self._view(self._handle(number), number)
        except CaseError as exc:
            if exc.kind != "not_found" or (recorded := await self.recorded_view(number)) is None:
                raise
            return recorded

    async def recorded_view(self, number: str) -> CaseView | None:
        """The case as the SQL record has it, once its workflow history is gone."""
        if self.record is None:
            return None
        async with self.record.connect() as conn:
            row = (
                await conn.execute(select(cases.c.state, cases.c.last_seq).where(cases.c.number == number))
            ).one_or_none()
        if row is None:
            return None
        case = Case.model_validate(row.state)
        program = self.program(case.program)
        return case_view(case, program, utcnow(), row.last_seq).model_copy(update={"archived": True})

    async def history(self, number: str) -> list[Event]:
        try:
            return await self._handle(number).query(CaseWorkflow.history)
        except RPCError as exc:
            raise self._rpc_error(number, exc) from None

    async def list_cases(self, filt: ListFilter, limit: int = 200) -> list[CaseSummary]:
        return [summary(wf) async for wf in self.client.list_workflows(filt.query(), limit=limit)]

    async def list_page(
        self, filt: ListFilter, page_size: int, token: bytes | None
    ) -> tuple[list[CaseSummary], bytes | None]:
        """One page of cases and the token for the next (None at the end)."""
        pages = self.client.list_workflows(filt.query(), page_size=page_size, next_page_token=token)
        try:
            await pages.fetch_next_page(page_size=page_size)
        except RPCError as exc:
            if exc.status is RPCStatusCode.INVALID_ARGUMENT:
                raise CaseError("bad_request", f"cannot list cases: {exc.message}") from None
            raise
        return [summary(wf) for wf in pages.current_page or []], pages.next_page_token or None

    def _handle(self, number: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle_for(CaseWorkflow.run, search.workflow_id(number))

    async def _view(self, handle: WorkflowHandle[Any, Any], number: str) -> CaseView:
        try:
            return await handle.query(CaseWorkflow.view)
        except WorkflowQueryFailedError as exc:
            raise CaseError("unavailable", f"case {number} could not be read: {exc}") from None
        except RPCError as exc:
            raise self._rpc_error(number, exc) from None
        except (KeyError, RuntimeError) as exc:  # the converter meets a payload it cannot read
            if "binary/encrypted" in str(exc):
                raise CaseError(
                    "unavailable",
                    f"case {number} is encrypted: set CASEWORK_PAYLOAD_KEY to the key the workers use",
                ) from None
            raise

    @staticmethod
    def _rpc_error(number: str, exc: RPCError) -> CaseError:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return CaseError("not_found", f"no case {number}")
        return CaseError("unavailable", f"case {number}: {exc.message}")


async def workflow_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """A workflow's status, or None if Temporal has no such workflow. Reads the raw
    description: decoding search attributes is not needed here (and the time-skipping
    test server returns unset datetime attributes in a form the SDK cannot decode)."""
    try:
        described = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace, execution=ExecutionRef(workflow_id=workflow_id)
            )
        )
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise
    return WorkflowExecutionStatus(described.workflow_execution_info.status)


def utcnow() -> datetime:
    return datetime.now(UTC)
