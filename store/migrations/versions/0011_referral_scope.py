"""The referral outcomes report by index for a caller who sees part of the record: each referral
row carries its case's program, manager and supervisor (kept equal to the case's by the
projection, store/projection.py), indexed with the report's grouping (provider, service).

Before, the report joined every referral to its case to apply the caller's scope, and on
PostgreSQL a case manager's report (3 % of the record) read all of `case_referrals`: probing the
referrals' primary key once per case of the caseload cost more than reading them all.

Revision ID: 0011_referral_scope
Revises: 0010_open_caseload_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_referral_scope"
down_revision = "0010_open_caseload_index"
branch_labels = None
depends_on = None

SCOPE = ("program", "manager", "supervisor")


def upgrade() -> None:
    with op.batch_alter_table("case_referrals") as table:
        table.add_column(sa.Column("program", sa.String(40)))
        table.add_column(sa.Column("manager", sa.String(64)))
        table.add_column(sa.Column("supervisor", sa.String(64)))
    # referrals recorded before: their case's values, in one statement either database runs
    op.execute(
        "UPDATE case_referrals SET "
        + ", ".join(
            f"{column} = (SELECT cases.{column} FROM cases WHERE cases.number = case_referrals.case_number)"
            for column in SCOPE
        )
    )
    for column in SCOPE:
        op.create_index(f"ix_case_referrals_{column}", "case_referrals", [column, "provider", "service"])


def downgrade() -> None:
    for column in SCOPE:
        op.drop_index(f"ix_case_referrals_{column}", "case_referrals")
    with op.batch_alter_table("case_referrals") as table:
        for column in SCOPE:
            table.drop_column(column)
