"""incidents: `parent_id`, a companion's main incident (one episode of one car, one card)

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(32)))
        batch.create_index("ix_incidents_parent_id", ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_index("ix_incidents_parent_id")
        batch.drop_column("parent_id")
