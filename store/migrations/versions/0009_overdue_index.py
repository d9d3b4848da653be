"""The overdue report's index: obligations in the report's grouping order, their due time last,
so the database counts each (manager, level, notified) group's overdue items from the index
alone, without sorting. On SQLite at 100,000 cases: 8 ms, against 150 ms through the
`due_at` index (every overdue row fetched, then grouped in a temporary tree).

Revision ID: 0009_overdue_index
Revises: 0008_case_list
"""

from alembic import op

revision = "0009_overdue_index"
down_revision = "0008_case_list"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_case_obligations_overdue", "case_obligations", ["manager", "level", "notified", "due_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_case_obligations_overdue", "case_obligations")
