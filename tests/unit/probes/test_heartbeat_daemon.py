"""The ``heartbeat`` probe inside a real daemon (in this process): pings over HTTP keep its
target up, silence takes it down, and the ping history survives a restart."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import pudimd_plugins.probes.heartbeat as heartbeat
import pytest

from pudimd.daemon import Daemon
from pudimd.plugins import PluginHost
from pudimd.results import ProbeResult
from pudimd.sdnotify import Notifier

pytestmark = pytest.mark.anyio


def write_config(path: Path, key: str) -> None:
    path.write_text(
        "targets:\n"
        "  - name: backup\n"
        "    probe: heartbeat\n"
        "    target: nightly backup\n"
        "    interval: 100ms\n"
        f"    heartbeat: {{key: {key}, period: 1s, grace: 500ms}}\n"
    )


@asynccontextmanager
async def running(config: Path, state: Path) -> AsyncIterator[Daemon]:
    host = PluginHost()
    host.register(heartbeat, "heartbeat")
    daemon = Daemon(config, listen="127.0.0.1:0", state_dir=state, host=host, notifier=Notifier(""))
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        with anyio.fail_after(10):
            while not daemon.ready:
                await anyio.sleep(0.02)
        try:
            yield daemon
        finally:
            daemon.stop()


def last(daemon: Daemon) -> ProbeResult | None:
    assert daemon.scheduler is not None
    return daemon.scheduler.jobs["backup"].state.last


async def wait_for(daemon: Daemon, success: bool, within: float = 5.0) -> ProbeResult:
    with anyio.fail_after(within):
        while True:
            result = last(daemon)
            if result is not None and result.success is success:
                return result
            await anyio.sleep(0.05)


async def test_pings_keep_the_target_up_and_silence_takes_it_down(tmp_path: Path) -> None:
    key = secrets.token_hex(16)
    config = tmp_path / "pudimd.yaml"
    write_config(config, key)
    async with (
        running(config, tmp_path / "state") as daemon,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(f"{base}/ping/{secrets.token_hex(16)}") as resp:
            assert resp.status == 404
        assert (await wait_for(daemon, True)).message == "waiting for first ping"
        async with http.post(f"{base}/ping/{key}/start") as resp:
            assert resp.status == 200
        async with http.post(f"{base}/ping/{key}/0", data="42 files\n") as resp:
            assert resp.status == 200 and await resp.text() == "OK\n"
        with anyio.fail_after(5):
            while (result := last(daemon)) is None or result.metrics.get("pings_total") != 2:
                await anyio.sleep(0.05)
        assert result.success and result.status == "up"
        assert result.values["BODY"] == "42 files\n" and result.values["EXIT_CODE"] == 0
        assert result.metrics["run_duration_seconds"] >= 0
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert 'pudimd_target_up{target="backup",probe="heartbeat"} 1.0' in text

        # no more pings: down after period + grace
        result = await wait_for(daemon, False)
        assert re.fullmatch(r"no ping for \ds \(expected every 1s \+ 500ms grace\)", result.message)
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert 'pudimd_target_up{target="backup",probe="heartbeat"} 0.0' in text
        async with http.get(f"{base}/ping/{key}/fail") as resp:
            assert resp.status == 200

    saved = json.loads((tmp_path / "state" / heartbeat.STATE_FILE).read_text())
    assert saved["beats"][heartbeat.key_id(key)]["pings"] == 3
    assert key not in json.dumps(saved), "the key itself is never written"
    assert heartbeat.REGISTRY.active(heartbeat.key_id(key)) is None, "closed with its target"

    # a restart loads the history: the failure reported before the stop is still there
    async with running(config, tmp_path / "state") as daemon:
        result = await wait_for(daemon, False)
        assert result.metrics["pings_total"] == 3
        assert result.message == "last ping reported failure"
        assert not (tmp_path / "state" / heartbeat.STATE_FILE).exists(), (
            "taken at start: a crash must not leave an old history behind"
        )


async def test_reload_keeping_the_key_keeps_the_pings(tmp_path: Path) -> None:
    key = secrets.token_hex(16)
    config = tmp_path / "pudimd.yaml"
    write_config(config, key)
    async with (
        running(config, tmp_path / "state") as daemon,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(f"{base}/ping/{key}") as resp:
            assert resp.status == 200
        config.write_text(config.read_text().replace("period: 1s", "period: 1h"))
        assert await daemon.reload() is None
        reloaded = time.time()
        with anyio.fail_after(5):
            while (result := last(daemon)) is None or result.timestamp < reloaded:
                await anyio.sleep(0.05)
        assert result.metrics["pings_total"] == 1

        new_key = secrets.token_hex(16)
        config.write_text(config.read_text().replace(key, new_key))
        assert await daemon.reload() is None
        await anyio.sleep(0.1)  # the retired probe is closed in a task of its own
        async with http.get(f"{base}/ping/{key}") as resp:
            assert resp.status == 404, "the old key is forgotten"
        async with http.get(f"{base}/ping/{new_key}") as resp:
            assert resp.status == 200
