"""Alerting: alerts, silences, the notification log, the outbox and delivery attempts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("fingerprint", sa.String(16), primary_key=True),
        sa.Column("labels", sa.Text(), nullable=False, comment="JSON object"),
        sa.Column("annotations", sa.Text(), nullable=False, comment="JSON object"),
        sa.Column("starts_at", sa.Double(), nullable=False, comment="Unix seconds"),
        sa.Column("ends_at", sa.Double(), nullable=False, comment="Unix seconds"),
        sa.Column("updated_at", sa.Double(), nullable=False, comment="Unix seconds"),
        sa.Column("generator_url", sa.Text(), nullable=False),
        sa.Column(
            "timeout", sa.Boolean(), nullable=False, comment="ends_at from resolve_timeout"
        ),
        sa.Column("blocked_by", sa.Text(), nullable=True, comment="JSON list of target names"),
    )
    op.create_table(
        "silences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("matchers", sa.Text(), nullable=False, comment="JSON list of API matchers"),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("ends_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("expire_on_resolve", sa.Boolean(), nullable=False),
        sa.Column("muted", sa.Text(), nullable=False, comment="JSON list of fingerprints muted"),
    )
    op.create_table(
        "notification_log",
        sa.Column("group_key", sa.Text(), primary_key=True),
        sa.Column("integration", sa.String(), primary_key=True, comment="receiver/type/index"),
        sa.Column("firing", sa.Text(), nullable=False, comment="JSON list of fingerprints"),
        sa.Column("resolved", sa.Text(), nullable=False, comment="JSON list of fingerprints"),
        sa.Column("sent_at", sa.Double(), nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("receiver", sa.String(), nullable=False),
        sa.Column("integration", sa.String(), nullable=False, comment="type/index"),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False, comment="JSON Notification"),
        sa.Column(
            "state",
            sa.String(16),
            nullable=False,
            comment="pending, delivered, failed, expired or superseded",
        ),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
    )
    op.create_index("ix_notifications_state", "notifications", ["state"])
    op.create_index("ix_notifications_created_at", "notifications", ["created_at"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False, comment="attempt start, Unix seconds"),
        sa.Column("duration", sa.Double(), nullable=False),
        sa.Column(
            "outcome", sa.String(16), nullable=False, comment="delivered, retry or failed"
        ),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_delivery_attempts_notification_id", "delivery_attempts", ["notification_id"]
    )


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_table("notifications")
    op.drop_table("notification_log")
    op.drop_table("silences")
    op.drop_table("alerts")
