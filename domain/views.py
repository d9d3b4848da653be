"""What people see of a case: the CaseView a query returns and the UI's details; a row of the
case list and a report, as their callers get them."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.events import Event
from domain.lifecycle import allowed_actions
from domain.models import ACTIVE_REFERRAL, Case, FailingDelivery, Model, Referral, Stage
from domain.policy import Program
from domain.schedule import Due, OverdueItem, next_deadline, next_due, overdue

# What Temporal says of the case's workflow. Only "running" cases take commands; "archived"
# is a case whose reopen window passed (the workflow completed); the others mean the workflow
# was lost while the case may still be open (`casework restore` brings it back).
# "erased": the case is closed and its client's data erased: the record keeps its facts only.
WorkflowStatus = Literal[
    "running", "archived", "terminated", "failed", "timed_out", "canceled", "lost", "erased"
]


class CaseView(Model):
    """A case as a query returns it: its bounded live state and what is due. Bounded whatever
    the case's age; the notes and the whole event history are paged from the SQL record."""

    case: Case
    next_deadline: datetime | None
    next_action: Due | None
    overdue: list[OverdueItem]
    allowed_actions: list[str]
    seq: int = Field(description="the seq of the case's last event")
    unrecorded: int = Field(0, description="events not yet written to the SQL record")
    status: WorkflowStatus = "running"
    failing_deliveries: list[FailingDelivery] = Field(
        default_factory=list, description="deliveries whose attempts keep failing, still being retried"
    )

    @property
    def archived(self) -> bool:
        """Read from the SQL record: Temporal no longer runs the case."""
        return self.status != "running"

    @property
    def number(self) -> str:
        return self.case.number

    @property
    def stage(self) -> Stage:
        return self.case.stage


def case_view(
    case: Case,
    program: Program,
    now: datetime,
    seq: int,
    unrecorded: int = 0,
    failing: Sequence[FailingDelivery] = (),
) -> CaseView:
    return CaseView(
        case=case,
        next_deadline=next_deadline(case, program),
        next_action=next_due(case, program, now),
        overdue=overdue(case, program, now),
        allowed_actions=allowed_actions(case),
        seq=seq,
        unrecorded=unrecorded,
        failing_deliveries=list(failing),
    )


class Receipt(Model):
    """What a staff command returns: small and bounded, never the whole case.

    `repeated` says the command's idempotency key had been applied before: nothing new
    happened, and `seq` is the event the first attempt made."""

    number: str
    key: str = Field(description="the command's idempotency key")
    seq: int
    action: str
    summary: str = Field(description="the event, e.g. '#12 refer by alice (case_manager) [monitoring]'")
    stage: Stage
    next_deadline: datetime | None
    allowed_actions: list[str]
    referral: Referral | None = Field(None, description="the referral this action made or answered")
    repeated: bool = False
    command: str | None = Field(
        None, description="fingerprint of the command this key applied (domain.commands.command_digest)"
    )


def receipt(
    case: Case, event: Event, program: Program, key: str, repeated: bool = False, command: str | None = None
) -> Receipt:
    referral_id = getattr(event.change, "referral_id", None) or (
        f"R{event.seq}" if event.action == "refer" else None
    )
    return Receipt(
        number=case.number,
        key=key,
        seq=event.seq,
        action=event.action,
        summary=event.describe(),
        stage=case.stage,
        next_deadline=next_deadline(case, program),
        allowed_actions=allowed_actions(case),
        referral=next((r for r in case.referrals if r.id == referral_id), None),
        repeated=repeated,
        command=command,
    )


def details_markdown(view: CaseView) -> str:
    """The Temporal UI's "current details": no client name, only case facts."""
    c = view.case
    stage = f"{c.stage.value} (held from {c.held_from.value})" if c.held_from else c.stage.value
    lines = [
        f"## Case {c.number} · {c.program}",
        f"- **Stage:** {stage}",
        f"- **Manager:** {c.manager}" + (f" · supervisor {c.supervisor}" if c.supervisor else ""),
        f"- **Risk:** {c.risk.value}",
        f"- **Next due:** {_when(view.next_deadline)}",
    ]
    if c.outcome:
        lines.append(f"- **Outcome:** {c.outcome.value}")
    open_referrals = [r for r in c.referrals if r.status in ACTIVE_REFERRAL]
    lines.append(f"- **Open referrals:** {len(open_referrals)}")
    if open_referrals:
        lines.append("### Open referrals")
        lines += [f"- {r.id}: {r.service} → {r.provider} ({r.status.value})" for r in open_referrals]
    if view.failing_deliveries:
        lines.append("### Failing deliveries")
        lines += [f"- {f.kind}: {f.describe()}" for f in view.failing_deliveries]
    if c.failed_deliveries:
        lines.append("### Failed deliveries")
        lines += [f"- {f.kind} ({f.at:%Y-%m-%d %H:%M} UTC): {f.detail}" for f in c.failed_deliveries[-5:]]
    if view.overdue:
        lines.append("### Overdue")
        for item in view.overdue:
            level = "not yet escalated" if item.level is None else f"level {item.level} ({item.notified})"
            lines.append(f"- **{item.what}** due {_when(item.due)} — {level}")
    return "\n".join(lines)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"


__all__ = ["CaseView", "Receipt", "WorkflowStatus", "case_view", "details_markdown", "receipt"]


# --- what the case list and the reports give their callers ----------------------------------
# (Here, not beside their SQL in service/: the CLI reads them without loading the record's
# machinery, and starts in a fraction of the time.)

Order = Literal["next_due", "newest"]
ORDERS: tuple[Order, ...] = ("next_due", "newest")
# What the record knows of a case: open, closed, or closed with its client's data erased.
# (Whether Temporal still runs its workflow is `casework show`'s to say: CaseView.status.)
ListedStatus = Literal["open", "closed", "erased"]


class CaseSummary(BaseModel):
    """One row of `casework list`: clear columns of the record only (no personal data)."""

    number: str
    stage: str
    manager: str
    supervisor: str | None = None
    program: str
    risk: str
    opened_at: datetime | None = None
    next_due: datetime | None = Field(description="the soonest due time of what the case owes")
    overdue: bool = Field(description="something the case owes was due by the time of the list")
    status: ListedStatus = "open"
    running: bool = Field(
        description="the case is open (status 'open'); kept for older clients. The list reads the "
        "record, which does not know whether Temporal still runs the workflow: GET /cases/{number} does"
    )


@dataclass(frozen=True)
class Report:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    as_of: datetime | None = None  # the moment the figures were computed

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
            "as_of": self.as_of.isoformat() if self.as_of else None,
        }
