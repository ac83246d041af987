"""The ``mqtt`` probe: log in to an MQTT broker, subscribe to a unique topic, publish to it and
wait for the message to come back, measuring the round trip.

Target: ``mqtt://[user[:password]@]host[:port]``, ``mqtts://...`` (TLS, port 8883), or
``host[:port]`` with the settings below (port 1883).  Every check opens a new connection
with a clean session and a unique client id, speaks MQTT 3.1.1 (which MQTT 5 brokers
accept too), subscribes to ``<topic>/<unique id>``, publishes ``payload`` there with
``qos``, waits for the message (and the broker's acknowledgements), and disconnects.

Settings (the block under ``mqtt:`` in a target)::

    username: null       # user; else the URL's; none: anonymous
    password: null       # (or password_file) else the URL's
    topic: pudimd/probe  # topic prefix; a unique level is appended for each check
    payload: pudimd      # message body; a unique token is appended to it
    qos: 1               # 0, 1 or 2: for the subscription and the message
    expect: null         # regex the received payload (BODY) must match
    tls: false           # use TLS (as mqtts:// does)
    verify: true         # verify the server certificate and host name (with TLS)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (if not inside cert_file)
    server_name: null    # TLS SNI and certificate name, instead of the target's host

The client is a small MQTT 3.1.1 implementation of its own, on asyncio streams, so that a
timeout or a cancellation closes the socket at once (aiomqtt connects from a worker thread).

Result: ``message`` names the failure (``connection refused``, ``timeout after 5s during
auth``, ``authentication failed: bad user name or password``, ``the broker refused the
subscription to ...``, ``the broker closed the connection during query``, the TLS error...).

Phases (seconds): ``connect`` (TCP), ``tls``, ``auth`` (CONNECT until CONNACK), ``query``
(subscribe, publish, and receive).

Metrics: ``round_trip_seconds`` (from publishing to receiving the message), ``tls`` (1 or 0).

Values: ``CONNECTED`` (bool), ``BODY`` (the payload received).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import struct
import time
from typing import Any, Literal

from pydantic import Field, field_validator

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

__all__ = ["MqttProbe", "MqttSettings", "pudimd_probe_types"]

_SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, DISCONNECT = 8, 9, 14

_CONNACK_ERRORS = {
    1: "the broker does not speak MQTT 3.1.1",
    2: "the broker rejected the client id",
    3: "the broker says the service is unavailable",
    4: "authentication failed: bad user name or password",
    5: "authentication failed: not authorized",
}


class MqttSettings(ServerSettings):
    """Settings of the ``mqtt`` probe (see the module docstring)."""

    topic: str = Field(
        default="pudimd/probe",
        min_length=1,
        description="Topic prefix; a unique level is appended for each check.",
    )
    payload: str = Field(
        default="pudimd", description="Message body; a unique token is appended to it."
    )
    qos: Literal[0, 1, 2] = Field(
        default=1, description="Quality of service of the subscription and the message."
    )
    server_name: str | None = Field(
        default=None, description="TLS SNI and certificate name, instead of the target's host."
    )

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if "+" in value or "#" in value:
            raise ValueError("the topic must not hold wildcards (+ or #)")
        return value


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    length = len(body)
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind << 4 | flags]) + bytes(encoded) + body


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """One packet: (type, flags, body)."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise Failure("malformed packet from the broker")
    return first >> 4, first & 0x0F, await reader.readexactly(length)


