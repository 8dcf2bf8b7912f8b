"""outage notices

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outage_notices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("elevator_id", sa.String(64), nullable=False),
        sa.Column("posted_at", _TS, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("expected_return_at", _TS),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
    )
    op.create_index("ix_outage_notices_elevator", "outage_notices", ["elevator_id", "posted_at"])


def downgrade() -> None:
    op.drop_table("outage_notices")
