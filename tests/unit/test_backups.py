"""Backups of the config and the SQLite state database: archives, retention, verification,
restore, the CLI and the scheduled service (real files, real SQLite, no mocks)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import socket
import sqlite3
import tarfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from pudimd.backups.archive import (
    ArchiveError,
    archive_name,
    list_archives,
    open_archive,
    prune,
)
from pudimd.backups.backup import BackupPlan, BackupResult, make_backup
from pudimd.backups.restore import restore_archive
from pudimd.backups.service import BackupService
from pudimd.cli import cli
from pudimd.config import ConfigBase, ConfigError, load_config_text
from pudimd.config.models import build_config_model
from pudimd.store.migrate import head_revision
from tests.helpers import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def site(tmp_path: Path, migrated: Path) -> Path:
    """A config dir: pudimd.yaml, an alertmanager.yml it names, a templates dir, and a
    migrated SQLite database with a table of our own in state/."""
    (tmp_path / "state").mkdir()
    shutil.copyfile(migrated, tmp_path / "state" / "pudimd.db")
    (tmp_path / "alertmanager.yml").write_text(
        "route: {receiver: team}\nreceivers:\n  - name: team\n"
    )
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "mail.j2").write_text("{{ alert }}\n")
    (tmp_path / "pudimd.yaml").write_text(
        f"state_dir: state\nserver: {{listen: '127.0.0.1:{free_port()}'}}\n"
        "alertmanager_config_file: alertmanager.yml\n"
        "backups: {keep: 5, extra_files: [templates]}\n"
    )
    with sqlite3.connect(tmp_path / "state" / "pudimd.db") as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, batch INTEGER NOT NULL)")
    return tmp_path


def plan(site: Path, **changes: object) -> BackupPlan:
    base = BackupPlan(
        config_path=site / "pudimd.yaml",
        directory=site / "backups",
        store_url=f"sqlite:///{site / 'state' / 'pudimd.db'}",
        extra_files=(site / "alertmanager.yml", site / "templates"),
        keep=5,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def rows(db: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT id, batch FROM t ORDER BY id"))


class Writer:
    """Inserts batches of 10 rows, one transaction each, until stopped (WAL mode, as the
    daemon writes)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.batches = 0
        self.stop = threading.Event()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        conn = sqlite3.connect(self.db, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        try:
            while not self.stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO t (batch) VALUES (?)", [(self.batches,)] * 10)
                conn.execute("COMMIT")
                self.batches += 1
                if self.batches == 20:
                    self.started.set()
        finally:
            conn.close()

    def __enter__(self) -> Writer:
        self.thread.start()
        assert self.started.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_backup_while_writing_is_consistent_and_restore_brings_the_rows_back(
    site: Path,
) -> None:
    db = site / "state" / "pudimd.db"
    with Writer(db) as writer:
        result = make_backup(plan(site))
        during = writer.batches
    after = rows(db)
    archive = result.archive.path
    assert archive.name.startswith("pudimd-") and archive.name.endswith(".tar.gz")
    assert archive.stat().st_mode & 0o777 == 0o600
    with open_archive(archive) as opened:
        manifest = opened.manifest
        names = sorted(m.name for m in manifest.members)
        assert names == [
            "config/pudimd.yaml",
            "files/alertmanager.yml",
            "files/templates/mail.j2",
            "state/pudimd.db",
        ]
        assert manifest.database == {
            "dialect": "sqlite",
            "revision": head_revision(),
            "member": "state/pudimd.db",
        }
        snapshot = site / "snapshot.db"
        db_member = manifest.member("database")
        assert db_member is not None
        opened.extract(db_member, snapshot)
    saved = rows(snapshot)
    assert saved and len(saved) % 10 == 0, "a snapshot holds whole transactions only"
    assert len(saved) <= during * 10 < len(after) + 10
    assert len(after) > len(saved), "the writer went on during and after the backup"

    # the config changes, the database goes on: restore both
    (site / "pudimd.yaml").write_text("state_dir: state\n")
    (site / "templates" / "mail.j2").write_text("changed\n")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    report = restore_archive(
        archive,
        config_path=site / "pudimd.yaml",
        validate=_validate,
        store_url=lambda config: f"sqlite:///{db}",
        now=when,
    )
    assert rows(db) == saved
    assert report.aside == db.with_name("pudimd.db.before-restore-20260102T030405Z")
    assert rows(report.aside) == after, "the database before the restore is kept aside"
    assert "keep: 5" in (site / "pudimd.yaml").read_text()
    assert (site / "templates" / "mail.j2").read_text() == "{{ alert }}\n"
    assert sorted(p.name for p in report.written) == ["alertmanager.yml", "mail.j2", "pudimd.yaml"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _validate(path: Path) -> ConfigBase:
    from pudimd.config import load_config, schema_for
    from pudimd.daemon import make_host

    return load_config(path, schema_for(make_host(path)))


def test_retention_keeps_the_newest_by_count_and_age_and_nothing_else(tmp_path: Path) -> None:
    now = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    ages = [0, 1, 2, 3, 12, 40, 41]  # days
    for days in ages:
        (tmp_path / archive_name(now - timedelta(days=days))).write_bytes(b"x")
    (tmp_path / archive_name(now, 1)).write_bytes(b"x")  # same second, made next
    strangers = ["notes.txt", "pudimd-latest.tar.gz", "pudimd-20260601T120000Z.tar.gz.tmp"]
    for name in strangers:
        (tmp_path / name).write_bytes(b"keep me")
    deleted = prune(tmp_path, keep=5, max_age=timedelta(days=10), now=now)
    left = [a.name for a in list_archives(tmp_path)]
    assert left == [
        "pudimd-20260601T120000Z-1.tar.gz",
        "pudimd-20260601T120000Z.tar.gz",
        "pudimd-20260531T120000Z.tar.gz",
        "pudimd-20260530T120000Z.tar.gz",
        "pudimd-20260529T120000Z.tar.gz",
    ]
    assert len(deleted) == 3
    assert all((tmp_path / name).read_bytes() == b"keep me" for name in strangers)
    # by count alone (no age limit), and the newest survives any age
    assert len(prune(tmp_path, keep=2, max_age=timedelta(0), now=now)) == 3
    assert prune(tmp_path, keep=9, max_age=timedelta(seconds=1), now=now + timedelta(days=99))
    assert [a.name for a in list_archives(tmp_path)] == ["pudimd-20260601T120000Z-1.tar.gz"]


def _tar(path: Path, members: dict[str, bytes], manifest: dict[str, object] | None) -> None:
    with tarfile.open(path, "w:gz") as tar:
        items = dict(members)
        if manifest is not None:
            items = {"manifest.json": json.dumps(manifest).encode(), **items}
        for name, data in items.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _manifest(members: dict[str, bytes]) -> dict[str, object]:
    import hashlib

    return {
        "format": 1,
        "pudimd_version": "0",
        "created_at": "2026-01-01T00:00:00Z",
        "config_path": "/etc/pudimd/pudimd.yaml",
        "database": None,
        "members": [
            {
                "name": name,
                "role": "config" if name.startswith("config/") else "file",
                "original": name,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            for name, data in members.items()
        ],
    }


def test_corrupt_tampered_and_traversing_archives_are_refused(site: Path) -> None:
    good = make_backup(plan(site)).archive.path
    data = good.read_bytes()

    truncated = site / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with (
        pytest.raises(ArchiveError, match=r"corrupt archive|not a readable"),
        open_archive(truncated),
    ):
        pass

    garbage = site / "garbage.tar.gz"
    garbage.write_bytes(b"not a tarball at all")
    with pytest.raises(ArchiveError, match=r"not a readable backup archive"), open_archive(garbage):
        pass

    config = {"config/pudimd.yaml": b"state_dir: state\n"}
    traversal = site / "traversal.tar.gz"
    evil = {**config, "../../evil.yml": b"x"}
    _tar(traversal, evil, _manifest(evil))
    with (
        pytest.raises(ArchiveError, match=r"unsafe member name '\.\./\.\./evil\.yml'"),
        open_archive(traversal),
    ):
        pass
    absolute = site / "absolute.tar.gz"
    evil = {**config, "/etc/evil.yml": b"x"}
    _tar(absolute, evil, _manifest(evil))
    with pytest.raises(ArchiveError, match=r"unsafe member name"), open_archive(absolute):
        pass

    tampered = site / "tampered.tar.gz"
    manifest = _manifest(config)
    _tar(tampered, {"config/pudimd.yaml": b"state_dir: elsewhere\n"}, manifest)
    with (
        pytest.raises(ArchiveError, match=r"config/pudimd\.yaml does not match its checksum"),
        open_archive(tampered),
    ):
        pass

    unlisted = site / "unlisted.tar.gz"
    _tar(unlisted, {**config, "files/extra": b"x"}, _manifest(config))
    with pytest.raises(ArchiveError, match=r"not in the manifest"), open_archive(unlisted):
        pass

    no_manifest = site / "nomanifest.tar.gz"
    _tar(no_manifest, config, None)
    with pytest.raises(ArchiveError, match=r"no manifest\.json"), open_archive(no_manifest):
        pass

    before = (site / "pudimd.yaml").read_text()
    result = CliRunner().invoke(
        cli, ["config", "restore", str(traversal), "-c", str(site / "pudimd.yaml"), "--yes"]
    )
    assert result.exit_code == 1
    assert "restore failed" in result.stderr and "unsafe member name" in result.stderr
    assert (site / "pudimd.yaml").read_text() == before


def test_an_archive_whose_config_does_not_validate_restores_nothing(site: Path) -> None:
    bad = {"config/pudimd.yaml": b"targets:\n  - {name: x, probe: nope, target: y}\n"}
    archive = site / "bad.tar.gz"
    _tar(archive, bad, _manifest(bad))
    before = (site / "pudimd.yaml").read_text()
    with pytest.raises(ConfigError):
        restore_archive(
            archive,
            config_path=site / "pudimd.yaml",
            validate=_validate,
            store_url=lambda config: "unused",
            restore_state=False,
        )
    assert (site / "pudimd.yaml").read_text() == before


def test_cli_backup_list_and_restore(site: Path) -> None:
    runner = CliRunner()
    config = str(site / "pudimd.yaml")
    made = runner.invoke(cli, ["config", "backup", "-c", config])
    assert made.exit_code == 0, made.output
    archive = Path(made.stdout.strip())
    assert archive.parent == site / "state" / "backups" and archive.is_file()

    other = runner.invoke(cli, ["config", "backup", "-c", config, "--dir", str(site / "else")])
    assert other.exit_code == 0, other.output
    assert Path(other.stdout.strip()).parent == site / "else"

    listed = runner.invoke(cli, ["config", "backups", "-c", config, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [a["name"] for a in json.loads(listed.stdout)] == [archive.name]
    table = runner.invoke(cli, ["config", "backups", "-c", config])
    assert table.stdout.splitlines()[0].split() == ["ARCHIVE", "CREATED", "SIZE"]
    assert archive.name in table.stdout

    db = site / "state" / "pudimd.db"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO t (batch) VALUES (7)")
    (site / "pudimd.yaml").write_text((site / "pudimd.yaml").read_text() + "# edited\n")

    config_only = runner.invoke(
        cli, ["config", "restore", str(archive), "-c", config, "--config-only", "--yes"]
    )
    assert config_only.exit_code == 0, config_only.output
    assert "# edited" not in (site / "pudimd.yaml").read_text()
    assert rows(db) == [(1, 7)], "--config-only leaves the database alone"

    state_only = runner.invoke(
        cli, ["config", "restore", str(archive), "-c", config, "--state-only", "--yes"]
    )
    assert state_only.exit_code == 0, state_only.output
    assert "restored the database" in state_only.stdout and "before-restore-" in state_only.stdout
    assert rows(db) == []

    asked = runner.invoke(cli, ["config", "restore", str(archive), "-c", config], input="n\n")
    assert asked.exit_code == 1 and "Aborted" in asked.output


def test_cli_restore_refuses_the_database_while_the_daemon_listens(site: Path) -> None:
    archive = make_backup(plan(site)).archive.path
    text = (site / "pudimd.yaml").read_text()
    listen = text.split("listen: '")[1].split("'")[0]
    host, port = listen.rsplit(":", 1)
    db = site / "state" / "pudimd.db"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO t (batch) VALUES (1)")
    with socket.create_server((host, int(port))):
        result = CliRunner().invoke(
            cli, ["config", "restore", str(archive), "-c", str(site / "pudimd.yaml"), "--yes"]
        )
    assert result.exit_code == 1
    assert f"something answers at {host}:{port}" in result.stderr
    assert rows(db) == [(1, 1)]
    assert not list(db.parent.glob("*.before-restore-*"))


def _config(site: Path, backups: str) -> ConfigBase:
    model = build_config_model({}, {})
    from pudimd.config import ConfigSchema

    schema = ConfigSchema(model, (), {})
    return load_config_text(
        f"state_dir: state\nbackups: {backups}\n", schema, file=str(site / "pudimd.yaml")
    )


def _service(site: Path, config: ConfigBase, **kwargs: object) -> BackupService:
    return BackupService(
        config,
        config_path=site / "pudimd.yaml",
        state_dir=lambda c: site / "state",
        store_url=lambda c: f"sqlite:///{site / 'state' / 'pudimd.db'}",
        **kwargs,  # type: ignore[arg-type]
    )


async def test_the_service_backs_up_on_its_cron_schedule_and_counts(site: Path) -> None:
    registry = CollectorRegistry()
    done: list[BackupResult | Exception] = []
    two = anyio.Event()

    def on_done(outcome: BackupResult | Exception) -> None:
        done.append(outcome)
        if len(done) == 2:
            two.set()

    config = _config(site, "{schedule: '* * * * * *', dir: archives, keep: 1}")
    service = _service(site, config, registry=registry, on_done=on_done)
    assert service.plan.directory == site / "archives"
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        with anyio.fail_after(20):
            await two.wait()
        tg.cancel_scope.cancel()
    assert all(isinstance(d, BackupResult) for d in done), done
    second = done[1]
    assert isinstance(second, BackupResult)
    assert [a.path for a in service.list()] == [second.archive.path], "keep: 1"
    assert registry.get_sample_value("pudimd_backup_size_bytes") == second.archive.size
    assert (registry.get_sample_value("pudimd_backup_last_success_timestamp_seconds") or 0) > 0
    assert (registry.get_sample_value("pudimd_backup_duration_seconds") or 0) > 0
    assert registry.get_sample_value("pudimd_backup_failures_total") == 0


async def test_a_failing_backup_is_counted_and_the_service_goes_on(site: Path) -> None:
    registry = CollectorRegistry()
    failures: list[BackupResult | Exception] = []
    two = anyio.Event()

    def on_done(outcome: BackupResult | Exception) -> None:
        failures.append(outcome)
        if len(failures) == 2:
            two.set()

    os.unlink(site / "state" / "pudimd.db")
    config = _config(site, "{schedule: '* * * * * *'}")
    service = _service(site, config, registry=registry, on_done=on_done)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        with anyio.fail_after(20):
            await two.wait()
        tg.cancel_scope.cancel()
    assert all(isinstance(f, Exception) for f in failures)
    assert "no SQLite database" in str(failures[0])
    assert (registry.get_sample_value("pudimd_backup_failures_total") or 0) >= 2
    assert registry.get_sample_value("pudimd_backup_last_success_timestamp_seconds") == 0
    assert service.list() == []


async def test_a_reload_without_schedule_stops_the_scheduled_backups(site: Path) -> None:
    config = _config(site, "{schedule: '0 3 * * *', timezone: Europe/Lisbon}")
    service = _service(site, config)
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp()
    due = service.next_run(now)
    assert due == datetime(2026, 7, 2, 2, 0, tzinfo=UTC).timestamp(), "03:00 WEST"
    service.configure(_config(site, "{keep: 3}"))
    assert service.next_run(now) is None and service.plan.keep == 3


def test_the_backups_section_is_validated(site: Path) -> None:
    with pytest.raises(ConfigError, match="invalid cron expression"):
        _config(site, "{schedule: 'every day'}")
    with pytest.raises(ConfigError, match="unknown time zone"):
        _config(site, "{schedule: '0 3 * * *', timezone: Mars/Olympus}")
    with pytest.raises(ConfigError, match="timezone applies to a schedule only"):
        _config(site, "{timezone: UTC}")
    with pytest.raises(ConfigError, match="keep"):
        _config(site, "{keep: 0}")
    config = _config(site, "{}")
    assert config.backups.keep == 14 and config.backups.max_age == timedelta(days=30)
    assert config.backups.include_state is True and config.backups.schedule is None


async def test_at_start_the_last_success_is_the_newest_archive(site: Path) -> None:
    registry = CollectorRegistry()
    service = _service(site, _config(site, "{}"), registry=registry)
    service.plan.directory.mkdir(parents=True)
    when = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    (service.plan.directory / archive_name(when)).write_bytes(b"x")
    (service.plan.directory / archive_name(when - timedelta(days=1))).write_bytes(b"x")
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        tg.cancel_scope.cancel()
    value = registry.get_sample_value("pudimd_backup_last_success_timestamp_seconds")
    assert value == when.timestamp()


def test_restore_recreates_a_lost_database(site: Path) -> None:
    db = site / "state" / "pudimd.db"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO t (batch) VALUES (3)")
    archive = make_backup(plan(site)).archive.path
    for leftover in db.parent.glob("pudimd.db*"):
        leftover.unlink()
    report = restore_archive(
        archive,
        config_path=site / "pudimd.yaml",
        validate=_validate,
        store_url=lambda config: f"sqlite:///{db}",
        restore_config=False,
    )
    assert report.aside is None and report.written == []
    assert rows(db) == [(1, 3)]
    assert db.stat().st_mode & 0o777 == 0o600


def test_backups_in_the_same_second_are_all_kept_with_keep_one(site: Path) -> None:
    """A backup made in the same second as the last one gets the next name and is the one
    kept (retention never deletes the archive just made)."""
    now = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    first = make_backup(plan(site, keep=1), now=now)
    second = make_backup(plan(site, keep=1), now=now)
    assert first.archive.path.name == "pudimd-20260601T120000Z.tar.gz"
    assert second.archive.path.name == "pudimd-20260601T120000Z-1.tar.gz"
    assert second.archive.path.exists() and second.deleted == [first.archive.path]
    # a clock that went back: the new archive sorts older, and is kept all the same
    third = make_backup(plan(site, keep=1), now=now - timedelta(hours=1))
    assert third.archive.path.exists()
