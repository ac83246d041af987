"""Restoring an archive: an offline operation (the daemon stopped), all blocking.

Order: verify the whole archive; stage the config files and validate the config with the
loader; restore the database (the current one kept aside first); only then write the config
files, each atomically.  A failure at any step before the last leaves the config as it was.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pudimd.backups.archive import ArchiveError, Member, OpenArchive, open_archive
from pudimd.backups.database import pg_restore, sqlite_path, sqlite_restore
from pudimd.files import write_atomically
from pudimd.store.migrate import head_revision

if TYPE_CHECKING:
    from pudimd.config import ConfigBase

__all__ = ["DaemonRunning", "RestoreReport", "daemon_listening", "restore_archive"]


class DaemonRunning(Exception):
    """The daemon answers on its listen address: its database cannot be replaced."""


@dataclass
class RestoreReport:
    """What a restore changed."""

    written: list[Path] = field(default_factory=list)
    database: str | None = None
    aside: Path | None = None


def daemon_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts connections at ``host:port`` (a wildcard address is tried
    on loopback)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False


def _destination(member: Member, config_path: Path) -> Path:
    """Where a member goes: the config over ``config_path``, an extra file under the
    config's directory (or at its absolute path for ``files/_abs/...``)."""
    if member.role == "config":
        return config_path
    rest = member.name.removeprefix("files/")
    if rest.startswith("_abs/"):
        return Path("/" + rest.removeprefix("_abs/"))
    return config_path.parent / rest


def _atomic_write(dest: Path, data: bytes) -> None:
    write_atomically(dest, data, mode=0o600, make_parents=True)


def _stage_config(
    archive: OpenArchive, config_path: Path, validate: Callable[[Path], ConfigBase]
) -> tuple[dict[Path, bytes], ConfigBase]:
    """The config files as the archive has them (destination -> bytes), validated
    together in a staging directory laid out as they will be.  Raises what ``validate``
    raises (ConfigError)."""
    files = {
        _destination(m, config_path): archive.read(m)
        for m in archive.manifest.members
        if m.role in ("config", "file")
    }
    with tempfile.TemporaryDirectory(prefix="pudimd-restore-") as temp:
        root = Path(temp)
        staged = root / config_path.name
        for dest, data in files.items():
            try:
                where = root / dest.relative_to(config_path.parent)
            except ValueError:
                continue  # an absolute one: validated against the file in place
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_bytes(data)
        config = validate(staged)
    return files, config


def _check_revision(revision: object) -> None:
    head = head_revision()
    if isinstance(revision, str) and revision.isdigit() and int(revision) > int(head):
        raise ArchiveError(
            f"the archive's database is at revision {revision}, newer than this pudimd "
            f"knows ({head}): restore it with the pudimd version that made it"
        )


def restore_archive(
    path: Path,
    *,
    config_path: Path,
    validate: Callable[[Path], ConfigBase],
    store_url: Callable[[ConfigBase | None], str],
    restore_config: bool = True,
    restore_state: bool = True,
    now: datetime | None = None,
) -> RestoreReport:
    """Restore the archive at ``path``: the config files over ``config_path`` (after
    ``validate(staged_config_path)`` accepted them) and the database at
    ``store_url(restored config or None)`` (which should raise DaemonRunning when the
    daemon is running).  Raises ArchiveError, ConfigError,
    DatabaseError or OSError."""
    report = RestoreReport()
    config_path = config_path.resolve()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    with open_archive(path) as archive:
        files: dict[Path, bytes] = {}
        restored: ConfigBase | None = None
        if restore_config:
            files, restored = _stage_config(archive, config_path, validate)
        database = archive.manifest.database
        if restore_state:
            if database is None:
                raise ArchiveError(f"{path.name} holds no database (include_state was off)")
            _check_revision(database.get("revision"))
            member = next((m for m in archive.manifest.members if m.role == "database"), None)
            if member is None:
                raise ArchiveError(f"{path.name}: the manifest lists no database member")
            url = store_url(restored)
            report.database, report.aside = _restore_database(
                archive, member, str(database.get("dialect")), url, stamp
            )
        for dest, data in files.items():
            _atomic_write(dest, data)
            report.written.append(dest)
    return report


def _restore_database(
    archive: OpenArchive, member: Member, dialect: str, url: str, stamp: str
) -> tuple[str, Path | None]:
    target = sqlite_path(url)
    if (target is not None) != (dialect == "sqlite"):
        kind = "SQLite" if target is not None else "PostgreSQL"
        raise ArchiveError(
            f"the archive holds a {dialect} database but the config's storage is {kind}"
        )
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        aside = target.with_name(f"{target.name}.before-restore-{stamp}")
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.restore-", dir=target.parent)
        os.close(fd)
        try:
            archive.extract(member, Path(temp))
            had = target.exists()
            sqlite_restore(Path(temp), target, aside)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return str(target), aside if had else None
    with tempfile.TemporaryDirectory(prefix="pudimd-restore-") as temp_dir:
        dump = Path(temp_dir) / "pudimd.pgdump"
        archive.extract(member, dump)
        pg_restore(url, dump)
    from pudimd.store.errors import mask_url

    return mask_url(url), None
