"""What a case is made of: clients, assessments, plans, referrals, follow-ups.

Pydantic models so they cross the Temporal boundary typed (the worker and the
client use the pydantic data converter) and validate input at the edge.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator


class Model(BaseModel):
    """Base for every domain model: unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Stage(StrEnum):
    INTAKE = "intake"
    ASSESSMENT = "assessment"
    PLANNING = "planning"
    COORDINATION = "coordination"
    MONITORING = "monitoring"
    EVALUATION = "evaluation"
    ON_HOLD = "on_hold"
    CLOSED = "closed"


OPEN_STAGES: tuple[Stage, ...] = tuple(s for s in Stage if s is not Stage.CLOSED)


def week_of(at: datetime) -> str:
    """The ISO week of a moment, as reports name it: 2026-W02."""
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


class Role(StrEnum):
    CASE_MANAGER = "case_manager"
    SUPERVISOR = "supervisor"
    PROGRAM_LEAD = "program_lead"
    PROVIDER = "provider"
    SYSTEM = "system"


class Actor(Model):
    """Who did something. Every command and every event carries one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role

    def __str__(self) -> str:
        return f"{self.id} ({self.role.value})"


SYSTEM = Actor(id="casework", role=Role.SYSTEM)


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# The vocabulary: need domains and service types are slugs, checked against the deployment's
# vocabulary (domain/vocabulary.py, directory/vocabulary.toml) where input enters — the case
# service and directory loading. Inside a case any well-formed slug is accepted, so replay never
# depends on a file, and a value once accepted stays readable whatever the vocabulary becomes.
Slug = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
NeedDomainSlug = Annotated[Slug, Field(description="a need domain, see `casework vocabulary`")]
ServiceTypeSlug = Annotated[Slug, Field(description="a service type, see `casework vocabulary`")]


class NeedDomain(StrEnum):
    """The stock need domains every deployment knows: the Self-Sufficiency Matrix's domains.
    `health` and `family` keep their first names (cases use them); `health_care` and
    `family_relations` are their aliases in directory/vocabulary.toml."""

    HOUSING = "housing"
    EMPLOYMENT = "employment"
    INCOME = "income"
    FOOD = "food"
    CHILDCARE = "childcare"
    CHILDREN_EDUCATION = "children_education"
    ADULT_EDUCATION = "adult_education"
    HEALTH = "health"  # SSM: health care
    LIFE_SKILLS = "life_skills"
    FAMILY = "family"  # SSM: family and social relations
    MOBILITY = "mobility"  # SSM: mobility / transportation
    COMMUNITY_INVOLVEMENT = "community_involvement"
    PARENTING = "parenting"
    LEGAL = "legal"
    MENTAL_HEALTH = "mental_health"
    SUBSTANCE_USE = "substance_use"
    SAFETY = "safety"
    DISABILITIES = "disabilities"


# The Self-Sufficiency Matrix's scale: where a client stands in a domain, 1 (worst) to 5.
SSM_SCALE: dict[int, str] = {
    1: "in crisis",
    2: "vulnerable",
    3: "safe",
    4: "building capacity",
    5: "thriving",
}
# The severity (0 none .. 3 severe) an SSM score stands for, so what reads severity (referral
# messages, reports) works for old and new assessments alike.
SEVERITY_OF_SCORE: dict[int, int] = {1: 3, 2: 2, 3: 1, 4: 0, 5: 0}


# A phone number as staff write one: digits with the usual separators, a leading +, an
# extension ("x12", "ext. 12"); from 5 digits (a local number) to 20 (international with an extension).
PHONE = re.compile(r"\+?[0-9 ()./-]+(\s*(ext\.?|x)\s*[0-9]+)?", re.IGNORECASE)
PHONE_DIGITS = range(5, 21)


def unlikely_phone(phone: str | None) -> str | None:
    """Why `phone` cannot be a phone number (None: it can, or none was given). Checked at the
    door (the case service) when a case opens and when the contact changes, not by the model:
    a case that took such a number once must still load and replay."""
    if phone is None:
        return None
    digits = sum(ch.isdigit() for ch in phone)
    if not PHONE.fullmatch(phone.strip()) or digits not in PHONE_DIGITS:
        return (
            f"{phone!r} is not a phone number: write its 5 to 20 digits, with spaces, dashes, "
            "brackets, a leading + or an extension (x12) if you like"
        )
    return None


OLDEST_CLIENT_YEARS = 120
# Characters that change how the text around them reads (bidirectional embeddings, overrides and
# isolates): in a name they make an email or a list show something other than what is stored.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unlikely_name(name: str) -> str | None:
    """Why `name` cannot be a person's name as written (None: it can): only spaces, or control
    characters (a line break, a tab, a text-direction override). Joiners that some scripts need
    (U+200C, U+200D) are letters' business and stay."""
    if not name.strip():
        return "write the name, not only spaces"
    if any(unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS for ch in name):
        return "a name has no line breaks, tabs or other control characters"
    return None


