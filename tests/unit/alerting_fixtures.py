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

import anyio

from pudimd.alerting.config import AlertingBase
from pudimd.alerting.engine import Alerting
from pudimd.alerting.metrics import AlertingMetrics
from pudimd.store import Store
from pudimd.store.alerting import AlertingDB

__all__ = ["migrated_database", "running_engine"]


def migrated_database(directory: Path) -> Path:
    """A new database in ``directory`` with the schema in place."""
    path = directory / "pudimd.db"

    async def migrate() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{path}")
        await store.close()

    anyio.run(migrate)
    return path


@asynccontextmanager
async def running_engine(
    migrated: Path, directory: Path, config: AlertingBase, config_text: str = ""
) -> AsyncIterator[Alerting]:
    """The engine started with ``config`` (no notifier types) and running, on a copy of
    the ``migrated`` database made in ``directory``."""
    for suffix in ("", "-wal", "-shm"):
        source = migrated.with_name(migrated.name + suffix)
        if source.exists():
            shutil.copyfile(source, directory / source.name)
    store = await Store.open(f"sqlite+aiosqlite:///{directory / migrated.name}")
    try:
        alerting = Alerting(AlertingDB(store.engine), {}, AlertingMetrics())
        await alerting.start(config, config_text)
        async with anyio.create_task_group() as tg:
            await tg.start(alerting.run)
            yield alerting
            tg.cancel_scope.cancel()
    finally:
        await store.close()
