"""The case lifecycle: the only place that says what may happen, when, and by whom.

Read LIFECYCLE top to bottom: each row is one rule — a trigger, the stages it
may fire from, where it leads (None: the case stays where it is), the roles
that may give it, and the guards that must hold. A decision walks the rows of
its trigger from the case's stage in order: the first row whose guards all hold
fires. Nothing else in casework decides whether an action is allowed.

(A `transitions.Machine` built per decision used to do the walk; it cost ~520 µs
a decision against ~2 µs for the walk itself, and its objects in every cached
workflow. The README's diagram is drawn from this table by `diagram()`.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import bounds
from domain import commands as c
from domain.errors import Refusal, Rejected
from domain.events import Change
from domain.models import (
    ACTIVE_REFERRAL,
    OPEN_REFERRAL,
    OPEN_STAGES,
    Case,
    FollowUpStatus,
    Outcome,
    Referral,
    ReferralAnswer,
    ReferralStatus,
    Role,
    SharedField,
    Stage,
)
from domain.policy import Program, human

S = Stage
STAFF = frozenset({Role.CASE_MANAGER, Role.SUPERVISOR, Role.PROGRAM_LEAD})
SUPERVISORS = frozenset({Role.SUPERVISOR, Role.PROGRAM_LEAD})
SYSTEM_ONLY = frozenset({Role.SYSTEM})
ANSWERING = STAFF | {Role.PROVIDER}  # providers answer their referrals; staff record answers by phone
WORKING = (S.ASSESSMENT, S.PLANNING, S.COORDINATION, S.MONITORING, S.EVALUATION)
HOLDABLE = tuple(s for s in OPEN_STAGES if s is not S.ON_HOLD)


@dataclass(frozen=True)
class Rule:
    trigger: str
    sources: tuple[Stage, ...]
    dest: Stage | None
    roles: frozenset[Role]
    guards: tuple[str, ...] = ()


def rule(
    trigger: str,
    sources: Stage | Iterable[Stage],
    dest: Stage | None,
    roles: frozenset[Role] = STAFF,
    *guards: str,
) -> Rule:
    srcs = (sources,) if isinstance(sources, Stage) else tuple(sources)
    return Rule(trigger, srcs, dest, roles, guards)


# fmt: off
LIFECYCLE: tuple[Rule, ...] = (
    #     trigger               from                       to               who          guards
    rule("accept",              S.INTAKE,                  S.ASSESSMENT),
    rule("decline",             S.INTAKE,                  S.CLOSED),
    rule("complete_assessment", S.ASSESSMENT,              S.PLANNING),
    rule("submit_plan",         S.PLANNING,                None,            STAFF,       "no_plan_awaiting_decision"),
    rule("approve_plan",        S.PLANNING,                S.COORDINATION,  STAFF,       "plan_awaiting_decision", "approver_has_authority"),
    rule("reject_plan",         S.PLANNING,                None,            STAFF,       "plan_awaiting_decision", "approver_has_authority"),
    rule("start_monitoring",    S.COORDINATION,            S.MONITORING),
    rule("revise_plan",         S.MONITORING,              S.PLANNING),
    rule("reassess",            S.MONITORING,              S.ASSESSMENT),
    rule("begin_evaluation",    S.MONITORING,              S.EVALUATION),
    rule("resume_monitoring",   S.EVALUATION,              S.MONITORING),
    rule("close",               S.EVALUATION,              S.CLOSED,        STAFF,       "goal_results_name_plan_goals", "outcome_fits_goals", "closer_has_authority"),
    rule("withdraw",            OPEN_STAGES,               S.CLOSED),
    rule("suspend",             HOLDABLE,                  S.ON_HOLD),
    *(rule("resume",            S.ON_HOLD,                 stage,           STAFF,       "returns_to_held_stage") for stage in HOLDABLE),
    rule("reopen",              S.CLOSED,                  S.ASSESSMENT,    STAFF,       "chosen_destination", "within_reopen_window"),
    rule("reopen",              S.CLOSED,                  S.MONITORING,    STAFF,       "chosen_destination", "within_reopen_window", "has_approved_plan"),
    rule("transfer",            OPEN_STAGES,               None,            SUPERVISORS, "new_manager_differs"),
    rule("refer",               WORKING,                   None,            STAFF,       "room_for_referral", "consent_covers_sharing"),
    rule("answer_referral",     OPEN_STAGES,               None,            ANSWERING,   "referral_exists", "answer_fits_referral", "provider_is_the_one_referred"),
    rule("revoke_referral",     OPEN_STAGES,               None,            STAFF,       "referral_exists", "referral_is_open"),
    rule("record_consent",      OPEN_STAGES,               None),
    rule("update_contact",      OPEN_STAGES,               None),
    rule("schedule_follow_up",  WORKING,                   None,            STAFF,       "room_for_follow_up", "follow_up_in_future", "client_can_be_invited"),
    rule("record_follow_up_outcome", OPEN_STAGES,          None,            STAFF,       "follow_up_exists", "follow_up_is_scheduled", "follow_up_has_come"),
    rule("record_follow_up",    (S.COORDINATION, S.MONITORING, S.EVALUATION), None),
    rule("review_plan",         S.MONITORING,              None,            STAFF,       "has_approved_plan"),
    rule("add_note",            tuple(Stage),              None),
    rule("issue_notice",        OPEN_STAGES,               None,            SYSTEM_ONLY),
    rule("record_delivery",     tuple(Stage),              None,            SYSTEM_ONLY),
    rule("delivery_failing",    tuple(Stage),              None,            SYSTEM_ONLY),
    rule("archive",             S.CLOSED,                  None,            SYSTEM_ONLY, "reopen_window_passed"),
    rule("restore",             tuple(Stage),              None,            SUPERVISORS),
)
# fmt: on


@dataclass(frozen=True)
class Context:
    """Everything a guard may look at. Time comes in as data: the domain has no clock."""

    case: Case
    change: Change
    program: Program
    now: datetime


Guard = Callable[[Context, Stage], "str | None"]
"""A guard returns None when it holds, or the reason the action is refused."""


def _no_plan_awaiting_decision(ctx: Context, dest: Stage) -> str | None:
    plan = ctx.case.plan
    if plan is not None and plan.status == "submitted":
        return "a plan is already awaiting approval; approve or reject it first"
    return None


def _plan_awaiting_decision(ctx: Context, dest: Stage) -> str | None:
    plan = ctx.case.plan
    if plan is None or plan.status != "submitted":
        return "there is no submitted plan awaiting a decision"
    return None


def _approver_has_authority(ctx: Context, dest: Stage) -> str | None:
    needs_supervisor = ctx.case.risk in ctx.program.approvals.plan_needs_supervisor_at
    if needs_supervisor and ctx.change.actor.role not in SUPERVISORS:
        # say who can decide: a case opened with no supervisor is decided by its program lead
        who = f"its supervisor {ctx.case.supervisor}" if ctx.case.supervisor else "it has no supervisor"
        return (
            f"a {ctx.case.risk}-risk plan needs a supervisor's decision in program {ctx.program.key} "
            f"({who}, or the program lead {ctx.program.lead})"
        )
    return None


def _goal_results_name_plan_goals(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.Close)
    plan_goals = {g.id for g in ctx.case.plan.goals} if ctx.case.plan else set()
    unknown = sorted(set(ctx.change.goals_met) - plan_goals)
    if unknown:
        return f"goals_met names goals that are not in the plan: {', '.join(unknown)}"
    return None


def _outcome_fits_goals(ctx: Context, dest: Stage) -> str | None:
    """goals_met: every goal of the plan met; goals_not_met: none; partially_met: some, not all."""
    assert isinstance(ctx.change, c.Close)
    plan_goals = {g.id for g in ctx.case.plan.goals} if ctx.case.plan else set()
    if not plan_goals or not ctx.program.outcomes_fit_the_facts:
        return None
    met = plan_goals & set(ctx.change.goals_met)
    fits = {
        Outcome.GOALS_MET: met == plan_goals,
        Outcome.GOALS_NOT_MET: not met,
        Outcome.PARTIALLY_MET: bool(met) and met != plan_goals,
    }[ctx.change.outcome]
    if fits:
        return None
    said = f"{len(met)} of {len(plan_goals)} goals met" if met else "no goal met"
    right = (
        Outcome.GOALS_MET if met == plan_goals else Outcome.PARTIALLY_MET if met else Outcome.GOALS_NOT_MET
    )
    return f"the outcome {ctx.change.outcome.value} does not fit the goals ({said}): close as {right.value}"


def _closer_has_authority(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.Close)
    plan_goals = {g.id for g in ctx.case.plan.goals} if ctx.case.plan else set()
    unmet = plan_goals - set(ctx.change.goals_met)
    if (
        unmet
        and ctx.program.approvals.close_with_unmet_goals_needs_supervisor
        and ctx.change.actor.role not in SUPERVISORS
    ):
        return f"closing with unmet goals ({', '.join(sorted(unmet))}) needs a supervisor"
    return None


def _returns_to_held_stage(ctx: Context, dest: Stage) -> str | None:
    return None if ctx.case.held_from == dest else f"the case was not held from {dest}"


def _chosen_destination(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.Reopen)
    return None if ctx.change.to == dest else f"reopen was asked to go to {ctx.change.to}"


def _within_reopen_window(ctx: Context, dest: Stage) -> str | None:
    closed_at = ctx.case.closed_at
    if closed_at is None or ctx.now > closed_at + ctx.program.reopen_window:
        return (
            f"the reopen window of program {ctx.program.key} "
            f"({human(ctx.program.reopen_window)} after closure) has passed"
        )
    return None


def _reopen_window_passed(ctx: Context, dest: Stage) -> str | None:
    return None if _within_reopen_window(ctx, dest) else "the case may still be reopened"


def _has_approved_plan(ctx: Context, dest: Stage) -> str | None:
    plan = ctx.case.plan
    return None if plan is not None and plan.status == "approved" else "the case has no approved plan"


def _new_manager_differs(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.Transfer)
    if ctx.change.to_manager == ctx.case.manager:
        return f"the case is already managed by {ctx.case.manager}"
    return None


# The referral's own small lifecycle: which answer may follow which status.
REFERRAL_ANSWERS: dict[ReferralAnswer, frozenset[ReferralStatus]] = {
    ReferralAnswer.ACCEPTED: OPEN_REFERRAL,
    ReferralAnswer.DECLINED: OPEN_REFERRAL,
    ReferralAnswer.COMPLETED: frozenset({ReferralStatus.ACCEPTED}),
    ReferralAnswer.NO_SHOW: frozenset({ReferralStatus.ACCEPTED}),
}
REVOCABLE = OPEN_REFERRAL | {ReferralStatus.ACCEPTED}


def _referral(ctx: Context) -> Referral | None:
    wanted = getattr(ctx.change, "referral_id", None)
    return next((r for r in ctx.case.referrals if r.id == wanted), None)


def _referral_exists(ctx: Context, dest: Stage) -> str | None:
    if _referral(ctx) is None:
        return f"case {ctx.case.number} has no referral {getattr(ctx.change, 'referral_id', '?')}"
    return None


def _answer_fits_referral(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.AnswerReferral)
    referral = _referral(ctx)
    assert referral is not None
    if referral.status is ReferralStatus.REVOKED and referral.revoked_at is not None:
        return (
            f"referral {referral.id} was cancelled on {referral.revoked_at:%Y-%m-%d} "
            f"({referral.answer_reason}), so no answer is needed"
        )
    if referral.status not in REFERRAL_ANSWERS[ctx.change.answer]:
        return f"referral {referral.id} is {referral.status.value}: it cannot be {ctx.change.answer} now"
    return None


def _late_answer(ctx: Context) -> str | None:
    """Why an answer to a closed case is not needed, in words a provider can act on (None: say
    only that the case is closed — the referral is not the answering provider's)."""
    closed_at = ctx.case.closed_at
    if closed_at is None or _provider_is_the_one_referred(ctx, ctx.case.stage) is not None:
        return None
    wanted = getattr(ctx.change, "referral_id", "?")
    referral = _referral(ctx)
    closed = f"case {ctx.case.number} was closed on {closed_at:%Y-%m-%d}"
    if (
        referral is not None
        and referral.status is ReferralStatus.REVOKED
        and referral.revoked_at == closed_at
    ):
        return f"{closed}; referral {wanted} was cancelled then, so no answer is needed"
    if referral is not None:
        return f"{closed}; referral {wanted} was already {referral.status.value}, so no answer is needed"
    return f"{closed}; referral {wanted} is no longer open, so no answer is needed"


def _provider_is_the_one_referred(ctx: Context, dest: Stage) -> str | None:
    referral = _referral(ctx)
    actor = ctx.change.actor
    if referral is not None and actor.role is Role.PROVIDER and actor.id != referral.provider:
        return f"referral {referral.id} was not made to {actor.id}"
    return None


def _referral_is_open(ctx: Context, dest: Stage) -> str | None:
    referral = _referral(ctx)
    if referral is not None and referral.status not in REVOCABLE:
        return f"referral {referral.id} is already {referral.status.value}"
    return None


def _consent_covers_sharing(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.Refer)
    consented = ctx.case.consent.share if ctx.case.consent else frozenset()
    missing = ctx.change.share - consented
    if not missing:
        return None
    names = ", ".join(sorted(m.value for m in missing))
    if not ctx.change.consent_override.strip():
        return f"the client has not consented to share {names}; record consent, or a supervisor may override with a reason"
    if ctx.change.actor.role not in SUPERVISORS:
        return f"only a supervisor may share {names} without the client's consent"
    return None


def _room_for_referral(ctx: Context, dest: Stage) -> str | None:
    active = sum(r.status in ACTIVE_REFERRAL for r in ctx.case.referrals)
    if active >= bounds.MAX_OPEN_REFERRALS:
        return f"the case has {active} referrals in play; close or revoke some before making another"
    return None


def _room_for_follow_up(ctx: Context, dest: Stage) -> str | None:
    scheduled = sum(f.status is FollowUpStatus.SCHEDULED for f in ctx.case.follow_ups)
    if scheduled >= bounds.MAX_SCHEDULED_FOLLOW_UPS:
        return f"the case has {scheduled} follow-ups scheduled; record some outcomes before adding another"
    return None


# The farthest ahead a follow-up is booked: later is a typo (2126 for 2026), and a date near the
# calendar's end broke the case (its escalations fell past year 9999).
FARTHEST_FOLLOW_UP = timedelta(days=5 * 366)


def _too_far_ahead(ctx: Context, at: datetime) -> str | None:
    # a rule of generation 8, as outcomes_fit_the_facts: an older run replays what it booked
    if at - ctx.now <= FARTHEST_FOLLOW_UP or not ctx.program.outcomes_fit_the_facts:
        return None
    return f"{at:%Y-%m-%d} is more than 5 years ahead; book a follow-up within them"


def _follow_up_in_future(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.ScheduleFollowUp)
    if ctx.change.at > ctx.now:
        far = _too_far_ahead(ctx, ctx.change.at)
        return f"at: {far}" if far else None
    return f"at: {ctx.change.at.isoformat()} has passed; a follow-up is scheduled for a time still to come"


def why_client_cannot_be_invited(case: Case) -> str | None:
    """Why the client would get no invitation to a follow-up, and what would mend it (None: they
    would). Invitations go by email, and only with the client's consent to share their contact
    details. The one rule for both refusing `invite_client` and writing the invitation
    (activities/messages.py)."""
    if case.consent is None or SharedField.CONTACT not in case.consent.share:
        return "they have not consented to share their contact details; record their consent"
    if not case.client.email:
        return "there is no email address on file for them; add it to their contact details"
    return None


def _client_can_be_invited(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.ScheduleFollowUp)
    # Runs that accepted such follow-ups before this rule replay them as they were (the workflow
    # sets the flag off for them); a new command meets it there too (the validator's program).
    if not ctx.change.invite_client or not ctx.program.invitations_need_a_reachable_client:
        return None
    why = why_client_cannot_be_invited(ctx.case)
    if why is None:
        return None
    return f"the client cannot be invited: {why}, or schedule the follow-up without inviting them"


def _follow_up_exists(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.RecordFollowUpOutcome)
    wanted = ctx.change.follow_up_id
    if not any(f.id == wanted for f in ctx.case.follow_ups):
        return f"case {ctx.case.number} has no follow-up {wanted}"
    return None


# A visit is recorded as attended or missed from the day before its time on (it may have been
# brought forward a little); a rescheduling may come any time.
OUTCOME_RECORDED_FROM = timedelta(days=1)


def _follow_up_has_come(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.RecordFollowUpOutcome)
    found = next((f for f in ctx.case.follow_ups if f.id == ctx.change.follow_up_id), None)
    if found is None or ctx.change.rescheduled_to is not None or not ctx.program.outcomes_fit_the_facts:
        return None
    if ctx.now >= found.due_at - OUTCOME_RECORDED_FROM:
        return None
    return (
        f"follow-up {found.id} is on {found.due_at:%Y-%m-%d %H:%M} UTC: record how it went once it has "
        "happened, or reschedule it"
    )


def _follow_up_is_scheduled(ctx: Context, dest: Stage) -> str | None:
    assert isinstance(ctx.change, c.RecordFollowUpOutcome)
    wanted = ctx.change.follow_up_id
    found = next((f for f in ctx.case.follow_ups if f.id == wanted), None)
    if found is None:
        return None  # follow_up_exists says so
    if found.status is not FollowUpStatus.SCHEDULED:
        return f"follow-up {wanted} is {found.status.value}, not scheduled"
    if isinstance(ctx.change.rescheduled_to, datetime) and ctx.change.rescheduled_to <= ctx.now:
        return "a follow-up is rescheduled to a time still to come"
    if isinstance(ctx.change.rescheduled_to, datetime) and (
        far := _too_far_ahead(ctx, ctx.change.rescheduled_to)
    ):
        return f"rescheduled_to: {far}"
    return None


GUARDS: dict[str, Guard] = {
    "room_for_referral": _room_for_referral,
    "room_for_follow_up": _room_for_follow_up,
    "referral_exists": _referral_exists,
    "answer_fits_referral": _answer_fits_referral,
    "provider_is_the_one_referred": _provider_is_the_one_referred,
    "referral_is_open": _referral_is_open,
    "consent_covers_sharing": _consent_covers_sharing,
    "follow_up_in_future": _follow_up_in_future,
    "client_can_be_invited": _client_can_be_invited,
    "follow_up_exists": _follow_up_exists,
    "follow_up_is_scheduled": _follow_up_is_scheduled,
    "follow_up_has_come": _follow_up_has_come,
    "outcome_fits_goals": _outcome_fits_goals,
    "no_plan_awaiting_decision": _no_plan_awaiting_decision,
    "plan_awaiting_decision": _plan_awaiting_decision,
    "approver_has_authority": _approver_has_authority,
    "goal_results_name_plan_goals": _goal_results_name_plan_goals,
    "closer_has_authority": _closer_has_authority,
    "returns_to_held_stage": _returns_to_held_stage,
    "chosen_destination": _chosen_destination,
    "within_reopen_window": _within_reopen_window,
    "reopen_window_passed": _reopen_window_passed,
    "has_approved_plan": _has_approved_plan,
    "new_manager_differs": _new_manager_differs,
}


# Explanations for an action that has no rule from the case's stage, where the generic
# "cannot X a case in Y" would leave the person asking (a provider, say) at a loss.
NOT_FROM_HERE: dict[str, Callable[[Context], str | None]] = {"answer_referral": _late_answer}


# Guards about who may decide (refusals are FORBIDDEN, not "not now").
AUTHORITY_GUARDS = frozenset(
    {"approver_has_authority", "closer_has_authority", "provider_is_the_one_referred"}
)
# Guards that look something up on the case: their refusal means "no such thing".
LOOKUP_GUARDS = frozenset({"referral_exists", "follow_up_exists"})
# Guards that judge a value the command gives against the clock: a time already past is bad
# input (fix the command), not an action refused for now.
INPUT_GUARDS = frozenset({"follow_up_in_future"})
# Guards that only pick among rows of one trigger (which stage to return to).
ROUTING_GUARDS = frozenset({"returns_to_held_stage", "chosen_destination"})


def rules_for(trigger: str) -> list[Rule]:
    return [r for r in LIFECYCLE if r.trigger == trigger]


def check_actor(ctx: Context, rules: list[Rule]) -> None:
    actor = ctx.change.actor
    roles = frozenset().union(*(r.roles for r in rules))
    if actor.role not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        raise Rejected(Refusal.FORBIDDEN, f"a {actor.role} may not {ctx.change.action} (allowed: {allowed})")
    # A case manager acts on their own caseload; supervisors and leads on any case.
    if actor.role is Role.CASE_MANAGER and actor.id != ctx.case.manager:
        raise Rejected(
            Refusal.FORBIDDEN, f"case {ctx.case.number} is managed by {ctx.case.manager}, not {actor.id}"
        )


def next_stage(ctx: Context) -> Stage:
    """Decide whether ctx.change may happen now; return the stage the case moves to.

    Raises Rejected with a message a caseworker can act on.
    """
    trigger = ctx.change.action
    rules = rules_for(trigger)
    if not rules:
        raise Rejected(Refusal.INVALID_TRANSITION, f"unknown action {trigger!r}")
    check_actor(ctx, rules)
    stage = ctx.case.stage
    here = [r for r in rules if stage in r.sources]
    if not here:
        allowed = sorted({s.value for r in rules for s in r.sources})
        explain = NOT_FROM_HERE.get(trigger)
        raise Rejected(
            Refusal.INVALID_TRANSITION,
            (explain(ctx) if explain else None)
            or f"cannot {trigger} a case in {stage} (only from: {', '.join(allowed)})",
        )
    for r in here:
        if all(GUARDS[g](ctx, r.dest or stage) is None for g in r.guards):
            return r.dest or stage
    guard, reason = _first_refusal(ctx, here)
    raise Rejected(_refusal_kind(guard), reason)


def _refusal_kind(guard: str) -> Refusal:
    if guard in AUTHORITY_GUARDS:
        return Refusal.FORBIDDEN
    if guard in LOOKUP_GUARDS:
        return Refusal.NOT_FOUND
    if guard in INPUT_GUARDS:
        return Refusal.VALIDATION
    return Refusal.GUARD_FAILED


def _first_refusal(ctx: Context, rules: list[Rule]) -> tuple[str, str]:
    refusals: list[tuple[str, str]] = []
    for r in rules:
        dest = r.dest or ctx.case.stage
        for g in r.guards:
            reason = GUARDS[g](ctx, dest)
            if reason is not None:
                refusals.append((g, reason))
                break
    # Several rows (reopen to assessment / to monitoring) may refuse for different
    # reasons; the one about the destination the caller chose is the useful one.
    meaningful = [r for r in refusals if r[0] not in ROUTING_GUARDS]
    return (meaningful or refusals or [("", f"{ctx.change.action} is not allowed now")])[0]


# Actions on something the case holds: offered only while it holds one (a case in intake with no
# referral offers no answer to one).
ACTS_ON = {
    "answer_referral": lambda case: any(r.status in ACTIVE_REFERRAL for r in case.referrals),
    "revoke_referral": lambda case: any(r.status in REVOCABLE for r in case.referrals),
    "record_follow_up_outcome": lambda case: any(
        f.status is FollowUpStatus.SCHEDULED for f in case.follow_ups
    ),
}


def allowed_actions(case: Case) -> list[str]:
    """Staff actions that exist from the case's stage and have something to act on (guards and
    roles aside otherwise): for views and help."""
    return sorted(
        {
            r.trigger
            for r in LIFECYCLE
            if case.stage in r.sources
            and r.trigger in c.STAFF_ACTIONS
            and _has_what_it_acts_on(r.trigger, case)
        }
    )


def _has_what_it_acts_on(trigger: str, case: Case) -> bool:
    holds = ACTS_ON.get(trigger)
    return holds is None or holds(case)


# The README's diagram leaves out `withdraw` (from every open stage to closed: the text says
# so) and the rows that keep a case where it is; it adds how a case starts and ends.
DIAGRAM_OMITS = frozenset({"withdraw"})


def diagram() -> str:
    """The lifecycle as a mermaid state diagram, drawn from LIFECYCLE (README.md shows it)."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.INTAKE}: open"]
    edges: dict[tuple[Stage, Stage], list[str]] = {}
    for r in LIFECYCLE:
        if r.dest is None or r.trigger in DIAGRAM_OMITS:
            continue
        for source in r.sources:
            triggers = edges.setdefault((source, r.dest), [])
            if r.trigger not in triggers:
                triggers.append(r.trigger)
    lines += [f"    {src} --> {dest}: {' / '.join(ts)}" for (src, dest), ts in edges.items()]
    lines.append(f"    {S.CLOSED} --> [*]: archive (the reopen window has passed)")
    return "\n".join(lines) + "\n"
