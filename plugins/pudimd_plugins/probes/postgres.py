"""The ``postgres`` probe: log in to PostgreSQL, run a query, check its answer, and report the
server's replication role and lag.

Target: ``postgres://[user[:password]@]host[:port][/database]`` (also ``postgresql://``), or
``host[:port]`` with the settings below (port 5432).  Every check opens a new connection
(asyncpg), runs ``query``, then (with ``replication``) asks ``pg_is_in_recovery()`` and, on a
replica, its replay lag and WAL receiver (``pg_stat_wal_receiver``), and closes the
connection.

Settings (the block under ``postgres:`` in a target)::

    username: null       # user; else the URL's, else "postgres"
    password: null       # (or password_file) else the URL's
    database: null       # database; else the URL's path, else the user name
    query: "SELECT 1"    # the query to run; its first row becomes BODY
    expect: null         # regex BODY must match (searched, not anchored)
    min_rows: 0          # fail when the query returns fewer rows
    replication: true    # report ROLE, is_replica and replication_lag_seconds
    role: any            # any | primary | replica: fail on another role
    max_lag: null        # a duration: degraded when the replica's lag is above it
    tls: false           # require TLS (the certificate must name the target's host)
    verify: true         # verify the server certificate and host name (with tls)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (if not inside cert_file)

A replica's ``replication_lag_seconds`` is 0 while it streams from its primary and has
replayed all the WAL it received; else it is the age of the last transaction it replayed
(``now() - pg_last_xact_replay_timestamp()``; unknown until it replayed one), which grows
while the replica is behind or cut off.  A replica whose WAL receiver is not streaming (its
primary is down or unreachable, or it only restores archived WAL) is reported degraded.

Result: ``message`` names the failure (``connection refused``, ``timeout after 5s during
connect``, ``authentication failed: password authentication failed for user "app"``,
``database "x" does not exist``, ``query failed: ... (SQLSTATE 42P01)``, ``answer '0' does
not match /1/``, ``server is a replica, expected a primary``, the TLS error...).  A lag over
``max_lag`` or a replica not streaming makes the result degraded, with the reason as its
message (``replication lag 12.0s over 5s``, ``replica is not streaming from a primary (WAL
receiver: none)``).

Phases (seconds): ``connect`` (TCP, TLS and login), ``query`` (the query and the
replication questions).

Metrics: ``rows`` (rows the query returned), ``is_replica`` (0 or 1),
``replication_lag_seconds`` (replicas, when PostgreSQL knows it), ``wal_receiver_up``
(replicas, 0 or 1).

Values: ``CONNECTED`` (bool), ``BODY`` (the first row's columns, tab-separated; NULL as
``NULL``), ``ROLE`` (``primary`` or ``replica``), ``VERSION`` (server version),
``WAL_RECEIVER_STATUS`` (replicas: ``streaming``, ``starting``, ``waiting``... or ``none``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from pudimd.hookspecs import hookimpl
from pudimd_plugins.probes._db import (
    DbProbe,
    Outcome,
    ReplicationSettings,
    check_expect,
    parse_target,
    report_role,
    row_text,
)
from pudimd_plugins.probes._net import Failure

if TYPE_CHECKING:

    import asyncpg

__all__ = ["PostgresProbe", "PostgresSettings", "pudimd_probe_types"]

_SCHEMES = {"postgres": (5432, False), "postgresql": (5432, False)}

_ROLE_QUERY = """
SELECT pg_is_in_recovery(),
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,
       pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(),
       (SELECT coalesce(status, 'streaming') FROM pg_stat_wal_receiver)
"""
"""In recovery?, age of the last transaction replayed, replayed all WAL received?, and the
WAL receiver's status (NULL when none runs; only its pid is shown without
pg_read_all_stats, so a running one counts as streaming then)."""


class PostgresSettings(ReplicationSettings):
    """Settings of the ``postgres`` probe (see the module docstring)."""

    database: str | None = Field(
        default=None,
        description="Database; else the target URL's path, else the user name.",
    )
    query: str = Field(
        default="SELECT 1", min_length=1, description="Query to run; its first row is BODY."
    )
    min_rows: int = Field(default=0, ge=0, description="Fail when the query returns fewer rows.")


class PostgresProbe(DbProbe):
    """Check a PostgreSQL server; see the module docstring."""

    type = "postgres"
    Settings = PostgresSettings
    settings: PostgresSettings

    def _explain(self, outcome: Outcome) -> Any:
        return _explain(outcome)

    async def _run(self, target: str, timeout: float, outcome: Outcome) -> None:
        import asyncpg

        end = parse_target(target, _SCHEMES)
        s = self.settings
        user = s.username or end.username or "postgres"
        password = s.password.get_secret_value() if s.password else end.password
        conn: asyncpg.Connection = await asyncpg.connect(
            host=end.host,
            port=end.port,
            user=user,
            password=password,
            database=s.database or end.path or user,
            ssl=self._ssl if self._ssl is not None else False,
            timeout=timeout,
            statement_cache_size=0,
            server_settings={"application_name": "pudimd"},
        )
        try:
            outcome.values["CONNECTED"] = True
            outcome.values["VERSION"] = conn.get_settings().server_version
            outcome.clock.enter("query")
            rows = await conn.fetch(s.query)
            outcome.metrics["rows"] = float(len(rows))
            body = row_text(rows[0]) if rows else ""
            outcome.values["BODY"] = body
            if s.replication:
                _report(outcome, s, await conn.fetchrow(_ROLE_QUERY))
            if len(rows) < s.min_rows:
                raise Failure(f"query returned {len(rows)} rows, expected at least {s.min_rows}")
            check_expect(self._expect, body)
        finally:
            try:
                await conn.close(timeout=1)
            except BaseException:
                conn.terminate()
                raise


def _report(outcome: Outcome, settings: PostgresSettings, row: Any) -> None:
    in_recovery, age, caught_up, receiver = row
    if not in_recovery:
        report_role(outcome, settings, "primary", None)
        return
    streaming = receiver == "streaming"
    outcome.values["WAL_RECEIVER_STATUS"] = receiver or "none"
    outcome.metrics["wal_receiver_up"] = 1.0 if streaming else 0.0
    # the age of the last transaction replayed grows while the primary writes nothing: a
    # standby streaming from its primary that replayed all it received is not behind
    report_role(outcome, settings, "replica", 0.0 if streaming and caught_up else age)
    if not streaming:
        status = receiver or "none"
        outcome.degraded = f"replica is not streaming from a primary (WAL receiver: {status})"


def _explain(outcome: Outcome) -> Any:
    def explain(exc: Exception) -> str | None:
        import asyncpg

        if isinstance(exc, OSError) and exc.errno:
            return None  # refused, unreachable...: the shared text
        if isinstance(exc, asyncpg.PostgresError):
            state = getattr(exc, "sqlstate", "") or ""
            if outcome.clock.phase == "query":
                return f"query failed: {exc} (SQLSTATE {state})"
            if state.startswith("28"):
                return f"authentication failed: {exc}"
            return f"{exc} (SQLSTATE {state})" if state != "3D000" else str(exc)
        if isinstance(exc, asyncpg.InterfaceError | ConnectionError):
            text = str(exc)
            if "SSL" in text:
                return f"TLS: {text}"
            return text or type(exc).__name__
        return None

    return explain


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``postgres`` probe."""
    return [PostgresProbe]
