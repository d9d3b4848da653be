"""case_referrals.updated_at: when the record last saw a referral's status change (FHIR _lastUpdated)

Revision ID: 0005_fhir
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_fhir"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("case_referrals", sa.Column("updated_at", sa.DateTime(timezone=True)))
    # Rows from before: the last time the row itself knows of.
    op.execute("UPDATE case_referrals SET updated_at = COALESCE(answered_at, requested_at)")
    op.create_index("ix_case_referrals_provider_updated", "case_referrals", ["provider", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_case_referrals_provider_updated", "case_referrals")
    op.drop_column("case_referrals", "updated_at")
