"""Backup archives on disk: their names, listing, retention, writing one atomically and
reading one back with every member checked.

An archive is ``pudimd-YYYYmmddTHHMMSSZ.tar.gz`` (``-N`` before the extension when two are
made in the same second), mode 0600 (it holds secrets), with:

- ``manifest.json``: format, pudimd version, creation time, the config file's path, and for
  every other member its role, original path, size and SHA-256;
- ``config/<name>``: the config file as it was on disk;
- ``files/<path>``: the extra files (alertmanager.yml, blackbox.yml, templates...), under
  their path relative to the config file's directory (``files/_abs/...`` for one outside
  it);
- ``state/pudimd.db`` (SQLite snapshot) or ``state/pudimd.pgdump`` (``pg_dump -Fc``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: a daemon that makes no backup need not keep it
    import tarfile

__all__ = [
    "ArchiveError",
    "ArchiveInfo",
    "Manifest",
    "Member",
    "archive_name",
    "list_archives",
    "open_archive",
    "parse_archive_name",
    "prune",
    "write_archive",
]

FORMAT = 1
MANIFEST = "manifest.json"
_NAME = re.compile(r"^pudimd-(\d{8}T\d{6}Z)(?:-(\d{1,4}))?\.tar\.gz$")
_CHUNK = 1 << 20


class ArchiveError(Exception):
    """An archive that cannot be used: unreadable, incomplete, tampered with, unsafe."""


@dataclass(frozen=True)
class ArchiveInfo:
    """One archive in a backup directory."""

    path: Path
    created: datetime
    size: int

    @property
    def name(self) -> str:
        return self.path.name

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "created_at": self.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "size": self.size,
        }


@dataclass(frozen=True)
class Member:
    """A file to put in an archive (``source`` on disk) or found in one."""

    name: str
    role: str  # "config" | "file" | "database"
    original: str
    source: Path | None = None
    size: int = 0
    sha256: str = ""


@dataclass
class Manifest:
    """``manifest.json``: what the archive holds."""

    created_at: datetime
    config_path: str
    pudimd_version: str
    database: dict[str, Any] | None = None
    members: list[Member] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "pudimd_version": self.pudimd_version,
            "created_at": self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config_path": self.config_path,
            "database": self.database,
            "members": [
                {
                    "name": m.name,
                    "role": m.role,
                    "original": m.original,
                    "size": m.size,
                    "sha256": m.sha256,
                }
                for m in self.members
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        try:
            if data["format"] != FORMAT:
                raise ArchiveError(f"unknown archive format {data['format']!r} (expected 1)")
            members = [
                Member(
                    name=str(m["name"]),
                    role=str(m["role"]),
                    original=str(m["original"]),
                    size=int(m["size"]),
                    sha256=str(m["sha256"]),
                )
                for m in data["members"]
            ]
            created = datetime.strptime(data["created_at"], "%Y-%m-%dT%H:%M:%SZ")
            return cls(
                created_at=created.replace(tzinfo=UTC),
                config_path=str(data["config_path"]),
                pudimd_version=str(data["pudimd_version"]),
                database=data.get("database"),
                members=members,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"invalid manifest.json: {exc!r}") from None

    def member(self, role: str) -> Member | None:
        """The first member of ``role``."""
        return next((m for m in self.members if m.role == role), None)


# -- names, listing, retention ------------------------------------------------------------


def archive_name(when: datetime, n: int = 0) -> str:
    """The archive name for a backup made at ``when`` (``n``: same-second sequence)."""
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"pudimd-{stamp}{f'-{n}' if n else ''}.tar.gz"


def parse_archive_name(name: str) -> tuple[datetime, int] | None:
    """The creation time and sequence number in an archive's name; None for any other
    file name."""
    match = _NAME.match(name)
    if match is None:
        return None
    when = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return when, int(match.group(2) or 0)


def list_archives(directory: Path) -> list[ArchiveInfo]:
    """The archives in ``directory``, newest first (none when it does not exist).  Only
    regular files named like an archive count."""
    found: list[tuple[tuple[datetime, int], ArchiveInfo]] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        parsed = parse_archive_name(entry.name)
        if parsed is None or not entry.is_file(follow_symlinks=False):
            continue
        info = ArchiveInfo(Path(entry.path), parsed[0], entry.stat(follow_symlinks=False).st_size)
        found.append((parsed, info))
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [info for _, info in found]


def prune(
    directory: Path,
    *,
    keep: int,
    max_age: timedelta,
    now: datetime | None = None,
    spare: Path | None = None,
) -> list[Path]:
    """Delete the archives beyond the ``keep`` newest and those older than ``max_age``
    (by the time in their name; ``0``: no age limit), never the newest one nor ``spare``
    (the archive just made).  Returns the deleted paths."""
    now = now or datetime.now(UTC)
    deleted: list[Path] = []
    for index, info in enumerate(list_archives(directory)):
        too_many = index >= keep
        too_old = max_age > timedelta(0) and now - info.created > max_age
        if index > 0 and info.path != spare and (too_many or too_old):
            with contextlib.suppress(FileNotFoundError):
                info.path.unlink()
            deleted.append(info.path)
    return deleted


# -- writing ------------------------------------------------------------------------------


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _tarinfo(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(mtime)
    info.type = tarfile.REGTYPE
    return info


def write_archive(directory: Path, manifest: Manifest, members: Iterable[Member]) -> Path:
    """Write an archive of ``members`` (each read from its ``source``) with ``manifest``
    into ``directory``: a temporary file, fsynced, then linked under its final name (never
    over an existing archive) and the directory fsynced.  Returns its path.  Raises
    OSError."""
    import tarfile

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    recorded: list[Member] = []
    for member in members:
        assert member.source is not None, member
        digest, size = _sha256(member.source)
        recorded.append(
            Member(member.name, member.role, member.original, member.source, size, digest)
        )
    manifest.members = recorded
    fd, temp = tempfile.mkstemp(prefix=".pudimd-", suffix=".tar.gz.tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                body = json.dumps(manifest.to_json(), indent=2).encode()
                mtime = manifest.created_at.timestamp()
                tar.addfile(_tarinfo(MANIFEST, len(body), mtime), io.BytesIO(body))
                for member in recorded:
                    assert member.source is not None
                    with member.source.open("rb") as f:
                        tar.addfile(_tarinfo(member.name, member.size, mtime), f)
            raw.flush()
            os.fsync(raw.fileno())
        final = _link_new(Path(temp), directory, manifest.created_at)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    _fsync_dir(directory)
    return final


def _link_new(temp: Path, directory: Path, when: datetime) -> Path:
    for n in range(1000):
        final = directory / archive_name(when, n)
        try:
            os.link(temp, final)
        except FileExistsError:
            continue
        return final
    raise OSError(f"too many archives made at {when} in {directory}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ------------------------------------------------------------------------------


def safe_member_name(name: str) -> str:
    """``name`` if it is a relative path inside the archive; ArchiveError otherwise."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or any(part in ("..", "") for part in name.split("/"))
    ):
        raise ArchiveError(f"unsafe member name {name!r} (absolute or leaving the archive)")
    return name


