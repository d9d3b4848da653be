"""Who may see which cases, who may open one and who may reassign a caseload
(domain/access.py): one rule for reads, lists, opening and reassigning, whichever entry
point asks."""

from __future__ import annotations

import pytest

from domain.access import may_export, may_open, may_read_reports, may_reassign, may_see, scope_of
from domain.errors import Refusal
from domain.models import Actor, Case, Role
from tests.scenario import ALICE, BOB, LEAD, PROGRAMS, PROVIDER, SAM, Story


def cases() -> list[Case]:
    mine = Story("general").case
    bobs = mine.model_copy(update={"number": "T-BOB", "manager": "bob", "supervisor": "other"})
    housing = mine.model_copy(update={"number": "T-HOUSING", "program": "housing", "supervisor": None})
    return [mine, bobs, housing]


@pytest.mark.parametrize(
    ("actor", "sees"),
    [
        (ALICE, {0, 2}),  # her caseload, in any program
        (BOB, {1}),
        (SAM, {0}),  # the cases he supervises
        (LEAD, {0, 1}),  # the general program's cases (lead-general)
        (PROVIDER, set()),  # providers answer referrals; they see no case
        (Actor(id="casework", role=Role.SYSTEM), {0, 1, 2}),
    ],
    ids=lambda v: getattr(v, "id", ""),
)
def test_each_role_sees_its_own_cases_and_lists_ask_the_same_rule(actor: Actor, sees: set[int]) -> None:
    all_cases = cases()
    assert {i for i, case in enumerate(all_cases) if may_see(actor, case, PROGRAMS)} == sees
    scope = scope_of(actor, PROGRAMS)
    assert (scope is None) == (actor.role is Role.PROVIDER)


def test_a_case_manager_opens_cases_on_her_own_caseload_only() -> None:
    assert may_open(ALICE, "alice") is None
    assert may_open(ALICE, "bob") == "a case manager opens cases on their own caseload"
    assert may_open(SAM, "bob") is None
    assert may_open(PROVIDER, "alice") == "a provider may not open cases"


@pytest.mark.parametrize(
    ("actor", "refusal"),
    [
        (SAM, None),
        (LEAD, None),
        (ALICE, "only a supervisor or program lead may reassign a caseload"),
        (PROVIDER, "only a supervisor or program lead may reassign a caseload"),
        (Actor(id="casework", role=Role.SYSTEM), "only a supervisor or program lead may reassign a caseload"),
        (
            Actor(id="lead-nothing", role=Role.PROGRAM_LEAD),
            "lead-nothing leads no program, so may not reassign alice's caseload to bob",
        ),
    ],
    ids=lambda v: getattr(v, "id", ""),
)
def test_supervisors_and_leads_of_a_program_reassign_caseloads(actor: Actor, refusal: str | None) -> None:
    assert may_reassign(actor, "alice", "bob", PROGRAMS) == refusal


def test_caseload_reports_are_for_supervisors_and_leads() -> None:
    assert [may_read_reports(a) for a in (SAM, LEAD)] == [None, None]
    assert (
        may_read_reports(ALICE)
        == may_read_reports(PROVIDER)
        == "reports are for supervisors and program leads"
    )


@pytest.mark.parametrize(
    ("actor", "case", "refusal"),
    [
        (SAM, 0, None),  # the supervisor of the case
        (LEAD, 1, None),  # the lead of its program
        (
            ALICE,
            0,
            (Refusal.FORBIDDEN, "a client's data export is for supervisors and program leads of the case"),
        ),
        (SAM, 1, (Refusal.NOT_FOUND, "no case T-BOB")),  # another team's case: as if it did not exist
        (LEAD, 2, (Refusal.NOT_FOUND, "no case T-HOUSING")),  # another program's
        (PROVIDER, 1, (Refusal.NOT_FOUND, "no case T-BOB")),  # providers see no case
    ],
    ids=lambda v: getattr(v, "id", str(v)),
)
def test_a_clients_data_is_exported_by_the_supervisors_and_leads_who_see_the_case(
    actor: Actor, case: int, refusal: tuple[Refusal, str] | None
) -> None:
    refused = may_export(actor, cases()[case], PROGRAMS)
    assert (refused and (refused.kind, refused.message)) == refusal