class Client(Model):
    """The person the case is for. Personal data: never in search attributes or logs."""

    given_name: str = Field(min_length=1, max_length=100)
    family_name: str = Field(min_length=1, max_length=100)
    birth_date: date | None = None
    phone: str | None = Field(default=None, max_length=40)
    email: EmailStr | None = None
    address: str | None = Field(default=None, max_length=300)

    def unlikely_birth_date(self, today: date) -> str | None:
        """Why the birth date cannot be right (None: it can). Checked when a case opens (the
        case service), not by the model: a case that took such a date once must still load."""
        if self.birth_date is not None and self.birth_date > today:
            return f"client.birth_date: {self.birth_date} is still to come"
        return None

    def unlikely_details(self, today: date) -> str | None:
        """Why a detail given for a new client cannot be right (None: they can): a name of only
        spaces or with control characters in it, a birth date still to come or of someone older
        than anyone alive, a phone that is no phone number."""
        for field in ("given_name", "family_name"):
            if problem := unlikely_name(getattr(self, field)):
                return f"client.{field}: {problem}"
        if self.birth_date is not None and self.birth_date.year < today.year - OLDEST_CLIENT_YEARS:
            return f"client.birth_date: {self.birth_date} would make the client older than anyone alive"
        if phone := unlikely_phone(self.phone):
            return f"client.phone: {phone}"
        return self.unlikely_birth_date(today)

    @property
    def display_name(self) -> str:
        if self.given_name == self.family_name == ERASED_NAME:
            return ERASED_NAME
        return f"{self.given_name} {self.family_name}"


class Need(Model):
    """A need, written DOMAIN:SCORE/5[:NOTES], e.g. housing:1/5 (SSM: 1 in crisis .. 5 thriving)

    The older DOMAIN:SEVERITY (0-3, 3 severe), e.g. housing:3, is still read."""

    domain: NeedDomainSlug
    score: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description="SSM: 1 in crisis, 2 vulnerable, 3 safe, 4 building capacity, 5 thriving",
    )
    # Assessments before the SSM scale have a severity only (score None); from a score the
    # severity is derived, so every need has one.
    severity: int = Field(
        default=0,  # never used: a need without a score or a severity is refused
        ge=0,
        le=3,
        description="0 none, 1 low, 2 moderate, 3 severe (derived from score)",
    )
    notes: str = Field(default="", max_length=2000)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = _need_from_text(value)
        if isinstance(value, dict) and value.get("score") is None and value.get("severity") is None:
            raise ValueError("a need needs an SSM score (1 in crisis .. 5 thriving)")
        if isinstance(value, dict) and value.get("score") is not None and value.get("severity") is None:
            score = value["score"]
            if isinstance(score, str) and score.isdigit():
                score = int(score)
            # otherwise (not a number, out of range) the field's own check names the problem
            if isinstance(score, int) and not isinstance(score, bool) and score in SEVERITY_OF_SCORE:
                value = {**value, "severity": SEVERITY_OF_SCORE[score]}
        return value

    @model_validator(mode="after")
    def _agree(self) -> Need:
        if self.score is not None and self.severity != SEVERITY_OF_SCORE[self.score]:
            raise ValueError(
                f"severity {self.severity} does not match SSM score {self.score}; give the score alone"
            )
        return self


def _need_from_text(value: str) -> dict[str, Any]:
    domain, _, rest = value.partition(":")
    level, _, notes = rest.partition(":")
    if not level:
        raise ValueError(f"{value!r}: expected DOMAIN:SCORE/5[:NOTES], e.g. housing:1/5")
    domain = domain.strip().lower()  # "Housing:2/5" is typed as often as "housing:2/5"
    if level.endswith("/5"):
        return {"domain": domain, "score": level.removesuffix("/5"), "notes": notes}
    return {"domain": domain, "severity": level, "notes": notes}


Item = Annotated[str, Field(max_length=300)]


class Assessment(Model):
    needs: list[Need] = Field(min_length=1, max_length=20)
    strengths: list[Item] = Field(default_factory=list, max_length=20)
    barriers: list[Item] = Field(default_factory=list, max_length=20)
    risk: RiskLevel
    summary: str = Field(default="", max_length=4000)


class GoalStatus(StrEnum):
    OPEN = "open"
    MET = "met"
    UNMET = "unmet"


