"""record_access: who read which case, when

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_access",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
        sa.Column("case_number", sa.String(40), nullable=False),
        sa.Column("what", sa.String(40), nullable=False),
    )
    op.create_index("ix_record_access_case", "record_access", ["case_number", "at"])


def downgrade() -> None:
    op.drop_table("record_access")
