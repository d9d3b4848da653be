"""The idempotency keys of the commands each case applied, kept with their events: a case
restored from the record after Temporal lost its workflow answers a retry of a recent command
as done instead of applying it again.

Keys of commands recorded before this revision are not known: a case restored now answers as
repeats only the commands recorded since.

Revision ID: 0012_command_keys
Revises: 0011_referral_scope
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_command_keys"
down_revision = "0011_referral_scope"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_command_keys",
        sa.Column("case_number", sa.String(40), primary_key=True),
        sa.Column("command_key", sa.String(300), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("command", sa.String(32)),
    )
    op.create_index("ix_case_command_keys_seq", "case_command_keys", ["case_number", "seq"])


def downgrade() -> None:
    op.drop_index("ix_case_command_keys_seq", "case_command_keys")
    op.drop_table("case_command_keys")
