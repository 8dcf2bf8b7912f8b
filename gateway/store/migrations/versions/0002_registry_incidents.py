"""registry, incidents, timeline, black box, audit, outbox

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "elevators",
        sa.Column("elevator_id", sa.String(64), primary_key=True),
        *(
            sa.Column(name, sa.Text)
            for name in ("site", "district", "address", "maintenance_company", "use_unit")
        ),
        sa.Column("inspection_due", sa.Date),
        sa.Column("last_maintenance", sa.Date),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("elevator_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("incident_class", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rule", sa.Text),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("drill", sa.Boolean, nullable=False),
        *(sa.Column(name, sa.Text) for name in ("site", "district", "maintenance_company")),
        *(
            sa.Column(name, _TS, nullable=False)
            for name in ("opened_at", "deadline_at", "warning_at", "ack_deadline_at")
        ),
        sa.Column("report_deadline_at", _TS),
        sa.Column("acknowledged_at", _TS),
        sa.Column("acknowledged_by", sa.Text),
        sa.Column("dispatched_at", _TS),
        sa.Column("crew_id", sa.Text),
        *(
            sa.Column(name, _TS)
            for name in (
                "arrived_at",
                "arrival_reported_at",
                "arrival_telemetry_at",
                "released_at",
                "closed_at",
            )
        ),
        sa.Column("resolution", sa.String(32)),
        sa.Column("regulator_reported_at", _TS),
        sa.Column("sla", sa.String(16), nullable=False),
        *(sa.Column(name, _TS) for name in ("warned_at", "breach_alerted_at")),
        sa.Column("ack_alerts", sa.Integer, nullable=False),
        *(sa.Column(name, _TS) for name in ("report_alerted_at", "next_due_at")),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("open_key", sa.String(140), unique=True),
    )
    op.create_index("ix_incidents_next_due", "incidents", ["next_due_at"])
    op.create_index("ix_incidents_elevator", "incidents", ["elevator_id", "opened_at"])
    op.create_index("ix_incidents_opened", "incidents", ["opened_at"])
    op.create_table(
        "incident_timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(32), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("what", sa.Text, nullable=False),
        sa.Column("by", sa.Text, nullable=False),
    )
    op.create_index("ix_incident_timeline_incident_id", "incident_timeline", ["incident_id"])
    op.create_table(
        "incident_frames",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(32), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_incident_frames_incident_id", "incident_frames", ["incident_id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_id", sa.String(16), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("retain", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "outbox",
        "audit",
        "incident_frames",
        "incident_timeline",
        "incidents",
        "elevators",
    ):
        op.drop_table(table)
