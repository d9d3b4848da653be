"""What workflows send to activities. Kept apart so workflows import no I/O code."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from domain.events import Event
from domain.models import Case, FailingDelivery, Model
from domain.policy import Program


class MessageRef(Model):
    key: str
    kind: str
    event_seq: int
    to: str = ""  # the recipient as views may show it (activities.messages.shown_recipient)
    # Set by the workflow while delivering, carried across continue-as-new:
    started_at: datetime | None = None  # the first attempt: the three days count from here
    failing: FailingDelivery | None = None  # once the first attempts failed


class AppliedKey(Model):
    """A staff command's idempotency key and the event it made, recorded with the event: a case
    restored from the record answers a retry of it as done (service.facade.CaseOps.restore)."""

    key: str
    seq: int
    command: str | None = None  # the command's fingerprint (domain.commands.command_digest)


class RecordResult(Model):
    new_events: int
    messages: list[MessageRef]


class DeliveryOutcome(Model):
    delivered: bool
    detail: str = ""


class RecordBatch(Model):
    case: Case  # the case as it is now (for the projection)
    case_seq: int  # the seq of the last event applied to `case`; the projection only moves forward
    events: list[Event]
    # The program the workflow judges the case's deadlines by (for the record's obligations).
    # None in batches scheduled before it was sent: the recorder then uses its own copy.
    program: Program | None = None
    # The keys of the staff commands that made these events (empty in batches from before).
    keys: list[AppliedKey] = Field(default_factory=list)
