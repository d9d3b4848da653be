"""The search attributes a case publishes: case facts only, never personal data.

Search attributes are stored in plaintext (a payload codec does not encrypt
them), so the client's name, birth date and contacts never go here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from domain.models import Case

CASE_STAGE = SearchAttributeKey.for_keyword("CaseStage")
CASE_MANAGER = SearchAttributeKey.for_keyword("CaseManager")
CASE_PROGRAM = SearchAttributeKey.for_keyword("CaseProgram")
CASE_RISK = SearchAttributeKey.for_keyword("CaseRisk")
CASE_NEXT_DUE = SearchAttributeKey.for_datetime("CaseNextDue")
CASE_OVERDUE = SearchAttributeKey.for_bool("CaseOverdue")
CASE_SUPERVISOR = SearchAttributeKey.for_keyword("CaseSupervisor")

ALL_KEYS = (CASE_STAGE, CASE_MANAGER, CASE_PROGRAM, CASE_RISK, CASE_NEXT_DUE, CASE_OVERDUE, CASE_SUPERVISOR)
NO_SUPERVISOR = "-"

# A next due within this of the one shown is not published again: a list sorted by due date
# cannot tell, and a case's workflow then starts with nothing to upsert, though the client that
# started it stamped the opening by its own clock a moment before the workflow's.
NEXT_DUE_SLACK = timedelta(minutes=1)


def workflow_id(case_number: str) -> str:
    return f"case-{case_number}"


def case_attributes(case: Case, next_due: datetime | None, overdue: bool) -> list[SearchAttributeUpdate[Any]]:
    """What a case's search attributes say: its stage, who has it, and when it is next due
    (unset when nothing is, as on hold or closed: no stale date in lists)."""
    return [
        CASE_STAGE.value_set(case.stage.value),
        CASE_MANAGER.value_set(case.manager),
        CASE_PROGRAM.value_set(case.program),
        CASE_RISK.value_set(case.risk.value),
        CASE_OVERDUE.value_set(overdue),
        CASE_SUPERVISOR.value_set(case.supervisor or NO_SUPERVISOR),
        CASE_NEXT_DUE.value_set(next_due) if next_due is not None else CASE_NEXT_DUE.value_unset(),
    ]


def changed(
    updates: list[SearchAttributeUpdate[Any]], shown: TypedSearchAttributes, slack: timedelta = timedelta(0)
) -> list[SearchAttributeUpdate[Any]]:
    """The updates that would change what the search attributes `shown` say (a date within
    `slack` of the one shown does not)."""

    def same(update: SearchAttributeUpdate[Any]) -> bool:
        now, then = update.value, shown.get(update.key)
        if isinstance(now, datetime) and isinstance(then, datetime):
            return abs(now - then) <= slack
        return bool(now == then)

    return [u for u in updates if not same(u)]


def starting_attributes(updates: list[SearchAttributeUpdate[Any]]) -> TypedSearchAttributes:
    """`updates` as the attributes a workflow starts with (an unset one is left out)."""
    pairs = [SearchAttributePair(u.key, u.value) for u in updates if u.value is not None]
    return TypedSearchAttributes(pairs)
