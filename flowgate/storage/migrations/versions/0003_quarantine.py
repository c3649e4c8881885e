"""quarantine entries

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
        "quarantine_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("account_email", sa.String(length=320), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=80), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "model", name="uq_quarantine_account_model"),
    )
    with op.batch_alter_table("quarantine_entries", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_user_until", ["user_id", "until"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_user_status_account", ["user_id", "status", "account_email"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_user_status_account")

    with op.batch_alter_table("quarantine_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_user_until")

    op.drop_table("quarantine_entries")
