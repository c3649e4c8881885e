"""upscale results: media.upscale_of, media.upscale_resolution

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

    # Plain columns rather than JSON lookups in media.extra: one indexed equality query
    # finds a stored upscale on SQLite and PostgreSQL alike.
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upscale_of", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("upscale_resolution", sa.String(length=8), nullable=True))
        batch_op.create_index("uq_media_upscale", ["upscale_of", "upscale_resolution"], unique=True)


def downgrade() -> None:

    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_index("uq_media_upscale")
        batch_op.drop_column("upscale_resolution")
        batch_op.drop_column("upscale_of")
