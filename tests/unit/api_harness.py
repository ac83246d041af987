"""A daemon running in this process (echo probes, SQLite) and an authenticated HTTP
client of its ``/api/v1``, for the API tests."""

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
from tests.testplugins import EchoPlugin


class Api:
    def __init__(
        self, daemon: Daemon, http: aiohttp.ClientSession, headers: dict[str, str]
    ) -> None:
        self.daemon = daemon
        self.http = http
        self.headers = headers
        self.base = f"http://127.0.0.1:{daemon.port}/api/v1"

    async def call(
        self,
        method: str,
        path: str,
        status: int = 200,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[Any, aiohttp.ClientResponse]:
        async with self.http.request(
            method, self.base + path, headers={**self.headers, **(headers or {})}, **kwargs
        ) as resp:
            text = await resp.text()
            assert resp.status == status, text[:500]
            if status >= 400:
                assert resp.content_type == CONTENT_TYPE, resp.content_type
            if resp.content_type in ("application/json", CONTENT_TYPE):
                return await resp.json(content_type=None), resp
            return text, resp

    def file(self) -> str:
        return self.daemon.config_path.read_text()

    def jobs(self) -> set[str]:
        assert self.daemon.scheduler is not None
        return set(self.daemon.scheduler.jobs)


@asynccontextmanager
async def running(
    config: Path, state: Path, *, plugins: bool = False, host: PluginHost | None = None
) -> AsyncIterator[Api]:
    """The daemon on ``config``; with ``plugins``, the installed plugins too (notifiers).
    Its plugins are the echo probe's, or those of ``host`` when given."""
    if host is None:
        host = PluginHost()
        if plugins:
            host.load_entry_points()
        host.register(EchoPlugin(), "echo")
    daemon = Daemon(config, listen="127.0.0.1:0", state_dir=state, host=host, notifier=Notifier(""))
    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as http:
        tg.start_soon(daemon.run)
        with anyio.fail_after(10):
            while not daemon.ready:
                await anyio.sleep(0.02)
        try:
            yield Api(daemon, http, await auth_headers(daemon))
        finally:
            daemon.stop()


@asynccontextmanager
async def served(
    directory: Path, migrated: Path, config_text: str, *, plugins: bool = False
) -> AsyncIterator[Api]:
    """The daemon on ``config_text`` written to ``directory/pudimd.yaml``, its state a
    copy of the ``migrated`` database (see :func:`running`)."""
    config = directory / "pudimd.yaml"
    config.write_text(config_text)
    state = directory / "state"
    state.mkdir()
    shutil.copyfile(migrated, state / "pudimd.db")
    async with running(config, state, plugins=plugins) as api:
        yield api
