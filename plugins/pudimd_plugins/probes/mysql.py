"""The ``mysql`` probe: log in to MySQL or MariaDB, run a query, check its answer, and report
the server's replication role, lag and ``read_only`` flag.

Target: ``mysql://[user[:password]@]host[:port][/database]`` (also ``mariadb://``), or
``host[:port]`` with the settings below (port 3306).  Every check opens a new connection
(aiomysql), runs ``query``, then (with ``replication``) asks ``@@global.read_only`` and
``SHOW REPLICA STATUS`` (``SHOW SLAVE STATUS`` on older servers), and quits.

Settings (the block under ``mysql:`` in a target)::

    username: null       # user; else the URL's, else "root"
    password: null       # (or password_file) else the URL's, else empty
    database: null       # default database; else the URL's path, else none
    query: "SELECT 1"    # the query to run; its first row becomes BODY
    expect: null         # regex BODY must match (searched, not anchored)
    min_rows: 0          # fail when the query returns fewer rows
    replication: true    # report ROLE, is_replica, read_only, replication_lag_seconds
    role: any            # any | primary | replica: fail on another role
    max_lag: null        # a duration: degraded when Seconds_Behind_Master is above it
    tls: false           # require TLS (fails if the server does not offer it)
    verify: true         # verify the server certificate and host name (with tls)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (if not inside cert_file)

A server with a replica status row is a ``replica``, else a ``primary``.  A replica whose IO
or SQL thread is not running is reported degraded.  The replica status needs the
``REPLICATION CLIENT`` privilege (``SLAVE MONITOR`` on MariaDB 10.5+): without it the role is
left out, unless ``role`` or ``max_lag`` asks for it (then the check fails saying why).

Result: ``message`` names the failure (``connection refused``, ``timeout after 5s during
connect``, ``authentication failed: Access denied for user ...``, ``Unknown database 'x'``,
``query failed: ... (error 1146)``, ``answer '0' does not match /1/``, ``TLS: the server
does not offer TLS``...).

Phases (seconds): ``connect`` (TCP, TLS and login), ``query`` (the query and the
replication questions).

Metrics: ``rows``, ``is_replica`` (0 or 1), ``read_only`` (0 or 1),
``replication_lag_seconds`` (Seconds_Behind_Master, replicas whose SQL thread runs).

Values: ``CONNECTED`` (bool), ``BODY`` (the first row's columns, tab-separated; NULL as
``NULL``), ``ROLE`` (``primary`` or ``replica``), ``VERSION`` (server version).
"""

from __future__ import annotations

import functools
from typing import Any

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
from pudimd_plugins.probes._net import Failure, error_text

__all__ = ["MysqlProbe", "MysqlSettings", "pudimd_probe_types"]

_SCHEMES = {"mysql": (3306, False), "mariadb": (3306, False)}
_ACCESS_DENIED = {1044, 1045, 1698}
_NO_PRIVILEGE = {1142, 1227}


class MysqlSettings(ReplicationSettings):
    """Settings of the ``mysql`` probe (see the module docstring)."""

    database: str | None = Field(
        default=None, description="Default database; else the target URL's path."
    )
    query: str = Field(
        default="SELECT 1", min_length=1, description="Query to run; its first row is BODY."
    )
    min_rows: int = Field(default=0, ge=0, description="Fail when the query returns fewer rows.")


@functools.cache
def _connection_class() -> Any:
    """aiomysql's Connection, refusing to log in in clear text when TLS was asked for (it
    silently carries on without TLS when the server does not offer it)."""
    import aiomysql  # type: ignore[import-untyped,unused-ignore]
    from pymysql.constants import CLIENT  # type: ignore[import-untyped,unused-ignore]

    class Connection(aiomysql.Connection):  # type: ignore[misc]
        async def _request_authentication(self) -> None:
            if self._ssl_context and not self.server_capabilities & CLIENT.SSL:
                raise Failure("TLS: the server does not offer TLS")
            await super()._request_authentication()

    return Connection


async def _quit(conn: Any) -> None:
    """Say goodbye (COM_QUIT); drop the socket if that cannot be done."""
    try:
        await conn.ensure_closed()
    except BaseException:
        conn.close()
        raise


