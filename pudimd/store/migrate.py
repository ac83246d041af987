"""Apply the store's Alembic migrations programmatically (no ``alembic.ini``).

The revisions live in ``pudimd/store/migrations/versions``; to add one, copy
``migrations/script.py.mako`` by hand into ``versions/NNNN_what.py`` (revision ids are
four-digit numbers) and change :mod:`pudimd.store.tables` to match: a test compares the
migrated schema with the tables.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from sqlalchemy import inspect, text

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

    from pudimd.store.threaded import AsyncEngine

__all__ = ["MIGRATIONS", "alembic_config", "current_revision", "head_revision", "upgrade"]

_IN_PROCESS = threading.Lock()  # polled, never waited on: usable from any event loop

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
"""The Alembic script directory shipped in the package."""


_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")


def head_revision() -> str:
    """The newest revision id, from the file names (``NNNN_what.py``)."""
    ids = [
        m.group(1)
        for p in (MIGRATIONS / "versions").iterdir()
        if (m := _REVISION_FILE.match(p.name))
    ]
    return max(ids)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None when it has never been migrated.  A
    database that cannot be reached raises."""
    async with engine.connect() as conn:
        if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
            return None
        revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        return None if revision is None else str(revision)


def alembic_config() -> Config:
    """An Alembic config pointing at :data:`MIGRATIONS`, built in code."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head", *, url: str | None = None) -> None:
    """Migrate the database behind ``engine`` to ``revision``, in one transaction where
    the database allows (PostgreSQL).

    A database already at the head revision is left alone.  Otherwise, given the ``url`` of
    a database another process can reach, the migration runs in a child process: Alembic
    (with Mako and Pygments) costs ~12 MB that would stay in the daemon for its lifetime."""
    if revision == "head":
        head = await anyio.to_thread.run_sync(head_revision)
        if await current_revision(engine) == head:
            return
    if url is not None:
        await _upgrade_in_child(url, revision)
        return
    config = alembic_config()
    # Reading the revision files is file I/O: do it off the event loop.
    script = await anyio.to_thread.run_sync(_load_scripts, config)
    # Alembic's `context` and `op` are process-wide proxies: two migrations interleaving
    # on one event loop would drive each other's connection.  Other processes are kept
    # out by env.py (an advisory lock on PostgreSQL).
    while not _IN_PROCESS.acquire(blocking=False):  # noqa: ASYNC110 (see _IN_PROCESS)
        await anyio.sleep(0.01)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, config, script, revision)
    finally:
        _IN_PROCESS.release()


def _load_scripts(config: Config) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(config)
    script.get_revisions("heads")  # loads every revision module now
    return script


def _upgrade(
    connection: Connection, config: Config, script: ScriptDirectory, revision: str
) -> None:
    from alembic.runtime.environment import EnvironmentContext

    config.attributes["connection"] = connection

    def steps(rev: Any, context: Any) -> Any:
        return script._upgrade_revs(revision, rev)

    with EnvironmentContext(config, script, fn=steps, destination_rev=revision):
        script.run_env()


async def _upgrade_in_child(url: str, revision: str) -> None:
    """Run :func:`upgrade` in ``python -m pudimd.store.migrate`` (the URL, which may hold a
    password, goes through stdin, not the command line)."""
    result = await anyio.run_process(
        [sys.executable, "-m", "pudimd.store.migrate", revision],
        input=url.encode(),
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"migration failed: {lines[-1] if lines else result.returncode}")



async def _child(revision: str) -> None:
    from pudimd.store.engine import create_engine_for
    from pudimd.store.errors import describe

    url = sys.stdin.read().strip()
    try:
        engine = await create_engine_for(url)
        try:
            await upgrade(engine, revision)
        finally:
            await engine.dispose()
    except Exception as exc:
        # The parent reports the last line: make it the reason, on one line.
        print(describe(exc, url), file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    anyio.run(_child, sys.argv[1] if len(sys.argv) > 1 else "head")
