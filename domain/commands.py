"""One model per staff action. Every command names the actor who gives it.

Commands are a discriminated union on `action`, so a single JSON body (from the
CLI, the HTTP API or the Temporal UI's update form) parses to exactly one
command type. Who may give which command, and when, is decided in lifecycle.py.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, EmailStr, Field, TypeAdapter, model_validator

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
    ServiceTypeSlug,
    SharedField,
    Stage,
    unlikely_phone,
)

Reason = Annotated[str, Field(min_length=3, max_length=2000)]
Text = Annotated[str, Field(max_length=4000)]


class _Command(Model):
    actor: Actor


# What a case number may be: letters, digits and hyphens (the workflow's id is made from it).
CASE_NUMBER = r"^[A-Za-z0-9-]{3,40}$"


class OpenCase(_Command):
    """Not an update: this is the input that starts a case workflow."""

    action: Literal["open"] = "open"
    number: str = Field(pattern=CASE_NUMBER)
    program: str
    client: Client
    manager: str = Field(min_length=1, max_length=64)
    supervisor: str | None = None
    risk: RiskLevel = RiskLevel.LOW
    intake_reference: str | None = Field(default=None, max_length=100)
    note: Text = ""
    request_id: str | None = Field(default=None, max_length=64, description="who asked, to tell a retry")


class Accept(_Command):
    """Accept a referral at intake: the case moves to assessment."""

    action: Literal["accept"] = "accept"
    note: Text = ""


class Decline(_Command):
    """Decline at intake: the case closes as declined."""

    action: Literal["decline"] = "decline"
    reason: Reason


class CompleteAssessment(_Command):
    """Complete the assessment: needs by domain (SSM score 1-5), strengths, barriers, risk."""

    action: Literal["complete_assessment"] = "complete_assessment"
    assessment: Assessment


class SubmitPlan(_Command):
    """Submit a plan: goals with measurable objectives and target dates."""

    action: Literal["submit_plan"] = "submit_plan"
    goals: list[Goal] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _unique_goal_ids(self) -> SubmitPlan:
        ids = [g.id for g in self.goals]
        if len(set(ids)) != len(ids):
            raise ValueError("goal ids must be unique within a plan")
        return self


class ApprovePlan(_Command):
    """Approve the submitted plan (a high-risk plan: supervisors only)."""

    action: Literal["approve_plan"] = "approve_plan"
    note: Text = ""


class RejectPlan(_Command):
    """Send the submitted plan back for changes."""

    action: Literal["reject_plan"] = "reject_plan"
    reason: Reason


class StartMonitoring(_Command):
    """Services are arranged: start monitoring."""

    action: Literal["start_monitoring"] = "start_monitoring"
    note: Text = ""


class RevisePlan(_Command):
    """Back from monitoring to planning."""

    action: Literal["revise_plan"] = "revise_plan"
    reason: Reason


class Reassess(_Command):
    """Back from monitoring to assessment."""

    action: Literal["reassess"] = "reassess"
    reason: Reason


class BeginEvaluation(_Command):
    """Monitoring is done: evaluate outcomes."""

    action: Literal["begin_evaluation"] = "begin_evaluation"
    note: Text = ""


class ResumeMonitoring(_Command):
    """Back from evaluation to monitoring."""

    action: Literal["resume_monitoring"] = "resume_monitoring"
    reason: Reason


class Close(_Command):
    """Close after evaluation; every goal of the plan gets a result (unmet goals: supervisors only)."""

    action: Literal["close"] = "close"
    outcome: Literal[Outcome.GOALS_MET, Outcome.PARTIALLY_MET, Outcome.GOALS_NOT_MET]
    goals_met: list[str] = Field(
        default_factory=list,
        description="ids of the goals that were met",
        json_schema_extra={"option": "met"},
    )
    summary: Text = ""


class Withdraw(_Command):
    """The client leaves: close from any open stage."""

    action: Literal["withdraw"] = "withdraw"
    reason: Reason


class Suspend(_Command):
    """Put the case on hold: deadlines pause."""

    action: Literal["suspend"] = "suspend"
    reason: Reason


class Resume(_Command):
    """Return from hold to the stage the case left."""

    action: Literal["resume"] = "resume"
    note: Text = ""


class Reopen(_Command):
    """Reopen a closed case within the program's reopen window."""

    action: Literal["reopen"] = "reopen"
    to: Literal[Stage.ASSESSMENT, Stage.MONITORING] = Stage.ASSESSMENT
    reason: Reason


