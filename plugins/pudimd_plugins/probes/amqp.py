"""The ``amqp`` probe: log in to an AMQP 0-9-1 broker (RabbitMQ...), publish a message and
consume it back, measuring the round trip.

Target: ``amqp://[user[:password]@]host[:port][/vhost]``, ``amqps://...`` (TLS, port 5671),
or ``host[:port]`` with the settings below (port 5672).  The vhost is the URL's path
(``%2F`` for a slash; none: ``/``).  Every check opens a new connection (aiormq) and a
channel, declares a temporary exclusive queue (named by the broker, deleted with the
connection), binds it to ``exchange`` when one is set, consumes from it, publishes
``payload`` (to ``exchange`` with ``routing_key``, or straight to the queue), waits for the
message to come back, and closes the connection.

Settings (the block under ``amqp:`` in a target)::

    username: null       # user; else the URL's, else "guest"
    password: null       # (or password_file) else the URL's, else "guest"
    exchange: ""         # an existing exchange to publish through ("": the default one)
    routing_key: null    # routing key (and binding key) with exchange; else the queue's name
    payload: "pudimd"    # message body; a unique token is appended to it
    expect: null         # regex the received body (BODY) must match
    tls: false           # use TLS (as amqps:// does)
    verify: true         # verify the server certificate and host name (with TLS)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (if not inside cert_file)
    server_name: null    # TLS SNI and certificate name, instead of the target's host

Result: ``message`` names the failure (``connection refused``, ``timeout after 5s during
query``, ``authentication failed: ...``, ``NOT_FOUND - no exchange 'x' in vhost '/'``,
``received 'a' instead of the message sent``, the TLS error...).  The check fails if the
message that comes back is not the one published.

Phases (seconds): ``connect`` (TCP, TLS, login and vhost), ``query`` (channel, queue,
publish and consume).

Metrics: ``round_trip_seconds`` (from publishing to receiving the message).

Values: ``CONNECTED`` (bool), ``BODY`` (the body received), ``VERSION`` (the broker's
product and version, e.g. ``RabbitMQ 3.10.8``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import Field

from pudimd.hookspecs import hookimpl
from pudimd_plugins.probes._db import (
    DbProbe,
    Outcome,
    ServerSettings,
    check_expect,
    parse_target,
    shorten,
)
from pudimd_plugins.probes._net import Failure, error_text

if TYPE_CHECKING:
    pass

__all__ = ["AmqpProbe", "AmqpSettings", "pudimd_probe_types"]

_SCHEMES = {"amqp": (5672, False), "amqps": (5671, True)}


class AmqpSettings(ServerSettings):
    """Settings of the ``amqp`` probe (see the module docstring)."""

    exchange: str = Field(
        default="",
        description="An existing exchange to publish through; empty: the default exchange.",
    )
    routing_key: str | None = Field(
        default=None,
        description="Routing (and binding) key with `exchange`; else the temporary queue's name.",
    )
    payload: str = Field(
        default="pudimd", description="Message body; a unique token is appended to it."
    )
    server_name: str | None = Field(
        default=None, description="TLS SNI and certificate name, instead of the target's host."
    )


class _QuietTransportErrors(logging.Filter):
    """aiormq logs every failed connection attempt as an error; the check reports it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class AmqpProbe(DbProbe):
    """Check an AMQP 0-9-1 broker; see the module docstring."""

    type = "amqp"
    Settings = AmqpSettings
    settings: AmqpSettings

    def _explain(self, outcome: Outcome) -> Any:
        return _explain(outcome)

    async def _run(self, target: str, timeout: float, outcome: Outcome) -> None:
        import aiormq

        _quiet_aiormq()

        end = parse_target(target, _SCHEMES)
        s = self.settings
        tls = end.tls or s.tls
        if tls and self._ssl is None:
            self._ssl = s.ssl_context()
        user = s.username or end.username or "guest"
        password = s.password.get_secret_value() if s.password else end.password
        host = f"[{end.host}]" if ":" in end.host else end.host
        url = (
            f"{'amqps' if tls else 'amqp'}://{quote(user, safe='')}:"
            f"{quote(password if password is not None else 'guest', safe='')}"
            f"@{host}:{end.port}/{quote(end.path or '/', safe='')}"
            f"?timeout={max(1, int(timeout + 1))}&heartbeat=0"
        )
        extra: dict[str, Any] = {"server_hostname": s.server_name or end.host} if tls else {}
        conn = aiormq.Connection(url, context=self._ssl if tls else None, **extra)
        try:
            await conn.connect(client_properties={"connection_name": "pudimd probe"})
            outcome.values["CONNECTED"] = True
            props = conn.server_properties
            product, version = props.get("product"), props.get("version")
            if version is not None:
                outcome.values["VERSION"] = " ".join(
                    _text(v) for v in (product, version) if v is not None
                )
            outcome.clock.enter("query")
            await self._round_trip(conn, outcome)
        finally:
            await conn.close()

    async def _round_trip(self, conn: Any, outcome: Outcome) -> None:
        s = self.settings
        channel = await conn.channel()
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        queue = declared.queue
        key = s.routing_key if s.exchange and s.routing_key is not None else queue
        if s.exchange:
            await channel.queue_bind(queue, s.exchange, routing_key=key)
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_message(message: Any) -> None:
            if not received.done():
                received.set_result(bytes(message.body))

        await channel.basic_consume(queue, on_message, no_ack=True)
        body = f"{s.payload} {secrets.token_hex(8)}".encode()
        outcome.waiting = "the message to come back"
        sent = time.perf_counter()
        await channel.basic_publish(body, exchange=s.exchange, routing_key=key)
        got = await received
        outcome.metrics["round_trip_seconds"] = time.perf_counter() - sent
        text = got.decode("utf-8", "replace")
        outcome.values["BODY"] = text
        if got != body:
            raise Failure(f"received {shorten(text)!r} instead of the message sent")
        check_expect(self._expect, text)


@functools.cache
def _quiet_aiormq() -> None:
    logging.getLogger("aiormq.connection").addFilter(_QuietTransportErrors())


def _explain(outcome: Outcome) -> Any:
    def explain(exc: Exception) -> str | None:
        from aiormq import exceptions as e

        if not isinstance(exc, e.AMQPError):
            return None
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError):
            return error_text(cause)
        if isinstance(exc, e.ProbableAuthenticationError | e.AuthenticationError):
            return f"authentication failed: {_reason(exc)}"
        if isinstance(exc, e.IncompatibleProtocolError):
            return "the server closed the connection before speaking AMQP"
        if isinstance(exc, e.InvalidFrameError) and "Connection.OpenOk" in str(exc):
            return "the broker refused to open the vhost (missing, or no access to it)"
        return _reason(exc)

    return explain


def _reason(exc: Exception) -> str:
    """The broker's reply text (``NOT_FOUND - no exchange 'x' in vhost '/'``) when it gave
    one, else the exception's text."""
    for arg in exc.args:
        text = getattr(arg, "reply_text", None)
        if text:
            return _text(text)
    return " ".join(_text(a) for a in exc.args) or type(exc).__name__


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``amqp`` probe."""
    return [AmqpProbe]
