"""Escalations in progress: each group's next escalation level and when it is due.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", sa.String(16), primary_key=True, comment="hash of the group key"),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False, comment="next level, 0-based"),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Double(), nullable=True, comment="null: every level done"),
    )


def downgrade() -> None:
    op.drop_table("escalations")
