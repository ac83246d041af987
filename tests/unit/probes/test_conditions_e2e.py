"""Conditions end to end: the http and tcp probes' ``values`` against real loopback servers,
and a scheduled http target whose conditions hold, fail and degrade it."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from pudimd_plugins.probes import http as http_plugin
from pudimd_plugins.probes.http import HttpProbe, HttpSettings
from pudimd_plugins.probes.tcp import TcpProbe, TcpSettings

from pudimd.config import load_config_text, schema_for
from pudimd.config.models import SchedulerConfig
from pudimd.plugins import PluginHost
from pudimd.scheduler import Scheduler
from tests.helpers import free_port

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def json_server(
    state: dict[str, Any], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """An aiohttp app answering ``/health`` with ``state`` as JSON."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response(state)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def tls_server(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


async def test_http_fills_values_for_conditions(ca: trustme.CA, ca_file: Path) -> None:
    probe = HttpProbe(HttpSettings(ca_file=ca_file))
    async with json_server({"data": {"status": "UP"}}, tls_server(ca)) as port:
        result = await probe.check(f"https://127.0.0.1:{port}/health", 5.0)
    await probe.aclose()
    assert result.success, result.message
    values = result.values
    assert isinstance(values["BODY"], bytes)
    assert json.loads(values["BODY"]) == {"data": {"status": "UP"}}
    assert values["CONNECTED"] is True and values["IP"] == "127.0.0.1"
    assert values["HEADERS"]["content-type"].startswith("application/json")
    left = values["CERTIFICATE_EXPIRATION"]
    assert abs(left - (result.metrics["cert_expiry_timestamp"] - time.time())) < 5
    assert left > 86400 * 365, "trustme certificates last for centuries"


async def test_http_refused_is_not_connected() -> None:
    probe = HttpProbe(HttpSettings())
    result = await probe.check(f"http://127.0.0.1:{free_port()}/", 2.0)
    assert not result.success
    assert result.values == {"CONNECTED": False}


async def test_tcp_fills_values_for_conditions(ca: trustme.CA, ca_file: Path) -> None:
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner, "127.0.0.1", 0, ssl=tls_server(ca))
    port = server.sockets[0].getsockname()[1]
    try:
        probe = TcpProbe(TcpSettings(tls=True, ca_file=ca_file, expect="ready"))
        result = await probe.check(f"127.0.0.1:{port}", 5.0)
    finally:
        server.close()
        await server.wait_closed()
    assert result.success, result.message
    assert result.values["CONNECTED"] is True and result.values["IP"] == "127.0.0.1"
    assert result.values["BODY"] == b"220 ready\r\n"
    assert result.values["CERTIFICATE_EXPIRATION"] > 86400 * 365


async def test_tcp_refused_is_not_connected() -> None:
    result = await TcpProbe(TcpSettings()).check(f"127.0.0.1:{free_port()}", 2.0)
    assert not result.success and result.values == {"CONNECTED": False}


async def test_scheduled_http_target_conditions_hold_then_fail_then_degrade() -> None:
    host = PluginHost()
    host.register(http_plugin, "http")
    scheduler = Scheduler(host, SchedulerConfig())
    state: dict[str, Any] = {"data": {"status": "UP", "items": [1, 2]}}
    async with json_server(state) as port:
        text = f"""
targets:
  - name: api
    probe: http
    target: http://127.0.0.1:{port}/health
    conditions:
      - "[STATUS] == 200"
      - "[BODY].data.status == UP"
      - "len([BODY].data.items) > 0"
      - "[CONNECTED] == true"
      - "[IP] == 127.0.0.1"
    degraded_if:
      - "[BODY].data.items[0] == 0"
"""
        (spec,) = load_config_text(text, schema_for(host), env={}).targets
        scheduler.apply([spec])
        job = scheduler.jobs["api"]
        try:
            healthy = await scheduler.run_once(job)
            state["data"]["status"] = "DOWN"
            down = await scheduler.run_once(job)
            state["data"] = {"status": "UP", "items": [0]}
            degraded = await scheduler.run_once(job)
        finally:
            await job.probe.aclose()
    assert (healthy.success, healthy.degraded, healthy.condition) == (True, False, None)
    assert not down.success
    assert down.message == "condition [BODY].data.status (DOWN) == UP failed"
    assert down.condition == "[BODY].data.status == UP"
    assert degraded.success and degraded.degraded
    assert degraded.message == "degraded: [BODY].data.items[0] (0) == 0"
    assert job.state.health == "degraded"
    assert (job.state.checks, job.state.failures, job.state.degraded) == (3, 1, 1)
