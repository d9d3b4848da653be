"""The case workflow's input, result and carried state: pydantic models, defined here and not in
workflows/case.py because the sandbox re-imports the workflow's own module for every run. A
model defined there was a new class per run — its validators and serializers (the whole Case,
Program and Event schemas, built again in Rust) and the data converter's type adapter for it,
cached per class, were most of what a cached case cost a worker (docs/architecture.md, "A
worker's memory"). This module is passed through the sandbox: one set of classes per process.
"""

from __future__ import annotations

from pydantic import Field

from activities.contracts import MessageRef
from domain.commands import OpenCase
from domain.events import Event, Restore
from domain.models import Case, Model, Outcome
from domain.policy import Program


class CommandKey(Model):
    """A staff command applied by this case, remembered by its idempotency key."""

    key: str
    seq: int
    action: str
    summary: str
    command: str | None = None  # its fingerprint (None: remembered by a run before there was one)


class CaseInput(Model):
    """Start input, and the state carried across continue-as-new (bounded: domain/bounds.py)."""

    program: Program
    opening: OpenCase | None = None
    case: Case | None = None
    seq: int = 0  # the seq of the case's last event
    pending: list[Event] = Field(default_factory=list)  # applied, not yet recorded in SQL
    recent: list[CommandKey] = Field(default_factory=list)  # newest last
    undelivered: list[MessageRef] = Field(default_factory=list)  # messages still being delivered
    restore: Restore | None = None  # start again from the SQL record (casework restore)
    # The workflow code's generation that started this run (workflows/case.py, GENERATION);
    # 0 for runs started before there was one, whose input lacks it.
    generation: int = 0
    # Carried by runs from before bounded state: every event, the last `unrecorded` unrecorded.
    events: list[Event] = Field(default_factory=list)
    unrecorded: int = 0


class CaseResult(Model):
    number: str
    outcome: Outcome | None
    events: int
