"""The ``amqp`` probe against the RabbitMQ broker on this machine (127.0.0.1:5672,
guest/guest)."""

from __future__ import annotations

from typing import Any

import pytest
from pudimd_plugins.probes.amqp import AmqpProbe, pudimd_probe_types

from pudimd.results import ProbeResult
from tests.helpers import free_port, run_check
from tests.integration.servers import require_service, silent_server

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

URL = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture(autouse=True)
def _server() -> None:
    require_service("RabbitMQ", 5672)


async def check(target: str, within: float = 5.0, **settings: Any) -> ProbeResult:
    return await run_check(AmqpProbe, target, within, **settings)


def test_plugin_registers_the_amqp_type() -> None:
    assert pudimd_probe_types() == [AmqpProbe]


async def test_message_round_trip_through_a_temporary_queue() -> None:
    result = await check(URL, payload="hello", expect=r"^hello [0-9a-f]{16}$")
    assert result.success, result.message
    assert result.values["CONNECTED"] is True
    assert result.values["BODY"].startswith("hello ")
    assert result.values["VERSION"].startswith("RabbitMQ ")
    assert 0 < result.metrics["round_trip_seconds"] < 5
    assert set(result.phases) == {"connect", "query"}


async def test_round_trip_through_an_exchange_with_a_routing_key() -> None:
    result = await check("127.0.0.1", exchange="amq.topic", routing_key="pudimd.probe")
    assert result.success, result.message
    assert result.metrics["round_trip_seconds"] > 0


async def test_wrong_answer_fails_showing_it() -> None:
    result = await check(URL, payload="degraded", expect="^ok")
    assert not result.success
    assert result.message.startswith("answer 'degraded ")
    assert result.message.endswith("does not match /^ok/")


async def test_missing_exchange_fails_with_the_broker_reason() -> None:
    result = await check(URL, exchange="no_such_exchange_pudimd")
    assert not result.success
    assert result.message == "NOT_FOUND - no exchange 'no_such_exchange_pudimd' in vhost '/'"


async def test_wrong_password_fails_authentication() -> None:
    result = await check("amqp://guest:wrong@127.0.0.1")
    assert not result.success
    assert result.message.startswith("authentication failed: ACCESS_REFUSED")
    assert result.values["CONNECTED"] is False


async def test_missing_vhost_fails() -> None:
    result = await check("amqp://guest:guest@127.0.0.1/no_such_vhost_pudimd")
    assert not result.success
    assert "vhost" in result.message


async def test_refused_port_fails_with_reason() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.message == "connection refused"


async def test_silent_server_times_out_during_connect() -> None:
    async with silent_server() as port:
        result = await check(f"127.0.0.1:{port}", within=0.5)
    assert not result.success
    assert result.message == "timeout after 0.5s during connect"


async def test_tls_against_a_plain_port_fails_clearly() -> None:
    result = await check("amqps://guest:guest@127.0.0.1:5672")
    assert not result.success
    assert result.message.startswith("TLS: ")
