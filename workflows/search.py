"""The search attributes a case publishes: case facts only, never personal data.

Search attributes are stored in plaintext (a payload codec does not encrypt
them), so the client's name, birth date and contacts never go here.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

CASE_STAGE = SearchAttributeKey.for_keyword("CaseStage")
CASE_MANAGER = SearchAttributeKey.for_keyword("CaseManager")
CASE_PROGRAM = SearchAttributeKey.for_keyword("CaseProgram")
CASE_RISK = SearchAttributeKey.for_keyword("CaseRisk")
CASE_NEXT_DUE = SearchAttributeKey.for_datetime("CaseNextDue")
CASE_OVERDUE = SearchAttributeKey.for_bool("CaseOverdue")
CASE_SUPERVISOR = SearchAttributeKey.for_keyword("CaseSupervisor")

ALL_KEYS = (CASE_STAGE, CASE_MANAGER, CASE_PROGRAM, CASE_RISK, CASE_NEXT_DUE, CASE_OVERDUE, CASE_SUPERVISOR)
NO_SUPERVISOR = "-"


def workflow_id(case_number: str) -> str:
    return f"case-{case_number}"