class Transfer(_Command):
    """Transfer the case to another case manager (supervisors only)."""

    action: Literal["transfer"] = "transfer"
    to_manager: str = Field(min_length=1, max_length=64, description="the new case manager's id")
    reason: Reason


class Refer(_Command):
    """Refer the client to a provider; the request goes by the provider's channel.

    Sharing client data needs the client's consent, or a supervisor's override with a reason
    (both recorded)."""

    action: Literal["refer"] = "refer"
    provider: str = Field(min_length=1, max_length=100)
    service: ServiceTypeSlug
    reason: Reason
    share: frozenset[SharedField] = frozenset({SharedField.NAME, SharedField.CONTACT})
    respond_within: timedelta | None = Field(
        default=None, gt=timedelta(0), description="ISO-8601 duration, e.g. P2D (default: the provider's)"
    )
    consent_override: str = Field(
        default="", max_length=2000, description="supervisors: why data is shared without consent"
    )


class AnswerReferral(_Command):
    """Record a provider's answer (through the callback, or taken by phone by staff)."""

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
    """Revoke a referral that is no longer wanted."""

    action: Literal["revoke_referral"] = "revoke_referral"
    referral_id: str
    reason: Reason


class RecordConsent(_Command):
    """Record what the client agrees may be shared with providers (none: consent withdrawn)."""

    action: Literal["record_consent"] = "record_consent"
    share: frozenset[SharedField]
    note: Text = ""


class UpdateContact(_Command):
    """Correct or add the client's phone, email or address.

    Each one given replaces what is on file: a client who moved, a new phone, an email so
    invitations can reach them."""

    action: Literal["update_contact"] = "update_contact"
    phone: str | None = Field(default=None, min_length=1, max_length=40)
    email: EmailStr | None = None
    address: str | None = Field(default=None, min_length=1, max_length=300)
    note: Text = ""

    @model_validator(mode="after")
    def _gives_something(self) -> UpdateContact:
        if self.phone is None and self.email is None and self.address is None:
            raise ValueError("give the new phone, email or address")
        return self


class ScheduleFollowUp(_Command):
    """Schedule a follow-up; the case manager (and, with consent, the client) get an invitation."""

    action: Literal["schedule_follow_up"] = "schedule_follow_up"
    kind: Literal[
        FollowUpKind.CHECK_IN, FollowUpKind.HOME_VISIT, FollowUpKind.PHONE_CALL, FollowUpKind.APPOINTMENT
    ]
    at: AwareDatetime = Field(description="ISO-8601 with a timezone, e.g. 2026-12-01T10:00:00+00:00")
    provider: str | None = Field(
        default=None, max_length=100, description="for an appointment with a provider"
    )
    invite_client: bool = Field(
        default=False, description="invite the client too (needs their email and consent to share contact)"
    )
    note: Text = ""


class RecordFollowUpOutcome(_Command):
    """Record how a scheduled follow-up went."""

    action: Literal["record_follow_up_outcome"] = "record_follow_up_outcome"
    follow_up_id: str
    outcome: Literal[FollowUpStatus.ATTENDED, FollowUpStatus.MISSED, FollowUpStatus.RESCHEDULED]
    notes: Text = ""
    rescheduled_to: AwareDatetime | None = Field(default=None, description="the new time, when rescheduled")

    @model_validator(mode="after")
    def _rescheduling_needs_a_time(self) -> RecordFollowUpOutcome:
        if (self.outcome is FollowUpStatus.RESCHEDULED) != (self.rescheduled_to is not None):
            raise ValueError("rescheduled_to is given exactly when the outcome is rescheduled")
        return self