class Goal(Model):
    """A goal, also written ID|DESCRIPTION|OBJECTIVE|YYYY-MM-DD."""

    id: str = Field(min_length=1, max_length=32)
    description: str = Field(min_length=1, max_length=500)
    objective: str = Field(min_length=1, max_length=500, description="how success is measured")
    target_date: date
    domain: NeedDomainSlug | None = None
    status: GoalStatus = GoalStatus.OPEN

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        parts = value.split("|")
        if len(parts) != 4:
            raise ValueError(f"{value!r}: expected ID|DESCRIPTION|OBJECTIVE|YYYY-MM-DD")
        return dict(zip(("id", "description", "objective", "target_date"), parts, strict=True))


class PlanStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


class Plan(Model):
    goals: list[Goal] = Field(min_length=1, max_length=20)
    status: PlanStatus = PlanStatus.SUBMITTED
    submitted_by: Actor | None = None
    decided_by: Actor | None = None
    decision_note: str = ""


class ServiceType(StrEnum):
    """The stock service types every deployment knows; a deployment adds its own in
    directory/vocabulary.toml (also aliases, e.g. counselling for counseling)."""

    HOUSING = "housing"
    MEDICAL = "medical"
    MENTAL_HEALTH = "mental_health"
    SUBSTANCE_USE = "substance_use"
    LEGAL_AID = "legal_aid"
    INCOME_BENEFITS = "income_benefits"
    EMPLOYMENT = "employment"
    CHILDCARE = "childcare"
    TRANSPORT = "transport"
    COUNSELING = "counseling"
    SAFETY_PLANNING = "safety_planning"
    FURNITURE = "furniture"
    TRANSPORT_VOUCHER = "transport_voucher"
    PEER_SUPPORT = "peer_support"
    SOBER_HOUSING = "sober_housing"
    PSYCHIATRIC_CARE = "psychiatric_care"
    TRAINING = "training"
    FOOD = "food"


class SharedField(StrEnum):
    """What of the client's data a referral may carry to a provider."""

    NAME = "name"
    CONTACT = "contact"  # phone and email
    BIRTH_DATE = "birth_date"
    ADDRESS = "address"
    NEEDS = "needs"  # the assessment's needs and risk


class Consent(Model):
    """The client's recorded consent to share data with providers."""

    share: frozenset[SharedField]
    recorded_at: datetime
    recorded_by: Actor
    note: str = ""


class ReferralStatus(StrEnum):
    PENDING = "pending"  # asked for; the request is being delivered
    SENT = "sent"  # the provider has the request
    ACCEPTED = "accepted"
    DECLINED = "declined"
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    REVOKED = "revoked"
    EXPIRED = "expired"  # no answer within the response time (a late answer is still taken)
    DELIVERY_FAILED = "delivery_failed"  # the request could not be delivered: the case manager must act


class ReferralAnswer(StrEnum):
    """What a provider (or staff taking it by phone) answers to a referral: the one list the
    command, the callback and the referral's lifecycle use. Each answer leaves the referral in
    the status of the same name; which answer may follow which status is REFERRAL_ANSWERS in
    domain/lifecycle.py."""

    ACCEPTED = "accepted"  # the provider takes the client on
    DECLINED = "declined"  # the provider will not (a reason is required)
    COMPLETED = "completed"  # the accepted service was given
    NO_SHOW = "no_show"  # the client did not come to the accepted service

    @property
    def status(self) -> ReferralStatus:
        return ReferralStatus(self.value)


class ReferralEnded(Model):
    """A referral an event ended (revoked, or ended with its case): what telling its provider needs,
    kept in the event itself because the live case may forget a finished referral."""

    id: str
    provider: str
    service: ServiceTypeSlug
    tell_provider: bool = Field(description="false when the request never reached the provider")


OPEN_REFERRAL = frozenset(
    {ReferralStatus.PENDING, ReferralStatus.SENT, ReferralStatus.EXPIRED, ReferralStatus.DELIVERY_FAILED}
)
# Referrals still in play: an accepted one still awaits completed or no-show.
ACTIVE_REFERRAL = OPEN_REFERRAL | {ReferralStatus.ACCEPTED}


class Referral(Model):
    id: str
    provider: str
    service: ServiceTypeSlug
    reason: str
    status: ReferralStatus = ReferralStatus.PENDING
    requested_at: datetime
    requested_by: Actor
    respond_within: timedelta | None = None  # None: the program's response time
    shared: frozenset[SharedField] = frozenset()
    consent_override: str = ""  # a supervisor's reason to share without consent
    answered_at: datetime | None = None
    answered_by: Actor | None = None
    answer_reason: str = ""
    revoked_at: datetime | None = None  # revoked, or ended with its case (the provider was told)


