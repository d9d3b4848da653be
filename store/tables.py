"""Tables (SQLAlchemy Core). The Alembic migrations in store/migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("number", String(40), primary_key=True),
    Column("program", String(40), nullable=False),
    Column("stage", String(20), nullable=False),
    Column("manager", String(64), nullable=False),
    Column("supervisor", String(64)),
    Column("risk", String(10), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("outcome", String(20)),
    Column("last_seq", Integer, nullable=False),
    Column("state", JSON, nullable=False),  # the whole Case, sealed with the client's key (store/keys.py)
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("erased_at", DateTime(timezone=True)),  # the client's data was erased (crypto-shredded)
    # ISO weeks ("2026-W02") of opening and closing, for the weekly report (SQLite has no ISO week)
    Column("opened_week", String(8)),
    Column("closed_week", String(8)),
    # The soonest due time of what the open case owes (the least `case_obligations.due_at`, written
    # with them), None when nothing is due: the case list's sort key (service/caselist.py).
    Column("next_due", DateTime(timezone=True)),
    Index("ix_cases_program_stage", "program", "stage"),
    Index("ix_cases_stage_manager", "stage", "manager"),
    Index("ix_cases_opened_week", "opened_week"),
    Index("ix_cases_closed_week", "closed_week"),
    # The case list pages along these, in its two orders (soonest due, newest opened), for each
    # way a caller's scope narrows it (manager, supervisor, program) and for those who see
    # everything, and for the stage filter. Each ends in the number: a page's last key is unique.
    Index("ix_cases_next_due", "next_due", "number"),
    Index("ix_cases_manager_next_due", "manager", "next_due", "number"),
    Index("ix_cases_supervisor_next_due", "supervisor", "next_due", "number"),
    Index("ix_cases_program_next_due", "program", "next_due", "number"),
    Index("ix_cases_stage_next_due", "stage", "next_due", "number"),
    Index("ix_cases_opened", "opened_at", "number"),
    Index("ix_cases_manager_opened", "manager", "opened_at", "number"),
    Index("ix_cases_supervisor_opened", "supervisor", "opened_at", "number"),
    Index("ix_cases_program_opened", "program", "opened_at", "number"),
    # The caseload report counts open cases by manager and stage from this alone (migration 0010).
    Index(
        "ix_cases_open_manager_stage",
        "manager",
        "stage",
        postgresql_where=text("stage != 'closed'"),
        sqlite_where=text("stage != 'closed'"),
    ),
)

case_events = Table(
    "case_events",
    metadata,
    Column("case_number", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(40), nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("actor_role", String(20), nullable=False),
    Column("stage_before", String(20)),
    Column("stage_after", String(20), nullable=False),
    Column("change", JSON, nullable=False),  # sealed: what was done may say who to
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_case_events_at", "at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(300), nullable=False),
    Column("case_number", String(40), nullable=False),
    Column("event_seq", Integer, nullable=False),
    Column("kind", String(30), nullable=False),  # reminder | escalation | referral_request
    Column("level", Integer, nullable=False, default=0),
    Column("recipient", Text, nullable=False),  # sealed when it is the client's address
    Column("recipient_role", String(20), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),  # sealed, as are payload, attachment and last_error
    Column("status", String(20), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSON),  # the structured message (a webhook's body)
    Column("attachment", Text),  # an iCalendar invitation
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
    Index("ix_outbox_status", "status"),
)

# Every attempt to deliver an outbox message, whatever its outcome.
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(300), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("channel", String(20), nullable=False),
    Column("address", Text, nullable=False),  # sealed, as is detail
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("outcome", String(20), nullable=False),  # sending | delivered | retrying | failed | interrupted
    Column("detail", Text, nullable=False),
    Index("ix_delivery_attempts_key", "idempotency_key"),
)

# Every read of a case through the API: who viewed which case, when (a record access log).
record_access = Table(
    "record_access",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("actor_role", String(20), nullable=False),
    Column("case_number", String(40), nullable=False),
    Column("what", String(40), nullable=False),  # view | events | notes | decode | export ...
    Index("ix_record_access_case", "case_number", "at"),
)

# The case's parts as rows (rewritten with the case projection), for reporting tools.
case_referrals = Table(
    "case_referrals",
    metadata,
    Column("case_number", String(40), primary_key=True),
    Column("referral_id", String(20), primary_key=True),
    Column("provider", String(100), nullable=False),
    Column("service", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("answered_at", DateTime(timezone=True)),
    # When the record first saw the referral in its current status: what a provider polling
    # the FHIR API for changes (_lastUpdated) asks about. Set by activities/records.py.
    Column("updated_at", DateTime(timezone=True)),
    Column("hours_to_answer", Float),  # answered_at - requested_at, for the referral outcomes report
    # The case's own (kept equal to its row in `cases` by store/projection.py), so the referral
    # outcomes report reads a caller's referrals by index instead of joining every case (0011).
    Column("program", String(40)),
    Column("manager", String(64)),
    Column("supervisor", String(64)),
    Index("ix_case_referrals_provider", "provider", "service"),
    Index("ix_case_referrals_provider_updated", "provider", "updated_at"),
    # in the order the median's window reads them
    Index("ix_case_referrals_waits", "provider", "service", "hours_to_answer"),
    Index("ix_case_referrals_manager", "manager", "provider", "service"),
    Index("ix_case_referrals_supervisor", "supervisor", "provider", "service"),
    Index("ix_case_referrals_program", "program", "provider", "service"),
)

case_goals = Table(
    "case_goals",
    metadata,
    Column("case_number", String(40), primary_key=True),
    Column("goal_id", String(32), primary_key=True),
    Column("description", Text, nullable=False),  # sealed
    Column("objective", Text, nullable=False),  # sealed
    Column("target_date", Date, nullable=False),
    Column("status", String(10), nullable=False),
)

case_follow_ups = Table(
    "case_follow_ups",
    metadata,
    Column("case_number", String(40), primary_key=True),
    Column("follow_up_id", String(20), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("done_at", DateTime(timezone=True)),
)

# Each client's data key, wrapped by the deployment's master key (store/keys.py). `wrapped` is
# emptied when the client is erased: what was sealed with the key can no longer be read.
client_keys = Table(
    "client_keys",
    metadata,
    Column("case_number", String(40), primary_key=True),
    Column("key_id", String(40), nullable=False),
    Column("master_id", String(40), nullable=False),
    Column("wrapped", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("erased_at", DateTime(timezone=True)),
)


# --- projections for the reports (service/reports.py), written with the case by activities/records.py

# Each stay of a case in a stage, from the events that moved it (one row per move, keyed by its
# event). `days` is set once the case moves on; an open case's last spell counts up to now.
# `entered_epoch` (seconds since 1970) lets both databases subtract times the same way.
case_stage_spells = Table(
    "case_stage_spells",
    metadata,
    Column("case_number", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("stage", String(20), nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=False),
    Column("left_at", DateTime(timezone=True)),
    Column("entered_epoch", Float, nullable=False),
    Column("days", Float),
    Index("ix_case_stage_spells_stage", "stage", "days"),
    Index("ix_case_stage_spells_entered", "entered_at", "left_at"),
)

# The idempotency key of each staff command a case applied, with the event it made: written with
# the event, so a case restored from the record (service.facade.CaseOps.restore) still answers a
# retry of its recent commands as done. Holds staff ids and keys, nothing of the client.
case_command_keys = Table(
    "case_command_keys",
    metadata,
    Column("case_number", String(40), primary_key=True),
    Column("command_key", String(300), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("command", String(32)),  # the command's fingerprint; None if it was applied without one
    Index("ix_case_command_keys_seq", "case_number", "seq"),
)

# What an open case owes and by when (domain.schedule.obligations), with the highest escalation
# rung already issued: rewritten at every recording of the case, empty once it closes. The
# overdue report counts the rows whose due time has passed.
case_obligations = Table(
    "case_obligations",
    metadata,
    Column("case_number", String(40), primary_key=True),
    Column("obligation_key", String(300), primary_key=True),
    Column("what", String(100), nullable=False),
    # the case's manager when recorded (rewritten with every recording, a transfer included),
    # so the report counts by manager without a join to cases
    Column("manager", String(64), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("level", Integer),  # None: not yet escalated
    Column("notified", String(20)),  # the role the highest issued rung notified
    Index("ix_case_obligations_due", "due_at", "manager"),
    Index("ix_case_obligations_overdue", "manager", "level", "notified", "due_at"),
)