class RecordFollowUp(_Command):
    """Record a contact with the client."""

    action: Literal["record_follow_up"] = "record_follow_up"
    summary: Text = Field(min_length=1)
    contact_date: date | None = None


class ReviewPlan(_Command):
    """Record a plan review."""

    action: Literal["review_plan"] = "review_plan"
    summary: Text = Field(min_length=1)


class AddNote(_Command):
    """Add a note to the case."""

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
    | UpdateContact
    | ScheduleFollowUp
    | RecordFollowUpOutcome
    | RecordFollowUp
    | ReviewPlan
    | AddNote,
    Field(discriminator="action"),
]

STAFF_COMMAND: TypeAdapter[StaffCommand] = TypeAdapter(StaffCommand)
# The catalogue of staff actions: the CLI's subcommands and the API's routes are made from these
# models (their fields, docstrings and descriptions), and the domain's apply table must cover them.
STAFF_COMMAND_TYPES: tuple[type[_Command], ...] = get_args(get_args(StaffCommand)[0])
STAFF_ACTIONS: tuple[str, ...] = tuple(t.model_fields["action"].default for t in STAFF_COMMAND_TYPES)


# A staff command's idempotency key (the API's Idempotency-Key header, the CLI's --key): long
# enough not to collide by accident, and safe in a header and a Temporal update id.
COMMAND_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{8,100}$"
COMMAND_KEY_RULE = "8 to 100 characters of A-Z a-z 0-9 _ . : -"


def new_command_key() -> str:
    return uuid.uuid4().hex


def blank_text(command: BaseModel, within: str = "") -> str | None:
    """The first text the command must have (a note, a reason, a goal's description) that holds
    only spaces, named as its field ("goals.0.objective"): None if there is none."""
    for name, field in type(command).model_fields.items():
        value, named = getattr(command, name), f"{within}{name}"
        required = any(getattr(limit, "min_length", 0) for limit in field.metadata)
        if isinstance(value, str) and required and not value.strip():
            return named
        parts = value if isinstance(value, list | tuple) else [value]
        for i, part in enumerate(parts):
            where = f"{named}.{i}." if isinstance(value, list | tuple) else f"{named}."
            if isinstance(part, BaseModel) and (blank := blank_text(part, where)):
                return blank
    return None


# The longest a provider may be given to answer a referral: longer is a typo (P9999D), and a
# referral nobody expects an answer to for years is no referral.
LONGEST_RESPONSE_TIME = timedelta(days=365)


def door_problem(command: BaseModel) -> str | None:
    """Why a staff command, as sent, cannot be what its sender meant (None: it can): a text of
    only spaces, a phone that is no phone number, a need assessed twice, a response time of
    years. Asked at the door (service.facade, before Temporal), not by the models: the workflow
    parses commands as it always has, so a case that took such a command once replays unchanged."""
    if blank := blank_text(command):
        return f"{blank}: write something, not only spaces"
    if isinstance(command, UpdateContact) and (phone := unlikely_phone(command.phone)):
        return f"phone: {phone}"
    if isinstance(command, CompleteAssessment):
        domains = [need.domain for need in command.assessment.needs]
        if twice := sorted({d for d in domains if domains.count(d) > 1}):
            return f"assessment.needs: {', '.join(twice)} assessed twice; give each domain once"
    if (
        isinstance(command, Refer)
        and command.respond_within
        and command.respond_within > LONGEST_RESPONSE_TIME
    ):
        return f"respond_within: at most {LONGEST_RESPONSE_TIME.days} days"
    return None


def command_digest(command: dict[str, Any]) -> str:
    """A short fingerprint of a command as sent (its JSON): a key sent again with another
    command is told apart from a retry of the same one (service.facade.CaseOps.act)."""
    canonical = json.dumps(command, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()
