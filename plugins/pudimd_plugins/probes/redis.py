"""The ``redis`` probe: connect to Redis (or Valkey, KeyDB...), run a command, check its answer,
and report the server's replication role and link.

Target: ``redis://[user[:password]@]host[:port][/db]``, ``rediss://...`` (TLS), or
``host[:port]`` with the settings below (port 6379).  Every check opens a new connection
(redis.asyncio), logs in (``AUTH``) and selects the database if asked to, runs ``command``,
then (with ``replication``) runs ``INFO`` and closes the connection.

Settings (the block under ``redis:`` in a target)::

    username: null       # ACL user (Redis 6+); else the URL's
    password: null       # (or password_file) else the URL's; no AUTH without one
    db: null             # database number; else the URL's path, else 0
    command: [PING]      # the command and its arguments; its answer becomes BODY
    expect: null         # regex BODY must match (searched, not anchored)
    replication: true    # run INFO: ROLE, VERSION, is_replica, lag, master link
    role: any            # any | primary | replica: fail on another role
    max_lag: null        # a duration: degraded when replication_lag_seconds is above it
    tls: false           # use TLS (as rediss:// does)
    verify: true         # verify the server certificate and host name (with TLS)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (if not inside cert_file)
    server_name: null    # TLS SNI and certificate name, instead of the target's host

Redis says ``role:master`` or ``role:slave``; pudimd reports ``primary`` or ``replica``.  On a
replica, ``replication_lag_seconds`` is ``master_last_io_seconds_ago`` (seconds since the
primary was last heard from; Redis has no replay lag in seconds), ``replication_lag_bytes``
is what was received but not yet applied (Redis 7+), and a ``master_link_status`` other
than ``up`` makes the result degraded (with no lag in seconds).  On a primary,
``replication_lag_bytes`` is the largest distance between its offset and a connected
replica's (replicas acknowledge once a second).

Result: ``message`` names the failure (``connection refused``, ``timeout after 5s during
query``, ``authentication failed: WRONGPASS ...``, ``command failed: ERR unknown command
...``, ``answer 'PONG' does not match /x/``, the TLS error...).

Phases (seconds): ``connect`` (TCP, TLS, AUTH and SELECT), ``query`` (the command and INFO).

Metrics: ``is_replica`` (0 or 1), ``replication_lag_seconds`` (replicas with a link up),
``replication_lag_bytes``, ``master_link_up`` (replicas, 0 or 1), ``connected_replicas``
(primaries).

Values: ``CONNECTED`` (bool), ``BODY`` (the answer as text: a list one item a line, nil as
``(nil)``), ``ROLE`` (``primary`` or ``replica``), ``VERSION`` (``redis_version``),
``MASTER_LINK_STATUS`` (replicas).
"""

from __future__ import annotations

import functools
import re
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
)
from pudimd_plugins.probes._net import Failure, error_text

__all__ = ["RedisProbe", "RedisSettings", "pudimd_probe_types", "render"]

_SCHEMES = {"redis": (6379, False), "rediss": (6379, True)}


class RedisSettings(ReplicationSettings):
    """Settings of the ``redis`` probe (see the module docstring)."""

    db: int | None = Field(
        default=None, ge=0, description="Database number; else the target URL's path, else 0."
    )
    command: list[str] = Field(
        default=["PING"],
        min_length=1,
        description="The command and its arguments; its answer is BODY.",
    )
    server_name: str | None = Field(
        default=None, description="TLS SNI and certificate name, instead of the target's host."
    )


