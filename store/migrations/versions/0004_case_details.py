"""case_referrals, case_goals, case_follow_ups: the case's parts as rows, for reporting tools

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_referrals",
        sa.Column("case_number", sa.String(40), primary_key=True),
        sa.Column("referral_id", sa.String(20), primary_key=True),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("service", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_case_referrals_provider", "case_referrals", ["provider", "service"])
    op.create_table(
        "case_goals",
        sa.Column("case_number", sa.String(40), primary_key=True),
        sa.Column("goal_id", sa.String(32), primary_key=True),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("objective", sa.String(500), nullable=False),
        sa.Column("target_date", sa.Date, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
    )
    op.create_table(
        "case_follow_ups",
        sa.Column("case_number", sa.String(40), primary_key=True),
        sa.Column("follow_up_id", sa.String(20), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_cases_program_stage", "cases", ["program", "stage"])
    op.create_index("ix_case_events_at", "case_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_case_events_at", "case_events")
    op.drop_index("ix_cases_program_stage", "cases")
    op.drop_table("case_follow_ups")
    op.drop_table("case_goals")
    op.drop_table("case_referrals")
