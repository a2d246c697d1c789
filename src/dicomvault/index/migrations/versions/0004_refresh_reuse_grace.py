"""refresh tokens: when a token was first used, for the reuse grace

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 08:40:00

Tokens used before this revision have no time of use: a second use of one is taken as reuse,
as it was before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("used_at")
