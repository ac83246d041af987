"""Making one backup: what goes in (:class:`BackupPlan`, from the config) and writing it
(:func:`make_backup`, blocking: run it in a worker thread)."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pudimd import __version__
from pudimd.backups.archive import ArchiveInfo, Manifest, Member, prune, write_archive
from pudimd.backups.database import (
    pg_dump,
    pg_revision,
    sqlite_path,
    sqlite_revision,
    sqlite_snapshot,
)

if TYPE_CHECKING:
    from pudimd.config import ConfigBase

__all__ = ["BackupPlan", "BackupResult", "make_backup", "member_for_file", "plan_for"]


@dataclass(frozen=True)
class BackupPlan:
    """What one backup holds and where it goes."""

    config_path: Path
    directory: Path
    store_url: str | None
    extra_files: tuple[Path, ...] = ()
    keep: int = 14
    max_age: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class BackupResult:
    """A backup made: the archive, the archives retention deleted, how long it took."""

    archive: ArchiveInfo
    deleted: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def backup_dir(config: ConfigBase, config_path: Path, state_dir: Path) -> Path:
    """``backups.dir`` relative to the config file's directory, else
    ``<state_dir>/backups``."""
    base = config_path.resolve().parent
    chosen = config.backups.dir
    return (base / chosen).resolve() if chosen is not None else state_dir / "backups"


def plan_for(
    config: ConfigBase,
    config_path: Path,
    *,
    state_dir: Path,
    store_url: str,
    directory: Path | None = None,
) -> BackupPlan:
    """The backup of the config at ``config_path`` (loaded as ``config``) and of the
    database at ``store_url`` (unless ``backups.include_state`` is false)."""
    settings = config.backups
    base = config_path.resolve().parent
    extras: list[Path] = []
    for named in (
        config.alertmanager_config_file,
        config.probe_modules_file,
        *settings.extra_files,
    ):
        if named is not None:
            extras.append((base / named).resolve())
    return BackupPlan(
        config_path=config_path.resolve(),
        directory=directory.resolve() if directory else backup_dir(config, config_path, state_dir),
        store_url=store_url if settings.include_state else None,
        extra_files=tuple(dict.fromkeys(extras)),
        keep=settings.keep,
        max_age=settings.max_age,
    )


def member_for_file(path: Path, config_dir: Path) -> str:
    """The member name of extra file ``path``: ``files/<path relative to the config's
    directory>``, or ``files/_abs/<absolute path>`` for a file outside it."""
    try:
        return "files/" + path.relative_to(config_dir).as_posix()
    except ValueError:
        return "files/_abs/" + path.as_posix().lstrip("/")


def _files(paths: tuple[Path, ...]) -> list[Path]:
    """``paths`` with each directory replaced by the files under it."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"file to back up not found: {path}")
    return list(dict.fromkeys(out))


def make_backup(plan: BackupPlan, now: datetime | None = None) -> BackupResult:
    """Write one archive as ``plan`` says, then apply retention.  Raises OSError or
    :class:`~pudimd.backups.database.DatabaseError`."""
    started = time.perf_counter()
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    plan.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    config_dir = plan.config_path.parent
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=plan.directory))
    try:
        members = [
            Member(
                "config/" + plan.config_path.name,
                "config",
                str(plan.config_path),
                plan.config_path,
            )
        ]
        for path in _files(plan.extra_files):
            if path == plan.config_path:
                continue
            members.append(Member(member_for_file(path, config_dir), "file", str(path), path))
        database = None
        if plan.store_url is not None:
            database, member = _dump_database(plan.store_url, staging)
            members.append(member)
        manifest = Manifest(
            created_at=when,
            config_path=str(plan.config_path),
            pudimd_version=__version__,
            database=database,
        )
        path = write_archive(plan.directory, manifest, members)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    info = ArchiveInfo(path, when, path.stat().st_size)
    deleted = prune(plan.directory, keep=plan.keep, max_age=plan.max_age, now=when, spare=path)
    return BackupResult(info, deleted, time.perf_counter() - started)


def _dump_database(url: str, staging: Path) -> tuple[dict[str, str | None], Member]:
    source = sqlite_path(url)
    if source is not None:
        dest = staging / "pudimd.db"
        sqlite_snapshot(source, dest)
        info = {"dialect": "sqlite", "revision": sqlite_revision(dest), "member": "state/pudimd.db"}
        return info, Member("state/pudimd.db", "database", str(source), dest)
    dest = staging / "pudimd.pgdump"
    revision = pg_revision(url)
    pg_dump(url, dest)
    info = {"dialect": "postgresql", "revision": revision, "member": "state/pudimd.pgdump"}
    return info, Member("state/pudimd.pgdump", "database", "postgresql", dest)
