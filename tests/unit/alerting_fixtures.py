"""The real alerting engine on a real SQLite database, for the tests that serve an API in
front of it.

Migrating a database takes over a second, so a module makes one with
:func:`migrated_database` (in a module-scoped fixture) and each test runs
:func:`running_engine` on its own copy of it."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from aiohttp import web

from pudimd.alerting.config import AlertingBase
from pudimd.alerting.engine import Alerting
from pudimd.alerting.metrics import AlertingMetrics
from pudimd.store import Store
from pudimd.store.alerting import AlertingDB
from tests.helpers import free_port

__all__ = ["Collector", "collector", "migrated_database", "running_engine"]


def migrated_database(directory: Path) -> Path:
    """A new database in ``directory`` with the schema in place."""
    path = directory / "pudimd.db"

    async def migrate() -> None:
        store = await Store.open(f"sqlite:///{path}")
        await store.close()

    anyio.run(migrate)
    return path


@asynccontextmanager
async def running_engine(
    migrated: Path,
    directory: Path,
    config: AlertingBase,
    config_text: str = "",
    notifier_types: dict[str, type[Any]] | None = None,
) -> AsyncIterator[Alerting]:
    """The engine started with ``config`` (and ``notifier_types``, none by default) and
    running, on a copy of the ``migrated`` database made in ``directory``."""
    for suffix in ("", "-wal", "-shm"):
        source = migrated.with_name(migrated.name + suffix)
        if source.exists():
            shutil.copyfile(source, directory / source.name)
    store = await Store.open(f"sqlite:///{directory / migrated.name}")
    try:
        alerting = Alerting(AlertingDB(store.engine), notifier_types or {}, AlertingMetrics())
        await alerting.start(config, config_text)
        async with anyio.create_task_group() as tg:
            await tg.start(alerting.run)
            yield alerting
            tg.cancel_scope.cancel()
    finally:
        for notifier in alerting.notifiers():
            await notifier.aclose()
        alerting.db.close()
        await store.close()


class Collector:
    """An HTTP receiver recording webhook payloads; ``status`` is what it answers."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.status = 200
        self.port = free_port()
        self.arrived = anyio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if self.status != 200:
            return web.Response(status=self.status, text="down")
        self.payloads.append(await request.json())
        self.keys.append(request.headers["X-Pudimd-Idempotency-Key"])
        self.arrived.set()
        return web.Response(text="ok")

    async def wait(self, count: int, within: float = 5.0) -> None:
        with anyio.fail_after(within):
            while len(self.payloads) < count:
                self.arrived = anyio.Event()
                await self.arrived.wait()


@asynccontextmanager
async def collector() -> AsyncIterator[Collector]:
    c = Collector()
    app = web.Application()
    app.router.add_post("/hook", c.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", c.port).start()
    try:
        yield c
    finally:
        await runner.cleanup()
