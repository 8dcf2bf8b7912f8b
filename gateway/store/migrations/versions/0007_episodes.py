"""episodes recorded from the stream, and when each elevator was last heard

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("elevator_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS),
        sa.Column("last_seen_at", _TS, nullable=False),
        sa.UniqueConstraint("elevator_id", "kind", "started_at", name="ux_episodes_start"),
    )
    op.create_index("ix_episodes_started", "episodes", ["started_at"])
    op.create_index("ix_episodes_elevator", "episodes", ["elevator_id", "started_at"])
    op.create_index("ix_episodes_ended", "episodes", ["ended_at"])
    op.create_table(
        "telemetry_heard",
        sa.Column("elevator_id", sa.String(64), primary_key=True),
        sa.Column("heard_at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("telemetry_heard")
    op.drop_table("episodes")
