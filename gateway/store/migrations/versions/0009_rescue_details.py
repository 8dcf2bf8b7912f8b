"""rescue details: what starts the arrival clock, people trapped, rescue level reached

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(
            sa.Column("clock_start", sa.String(16), nullable=False, server_default="reported")
        )
        batch.add_column(sa.Column("people_trapped", sa.Integer))
        batch.add_column(sa.Column("rescue_level", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("rescue_level")
        batch.drop_column("people_trapped")
        batch.drop_column("clock_start")
