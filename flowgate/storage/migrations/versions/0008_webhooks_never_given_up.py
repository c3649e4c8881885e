"""send again the webhook deliveries that earlier versions gave up on

flowgate now retries a delivery until its receiver acknowledges it; deliveries that
an earlier version marked ``dead`` after 12 attempts go back to ``pending`` and are
due at once (their ``next_attempt_at`` is in the past).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE webhook_deliveries SET state = 'pending' WHERE state = 'dead'")


def downgrade() -> None:
    pass  # nothing to undo: a pending delivery is valid in every version
