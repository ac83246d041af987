"""Results and rollups.

Revision ID: 0001
Revises:
Create Date: 2024-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("probe", sa.String(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False, comment="check start, Unix seconds"),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("duration", sa.Double(), nullable=False, comment="seconds"),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("phases", sa.Text(), nullable=True, comment="JSON object, seconds per phase"),
        sa.Column("metrics", sa.Text(), nullable=True, comment="JSON object"),
    )
    op.create_index("ix_results_target_ts", "results", ["target", "ts"])
    op.create_index("ix_results_ts", "results", ["ts"])
    op.create_table(
        "rollups",
        sa.Column("target", sa.String(), primary_key=True),
        sa.Column("resolution", sa.String(8), primary_key=True, comment="'1m' or '1h'"),
        sa.Column("bucket_start", sa.BigInteger(), primary_key=True, comment="Unix seconds"),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("latency_p50", sa.Double(), nullable=False),
        sa.Column("latency_p95", sa.Double(), nullable=False),
        sa.Column("latency_max", sa.Double(), nullable=False),
        sa.Column("sketch", sa.Text(), nullable=False, comment="serialized pudimd.store.sketch"),
    )
    op.create_index("ix_rollups_bucket_start", "rollups", ["bucket_start"])


def downgrade() -> None:
    op.drop_table("rollups")
    op.drop_table("results")
