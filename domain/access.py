"""Who may see which cases, who may open one and who may reassign a caseload: the rules
every entry point asks.

A case manager sees their own caseload, a supervisor the cases they supervise, a program
lead their programs' cases; providers see no case (they answer their referrals only).
`Scope` is the same rule as a filter, so lists ask exactly what `may_see` answers.
What may happen to one case, and by whom, is the lifecycle's (domain/lifecycle.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domain.errors import Refusal, Rejected
from domain.models import Actor, Case, Role
from domain.policy import Program

OPENERS = frozenset({Role.CASE_MANAGER, Role.SUPERVISOR, Role.PROGRAM_LEAD})
REASSIGNERS = frozenset({Role.SUPERVISOR, Role.PROGRAM_LEAD})


@dataclass(frozen=True)
class Scope:
    """The cases an actor may see, as a filter: every field that is set must match."""

    everything: bool = False
    manager: str | None = None
    supervisor: str | None = None
    programs: tuple[str, ...] | None = None


def scope_of(actor: Actor, programs: dict[str, Program]) -> Scope | None:
    """The actor's scope, or None if they may see no case at all."""
    match actor.role:
        case Role.CASE_MANAGER:
            return Scope(manager=actor.id)
        case Role.SUPERVISOR:
            return Scope(supervisor=actor.id)
        case Role.PROGRAM_LEAD:
            return Scope(programs=tuple(p.key for p in programs.values() if p.lead == actor.id))
        case Role.SYSTEM:
            return Scope(everything=True)
        case _:
            return None


def may_see(actor: Actor, case: Case, programs: dict[str, Program]) -> bool:
    scope = scope_of(actor, programs)
    if scope is None:
        return False
    return scope.everything or (
        (scope.manager is None or case.manager == scope.manager)
        and (scope.supervisor is None or case.supervisor == scope.supervisor)
        and (scope.programs is None or case.program in scope.programs)
    )


def may_open(actor: Actor, manager: str) -> str | None:
    """Why `actor` may not open a case on `manager`'s caseload, or None if they may."""
    if actor.role not in OPENERS:
        return f"a {actor.role.value} may not open cases"
    if actor.role is Role.CASE_MANAGER and manager != actor.id:
        return "a case manager opens cases on their own caseload"
    return None


# Who may hold each duty on a case: carry it (a supervisor only a case they supervise too, see
# why_case_would_be_unseen), oversee it (a high-risk plan's approval, escalations), or take it
# over at a transfer.
DUTIES: dict[str, frozenset[Role]] = {
    "manager": frozenset({Role.CASE_MANAGER, Role.SUPERVISOR}),
    "supervisor": frozenset({Role.SUPERVISOR, Role.PROGRAM_LEAD}),
    "new manager": frozenset({Role.CASE_MANAGER}),
}


def not_staff_for(person: str, duty: str, staff: Mapping[str, Actor]) -> str | None:
    """Why `person` cannot take `duty` (one of DUTIES) on a case, or None if they can: someone
    casework does not know (no key names them: a typo, or someone gone) would leave the case in
    nobody's caseload, and a case manager as supervisor could never approve its plan."""
    known = staff.get(person)
    if known is None:
        return f"{person} is not one of casework's staff (no API key names them): check the id"
    roles = DUTIES[duty]
    if known.role not in roles:
        allowed = " or ".join(sorted(r.value.replace("_", " ") for r in roles))
        return f"{person} is a {known.role.value.replace('_', ' ')}: a case's {duty} is a {allowed}"
    return None


def why_case_would_be_unseen(
    manager: str, supervisor: str | None, program: Program, staff: Mapping[str, Actor]
) -> str | None:
    """Why a new case with these people would sit where nobody who should can see it, or None.
    Supervisors see the cases they supervise and leads their own program's: a lead of another
    program as supervisor, or a supervisor managing a case someone else supervises, would leave
    it out of every caseload but the lead's."""
    if refusal := not_staff_for(manager, "manager", staff):
        return f"manager: {refusal}"
    if supervisor is not None:
        if refusal := not_staff_for(supervisor, "supervisor", staff):
            return f"supervisor: {refusal}"
        if staff[supervisor].role is Role.PROGRAM_LEAD and program.lead != supervisor:
            return (
                f"supervisor: {supervisor} does not lead program {program.key} (its lead is {program.lead})"
            )
    if staff[manager].role is Role.SUPERVISOR and supervisor != manager:
        return f"manager: {manager} is a supervisor: one who manages a case supervises it too"
    return None


def may_reassign(
    actor: Actor, from_manager: str, to_manager: str, programs: dict[str, Program]
) -> str | None:
    """Why `actor` may not move `from_manager`'s open caseload to `to_manager`, or None if they
    may; every refusal here is FORBIDDEN. Asked once, before any case moves: each case's
    transfer is still the lifecycle's to decide (a case already `to_manager`'s is refused there,
    and a bulk run counts it as skipped), so the managers are named here only for the message."""
    if actor.role not in REASSIGNERS:
        return "only a supervisor or program lead may reassign a caseload"
    # A lead's authority comes from the programs they lead (their scope); leading none, they have none.
    if actor.role is Role.PROGRAM_LEAD and not any(p.lead == actor.id for p in programs.values()):
        return f"{actor.id} leads no program, so may not reassign {from_manager}'s caseload to {to_manager}"
    return None


# Reports count a whole caseload: for the people who answer for one.
REPORT_READERS = frozenset({Role.SUPERVISOR, Role.PROGRAM_LEAD, Role.SYSTEM})


def may_read_reports(actor: Actor) -> str | None:
    """Why `actor` may not read caseload reports, or None if they may (over what they may see)."""
    return None if actor.role in REPORT_READERS else "reports are for supervisors and program leads"


# A subject access export is the client's whole file: every colleague's notes, what each
# provider received and who read the case. Answering the request is a formal act someone
# accountable does (confirming who asks, deciding what of third parties to withhold), and the
# export is the easiest way to carry a whole file off, so it is for supervisors and program leads
# (of the cases they may see), not for case managers, who read their cases through the API.
EXPORTERS = frozenset({Role.SUPERVISOR, Role.PROGRAM_LEAD})


def may_export(actor: Actor, case: Case, programs: dict[str, Program]) -> Rejected | None:
    """Why `actor` may not export everything held about `case`'s client, or None if they may:
    NOT_FOUND for a case they may not see (its existence does not leak), else FORBIDDEN."""
    if not may_see(actor, case, programs):
        return Rejected(Refusal.NOT_FOUND, f"no case {case.number}")
    if actor.role not in EXPORTERS:
        return Rejected(
            Refusal.FORBIDDEN, "a client's data export is for supervisors and program leads of the case"
        )
    return None


def may_erase(actor: Actor, case: Case, programs: dict[str, Program]) -> Rejected | None:
    """Why `actor` may not erase `case`'s client, or None if they may. Erasure cannot be undone,
    so it is a program lead's decision, and only once the case is closed: an open case still
    needs its client's data (withdraw it first if the client asks to be forgotten)."""
    if not may_see(actor, case, programs):
        return Rejected(Refusal.NOT_FOUND, f"no case {case.number}")
    if actor.role is not Role.PROGRAM_LEAD:
        return Rejected(Refusal.FORBIDDEN, "erasing a client's data is for the program lead of the case")
    if case.is_open:
        return Rejected(
            Refusal.GUARD_FAILED,
            f"case {case.number} is open ({case.stage}): close or withdraw it before erasing its client",
        )
    return None
