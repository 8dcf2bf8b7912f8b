"""embedded telemetry: each frame once (unique on elevator, boot, seq), indexed for retention

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("telemetry") as batch:
        batch.add_column(sa.Column("boot", sa.BigInteger))
        batch.add_column(sa.Column("seq", sa.BigInteger))
    op.create_index("ix_telemetry_ts", "telemetry", ["ts_ns"])
    # Rows written before have no identity (null boot and seq): none of them conflicts.
    op.create_index(
        "ux_telemetry_frame",
        "telemetry",
        ["elevator_id", "measurement", "boot", "seq"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_telemetry_frame", "telemetry")
    op.drop_index("ix_telemetry_ts", "telemetry")
    with op.batch_alter_table("telemetry") as batch:
        batch.drop_column("seq")
        batch.drop_column("boot")
