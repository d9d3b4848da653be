"""Random staff and timer activity never corrupts a case, and every open case can still close."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain import commands as c
from domain.case import Rejected, apply, decide, notice_for, replay
from domain.errors import Refusal
from domain.events import Change
from domain.lifecycle import allowed_actions
from domain.models import Actor, Role, Stage
from domain.schedule import next_due, obligations
from tests.domain.test_lifecycle import EXAMPLES
from tests.scenario import ALICE, BOB, LEAD, PROVIDER, SAM, Story

ACTORS = [ALICE, BOB, SAM, LEAD, PROVIDER]


def as_actor(change: Change, actor: Actor) -> Change:
    return change.model_copy(update={"actor": actor})


class CaseLife(RuleBasedStateMachine):
    story: Story

    @initialize(program=st.sampled_from(["general", "housing", "weekly"]))
    def open(self, program: str) -> None:
        self.story = Story(program)
        self.refusals = 0

    @rule(
        action=st.sampled_from(sorted(EXAMPLES)),
        actor=st.sampled_from(ACTORS),
        wait=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=40)),
    )
    def staff_acts(self, action: str, actor: Actor, wait: timedelta) -> None:
        self.act(action, actor, wait)

    def act(self, action: str, actor: Actor, wait: timedelta) -> None:
        change = as_actor(EXAMPLES[action], actor)
        if isinstance(change, c.Reopen):
            change = change.model_copy(update={"to": Stage.MONITORING if wait.days % 2 else Stage.ASSESSMENT})
        before = self.story.case
        try:
            self.story.do(change, after=wait)
        except Rejected as refused:
            assert refused.kind in {
                Refusal.INVALID_TRANSITION,
                Refusal.FORBIDDEN,
                Refusal.GUARD_FAILED,
                Refusal.NOT_FOUND,
                Refusal.VALIDATION,  # a follow-up's time that the story's clock has passed
            }
            assert refused.message
            assert self.story.case == before
            self.refusals += 1

    @rule()
    def case_progresses(self) -> None:
        """The next step of the usual path, so random runs get deep into the lifecycle."""
        case = self.story.case
        step = {
            Stage.INTAKE: "accept",
            Stage.ASSESSMENT: "complete_assessment",
            Stage.PLANNING: "approve_plan"
            if case.plan and case.plan.status == "submitted"
            else "submit_plan",
            Stage.COORDINATION: "start_monitoring",
            Stage.MONITORING: "begin_evaluation",
            Stage.EVALUATION: "close",
        }.get(case.stage)
        if step:
            self.act(step, SAM, timedelta(days=1))
        event(f"progressed to {self.story.case.stage.value}")

    @rule(data=st.data(), actor=st.sampled_from([ALICE, SAM]))
    def staff_acts_sensibly(self, data: st.DataObject, actor: Actor) -> None:
        """Mostly what the stage allows, so random runs get deep into the lifecycle."""
        action = data.draw(st.sampled_from(allowed_actions(self.story.case)))
        self.act(action, actor, timedelta(hours=2))

    @rule(wait=st.timedeltas(min_value=timedelta(hours=1), max_value=timedelta(days=20)))
    def timers_fire(self, wait: timedelta) -> None:
        story = self.story
        story.now += wait
        while (due := next_due(story.case, story.program, story.now)) is not None and due.at <= story.now:
            if due.kind == "archive":
                break
            notice = notice_for(story.case, due, story.program)
            event = decide(story.case, notice, story.program, story.now, seq=len(story.events) + 1)
            story.case = apply(story.case, event, story.program)
            story.events.append(event)

    @invariant()
    def history_rebuilds_the_case(self) -> None:
        assert replay(self.story.events, self.story.program) == self.story.case
        assert [e.seq for e in self.story.events] == list(range(1, len(self.story.events) + 1))

    @invariant()
    def stage_facts_agree(self) -> None:
        case = self.story.case
        assert (case.stage is Stage.CLOSED) == (case.closed_at is not None) == (case.outcome is not None)
        assert (case.stage is Stage.ON_HOLD) == (case.held_from is not None)
        open_holds = [h for h in case.holds if h.end is None]
        assert len(open_holds) == (1 if case.stage is Stage.ON_HOLD else 0)

    @invariant()
    def only_live_notices_are_remembered(self) -> None:
        live = {o.key for o in obligations(self.story.case, self.story.program)}
        assert all(k.split("#")[0] in live for k in self.story.case.notices_sent)

    @invariant()
    def an_open_case_can_always_be_closed(self) -> None:
        case = self.story.case
        if case.is_open:
            event = decide(
                case,
                c.Withdraw(actor=SAM, reason="checking the way out"),
                self.story.program,
                self.story.now,
                seq=len(self.story.events) + 1,
            )
            assert event.stage_after is Stage.CLOSED


# The suite explores the same examples every run, so a red run is reproducible; explore
# new ones with HYPOTHESIS_PROFILE=explore (see tests/conftest.py).
CaseLife.TestCase.settings = settings(
    settings(),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCaseLife = CaseLife.TestCase


def test_role_examples_cover_every_role() -> None:
    assert {a.role for a in ACTORS} >= {Role.CASE_MANAGER, Role.SUPERVISOR, Role.PROGRAM_LEAD, Role.PROVIDER}