class MysqlProbe(DbProbe):
    """Check a MySQL or MariaDB server; see the module docstring."""

    type = "mysql"
    Settings = MysqlSettings
    settings: MysqlSettings

    def _explain(self, outcome: Outcome) -> Any:
        return _explain(outcome)

    async def _run(self, target: str, timeout: float, outcome: Outcome) -> None:
        end = parse_target(target, _SCHEMES)
        s = self.settings
        password = s.password.get_secret_value() if s.password else end.password
        conn = _connection_class()(
            host=end.host,
            port=end.port,
            user=s.username or end.username or "root",
            password=password or "",
            db=s.database or end.path or None,
            ssl=self._ssl,
            connect_timeout=timeout,
            autocommit=True,
            charset="utf8mb4",
            program_name="pudimd",
        )
        try:
            await conn._connect()
            outcome.values["CONNECTED"] = True
            version = str(conn.get_server_info())
            # MariaDB prefixes its version with 5.5.5- for old MySQL clients
            outcome.values["VERSION"] = version.removeprefix("5.5.5-")
            outcome.clock.enter("query")
            await self._query(conn, outcome)
        except Failure:
            await _quit(conn)
            raise
        except BaseException:
            conn.close()
            raise
        await _quit(conn)

    async def _query(self, conn: Any, outcome: Outcome) -> None:
        import aiomysql  # type: ignore[import-untyped,unused-ignore]

        s = self.settings
        async with conn.cursor() as cur:
            await cur.execute(s.query)
            rows = await cur.fetchall()
        outcome.metrics["rows"] = float(len(rows))
        body = row_text(rows[0]) if rows else ""
        outcome.values["BODY"] = body
        if s.replication:
            async with conn.cursor(aiomysql.DictCursor) as cur:
                await cur.execute("SELECT @@global.read_only AS ro")
                outcome.metrics["read_only"] = 1.0 if (await cur.fetchone())["ro"] else 0.0
                status = await _replica_status(cur)
            if status is not None:
                _report_replica(outcome, s, status)
            elif s.role != "any" or s.max_lag is not None:
                raise Failure("cannot tell the replication role: no privilege to see it")
        if len(rows) < s.min_rows:
            raise Failure(f"query returned {len(rows)} rows, expected at least {s.min_rows}")
        check_expect(self._expect, body)


async def _replica_status(cur: Any) -> dict[str, Any] | None:
    """The first replica status row ({} on a primary); None without the privilege."""
    import pymysql  # type: ignore[import-untyped,unused-ignore]

    for statement in ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS"):
        try:
            await cur.execute(statement)
        except pymysql.err.ProgrammingError as exc:
            if exc.args and exc.args[0] == 1064:  # syntax: a server without REPLICA
                continue
            if exc.args and exc.args[0] in _NO_PRIVILEGE:
                return None
            raise
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in _NO_PRIVILEGE:
                return None
            raise
        row: dict[str, Any] | None = await cur.fetchone()
        return row or {}
    return {}


def _report_replica(outcome: Outcome, settings: MysqlSettings, status: dict[str, Any]) -> None:
    if not status:
        report_role(outcome, settings, "primary", None)
        return

    def field(*names: str) -> Any:
        return next((status[n] for n in names if n in status), None)

    lag = field("Seconds_Behind_Master", "Seconds_Behind_Source")
    report_role(outcome, settings, "replica", None if lag is None else float(lag))
    io = field("Slave_IO_Running", "Replica_IO_Running")
    sql = field("Slave_SQL_Running", "Replica_SQL_Running")
    if io != "Yes" or sql != "Yes":
        outcome.degraded = f"replication is not running (IO thread: {io}, SQL thread: {sql})"


def _explain(outcome: Outcome) -> Any:
    def explain(exc: Exception) -> str | None:
        import pymysql  # type: ignore[import-untyped,unused-ignore]

        if not isinstance(exc, pymysql.err.MySQLError):
            return None
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        if isinstance(exc.__cause__, OSError):
            return error_text(exc.__cause__)
        if outcome.clock.phase == "query":
            return f"query failed: {text} (error {code})"
        if code in _ACCESS_DENIED:
            return f"authentication failed: {text}"
        return text

    return explain


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``mysql`` probe."""
    return [MysqlProbe]
