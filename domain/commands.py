"""One model per staff action. Every command names the actor who gives it.

Commands are a discriminated union on `action`, so a single JSON body (from the
CLI, the HTTP API or the Temporal UI's update form) parses to exactly one
command type. Who may give which command, and when, is decided in lifecycle.py.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal, get_args

from pydantic import AwareDatetime, Field, TypeAdapter, model_validator

from domain.models import (
    Actor,
    Assessment,
    Client,
    FollowUpKind,
    FollowUpStatus,
    Goal,
    Model,
    Outcome,
    ReferralAnswer,
    RiskLevel,
    ServiceType,
    SharedField,
    Stage,
)

Reason = Annotated[str, Field(min_length=3, max_length=2000)]
Text = Annotated[str, Field(max_length=4000)]


class _Command(Model):
    actor: Actor


class OpenCase(_Command):
    """Not an update: this is the input that starts a case workflow."""

    action: Literal["open"] = "open"
    number: str = Field(pattern=r"^[A-Za-z0-9-]{3,40}$")
    program: str
    client: Client
    manager: str = Field(min_length=1, max_length=64)
    supervisor: str | None = None
    risk: RiskLevel = RiskLevel.LOW
    intake_reference: str | None = Field(default=None, max_length=100)
    note: Text = ""
    request_id: str | None = Field(default=None, max_length=64, description="who asked, to tell a retry")


class Accept(_Command):
    action: Literal["accept"] = "accept"
    note: Text = ""


class Decline(_Command):
    action: Literal["decline"] = "decline"
    reason: Reason


class CompleteAssessment(_Command):
    action: Literal["complete_assessment"] = "complete_assessment"
    assessment: Assessment


class SubmitPlan(_Command):
    action: Literal["submit_plan"] = "submit_plan"
    goals: list[Goal] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _unique_goal_ids(self) -> SubmitPlan:
        ids = [g.id for g in self.goals]
        if len(set(ids)) != len(ids):
            raise ValueError("goal ids must be unique within a plan")
        return self


class ApprovePlan(_Command):
    action: Literal["approve_plan"] = "approve_plan"
    note: Text = ""


class RejectPlan(_Command):
    action: Literal["reject_plan"] = "reject_plan"
    reason: Reason


class StartMonitoring(_Command):
    action: Literal["start_monitoring"] = "start_monitoring"
    note: Text = ""


class RevisePlan(_Command):
    action: Literal["revise_plan"] = "revise_plan"
    reason: Reason


class Reassess(_Command):
    action: Literal["reassess"] = "reassess"
    reason: Reason


class BeginEvaluation(_Command):
    action: Literal["begin_evaluation"] = "begin_evaluation"
    note: Text = ""


class ResumeMonitoring(_Command):
    action: Literal["resume_monitoring"] = "resume_monitoring"
    reason: Reason


class Close(_Command):
    """Close after evaluation. Every goal of the plan gets a result."""

    action: Literal["close"] = "close"
    outcome: Literal[Outcome.GOALS_MET, Outcome.PARTIALLY_MET, Outcome.GOALS_NOT_MET]
    goals_met: list[str] = Field(default_factory=list, description="ids of the goals that were met")
    summary: Text = ""


class Withdraw(_Command):
    action: Literal["withdraw"] = "withdraw"
    reason: Reason


class Suspend(_Command):
    action: Literal["suspend"] = "suspend"
    reason: Reason


class Resume(_Command):
    action: Literal["resume"] = "resume"
    note: Text = ""


class Reopen(_Command):
    action: Literal["reopen"] = "reopen"
    to: Literal[Stage.ASSESSMENT, Stage.MONITORING] = Stage.ASSESSMENT
    reason: Reason


class Transfer(_Command):
    action: Literal["transfer"] = "transfer"
    to_manager: str = Field(min_length=1, max_length=64)
    reason: Reason


class Refer(_Command):
    """Refer the client to a provider. Sharing client data needs the client's consent,
    or a supervisor's override with a reason (both recorded)."""

    action: Literal["refer"] = "refer"
    provider: str = Field(min_length=1, max_length=100)
    service: ServiceType
    reason: Reason
    share: frozenset[SharedField] = frozenset({SharedField.NAME, SharedField.CONTACT})
    respond_within: timedelta | None = Field(default=None, gt=timedelta(0))
    consent_override: str = Field(default="", max_length=2000)


class AnswerReferral(_Command):
    """A provider's answer (through the callback), or staff recording one taken by phone."""

    action: Literal["answer_referral"] = "answer_referral"
    referral_id: str
    answer: ReferralAnswer
    reason: Text = ""

    @model_validator(mode="after")
    def _declines_say_why(self) -> AnswerReferral:
        if self.answer is ReferralAnswer.DECLINED and len(self.reason.strip()) < 3:
            raise ValueError("a declined referral needs a reason")
        return self


class RevokeReferral(_Command):
    action: Literal["revoke_referral"] = "revoke_referral"
    referral_id: str
    reason: Reason


class RecordConsent(_Command):
    """What the client agrees may be shared with providers; an empty set withdraws consent."""

    action: Literal["record_consent"] = "record_consent"
    share: frozenset[SharedField]
    note: Text = ""


class ScheduleFollowUp(_Command):
    action: Literal["schedule_follow_up"] = "schedule_follow_up"
    kind: Literal[
        FollowUpKind.CHECK_IN, FollowUpKind.HOME_VISIT, FollowUpKind.PHONE_CALL, FollowUpKind.APPOINTMENT
    ]
    at: AwareDatetime
    provider: str | None = Field(default=None, max_length=100)
    invite_client: bool = False
    note: Text = ""


class RecordFollowUpOutcome(_Command):
    action: Literal["record_follow_up_outcome"] = "record_follow_up_outcome"
    follow_up_id: str
    outcome: Literal[FollowUpStatus.ATTENDED, FollowUpStatus.MISSED, FollowUpStatus.RESCHEDULED]
    notes: Text = ""
    rescheduled_to: AwareDatetime | None = None

    @model_validator(mode="after")
    def _rescheduling_needs_a_time(self) -> RecordFollowUpOutcome:
        if (self.outcome is FollowUpStatus.RESCHEDULED) != (self.rescheduled_to is not None):
            raise ValueError("rescheduled_to is given exactly when the outcome is rescheduled")
        return self


class RecordFollowUp(_Command):
    action: Literal["record_follow_up"] = "record_follow_up"
    summary: Text = Field(min_length=1)
    contact_date: date | None = None


class ReviewPlan(_Command):
    action: Literal["review_plan"] = "review_plan"
    summary: Text = Field(min_length=1)


class AddNote(_Command):
    action: Literal["add_note"] = "add_note"
    text: Text = Field(min_length=1)


StaffCommand = Annotated[
    Accept
    | Decline
    | CompleteAssessment
    | SubmitPlan
    | ApprovePlan
    | RejectPlan
    | StartMonitoring
    | RevisePlan
    | Reassess
    | BeginEvaluation
    | ResumeMonitoring
    | Close
    | Withdraw
    | Suspend
    | Resume
    | Reopen
    | Transfer
    | Refer
    | AnswerReferral
    | RevokeReferral
    | RecordConsent
    | ScheduleFollowUp
    | RecordFollowUpOutcome
    | RecordFollowUp
    | ReviewPlan
    | AddNote,
    Field(discriminator="action"),
]

STAFF_COMMAND: TypeAdapter[StaffCommand] = TypeAdapter(StaffCommand)
STAFF_ACTIONS: tuple[str, ...] = tuple(
    t.model_fields["action"].default for t in get_args(get_args(StaffCommand)[0])
)