class MqttProbe(DbProbe):
    """Check an MQTT broker; see the module docstring."""

    type = "mqtt"
    Settings = MqttSettings
    PHASES = ("connect", "tls", "auth", "query")
    settings: MqttSettings

    def _explain(self, outcome: Outcome) -> Any:
        return _explain

    async def _run(self, target: str, timeout: float, outcome: Outcome) -> None:
        outcome.metrics["tls"] = 0.0
        end = parse_target(target, _SCHEMES)
        s = self.settings
        writer: asyncio.StreamWriter | None = None
        raw: asyncio.WriteTransport | None = None
        graceful = False
        try:
            reader, writer = await asyncio.open_connection(end.host, end.port)
            raw = writer.transport
            if end.tls or s.tls:
                if self._ssl is None:
                    self._ssl = s.ssl_context()
                outcome.clock.enter("tls")
                await writer.start_tls(self._ssl, server_hostname=s.server_name or end.host)
                outcome.metrics["tls"] = 1.0
            outcome.clock.enter("auth")
            token = secrets.token_hex(8)
            user = s.username or end.username
            password = s.password.get_secret_value() if s.password else end.password
            writer.write(_connect_packet(f"pudimd-{token}", user, password))
            kind, _, body = await _read_packet(reader)
            if kind != CONNACK or len(body) < 2:
                raise Failure(f"expected CONNACK from the broker, got packet type {kind}")
            if body[1]:
                raise Failure(_CONNACK_ERRORS.get(body[1], f"CONNACK return code {body[1]}"))
            outcome.values["CONNECTED"] = True
            graceful = True
            outcome.clock.enter("query")
            await self._round_trip(reader, writer, outcome, token)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            graceful = False
            if outcome.clock.phase == "tls":
                raise Failure(
                    "TLS: the server closed the connection during the handshake"
                    " (is TLS enabled on this port?)"
                ) from None
            raise Failure(
                f"the broker closed the connection during {outcome.clock.phase}"
            ) from None
        finally:
            if writer is not None:
                if graceful:  # say goodbye, so the broker logs no lost client
                    writer.write(_packet(DISCONNECT, 0, b""))
                # A graceful close of a TLS stream would leave its socket open until the
                # peer answers close_notify; abort both layers instead (the DISCONNECT has
                # already been handed to the socket).
                writer.transport.abort()
                if raw is not None and not raw.is_closing():
                    raw.abort()

    async def _round_trip(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        outcome: Outcome,
        token: str,
    ) -> None:
        s = self.settings
        topic = f"{s.topic.rstrip('/')}/{token}".encode()
        subscribe = struct.pack("!H", 1) + _string(topic) + bytes([s.qos])
        writer.write(_packet(SUBSCRIBE, 0b0010, subscribe))
        kind, _, body = await _read_packet(reader)
        if kind != SUBACK or len(body) < 3:
            raise Failure(f"expected SUBACK from the broker, got packet type {kind}")
        if body[2] == 0x80:
            raise Failure(f"the broker refused the subscription to {topic.decode()}")
        payload = f"{s.payload} {token}".encode()
        publish = _string(topic) + (struct.pack("!H", 2) if s.qos else b"") + payload
        outcome.waiting = "the message to come back"
        sent = time.perf_counter()
        writer.write(_packet(PUBLISH, s.qos << 1, publish))
        acked = s.qos == 0
        got: bytes | None = None
        while got is None or not acked:
            kind, flags, body = await _read_packet(reader)
            if kind == PUBLISH:
                qos = (flags >> 1) & 3
                size = struct.unpack("!H", body[:2])[0]
                start = 2 + size + (2 if qos else 0)
                if qos == 1:
                    writer.write(_packet(PUBACK, 0, body[2 + size : start]))
                elif qos == 2:
                    writer.write(_packet(PUBREC, 0, body[2 + size : start]))
                if body[2 : 2 + size] == topic and got is None:
                    got = body[start:]
                    outcome.metrics["round_trip_seconds"] = time.perf_counter() - sent
            elif kind == PUBREL:
                writer.write(_packet(PUBCOMP, 0, body[:2]))
            elif kind == PUBREC:
                writer.write(_packet(PUBREL, 0b0010, body[:2]))
            elif kind in (PUBACK, PUBCOMP):
                acked = True
        text = got.decode("utf-8", "replace")
        outcome.values["BODY"] = text
        if got != payload:
            raise Failure(f"received {shorten(text)!r} instead of the message sent")
        check_expect(self._expect, text)


def _connect_packet(client_id: str, user: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session
    payload = _string(client_id)
    if user is not None:
        flags |= 0x80
        payload += _string(user)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
    header = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60)
    return _packet(CONNECT, 0, header + payload)


def _explain(exc: Exception) -> str | None:
    if isinstance(exc, ssl.SSLError):
        return error_text(exc)
    return None


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``mqtt`` probe."""
    return [MqttProbe]
