"""Demo data: realistic cases across programs and stages, so the UI and reports have
something true to life to show. Everything goes through the same commands staff use."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from domain import commands as c
from domain.errors import Refusal
from domain.models import Actor, Assessment, Client, Goal, Need, NeedDomain, RiskLevel, Role, SharedField
from service.facade import CaseOps, new_case_number
from service.refusals import CaseError

ALICE = Actor(id="alice", role=Role.CASE_MANAGER)
BOB = Actor(id="bob", role=Role.CASE_MANAGER)
SAM = Actor(id="sam", role=Role.SUPERVISOR)
CONSENT = frozenset({SharedField.NAME, SharedField.CONTACT, SharedField.NEEDS})

NAMES = [
    ("Amina", "Haddad"),
    ("Rosa", "Lima"),
    ("Omar", "Farouk"),
    ("Grace", "Mensah"),
    ("Tomasz", "Nowak"),
    ("Leila", "Nasser"),
    ("Daniel", "Okoye"),
    ("Mei", "Chen"),
    ("Ivan", "Petrov"),
    ("Sofia", "Rossi"),
    ("Kwame", "Asante"),
    ("Hannah", "Schmidt"),
    ("Luis", "Moreno"),
    ("Aisha", "Bello"),
    ("Jonas", "Berg"),
]


def goal(ident: str, what: str, measure: str, weeks: int) -> Goal:
    return Goal(
        id=ident, description=what, objective=measure, target_date=date.today() + timedelta(weeks=weeks)
    )


async def refuge_story(ops: CaseOps, number: str) -> None:
    """A woman arriving at a refuge: safety planning, legal aid and counselling first,
    then a home, furniture and work."""
    await ops.open_case(
        c.OpenCase(
            actor=ALICE,
            number=number,
            program="refuge",
            manager="alice",
            supervisor="sam",
            risk=RiskLevel.HIGH,
            client=Client(
                given_name="Amina", family_name="Haddad", phone="555-0199", email="amina@example.org"
            ),
            note="Arrived at the refuge last night with two children.",
        )
    )
    steps: list[c.StaffCommand] = [
        c.Accept(actor=ALICE, note="Referred by the refuge; immediate risk."),
        c.RecordConsent(
            actor=ALICE, share=CONSENT, note="Signed release for legal aid, counselling, housing."
        ),
        c.CompleteAssessment(
            actor=ALICE,
            assessment=Assessment(
                needs=[
                    Need(domain=NeedDomain.SAFETY, score=1, notes="ex-partner knows the old address"),
                    Need(domain=NeedDomain.LEGAL, score=2, notes="needs a protection order"),
                    Need(domain=NeedDomain.MENTAL_HEALTH, score=2),
                    Need(domain=NeedDomain.HOUSING, score=1),
                    Need(domain=NeedDomain.INCOME, score=2),
                    Need(domain=NeedDomain.CHILDCARE, score=2, notes="two children, 3 and 6"),
                    Need(domain=NeedDomain.EMPLOYMENT, score=2),
                ],
                strengths=["determined", "supportive sister nearby"],
                barriers=["no income of her own"],
                risk=RiskLevel.HIGH,
                summary="Safety first; then a home, furniture and work.",
            ),
        ),
        c.SubmitPlan(
            actor=ALICE,
            goals=[
                goal("safety", "Safety plan in place", "plan signed and shared with the refuge", 1),
                goal("order", "Protection order", "order granted by the court", 6),
                goal("counsel", "Counselling", "six sessions attended", 12),
                goal("home", "Own tenancy", "lease signed", 16),
                goal("furniture", "Furnished home", "furniture grant paid", 18),
                goal("work", "Employment", "job or training place started", 26),
            ],
        ),
        c.ApprovePlan(actor=SAM, note="High risk: weekly check-ins."),
        c.Refer(
            actor=ALICE,
            provider="safe-haven",
            service="safety_planning",
            reason="safety plan for her and the children",
            share=CONSENT,
        ),
        c.Refer(
            actor=ALICE,
            provider="legal-aid-east",
            service="legal_aid",
            reason="protection order hearing",
            share=CONSENT,
        ),
        c.Refer(
            actor=ALICE,
            provider="city-counselling",
            service="counseling",
            reason="trauma counselling",
            share=CONSENT,
        ),
        c.StartMonitoring(actor=ALICE),
        c.Refer(
            actor=ALICE,
            provider="homes-first",
            service="housing",
            reason="a safe tenancy away from the old area",
            share=CONSENT,
        ),
        c.Refer(
            actor=ALICE,
            provider="second-home-furniture",
            service="furniture",
            reason="beds and a table for the new flat",
            share=CONSENT,
        ),
        c.Refer(
            actor=ALICE,
            provider="welfare-rights",
            service="income_benefits",
            reason="benefits of her own",
            share=CONSENT,
        ),
        c.Refer(
            actor=ALICE,
            provider="pathways-employment",
            service="employment",
            reason="back-to-work support",
            share=CONSENT,
        ),
        c.Refer(
            actor=ALICE,
            provider="little-steps-childcare",
            service="childcare",
            reason="places for two children while she works",
            share=CONSENT,
        ),
        c.ScheduleFollowUp(
            actor=ALICE,
            kind="home_visit",
            at=datetime.now(UTC) + timedelta(days=7),
            invite_client=True,
            note="check the safety plan works at the refuge",
        ),
    ]
    for step in steps:
        await ops.act(number, step)


# Per program: the need an ordinary case of it starts from, and where it refers (provider, service, why).
ORDINARY: dict[str, tuple[NeedDomain, str, str, str]] = {
    "general": (NeedDomain.INCOME, "welfare-rights", "income_benefits", "benefits check"),
    "housing": (NeedDomain.HOUSING, "homes-first", "housing", "a tenancy of her own"),
    "recovery": (NeedDomain.SUBSTANCE_USE, "fresh-start-house", "sober_housing", "a bed in a sober house"),
}


async def ordinary_case(ops: CaseOps, number: str, rng: random.Random, i: int) -> None:
    program = rng.choice(sorted(ORDINARY))
    need, provider, service, why = ORDINARY[program]
    manager = ALICE if i % 2 else BOB
    given, family = NAMES[i % len(NAMES)]
    await ops.open_case(
        c.OpenCase(
            actor=manager,
            number=number,
            program=program,
            manager=manager.id,
            supervisor="sam",
            client=Client(given_name=given, family_name=family),
            risk=rng.choice(list(RiskLevel)),
        )
    )
    risk = rng.choice([RiskLevel.LOW, RiskLevel.MEDIUM])
    path: list[c.StaffCommand] = [
        c.Accept(actor=manager),
        c.RecordConsent(actor=manager, share=CONSENT),
        c.CompleteAssessment(
            actor=manager,
            assessment=Assessment(
                needs=[
                    Need(domain=need, score=rng.randint(1, 3)),
                    Need(domain=rng.choice(list(NeedDomain)), score=rng.randint(1, 4)),
                ],
                risk=risk,
            ),
        ),
        c.SubmitPlan(actor=manager, goals=[goal("g1", "Main goal", "agreed measure", rng.randint(4, 20))]),
        c.ApprovePlan(actor=SAM),
        c.Refer(
            actor=manager,
            provider=provider,
            service=service,
            reason=why,
            share=CONSENT,
        ),
        c.StartMonitoring(actor=manager),
        c.BeginEvaluation(actor=manager),
        c.Close(actor=manager, outcome="goals_met", goals_met=["g1"], summary="goal met"),
    ]
    for step in path[: rng.randint(0, len(path))]:
        await ops.act(number, step)
    if i % 7 == 3 and (await ops.view(number)).case.is_open:
        await ops.act(number, c.Suspend(actor=manager, reason="client in hospital"))


async def open_demo_cases(
    ops: CaseOps, count: int, progress: Callable[[int, int], None] | None = None, seed: int | None = None
) -> list[str]:
    rng = random.Random(seed)
    numbers = []
    for i in range(count):
        number = new_case_number(datetime.now(UTC))
        try:
            if i == 0:
                await refuge_story(ops, number)
            else:
                await ordinary_case(ops, number, rng, i)
        except CaseError as exc:  # e.g. a number taken by chance: skip, the rest still come
            if exc.kind != Refusal.CONFLICT:
                raise
            continue
        numbers.append(number)
        if progress:
            progress(i + 1, count)
    return numbers