def render(answer: Any) -> str:
    """A Redis answer as text: bytes decoded, a list one item a line, nil as ``(nil)``."""
    if answer is None:
        return "(nil)"
    if isinstance(answer, bytes):
        return answer.decode("utf-8", "replace")
    if isinstance(answer, list | tuple | set):
        return "\n".join(render(item) for item in answer)
    if isinstance(answer, dict):
        return "\n".join(f"{render(k)}\n{render(v)}" for k, v in answer.items())
    return str(answer)


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` output as a dict (``# Section`` lines skipped)."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            info[key.strip()] = value.strip()
    return info


def _replica_fields(value: str) -> dict[str, str]:
    """``ip=10.0.0.2,port=6379,state=online,offset=42,lag=0`` as a dict."""
    return dict(part.partition("=")[::2] for part in value.split(","))


@functools.cache
def _connection_class() -> Any:
    """redis.asyncio's Connection, with our own TLS context (its SSLConnection builds one
    from file names and has no SNI override)."""
    from redis.asyncio.connection import Connection

    class TlsConnection(Connection):
        def __init__(self, *, tls: Any, server_hostname: str, **kwargs: Any) -> None:
            self._pudimd_tls = tls
            self._pudimd_sni = server_hostname
            super().__init__(**kwargs)

        def _connection_arguments(self) -> dict[str, Any]:
            args = dict(super()._connection_arguments())
            if self._pudimd_tls is not None:
                args["ssl"] = self._pudimd_tls
                args["server_hostname"] = self._pudimd_sni
            return args

    return TlsConnection


class RedisProbe(DbProbe):
    """Check a Redis server; see the module docstring."""

    type = "redis"
    Settings = RedisSettings
    settings: RedisSettings

    def _explain(self, outcome: Outcome) -> Any:
        return _explain(outcome)

    async def _run(self, target: str, timeout: float, outcome: Outcome) -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        end = parse_target(target, _SCHEMES)
        s = self.settings
        if s.db is not None:
            db = s.db
        else:
            try:
                db = int(end.path or 0)
            except ValueError:
                raise Failure(f"invalid database {end.path!r} in {target!r}") from None
        tls = self._ssl
        if tls is None and end.tls:
            tls = self._ssl = s.ssl_context()
        conn = _connection_class()(
            tls=tls,
            server_hostname=s.server_name or end.host,
            host=end.host,
            port=end.port,
            db=db,
            username=s.username or end.username,
            password=s.password.get_secret_value() if s.password else end.password,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            await conn.connect()
            outcome.values["CONNECTED"] = True
            outcome.clock.enter("query")
            await conn.send_command(*s.command)
            body = render(await conn.read_response())
            outcome.values["BODY"] = body
            if s.replication:
                await conn.send_command("INFO")
                self._report(outcome, parse_info(render(await conn.read_response())))
            check_expect(self._expect, body)
        finally:
            await conn.disconnect(nowait=True)

    def _report(self, outcome: Outcome, info: dict[str, str]) -> None:
        if "redis_version" in info:
            outcome.values["VERSION"] = info["redis_version"]
        if "role" not in info:
            raise Failure("INFO did not say the replication role")
        if info["role"] == "master":
            replicas = [_replica_fields(v) for k, v in info.items() if re.match(r"slave\d+$", k)]
            outcome.metrics["connected_replicas"] = float(len(replicas))
            offsets = [int(r["offset"]) for r in replicas if r.get("offset", "").isdigit()]
            if offsets and info.get("master_repl_offset", "").isdigit():
                lag = int(info["master_repl_offset"]) - min(offsets)
                outcome.metrics["replication_lag_bytes"] = float(max(0, lag))
            report_role(outcome, self.settings, "primary", None)
            return
        link = info.get("master_link_status", "unknown")
        outcome.values["MASTER_LINK_STATUS"] = link
        outcome.metrics["master_link_up"] = 1.0 if link == "up" else 0.0
        # a replica's master_repl_offset is its own offset, not its primary's: what it
        # received is slave_read_repl_offset (Redis 7+)
        received = info.get("slave_read_repl_offset", "")
        applied = info.get("slave_repl_offset", "")
        if received.isdigit() and applied.isdigit():
            outcome.metrics["replication_lag_bytes"] = float(max(0, int(received) - int(applied)))
        seen = info.get("master_last_io_seconds_ago", "-1")
        up = link == "up" and seen.isdigit()
        report_role(outcome, self.settings, "replica", float(seen) if up else None)
        if link != "up":
            outcome.degraded = f"replica's link to its primary is {link}"


def _explain(outcome: Outcome) -> Any:
    def explain(exc: Exception) -> str | None:
        from redis import exceptions as e

        if not isinstance(exc, e.RedisError):
            return None
        if isinstance(exc, e.AuthenticationError | e.AuthenticationWrongNumberOfArgsError):
            return f"authentication failed: {exc}"
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, e.ConnectionError) and isinstance(cause, OSError):
            return error_text(cause)
        if isinstance(exc, e.TimeoutError):
            return f"timeout during {outcome.clock.phase}: {exc}"
        if isinstance(exc, e.ResponseError):
            if outcome.clock.phase == "connect":
                return f"authentication failed: {exc}" if _auth_error(exc) else str(exc)
            return f"command failed: {exc}"
        return str(exc) or type(exc).__name__

    return explain


def _auth_error(exc: Exception) -> bool:
    text = str(exc)
    return text.startswith(("WRONGPASS", "NOAUTH", "NOPERM")) or "AUTH" in text


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``redis`` probe."""
    return [RedisProbe]
