"""Two clients case-management practice describes, from opening to closure, on the
time-skipping server: a woman arriving at a refuge with her children, and a man leaving
rehab. Commands go through the case service with the shipped directory and vocabulary, as
the API's do; providers answer as themselves."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from devstack.demo import open_demo_cases
from domain import commands as c
from domain.directory import load_directory
from domain.errors import Refusal
from domain.models import (
    Actor,
    Assessment,
    Client,
    Goal,
    Outcome,
    Referral,
    ReferralStatus,
    RiskLevel,
    Role,
    SharedField,
    Stage,
)
from service.refusals import CaseError
from tests.conftest import TrackingOps, case_worker
from tests.scenario import ALICE, ROOT, SAM, new_number

pytestmark = pytest.mark.asyncio(loop_scope="session")
DIRECTORY = load_directory(ROOT / "directory")
CONSENT = frozenset({SharedField.NAME, SharedField.CONTACT, SharedField.NEEDS})


def goal(ident: str, domain: str, what: str, measure: str) -> Goal:
    return Goal(id=ident, domain=domain, description=what, objective=measure, target_date=date(2027, 6, 1))


async def opened(ops: TrackingOps, program: str, given: str, family: str) -> str:
    ops.directory = DIRECTORY  # the edge checks the API's case service makes
    view = await ops.open_case(
        c.OpenCase(
            actor=ALICE,
            number=new_number(),
            program=program,
            manager="alice",
            supervisor="sam",
            risk=RiskLevel.HIGH,
            client=Client(given_name=given, family_name=family, phone="555-0199"),
        )
    )
    return view.case.number


async def refer_and_complete(
    ops: TrackingOps, number: str, provider: str, service: str, reason: str
) -> Referral:
    """A referral goes out, reaches the provider, and the provider accepts, then completes it."""
    receipt = await ops.act(
        number, c.Refer(actor=ALICE, provider=provider, service=service, reason=reason, share=CONSENT)
    )
    assert receipt.referral is not None
    referral_id = receipt.referral.id
    await sent(ops, number, referral_id)
    them = Actor(id=provider, role=Role.PROVIDER)
    for answer in ("accepted", "completed"):
        await ops.act(number, c.AnswerReferral(actor=them, referral_id=referral_id, answer=answer))
    return next(r for r in (await ops.view(number)).case.referrals if r.id == referral_id)


async def sent(ops: TrackingOps, number: str, referral_id: str) -> None:
    """Wait until the referral request has been delivered to the provider."""
    async with asyncio.timeout(30):
        while True:
            case = (await ops.view(number)).case
            if next(r for r in case.referrals if r.id == referral_id).status is ReferralStatus.SENT:
                return
            await asyncio.sleep(0.05)


def assert_each_went_to_a_provider_offering_it(referrals: list[Referral]) -> None:
    for r in referrals:
        provider = DIRECTORY.provider(r.provider)
        assert provider is not None and r.service in provider.services, (r.provider, r.service)
        assert r.status is ReferralStatus.COMPLETED and r.shared == CONSENT


async def evaluate_and_close(ops: TrackingOps, number: str, goals: list[str]) -> None:
    await ops.act(number, c.RecordFollowUp(actor=ALICE, summary="settled; every service delivered"))
    assert (await ops.do(number, c.BeginEvaluation(actor=ALICE))).case.stage is Stage.EVALUATION
    view = await ops.do(number, c.Close(actor=ALICE, outcome="goals_met", goals_met=goals))
    assert view.case.stage is Stage.CLOSED and view.case.outcome is Outcome.GOALS_MET


async def test_a_woman_arriving_at_a_refuge_with_her_children_is_safe_housed_and_working(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store, DIRECTORY) as ops:
        number = await opened(ops, "refuge", "Amina", "Haddad")
        await ops.act(number, c.Accept(actor=ALICE, note="arrived last night with two children"))
        await ops.act(number, c.RecordConsent(actor=ALICE, share=CONSENT, note="signed release"))
        needs = ["safety:1/5:ex-partner knows the old address", "legal:2/5", "mental_health:2/5"]
        needs += ["housing:1/5", "family_relations:2/5", "employment:2/5", "childcare:2/5", "transport:2/5"]
        view = await ops.do(
            number,
            c.CompleteAssessment(actor=ALICE, assessment=Assessment(needs=needs, risk=RiskLevel.HIGH)),
        )
        assessment = view.case.assessment
        assert assessment is not None and view.case.stage is Stage.PLANNING
        assert [(n.domain, n.score) for n in assessment.needs][:2] == [("safety", 1), ("legal", 2)]
        assert {n.domain for n in assessment.needs} >= {"family", "mobility"}  # aliases, as slugs
        goals = [
            goal("safety", "safety", "Safety plan in place", "plan signed"),
            goal("order", "legal", "Protection order", "order granted"),
            goal("counsel", "mental_health", "Counselling", "six sessions attended"),
            goal("home", "housing", "Own tenancy, furnished", "lease signed, furniture delivered"),
            goal("work", "employment", "Work, with childcare and a way to get there", "job started"),
        ]
        await ops.act(number, c.SubmitPlan(actor=ALICE, goals=goals))
        with pytest.raises(CaseError) as refused:  # a high-risk plan: the supervisor decides
            await ops.act(number, c.ApprovePlan(actor=ALICE))
        assert refused.value.kind is Refusal.FORBIDDEN
        assert (await ops.do(number, c.ApprovePlan(actor=SAM))).case.stage is Stage.COORDINATION

        first = [
            ("safe-haven", "safety_planning", "safety plan for her and the children"),
            ("legal-aid-east", "legal_aid", "protection order hearing"),
            ("safe-haven", "counselling", "trauma counselling"),
        ]
        done = [await refer_and_complete(ops, number, *r) for r in first]
        assert (await ops.do(number, c.StartMonitoring(actor=ALICE))).case.stage is Stage.MONITORING
        then = [
            ("homes-first", "housing", "a safe tenancy away from the old area"),
            ("second-home-furniture", "furniture", "beds and a table for the new flat"),
            ("pathways-employment", "employment", "back-to-work support"),
            ("metro-transit-assist", "transport", "getting to work and school"),
            ("little-steps-childcare", "childcare", "places for two children"),
        ]
        done += [await refer_and_complete(ops, number, *r) for r in then]
        assert [r.service for r in done] == [s for _, s, _ in first[:2]] + ["counseling"] + [
            s for _, s, _ in then
        ]
        assert_each_went_to_a_provider_offering_it(done)
        await evaluate_and_close(ops, number, [g.id for g in goals])


async def test_a_man_leaving_rehab_has_a_sober_home_meetings_and_psychiatric_care(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store, DIRECTORY) as ops:
        number = await opened(ops, "recovery", "Tomasz", "Nowak")
        await ops.act(number, c.Accept(actor=ALICE, note="discharged from residential rehab on Friday"))
        await ops.act(number, c.RecordConsent(actor=ALICE, share=CONSENT))
        needs = ["substance_use:2/5:28 days sober", "housing:1/5", "mental_health:2/5", "mobility:2/5"]
        assessment = Assessment(needs=needs, strengths=["wants to stay sober"], risk=RiskLevel.MEDIUM)
        await ops.act(number, c.CompleteAssessment(actor=ALICE, assessment=assessment))
        goals = [
            goal("home", "housing", "A sober home", "moved in"),
            goal("meetings", "substance_use", "Weekly meetings", "attending a group weekly"),
            goal("psych", "mental_health", "Psychiatric review", "first appointment attended"),
        ]
        await ops.act(number, c.SubmitPlan(actor=ALICE, goals=goals))
        assert (await ops.do(number, c.ApprovePlan(actor=ALICE))).case.stage is Stage.COORDINATION

        with pytest.raises(CaseError, match="unknown service type 'detox_spa'"):
            await ops.act(
                number,
                c.Refer(actor=ALICE, provider="fresh-start-house", service="detox_spa", reason="x" * 3),
            )
        done = [
            await refer_and_complete(
                ops, number, "fresh-start-house", "sober_house", "a bed in a sober house"
            ),
            await refer_and_complete(
                ops, number, "metro-transit-assist", "bus_voucher", "bus fare to meetings"
            ),
            await refer_and_complete(ops, number, "harbour-peer-recovery", "twelve_step", "a 12-step group"),
            await refer_and_complete(
                ops, number, "riverside-psychiatry", "psychiatric_care", "medication review"
            ),
        ]
        assert [r.service for r in done] == [
            "sober_housing",
            "transport_voucher",
            "peer_support",
            "psychiatric_care",
        ]
        assert_each_went_to_a_provider_offering_it(done)
        assert (await ops.do(number, c.StartMonitoring(actor=ALICE))).case.stage is Stage.MONITORING
        await evaluate_and_close(ops, number, [g.id for g in goals])


async def test_the_demo_data_fits_the_shipped_programs_directory_and_vocabulary(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store, DIRECTORY) as ops:
        ops.directory = DIRECTORY
        numbers = await open_demo_cases(ops, 6, seed=3)
        assert len(numbers) == 6
        refuge = (await ops.view(numbers[0])).case
        assert refuge.program == "refuge" and refuge.stage is Stage.MONITORING
        assert {r.provider for r in refuge.referrals} >= {"safe-haven", "second-home-furniture"}
