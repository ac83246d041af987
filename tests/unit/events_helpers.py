"""The daemon running in this process (echo probes, SQLite in a temporary directory) for the
tests of the live events, status and results endpoints."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from pudimd.api.problems import CONTENT_TYPE
from pudimd.daemon import Daemon
from pudimd.plugins import PluginHost
from pudimd.sdnotify import Notifier
from tests.auth_helpers import auth_headers
from tests.testplugins import BrokenPlugin, EchoPlugin


class Running:
    """A running daemon, an HTTP session and an admin token's headers."""

    def __init__(self, daemon: Daemon, http: aiohttp.ClientSession, headers: dict[str, str]):
        self.daemon = daemon
        self.http = http
        self.headers = headers
        self.base = f"http://127.0.0.1:{daemon.port}/api/v1"

    async def get(
        self, path: str, status: int = 200, params: dict[str, str] | None = None, **more: str
    ) -> Any:
        """GET ``path`` (under /api/v1) with ``params`` and ``more``: its JSON answer."""
        query = {**(params or {}), **more}
        async with self.http.get(self.base + path, params=query, headers=self.headers) as resp:
            assert resp.status == status, await resp.text()
            if status >= 400:
                assert resp.content_type == CONTENT_TYPE
            return await resp.json(content_type=None)


@asynccontextmanager
async def running(directory: Path, migrated: Path, config: str) -> AsyncIterator[Running]:
    """Run the daemon on ``config`` (echo and broken probes) until the block ends."""
    path = directory / "pudimd.yaml"
    path.write_text(config)
    state = directory / "state"
    state.mkdir()
    shutil.copyfile(migrated, state / "pudimd.db")
    host = PluginHost()
    host.register(EchoPlugin(), "echo")
    host.register(BrokenPlugin(), "broken")
    daemon = Daemon(path, listen="127.0.0.1:0", state_dir=state, host=host, notifier=Notifier(""))
    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as http:
        tg.start_soon(daemon.run)
        with anyio.fail_after(10):
            while not daemon.ready:
                await anyio.sleep(0.02)
        try:
            yield Running(daemon, http, await auth_headers(daemon))
        finally:
            daemon.stop()
