"""Report projection: what the reports count, in clear indexed columns, so the database computes
them without opening any case's sealed state

- `cases.opened_week`, `cases.closed_week`: ISO weeks, for cases opened and closed per week;
- `case_referrals.hours_to_answer`: for the median time a provider takes to answer;
- `case_stage_spells`: each stay of a case in a stage, from the events that moved it;
- `case_obligations`: what each open case owes, by when, and the escalation rung issued.

Backfilled here from the rows already written: the weeks, the hours, and the spells (from
`case_events`; times from before are subtracted by the database, to the millisecond).
**Not backfilled: `case_obligations`.** They come from each case's live state (sealed with its
client's key) and its program, which a migration has neither of; each open case gets its rows
at its next recording (any event: a note, a reminder, an escalation) or from the operator's
`casework backfill-obligations`, and until then the overdue report does not count it.

Revision ID: 0007_report_projection
Revises: 0006_keys
"""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007_report_projection"
down_revision = "0006_keys"
branch_labels = None
depends_on = None

BATCH = 1000  # cases per backfill write: memory stays flat however large the record


def upgrade() -> None:
    op.add_column("cases", sa.Column("opened_week", sa.String(8)))
    op.add_column("cases", sa.Column("closed_week", sa.String(8)))
    op.create_index("ix_cases_stage_manager", "cases", ["stage", "manager"])
    op.create_index("ix_cases_supervisor", "cases", ["supervisor"])
    op.create_index("ix_cases_opened_week", "cases", ["opened_week"])
    op.create_index("ix_cases_closed_week", "cases", ["closed_week"])
    op.add_column("case_referrals", sa.Column("hours_to_answer", sa.Float))
    op.create_index("ix_case_referrals_waits", "case_referrals", ["provider", "service", "hours_to_answer"])
    op.create_table(
        "case_stage_spells",
        sa.Column("case_number", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True)),
        sa.Column("entered_epoch", sa.Float, nullable=False),
        sa.Column("days", sa.Float),
    )
    op.create_index("ix_case_stage_spells_stage", "case_stage_spells", ["stage", "days"])
    op.create_index("ix_case_stage_spells_entered", "case_stage_spells", ["entered_at", "left_at"])
    op.create_table(
        "case_obligations",
        sa.Column("case_number", sa.String(40), primary_key=True),
        sa.Column("obligation_key", sa.String(300), primary_key=True),
        sa.Column("what", sa.String(100), nullable=False),
        sa.Column("manager", sa.String(64), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.Integer),
        sa.Column("notified", sa.String(20)),
    )
    op.create_index("ix_case_obligations_due", "case_obligations", ["due_at", "manager"])
    _backfill_weeks()
    _backfill_hours_and_spells()


def _epoch(column: str) -> str:
    """SQL for a timestamp column as seconds since 1970, in this database's dialect."""
    if op.get_bind().dialect.name == "sqlite":
        return f"((julianday({column}) - 2440587.5) * 86400.0)"
    return f"extract(epoch from {column})"


def _backfill_hours_and_spells() -> None:
    op.execute(
        "UPDATE case_referrals SET hours_to_answer = "
        f"({_epoch('answered_at')} - {_epoch('requested_at')}) / 3600.0 WHERE answered_at IS NOT NULL"
    )
    # A spell begins at every event that changed the stage (the opening has no stage before)
    # and ends at the next one.
    op.execute(
        f"""
        INSERT INTO case_stage_spells (case_number, seq, stage, entered_at, left_at, entered_epoch, days)
        SELECT case_number, seq, stage_after, at, left_at, {_epoch("at")},
               ({_epoch("left_at")} - {_epoch("at")}) / 86400.0
        FROM (
            SELECT case_number, seq, stage_after, at,
                   lead(at) OVER (PARTITION BY case_number ORDER BY seq) AS left_at
            FROM case_events
            WHERE stage_before IS NULL OR stage_before <> stage_after
        ) AS moves
        """
    )


def _week(at: datetime | str | None) -> str | None:
    if at is None:
        return None
    when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def _cases(bind: Any) -> Iterator[list[Any]]:
    """The cases' numbers and dates, BATCH at a time (keyset: no cursor held across writes)."""
    after = ""
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT number, opened_at, closed_at FROM cases"
                " WHERE number > :after ORDER BY number LIMIT :n"
            ),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            return
        yield rows
        after = rows[-1].number


def _backfill_weeks() -> None:
    """In Python: SQLite before 3.46 has no ISO week, and the weeks must be the report's own."""
    bind = op.get_bind()
    update = sa.text("UPDATE cases SET opened_week = :opened, closed_week = :closed WHERE number = :number")
    for rows in _cases(bind):
        bind.execute(
            update,
            [{"number": r.number, "opened": _week(r.opened_at), "closed": _week(r.closed_at)} for r in rows],
        )


def downgrade() -> None:
    op.drop_table("case_obligations")
    op.drop_table("case_stage_spells")
    op.drop_index("ix_case_referrals_waits", "case_referrals")
    with op.batch_alter_table("case_referrals") as batch:
        batch.drop_column("hours_to_answer")
    for index in (
        "ix_cases_closed_week",
        "ix_cases_opened_week",
        "ix_cases_supervisor",
        "ix_cases_stage_manager",
    ):
        op.drop_index(index, "cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("closed_week")
        batch.drop_column("opened_week")
