"""drop the job events index that SQLite preferred for GROUP BY over the time range

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.drop_index("ix_job_events_account_time")


def downgrade() -> None:
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_events_account_time", ["user_id", "account_email", "finished_at"], unique=False
        )
