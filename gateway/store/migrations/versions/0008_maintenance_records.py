"""maintenance records reported by the maintenance unit

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "maintenance_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("elevator_id", sa.String(64), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("company", sa.Text, nullable=False),
        sa.Column("technician", sa.Text, nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("duration_min", sa.Integer, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
    )
    op.create_index("ix_maintenance_records_elevator", "maintenance_records", ["elevator_id", "at"])
    op.create_index("ix_maintenance_records_at", "maintenance_records", ["at"])


def downgrade() -> None:
    op.drop_table("maintenance_records")