class FollowUpKind(StrEnum):
    CONTACT = "contact"  # owed by the monitoring cadence
    CHECK_IN = "check_in"
    HOME_VISIT = "home_visit"
    PHONE_CALL = "phone_call"
    APPOINTMENT = "appointment"  # with a provider


class FollowUpStatus(StrEnum):
    DUE = "due"  # a cadence contact that has come due
    SCHEDULED = "scheduled"
    DONE = "done"  # a cadence contact made
    ATTENDED = "attended"
    MISSED = "missed"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"  # the case ended before it: everyone invited got a calendar cancellation


PENDING_FOLLOW_UP = frozenset({FollowUpStatus.DUE, FollowUpStatus.SCHEDULED})


class FollowUp(Model):
    id: str
    due_at: datetime
    kind: FollowUpKind = FollowUpKind.CONTACT
    status: FollowUpStatus = FollowUpStatus.DUE
    provider: str | None = None
    invite_client: bool = False
    scheduled_at: datetime | None = None
    done_at: datetime | None = None
    summary: str = ""


class FailedDelivery(Model):
    """A message that could not be delivered: the case manager must act on it."""

    key: str
    kind: str
    at: datetime
    detail: str


class FailingDelivery(Model):
    """A message whose attempts keep failing and are still being retried (for up to three days).
    Shown on the case as soon as its first attempts failed; gone once it is delivered or given up."""

    key: str
    kind: str
    to: str = Field(description="the recipient as staff may see it: a provider, a person, 'the client'")
    since: datetime = Field(description="when delivering it began")
    attempts: int = Field(ge=1, description="failed attempts so far")
    last_error: str

    def describe(self) -> str:
        return (
            f"delivery to {self.to} failing since {self.since:%Y-%m-%d %H:%M} UTC "
            f"({self.attempts} attempts, last error: {self.last_error})"
        )


class Note(Model):
    at: datetime
    author: Actor
    text: str


class Outcome(StrEnum):
    GOALS_MET = "goals_met"
    PARTIALLY_MET = "partially_met"
    GOALS_NOT_MET = "goals_not_met"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"


class Hold(Model):
    """A period on hold; deadlines do not run during it."""

    start: datetime
    end: datetime | None = None
    reason: str = ""


class Case(Model):
    """The live state of one case: what its decisions and timers need, bounded whatever the
    case's age (domain/bounds.py). The workflow keeps exactly this; notes, answered referrals
    and finished follow-ups beyond the newest few live in the SQL record's events and rows."""

    number: str
    program: str
    client: Client
    manager: str
    supervisor: str | None = None
    risk: RiskLevel = RiskLevel.LOW
    stage: Stage = Stage.INTAKE
    stage_entered_at: datetime
    opened_at: datetime
    intake_reference: str | None = None
    opening_request: str | None = None
    assessment: Assessment | None = None
    plan: Plan | None = None
    plan_reviewed_at: datetime | None = None
    last_contact_at: datetime | None = None
    referrals: list[Referral] = Field(default_factory=list)
    follow_ups: list[FollowUp] = Field(default_factory=list)
    holds: list[Hold] = Field(default_factory=list)
    held_from: Stage | None = None
    held_stage_entered_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: Outcome | None = None
    close_reason: str = ""
    reopen_count: int = 0
    consent: Consent | None = None
    failed_deliveries: list[FailedDelivery] = Field(default_factory=list)
    notices_sent: list[str] = Field(
        default_factory=list, description="keys of reminders/escalations already issued"
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_notes(cls, data: Any) -> Any:
        """Cases recorded or carried before notes left the live state still load."""
        if isinstance(data, dict) and "notes" in data:
            data = {k: v for k, v in data.items() if k != "notes"}
        return data

    @property
    def is_open(self) -> bool:
        return self.stage is not Stage.CLOSED

    @property
    def unmet_goals(self) -> list[Goal]:
        if self.plan is None:
            return []
        return [g for g in self.plan.goals if g.status is not GoalStatus.MET]


ERASED_NAME = "(erased)"


def erased_case(facts: Mapping[str, Any]) -> Case:
    """A case whose client was erased, from the record's clear columns (number, program, stage,
    manager, supervisor, risk, opened_at, closed_at, outcome): what lists, reports and views
    may still show. Nothing of the client, the assessment or the plan is left."""
    return Case(
        number=facts["number"],
        program=facts["program"],
        client=Client(given_name=ERASED_NAME, family_name=ERASED_NAME),
        manager=facts["manager"],
        supervisor=facts["supervisor"],
        risk=facts["risk"],
        stage=facts["stage"],
        stage_entered_at=facts["closed_at"] or facts["opened_at"],
        opened_at=facts["opened_at"],
        closed_at=facts["closed_at"],
        outcome=facts["outcome"],
    )