class OpenArchive:
    """An archive open for reading, its manifest checked against its members."""

    def __init__(self, path: Path, tar: tarfile.TarFile, manifest: Manifest) -> None:
        self.path = path
        self.tar = tar
        self.manifest = manifest

    def extract(self, member: Member, dest: Path) -> None:
        """Write ``member`` to ``dest`` (mode 0600), checking its size and SHA-256 again."""
        source = self._open(member.name)
        digest = hashlib.sha256()
        size = 0
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != member.sha256 or size != member.size:
            raise ArchiveError(f"{self.path.name}: {member.name} does not match its checksum")

    def read(self, member: Member) -> bytes:
        """``member``'s content (small members: the config file)."""
        data = self._open(member.name).read()
        if hashlib.sha256(data).hexdigest() != member.sha256:
            raise ArchiveError(f"{self.path.name}: {member.name} does not match its checksum")
        return data

    def _open(self, name: str) -> IO[bytes]:
        try:
            found = self.tar.extractfile(name)
        except KeyError:
            found = None
        if found is None:
            raise ArchiveError(f"{self.path.name}: {name} is missing")
        return found


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[OpenArchive]:
    """Open the archive at ``path`` and verify it: only regular files with safe names, a
    valid manifest naming every other member, and each member's size and SHA-256 as the
    manifest says (read through once).  Raises ArchiveError."""
    import tarfile

    try:
        tar = tarfile.open(path, mode="r:gz")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{path}: not a readable backup archive ({exc})") from None
    with tar:
        try:
            manifest = _verify(path, tar)
        except (OSError, tarfile.TarError, EOFError, json.JSONDecodeError) as exc:
            raise ArchiveError(f"{path}: corrupt archive ({exc})") from None
        yield OpenArchive(path, tar, manifest)


def _verify(path: Path, tar: tarfile.TarFile) -> Manifest:
    infos = tar.getmembers()
    names = [safe_member_name(info.name) for info in infos]
    for info in infos:
        if not info.isreg():
            raise ArchiveError(f"{path}: member {info.name!r} is not a regular file")
    if len(set(names)) != len(names):
        raise ArchiveError(f"{path}: duplicate member names")
    if MANIFEST not in names:
        raise ArchiveError(f"{path}: no manifest.json (not a pudimd backup)")
    raw = tar.extractfile(MANIFEST)
    assert raw is not None
    manifest = Manifest.from_json(json.loads(raw.read()))
    listed = {m.name: m for m in manifest.members}
    for name in listed:
        safe_member_name(name)
    unlisted = set(names) - set(listed) - {MANIFEST}
    if unlisted:
        raise ArchiveError(f"{path}: members not in the manifest: {sorted(unlisted)}")
    if manifest.member("config") is None:
        raise ArchiveError(f"{path}: the manifest lists no config file")
    by_name = {info.name: info for info in infos}
    for name, member in listed.items():
        found = by_name.get(name)
        if found is None:
            raise ArchiveError(f"{path}: {name} is missing")
        source = tar.extractfile(found)
        assert source is not None
        digest = hashlib.sha256()
        size = 0
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if size != member.size or digest.hexdigest() != member.sha256:
            raise ArchiveError(f"{path}: {name} does not match its checksum")
    return manifest
