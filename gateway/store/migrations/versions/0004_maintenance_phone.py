"""registry: the maintenance company's 24-hour phone, shown on the public elevator page

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("elevators", sa.Column("maintenance_phone", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("elevators") as batch:
        batch.drop_column("maintenance_phone")
