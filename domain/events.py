"""What happened to a case: one event per change, with who and when.

The event log is the audit trail. It is recorded to SQL by an activity, keyed
by (case number, seq), so a retried recording never writes an event twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import Field

from domain.commands import OpenCase, StaffCommand
from domain.models import Actor, FailingDelivery, Model, Note, ReferralEnded, Role, Stage
from domain.schedule import ObligationKind


class NoticeIssued(Model):
    """A reminder before a deadline, or an escalation after it (level = rung of the ladder)."""

    action: Literal["issue_notice"] = "issue_notice"
    actor: Actor
    key: str = Field(description="obligation key + rung; issued once per case")
    obligation: str = Field(description="what is due, e.g. 'assessment'")
    obligation_kind: ObligationKind
    subject: str | None = Field(default=None, description="the referral or follow-up it is about")
    due: datetime
    kind: Literal["reminder", "escalation"]
    level: int = Field(ge=0, description="0 for reminders; ladder rung index for escalations")
    notify: Role
    recipient: str


class DeliveryRecorded(Model):
    """The outcome of delivering an outbox message (after all of Temporal's retries)."""

    action: Literal["record_delivery"] = "record_delivery"
    actor: Actor
    key: str = Field(description="the outbox idempotency key")
    kind: str
    delivered: bool
    detail: str = ""
    referral_id: str | None = None


class DeliveryFailing(Model):
    """A message's first attempts failed and it is still being retried: the case manager is told
    once (an outbox email). The live case keeps nothing of it; the workflow shows it while it lasts."""

    action: Literal["delivery_failing"] = "delivery_failing"
    actor: Actor
    failing: FailingDelivery


class Archive(Model):
    """The reopen window has passed: the case workflow completes."""

    action: Literal["archive"] = "archive"
    actor: Actor


class Restore(Model):
    """The case's workflow was lost (terminated, failed, gone from Temporal) while the case was
    open; a supervisor started it again from the SQL record, as of its last recorded event."""

    action: Literal["restore"] = "restore"
    actor: Actor
    reason: str = Field(min_length=3, max_length=2000)
    from_seq: int = Field(ge=1, description="the last event the record had")
    lost_status: str = Field(description="what had happened to the workflow, e.g. terminated")


class EraseClient(Model):
    """The client's data was erased (crypto-shredded, store/keys.py): the case's facts remain for
    statistics; nothing the client could be recognised by can be read any more."""

    action: Literal["erase_client"] = "erase_client"
    actor: Actor
    reason: str = Field(min_length=3, max_length=500, description="why, e.g. the client's request of <date>")


class ErasedChange(Model):
    """What is left of an event once its client was erased: what was done, by whom (the event's
    clear columns); what it carried is unreadable."""

    action: Literal["erased"] = "erased"
    actor: Actor
    was: str = Field(description="the event's action, e.g. add_note")


Change = Annotated[
    OpenCase
    | StaffCommand
    | NoticeIssued
    | DeliveryRecorded
    | DeliveryFailing
    | Archive
    | Restore
    | EraseClient
    | ErasedChange,
    Field(discriminator="action"),
]

ALL_CHANGES: tuple[type[Model], ...] = (
    OpenCase,
    *get_args(get_args(StaffCommand)[0]),
    NoticeIssued,
    DeliveryRecorded,
    DeliveryFailing,
    Archive,
    Restore,
    EraseClient,
    ErasedChange,
)

# The fields that carry a person's words, by the action that has them.
_TEXT_FIELDS = ("text", "note", "summary", "reason", "notes")


class Event(Model):
    seq: int = Field(ge=1)
    at: datetime
    stage_before: Stage | None
    stage_after: Stage
    change: Change
    # What the change ended besides itself (decided by domain.case.decide, applied from here, so
    # events recorded before these fields existed replay as they happened).
    revoked: list[ReferralEnded] = Field(default_factory=list, description="referrals revoked")
    cancelled: list[str] = Field(default_factory=list, description="scheduled follow-ups cancelled")

    @property
    def action(self) -> str:
        return f"{self.change.was} (erased)" if isinstance(self.change, ErasedChange) else self.change.action

    @property
    def actor(self) -> Actor:
        return self.change.actor

    def describe(self) -> str:
        stage = (
            f"{self.stage_before} → {self.stage_after}"
            if self.stage_before is not None and self.stage_before != self.stage_after
            else str(self.stage_after)
        )
        ended = [f"revoked {r.id} ({r.provider})" for r in self.revoked]
        ended += [f"cancelled {f}" for f in self.cancelled]
        more = f"; {', '.join(ended)}" if ended else ""
        return f"#{self.seq} {self.action} by {self.actor} [{stage}]{more}"

    def note(self) -> Note | None:
        """The words a person wrote with this event (a note, a reason, a summary), if any.
        A case's notes are these: they live in its events, not in its live state."""
        for name in _TEXT_FIELDS:
            text = getattr(self.change, name, None)
            if isinstance(text, str) and text.strip():
                prefix = "" if self.action == "add_note" else f"{self.action}: "
                return Note(at=self.at, author=self.actor, text=prefix + text)
        return None
