"""The store's schema, in SQLAlchemy Core.

The migrations in ``pudimd/store/migrations/versions`` create exactly this; a test
compares the migrated database with :data:`metadata`, so change both together.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "alert_acks",
    "alert_events",
    "alerts",
    "api_tokens",
    "audit_log",
    "config_versions",
    "delivery_attempts",
    "escalations",
    "metadata",
    "notification_log",
    "notifications",
    "results",
    "rollups",
    "silences",
    "web_sessions",
]

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

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("fingerprint", sa.String(16), primary_key=True),
    sa.Column("labels", sa.Text(), nullable=False, comment="JSON object"),
    sa.Column("annotations", sa.Text(), nullable=False, comment="JSON object"),
    sa.Column("starts_at", sa.Double(), nullable=False, comment="Unix seconds"),
    sa.Column("ends_at", sa.Double(), nullable=False, comment="Unix seconds"),
    sa.Column("updated_at", sa.Double(), nullable=False, comment="Unix seconds"),
    sa.Column("generator_url", sa.Text(), nullable=False),
    sa.Column("timeout", sa.Boolean(), nullable=False, comment="ends_at from resolve_timeout"),
    sa.Column("blocked_by", sa.Text(), nullable=True, comment="JSON list of target names"),
)
"""Every alert the store holds, active or recently resolved."""

silences = sa.Table(
    "silences",
    metadata,
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
"""Silences, kept after they expire for ``silence_retention``."""

notification_log = sa.Table(
    "notification_log",
    metadata,
    sa.Column("group_key", sa.Text(), primary_key=True),
    sa.Column("integration", sa.String(), primary_key=True, comment="receiver/type/index"),
    sa.Column("firing", sa.Text(), nullable=False, comment="JSON list of fingerprints"),
    sa.Column("resolved", sa.Text(), nullable=False, comment="JSON list of fingerprints"),
    sa.Column("sent_at", sa.Double(), nullable=False),
    sa.Column("acked", sa.Text(), nullable=True, comment="JSON list of fingerprints"),
)
"""What each integration was last told about each group (Alertmanager's nflog)."""

notifications = sa.Table(
    "notifications",
    metadata,
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
    sa.Index("ix_notifications_state", "state"),
    sa.Index("ix_notifications_created_at", "created_at"),
)
"""The outbox: every notification, written before it is sent."""

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("notification_id", sa.BigInteger(), nullable=False),
    sa.Column("ts", sa.Double(), nullable=False, comment="attempt start, Unix seconds"),
    sa.Column("duration", sa.Double(), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False, comment="delivered, retry or failed"),
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Index("ix_delivery_attempts_notification_id", "notification_id"),
)
"""One row per delivery attempt of a notification, with its outcome."""

alert_acks = sa.Table(
    "alert_acks",
    metadata,
    sa.Column("fingerprint", sa.String(16), primary_key=True),
    sa.Column("acked_by", sa.Text(), nullable=True),
    sa.Column("acked_at", sa.Double(), nullable=True),
    sa.Column("ack_until", sa.Double(), nullable=True, comment="null: until resolved"),
    sa.Column("assignee", sa.Text(), nullable=True, comment="user:NAME or team:NAME"),
)
"""Who acknowledged an alert (until when) and who it is assigned to."""

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(16), nullable=False),
    sa.Column("at", sa.Double(), nullable=False, comment="Unix seconds"),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("alertname", sa.Text(), nullable=False),
    sa.Column("target", sa.Text(), nullable=False, comment="label target, else instance"),
    sa.Column("actor", sa.Text(), nullable=True),
    sa.Column("interface", sa.String(16), nullable=True, comment="api, cli, web, link"),
    sa.Column("detail", sa.Text(), nullable=False, comment="JSON object"),
    sa.Index("ix_alert_events_fingerprint_at", "fingerprint", "at"),
    sa.Index("ix_alert_events_target_at", "target", "at"),
    sa.Index("ix_alert_events_at", "at"),
)
"""Every alert's timeline: fired, resolved, acknowledged, assigned, commented..."""

escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True, comment="hash of the group key"),
    sa.Column("group_key", sa.Text(), nullable=False),
    sa.Column("policy", sa.Text(), nullable=False),
    sa.Column("started_at", sa.Double(), nullable=False),
    sa.Column("level", sa.Integer(), nullable=False, comment="next level, 0-based"),
    sa.Column("cycle", sa.Integer(), nullable=False),
    sa.Column("next_at", sa.Double(), nullable=True, comment="null: every level done"),
)
"""Escalations in progress: each group's next level and when it is due."""

config_versions = sa.Table(
    "config_versions",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double(), nullable=False, comment="applied, Unix seconds"),
    sa.Column("source", sa.String(16), nullable=False, comment="start, file, api or rollback"),
    sa.Column("author", sa.Text(), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, comment="of text, hex"),
    sa.Column("text", sa.Text(), nullable=False, comment="the file as read, ${ENV} unexpanded"),
)
"""Every config the daemon applied (at start, on reload, by rollback), a new row only when
the text changed."""

api_tokens = sa.Table(
    "api_tokens",
    metadata,
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
"""API tokens: only their hash is kept (the token is shown once, when created)."""

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True, comment="SHA-256 of the cookie"),
    sa.Column("username", sa.Text(), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False),
    sa.Column("last_seen_at", sa.Double(), nullable=False),
    sa.Column("address", sa.Text(), nullable=True),
)
"""Signed-in web users (the cookie's hash, its CSRF token, expiry)."""

audit_log = sa.Table(
    "audit_log",
    metadata,
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
"""Every write through the API: who, from where, what, and the resource before and after."""
