"""deliveries: what each outbox message carries, and every attempt to deliver it

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("payload", sa.JSON, nullable=True))
        batch.add_column(sa.Column("attachment", sa.Text, nullable=True))
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text, nullable=True))
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(300), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_delivery_attempts_key", "delivery_attempts", ["idempotency_key"])


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    with op.batch_alter_table("outbox") as batch:
        for column in ("last_error", "delivered_at", "attachment", "payload"):
            batch.drop_column(column)
