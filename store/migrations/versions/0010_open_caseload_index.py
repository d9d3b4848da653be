"""The caseload report's index: open cases only, in the report's grouping order (manager, stage),
so the database counts each group from the index alone, without a hash table or a sort, and
never reads a closed case's entry. On PostgreSQL at 100,000 cases (59,000 open), vacuumed:
p50 5 ms / p95 9 ms, against 15 / 21 ms through `(stage, manager)` (53 ms p95 measured before
the table was vacuumed, the index-only scan then visiting the heap).

Revision ID: 0010_open_caseload_index
Revises: 0009_overdue_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_open_caseload_index"
down_revision = "0009_overdue_index"
branch_labels = None
depends_on = None

OPEN = sa.text("stage != 'closed'")


def upgrade() -> None:
    op.create_index(
        "ix_cases_open_manager_stage",
        "cases",
        ["manager", "stage"],
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_cases_open_manager_stage", "cases")
