"""Builders shared by the tests: actors, clients, commands, a case driven to any stage."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from domain import commands as c
from domain.case import apply, decide, open_case
from domain.events import Change, Event
from domain.models import (
    Actor,
    Assessment,
    Case,
    Client,
    FollowUpKind,
    Goal,
    Need,
    NeedDomain,
    RiskLevel,
    Role,
    ServiceType,
    SharedField,
    Stage,
)
from domain.policy import Program, load_programs

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = load_programs(ROOT / "programs") | load_programs(ROOT / "tests" / "programs")

ALICE = Actor(id="alice", role=Role.CASE_MANAGER)
BOB = Actor(id="bob", role=Role.CASE_MANAGER)
SAM = Actor(id="sam", role=Role.SUPERVISOR)
LEAD = Actor(id="lead-general", role=Role.PROGRAM_LEAD)
PROVIDER = Actor(id="shelter-north", role=Role.PROVIDER)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def client() -> Client:
    return Client(given_name="Maria", family_name="Okafor", birth_date=date(1988, 4, 2), phone="555-0101")


def new_number() -> str:
    return f"T-{uuid.uuid4().hex[:10].upper()}"


def opening(
    program: str = "general", risk: RiskLevel = RiskLevel.LOW, number: str | None = None, actor: Actor = ALICE
) -> c.OpenCase:
    return c.OpenCase(
        actor=actor,
        number=number or new_number(),
        program=program,
        client=client(),
        manager="alice",
        supervisor="sam",
        risk=risk,
    )


def assessment(risk: RiskLevel = RiskLevel.MEDIUM) -> Assessment:
    return Assessment(
        needs=[Need(domain=NeedDomain.HOUSING, severity=3), Need(domain=NeedDomain.SAFETY, severity=2)],
        strengths=["supportive sister"],
        barriers=["no income"],
        risk=risk,
    )


def goals() -> list[Goal]:
    return [
        Goal(id="g1", description="Stable housing", objective="signed lease", target_date=date(2026, 6, 1)),
        Goal(id="g2", description="Income", objective="benefits awarded", target_date=date(2026, 4, 1)),
    ]


# The happy path, as (command, who gives it). Reaching stage S = applying the prefix up to S.
HAPPY_PATH: list[tuple[Stage, Change]] = [
    (Stage.ASSESSMENT, c.Accept(actor=ALICE)),
    (
        Stage.ASSESSMENT,
        c.RecordConsent(actor=ALICE, share=frozenset({SharedField.NAME, SharedField.CONTACT})),
    ),
    (
        Stage.ASSESSMENT,
        c.Refer(
            actor=ALICE, provider="shelter-north", service=ServiceType.HOUSING, reason="needs a bed tonight"
        ),
    ),
    (
        Stage.ASSESSMENT,
        c.ScheduleFollowUp(actor=ALICE, kind=FollowUpKind.HOME_VISIT, at=T0 + timedelta(days=60)),
    ),
    (Stage.PLANNING, c.CompleteAssessment(actor=ALICE, assessment=assessment())),
    (Stage.PLANNING, c.SubmitPlan(actor=ALICE, goals=goals())),
    (Stage.COORDINATION, c.ApprovePlan(actor=SAM)),
    (Stage.MONITORING, c.StartMonitoring(actor=ALICE)),
    (Stage.EVALUATION, c.BeginEvaluation(actor=ALICE)),
    (Stage.CLOSED, c.Close(actor=ALICE, outcome="goals_met", goals_met=["g1", "g2"])),
]


class Story:
    """A case told event by event, in memory, with a clock that moves one hour per step."""

    def __init__(self, program: str = "general", risk: RiskLevel = RiskLevel.LOW, now: datetime = T0) -> None:
        self.program: Program = PROGRAMS[program]
        self.now = now
        self.case, first = open_case(opening(program, risk), self.program, now)
        self.events: list[Event] = [first]
        self.states: list[Case] = [self.case]  # the case as it stood after each event

    def do(self, change: Change, after: timedelta = timedelta(hours=1)) -> Event:
        self.now += after
        event = decide(self.case, change, self.program, self.now, seq=len(self.events) + 1)
        self.case = apply(self.case, event, self.program)
        self.events.append(event)
        self.states.append(self.case)
        return event

    def to(self, stage: Stage) -> Story:
        """Follow the happy path to the last step that leaves the case in `stage`
        (on_hold: held from assessment)."""
        if stage is Stage.ON_HOLD:
            self.to(Stage.ASSESSMENT)
            self.do(c.Suspend(actor=ALICE, reason="client in hospital"))
            return self
        steps = [reached for reached, _ in HAPPY_PATH]
        for i, (_, change) in enumerate(HAPPY_PATH):
            if self.case.stage is stage and stage not in steps[i:]:
                break
            self.do(change)
        assert self.case.stage is stage, f"could not reach {stage}"
        return self


def story_in(stage: Stage, program: str = "general") -> Story:
    return Story(program).to(stage)


def case_in(stage: Stage) -> Case:
    return story_in(stage).case


# A low-risk case from intake to monitoring, as the case manager alone may take it.
TO_MONITORING: tuple[c.StaffCommand, ...] = (
    c.Accept(actor=ALICE),
    c.CompleteAssessment(actor=ALICE, assessment=assessment(RiskLevel.LOW)),
    c.SubmitPlan(actor=ALICE, goals=goals()),
    c.ApprovePlan(actor=ALICE),
    c.StartMonitoring(actor=ALICE),
)


# A plan revised from monitoring, approved by the case manager (low risk), back to monitoring.
PLAN_REVISION: tuple[c.StaffCommand, ...] = (
    c.RevisePlan(actor=ALICE, reason="the yearly review found new needs"),
    c.SubmitPlan(actor=ALICE, goals=goals()),
    c.ApprovePlan(actor=ALICE),
    c.StartMonitoring(actor=ALICE),
)


def quiet_referral(provider: str = "shelter-north") -> c.Refer:
    """A referral for housing that shares no client data (so it needs no consent)."""
    return c.Refer(
        actor=ALICE, provider=provider, service=ServiceType.HOUSING, reason="needs a bed", share=frozenset()
    )
