"""Case list from the record: `cases.next_due` and the indexes the list pages along

- `cases.next_due`: the soonest due time of what an open case owes, the least of its
  `case_obligations.due_at` (None when nothing is due), written with the obligations by the
  recording activity; backfilled here from the obligation rows already written (a case recorded
  before 0007 has none until its next recording, and sorts with the cases that owe nothing);
- an index per order of the list (soonest due, newest opened) and per way a caller's scope
  narrows it, each ending in the case number so that a page's last key is unique (keyset
  paging), and `(stage, next_due, number)` for the stage filter (other filters are read along
  these: tests/integration/test_query_plans.py checks the plans). The single-column indexes on
  stage, manager and supervisor are the first columns of the new ones, so they go.

Revision ID: 0008_case_list
Revises: 0007_report_projection
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_case_list"
down_revision = "0007_report_projection"
branch_labels = None
depends_on = None

LIST_INDEXES = {
    "ix_cases_next_due": ["next_due", "number"],
    "ix_cases_manager_next_due": ["manager", "next_due", "number"],
    "ix_cases_supervisor_next_due": ["supervisor", "next_due", "number"],
    "ix_cases_program_next_due": ["program", "next_due", "number"],
    "ix_cases_stage_next_due": ["stage", "next_due", "number"],
    "ix_cases_opened": ["opened_at", "number"],
    "ix_cases_manager_opened": ["manager", "opened_at", "number"],
    "ix_cases_supervisor_opened": ["supervisor", "opened_at", "number"],
    "ix_cases_program_opened": ["program", "opened_at", "number"],
}
# covered by the new ones (their first column)
REPLACED = {
    "ix_cases_stage": ["stage"],
    "ix_cases_manager": ["manager"],
    "ix_cases_supervisor": ["supervisor"],
}


def upgrade() -> None:
    op.add_column("cases", sa.Column("next_due", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE cases SET next_due ="
        " (SELECT min(due_at) FROM case_obligations WHERE case_obligations.case_number = cases.number)"
    )
    for name, columns in LIST_INDEXES.items():
        op.create_index(name, "cases", columns)
    for name in REPLACED:
        op.drop_index(name, "cases")


def downgrade() -> None:
    for name, columns in REPLACED.items():
        op.create_index(name, "cases", columns)
    for name in LIST_INDEXES:
        op.drop_index(name, "cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("next_due")
