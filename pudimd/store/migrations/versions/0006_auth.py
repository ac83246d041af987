"""API tokens, web sessions and the audit log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False, comment="viewer, operator or admin"),
        sa.Column("scopes", sa.Text(), nullable=False, comment="JSON list; empty: every resource"),
        sa.Column("token_hash", sa.String(64), nullable=False, comment="SHA-256 of the token, hex"),
        sa.Column("prefix", sa.String(16), nullable=False, comment="first characters"),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True, comment="null: never"),
        sa.Column("last_used_at", sa.Double(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True, comment="SHA-256 of the cookie"),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("last_seen_at", sa.Double(), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double(), nullable=False, comment="Unix seconds"),
        sa.Column("actor", sa.Text(), nullable=False, comment="token:NAME, user:NAME, cli..."),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False, comment="e.g. targets.update"),
        sa.Column("status", sa.Integer(), nullable=False, comment="HTTP status answered"),
        sa.Column("before", sa.Text(), nullable=True, comment="JSON, null when nothing was there"),
        sa.Column("after", sa.Text(), nullable=True, comment="JSON, null when removed"),
        sa.Index("ix_audit_log_at", "at"),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("web_sessions")
    op.drop_table("api_tokens")
