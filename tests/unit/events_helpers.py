"""The daemon running in this process (echo probes, SQLite in a temporary directory) for the
tests of the live events, status and results endpoints."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from pudimd.api.problems import CONTENT_TYPE
from pudimd.daemon import Daemon
from pudimd.plugins import PluginHost
from tests.testplugins import BrokenPlugin, EchoPlugin
from tests.unit import api_harness


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
    async with api_harness.running(path, state, host=host) as api:
        yield Running(api.daemon, api.http, api.headers)
