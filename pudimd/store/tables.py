"""The store's schema, in SQLAlchemy Core.

The migrations in ``pudimd/store/migrations/versions`` create exactly this; a test
compares the migrated database with :data:`metadata`, so change both together.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata", "results", "rollups"]

metadata = sa.MetaData()

# BIGINT on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" is an auto-incrementing rowid.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

results = sa.Table(
    "results",
    metadata,
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
    sa.Index("ix_results_target_ts", "target", "ts"),
    sa.Index("ix_results_ts", "ts"),
)
"""One row per check result, kept for ``raw_retention``."""

rollups = sa.Table(
    "rollups",
    metadata,
    sa.Column("target", sa.String(), primary_key=True),
    sa.Column("resolution", sa.String(8), primary_key=True, comment="'1m' or '1h'"),
    sa.Column("bucket_start", sa.BigInteger(), primary_key=True, comment="Unix seconds"),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("latency_p50", sa.Double(), nullable=False),
    sa.Column("latency_p95", sa.Double(), nullable=False),
    sa.Column("latency_max", sa.Double(), nullable=False),
    sa.Column("sketch", sa.Text(), nullable=False, comment="serialized pudimd.store.sketch"),
    sa.Index("ix_rollups_bucket_start", "bucket_start"),
)
"""Per target, per minute (``1m``) and per hour (``1h``): counts and latency quantiles."""
