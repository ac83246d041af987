"""On-call: acknowledgement and assignment of alerts, their timeline, and what each
integration was told about acknowledgements.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_acks",
        sa.Column("fingerprint", sa.String(16), primary_key=True),
        sa.Column("acked_by", sa.Text(), nullable=True),
        sa.Column("acked_at", sa.Double(), nullable=True),
        sa.Column("ack_until", sa.Double(), nullable=True, comment="null: until resolved"),
        sa.Column("assignee", sa.Text(), nullable=True, comment="user:NAME or team:NAME"),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("at", sa.Double(), nullable=False, comment="Unix seconds"),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("alertname", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False, comment="label target, else instance"),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("interface", sa.String(16), nullable=True, comment="api, cli, web, link"),
        sa.Column("detail", sa.Text(), nullable=False, comment="JSON object"),
    )
    op.create_index("ix_alert_events_fingerprint_at", "alert_events", ["fingerprint", "at"])
    op.create_index("ix_alert_events_target_at", "alert_events", ["target", "at"])
    op.create_index("ix_alert_events_at", "alert_events", ["at"])
    with op.batch_alter_table("notification_log") as batch:
        batch.add_column(
            sa.Column("acked", sa.Text(), nullable=True, comment="JSON list of fingerprints")
        )


def downgrade() -> None:
    with op.batch_alter_table("notification_log") as batch:
        batch.drop_column("acked")
    op.drop_table("alert_events")
    op.drop_table("alert_acks")
