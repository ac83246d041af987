"""``/api/v1/backups`` against the daemon running in this process (echo probes, SQLite in a
temporary directory), over real HTTP, with and without the daemon's own backup service."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import pytest

from pudimd.backups.archive import open_archive
from pudimd.backups.service import BackupService
from pudimd.daemon import Daemon
from pudimd.plugins import PluginHost
from pudimd.sdnotify import Notifier
from tests.auth_helpers import auth_headers
from tests.testplugins import EchoPlugin

pytestmark = pytest.mark.anyio

CONFIG = (
    "targets:\n  - {name: web, probe: echo, target: a.example, interval: 1h}\n"
    "backups: {dir: archives, keep: 2}\n"
)


@asynccontextmanager
async def running(tmp_path: Path, migrated: Path, text: str = CONFIG) -> AsyncIterator[Daemon]:
    config = tmp_path / "pudimd.yaml"
    config.write_text(text)
    (tmp_path / "state").mkdir()
    shutil.copyfile(migrated, tmp_path / "state" / "pudimd.db")
    host = PluginHost()
    host.register(EchoPlugin(), "echo")
    daemon = Daemon(
        config, listen="127.0.0.1:0", state_dir=tmp_path / "state", host=host, notifier=Notifier("")
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        with anyio.fail_after(10):
            while not daemon.ready:
                await anyio.sleep(0.02)
        try:
            yield daemon
        finally:
            daemon.stop()


@pytest.mark.parametrize("wired", [False, True], ids=["fallback", "daemon-service"])
async def test_list_and_make_backups_over_the_api(
    tmp_path: Path, migrated: Path, wired: bool
) -> None:
    async with running(tmp_path, migrated) as daemon, aiohttp.ClientSession() as http:
        if wired and getattr(daemon, "backups", None) is None:
            # what the daemon does once pudimd/daemon.py runs the service: its own, with
            # its series on the daemon's registry
            object.__setattr__(daemon, "backups", BackupService.for_daemon(daemon))
        base = f"http://127.0.0.1:{daemon.port}/api/v1/backups"
        headers = await auth_headers(daemon)
        async with http.get(base, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"directory": str(tmp_path / "archives"), "backups": []}
        made = []
        for _ in range(3):
            async with http.post(base, headers=headers) as resp:
                assert resp.status == 201, await resp.text()
                made.append(await resp.json())
        first = made[0]
        assert first["name"].startswith("pudimd-") and first["size"] > 0
        assert first["path"] == str(tmp_path / "archives" / first["name"])
        assert first["deleted"] == [] and made[2]["deleted"] == [first["name"]], "keep: 2"
        async with http.get(base, headers=headers) as resp:
            listed = (await resp.json())["backups"]
        assert [b["name"] for b in listed] == [made[2]["name"], made[1]["name"]]
        with open_archive(Path(made[2]["path"])) as archive:
            assert archive.manifest.database is not None
            assert archive.manifest.database["dialect"] == "sqlite"
        if wired:
            async with http.get(f"http://127.0.0.1:{daemon.port}/metrics") as resp:
                text = await resp.text()
            assert f"pudimd_backup_size_bytes {float(made[2]['size'])}" in text
            assert "pudimd_backup_failures_total 0.0" in text


async def test_the_daemon_backs_up_on_its_schedule_and_a_reload_stops_it(
    tmp_path: Path, migrated: Path
) -> None:
    every_second = CONFIG.replace("keep: 2}", "keep: 2, schedule: '* * * * * *'}")
    archives = tmp_path / "archives"
    async with running(tmp_path, migrated, every_second) as daemon:
        assert isinstance(getattr(daemon, "backups", None), BackupService)
        with anyio.fail_after(15):
            while len(list(archives.glob("pudimd-*.tar.gz"))) < 2:
                await anyio.sleep(0.1)
        daemon.config_path.write_text(CONFIG)
        assert await daemon.reload() is None
        service = getattr(daemon, "backups", None)
        assert isinstance(service, BackupService) and service.config.backups.schedule is None
        text = daemon.metrics.registry.get_sample_value("pudimd_backup_failures_total")
        assert text == 0
