"""The daemon in this process, with test plugins: hooks fire, a broken plugin is isolated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from pudimd.daemon import Daemon
from pudimd.hookspecs import hookimpl
from pudimd.plugins import PluginHost
from pudimd.results import ProbeResult
from pudimd.sdnotify import Notifier
from tests.testplugins import BrokenPlugin, EchoPlugin

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.results: list[tuple[str, bool]] = []

    @hookimpl
    async def pudimd_startup(self, daemon: Daemon) -> None:
        assert daemon.scheduler is not None and daemon.scheduler.jobs
        self.events.append("startup")

    @hookimpl
    def pudimd_result(self, job: Any, result: ProbeResult) -> None:
        self.results.append((job.name, result.success))

    @hookimpl
    def pudimd_shutdown(self, daemon: Daemon) -> Any:
        async def later() -> None:
            self.events.append("shutdown")

        return later()


class RaisingHook:
    @hookimpl
    def pudimd_result(self, job: Any, result: ProbeResult) -> None:
        raise RuntimeError("sink down")


async def test_hooks_fire_and_broken_plugins_do_not_stop_the_daemon(tmp_path: Path) -> None:
    config = tmp_path / "pudimd.yaml"
    config.write_text(
        "targets:\n"
        "  - {name: ok, probe: echo, target: x, interval: 100ms}\n"
        "  - {name: boom, probe: broken, target: y, interval: 100ms}\n"
        "  - {name: hang, probe: broken, target: z, interval: 300ms, timeout: 100ms, broken: {mode: hang}}\n"
    )
    host = PluginHost()
    recorder = Recorder()
    for plugin, name in (
        (EchoPlugin(), "echo"),
        (BrokenPlugin(), "broken"),
        (recorder, "recorder"),
        (RaisingHook(), "sink"),
    ):
        host.register(plugin, name)
    daemon = Daemon(
        config, listen="127.0.0.1:0", state_dir=tmp_path / "state", host=host, notifier=Notifier("")
    )

    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        with anyio.fail_after(10):
            while ("hang", False) not in recorder.results or len(recorder.results) < 8:
                await anyio.sleep(0.05)
        daemon.stop()

    assert recorder.events == ["startup", "shutdown"]
    assert ("ok", True) in recorder.results and ("boom", False) in recorder.results
    text = daemon.metrics.render().decode()
    assert 'pudimd_plugin_errors_total{hook="check",plugin="broken"}' in text
    assert 'pudimd_plugin_errors_total{hook="pudimd_result",plugin="sink"}' in text
    assert 'pudimd_target_up{target="ok",probe="echo"} 1.0' in text
    assert 'pudimd_target_up{target="hang",probe="broken"} 0.0' in text
    assert daemon.store is not None
    stored = await _results(daemon, tmp_path)
    assert {"ok", "boom"} <= stored, "pending results were flushed at stop"


async def _results(daemon: Daemon, tmp_path: Path) -> set[str]:
    from pudimd.store import Store

    store = await Store.open(f"sqlite:///{tmp_path / 'state' / 'pudimd.db'}")
    try:
        return {r.target for name in ("ok", "boom") for r in await store.results(name)}
    finally:
        await store.close()


class BodyRecorder:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    @hookimpl
    def pudimd_result(self, job: Any, result: ProbeResult) -> None:
        self.sizes.append(len(result.values["BODY"]))


@pytest.mark.parametrize("with_hook", [True, False])
async def test_live_state_keeps_only_the_start_of_a_big_body(tmp_path: Path, with_hook: bool) -> None:
    config = tmp_path / "pudimd.yaml"
    config.write_text(
        "targets:\n  - {name: big, probe: echo, target: x, interval: 100ms, echo: {body_bytes: 100000}}\n"
    )
    host = PluginHost()
    host.register(EchoPlugin(), "echo")
    recorder = BodyRecorder()
    if with_hook:
        host.register(recorder, "recorder")
    daemon = Daemon(
        config, listen="127.0.0.1:0", state_dir=tmp_path / "state", host=host, notifier=Notifier("")
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        with anyio.fail_after(10):
            while daemon.scheduler is None or "big" not in daemon.scheduler.jobs or daemon.scheduler.jobs["big"].state.checks < 2:
                await anyio.sleep(0.05)
        daemon.stop()
    # after the stop, every hook task has finished (or was cancelled: trimmed all the same)
    last = daemon.scheduler.jobs["big"].state.last
    assert last is not None and len(last.values["BODY"]) == 1024
    if with_hook:
        assert recorder.sizes and set(recorder.sizes) == {100000}, "hooks see the whole body"
