"""Backup and restore of a PostgreSQL state database (pg_dump / pg_restore) against the real
server on this machine (127.0.0.1:5432, trust auth), in a database made for the test."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from pudimd.backups.archive import open_archive
from pudimd.backups.backup import BackupPlan, make_backup
from pudimd.backups.database import DatabaseError
from pudimd.backups.restore import restore_archive
from pudimd.config import ConfigBase
from pudimd.store import Store
from pudimd.store.migrate import head_revision
from pudimd.store.versions import Change, list_versions, record_version
from tests.helpers import missing
from tests.integration.postgres import SERVER, scratch_database

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    for tool in ("pg_dump", "pg_restore", "psql"):
        if shutil.which(tool) is None:
            missing(f"{tool} (Debian's postgresql-client)")
    async with scratch_database("pudimd_backup") as url:
        yield url


def _unused_validate(path: Path) -> ConfigBase:
    raise AssertionError("a --state-only restore validates no config")


async def test_postgres_backup_and_restore_bring_the_rows_back(pg_url: str, tmp_path: Path) -> None:
    config = tmp_path / "pudimd.yaml"
    config.write_text(f"storage: {{url: '{pg_url}'}}\n")
    store = await Store.open(pg_url)
    try:
        for n in range(3):
            await record_version(store.engine, f"v{n}\n", Change("file"))
        plan = BackupPlan(config_path=config, directory=tmp_path / "backups", store_url=pg_url)
        result = await anyio.to_thread.run_sync(make_backup, plan)
        with open_archive(result.archive.path) as archive:
            assert archive.manifest.database == {
                "dialect": "postgresql",
                "revision": head_revision(),
                "member": "state/pudimd.pgdump",
            }
        assert result.archive.path.stat().st_mode & 0o777 == 0o600
        await record_version(store.engine, "after the backup\n", Change("file"))
        assert len(await list_versions(store.engine)) == 4
    finally:
        await store.close()

    report = await anyio.to_thread.run_sync(
        lambda: restore_archive(
            result.archive.path,
            config_path=config,
            validate=_unused_validate,
            store_url=lambda restored: pg_url,
            restore_config=False,
        )
    )
    assert report.database is not None and report.aside is None and report.written == []
    store = await Store.open(pg_url)
    try:
        ids = [v.id for v in await list_versions(store.engine)]
    finally:
        await store.close()
    assert ids == [3, 2, 1], "the version recorded after the backup is gone"


async def test_a_postgres_backup_that_cannot_connect_fails_clearly(tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None:
        missing("pg_dump (Debian's postgresql-client)")
    config = tmp_path / "pudimd.yaml"
    config.write_text("{}\n")
    url = f"postgresql://{SERVER}/pudimd_no_such_db_{secrets.token_hex(4)}"
    plan = BackupPlan(config_path=config, directory=tmp_path / "backups", store_url=url)
    with pytest.raises(DatabaseError, match=r"pg_dump failed: .*does not exist"):
        await anyio.to_thread.run_sync(make_backup, plan)
    assert [p.name for p in (tmp_path / "backups").iterdir()] == [], "no archive, no leftovers"
