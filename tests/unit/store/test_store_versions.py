"""Config versions in a real SQLite store: recorded only when the text changes, listed
newest first, fetched with their text, diffed; the config file written back atomically."""

from __future__ import annotations

import shutil
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from pudimd.config.errors import ConfigError
from pudimd.store import Store
from pudimd.store.alerting import AlertingDB
from pudimd.store.threaded import AsyncEngine
from pudimd.store.versions import (
    Change,
    ConfigVersion,
    get_version,
    latest_version,
    list_versions,
    read_config_file,
    record_applied,
    record_version,
    sha256,
    unified_diff,
    write_config_file,
)

pytestmark = pytest.mark.anyio

V1 = "targets:\n  - {name: web, probe: http, target: 'https://a.example'}\n"
V2 = "targets:\n  - {name: web, probe: http, target: 'https://b.example'}\n"


@pytest.fixture
async def engine(migrated: Path, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    shutil.copyfile(migrated, tmp_path / "pudimd.db")
    store = await Store.open(f"sqlite:///{tmp_path / 'pudimd.db'}")
    try:
        yield store.engine
    finally:
        await store.close()


async def test_a_version_is_recorded_only_when_the_text_changes(engine: AsyncEngine) -> None:
    assert await latest_version(engine) is None
    first = await record_version(engine, V1, Change("start"), at=1000.0)
    assert first == ConfigVersion(1, 1000.0, "start", "file", "", sha256(V1), None)
    assert await record_version(engine, V1) is None, "same text: no new version"
    second = await record_version(engine, V2, Change("api", "alice", "move web to b"))
    assert second is not None and second.id == 2 and second.author == "alice"
    assert second.message == "move web to b" and second.source == "api"
    assert time.time() - second.at < 60
    third = await record_version(engine, V1, Change("rollback", "bob", "back"))
    assert third is not None and third.id == 3, "going back to older text is a change"
    assert await record_version(engine, V1) is None


async def test_list_is_newest_first_without_text_and_get_has_the_text(
    engine: AsyncEngine,
) -> None:
    for text in (V1, V2, V1 + "# comment\n"):
        await record_version(engine, text)
    listed = await list_versions(engine)
    assert [v.id for v in listed] == [3, 2, 1]
    assert all(v.text is None for v in listed)
    assert [v.id for v in await list_versions(engine, limit=1)] == [3]
    assert [v.id for v in await list_versions(engine, before=3)] == [2, 1]
    got = await get_version(engine, 2)
    assert got is not None and got.text == V2 and got.sha256 == sha256(V2)
    assert await get_version(engine, 99) is None
    latest = await latest_version(engine)
    assert latest is not None and latest.id == 3


async def test_the_text_is_stored_as_read_with_env_references(engine: AsyncEngine) -> None:
    text = "server:\n  listen: ${LISTEN:-127.0.0.1:9115}\n# ü ✓\n"
    version = await record_version(engine, text)
    assert version is not None
    stored = await get_version(engine, version.id)
    assert stored is not None and stored.text == text


async def test_an_unknown_source_is_refused(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="source must be one of"):
        await record_version(engine, V1, Change("cron"))  # type: ignore[arg-type]


async def test_record_applied_answers_the_current_version_and_survives_a_broken_db(
    engine: AsyncEngine, migrated: Path, tmp_path: Path
) -> None:
    first = await record_applied(engine, V1, Change("start"))
    assert first is not None and first.id == 1
    again = await record_applied(engine, V1)
    assert again is not None and again.id == 1, "unchanged: the latest is current"
    shutil.copyfile(migrated, tmp_path / "other.db")
    broken = await Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    async with broken.engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE config_versions")
    try:
        assert await record_applied(broken.engine, V2) is None
    finally:
        await broken.close()


async def test_recording_waits_for_another_writer_instead_of_failing(
    engine: AsyncEngine,
) -> None:
    """The alerting writer holds SQLite's write lock in a worker thread; recording a
    version meanwhile waits for it (busy timeout) and then succeeds."""
    await record_version(engine, V1)
    db = AlertingDB(engine)
    assert db._writer is not None
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        assert db._writer is not None
        with db._writer.begin() as conn:
            conn.exec_driver_sql("UPDATE config_versions SET message = 'x' WHERE id = 0")
            holding.set()
            release.wait(5)

    def release_later() -> None:
        time.sleep(0.3)
        release.set()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        await anyio.to_thread.run_sync(holding.wait, 5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, release_later)
            recorded = await record_version(engine, V2)
        assert recorded is not None and recorded.id == 2
    finally:
        release.set()
        thread.join()
        db.close()


def version(version_id: int, text: str) -> ConfigVersion:
    return ConfigVersion(version_id, 0.0, "file", "file", "", sha256(text), text)


def test_unified_diff_between_two_versions() -> None:
    diff = unified_diff(version(1, V1), version(2, V2))
    assert diff == (
        "--- version 1\n"
        "+++ version 2\n"
        "@@ -1,2 +1,2 @@\n"
        " targets:\n"
        "-  - {name: web, probe: http, target: 'https://a.example'}\n"
        "+  - {name: web, probe: http, target: 'https://b.example'}\n"
    )
    assert unified_diff(version(1, V1), version(3, V1)) == ""


def test_a_missing_final_newline_is_marked() -> None:
    diff = unified_diff(version(1, "a: 1\n"), version(2, "a: 1\nb: 2"))
    assert diff.endswith("+b: 2\n\\ No newline at end of file\n")


def test_write_config_file_replaces_atomically_keeping_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "pudimd.yaml"
    path.write_text(V1)
    path.chmod(0o640)
    inode = path.stat().st_ino
    write_config_file(path, V2)
    assert path.read_text() == V2
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode, "a new file renamed over the old one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pudimd.yaml"], "no temp file left"


def test_write_config_file_follows_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text(V1)
    link = tmp_path / "pudimd.yaml"
    link.symlink_to(real)
    write_config_file(link, V2)
    assert link.is_symlink() and real.read_text() == V2


def test_a_failed_write_leaves_the_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "pudimd.yaml"
    path.write_text(V1)
    with pytest.raises(UnicodeEncodeError):
        write_config_file(path, "bad: \ud800\n")  # a lone surrogate cannot be UTF-8
    assert path.read_text() == V1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pudimd.yaml"]


def test_read_config_file_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(tmp_path / "missing.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: \xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_config_file(latin)
