"""cluster: gateway membership leases (who shares the elevators of a partition group)

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "gateway_members",
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gateway_members_group", "gateway_members", ["group_name", "expires_at"])


def downgrade() -> None:
    op.drop_table("gateway_members")
