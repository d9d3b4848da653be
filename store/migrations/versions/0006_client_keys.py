"""client_keys: each client's data key, wrapped by the master key; cases.erased_at; sealed columns

Sealed values are longer than the clear ones (base64 of nonce, ciphertext and tag), so the
columns that hold them become Text (SQLite ignores lengths; PostgreSQL enforces them).

Revision ID: 0006_keys
Revises: 0005_fhir
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_keys"
down_revision = "0005_fhir"
branch_labels = None
depends_on = None

WIDENED = (
    ("outbox", "recipient", sa.String(100)),
    ("delivery_attempts", "address", sa.String(500)),
    ("case_goals", "description", sa.String(500)),
    ("case_goals", "objective", sa.String(500)),
)


def upgrade() -> None:
    op.create_table(
        "client_keys",
        sa.Column("case_number", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("master_id", sa.String(40), nullable=False),
        sa.Column("wrapped", sa.LargeBinary),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True)),
    )
    op.add_column("cases", sa.Column("erased_at", sa.DateTime(timezone=True)))
    if op.get_bind().dialect.name != "sqlite":
        for table, column, _ in WIDENED:
            op.alter_column(table, column, type_=sa.Text())


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        for table, column, old in WIDENED:
            op.alter_column(table, column, type_=old)
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("erased_at")
    op.drop_table("client_keys")
