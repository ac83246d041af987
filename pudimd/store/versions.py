"""Config versions: every config the daemon applied (at start, on a reload, by a rollback),
stored as the file's text as read (``${ENV}`` references unexpanded: secrets kept in
``*_file`` files or the environment are not in it), with its SHA-256, when, from where
(``start``, ``file``, ``api``, ``rollback``), who and why.  A version is recorded only
when the text differs from the latest one; ids are increasing integers.

Also here: reading the config file as the daemon does and writing it back atomically
(a rollback), and the unified diff between two versions.
"""

from __future__ import annotations

import difflib
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import SQLAlchemyError

from pudimd.config.loader import read_config_text
from pudimd.files import write_atomically
from pudimd.store.tables import config_versions
from pudimd.store.threaded import AsyncEngine

__all__ = [
    "SOURCES",
    "Change",
    "ConfigVersion",
    "Source",
    "get_version",
    "latest_version",
    "list_versions",
    "read_config_file",
    "record_applied",
    "record_version",
    "sha256",
    "unified_diff",
    "write_config_file",
]

log = structlog.get_logger(__name__)

Source = Literal["start", "file", "api", "rollback"]
SOURCES: tuple[Source, ...] = ("start", "file", "api", "rollback")


@dataclass(frozen=True, slots=True)
class Change:
    """Where an applied config came from, who made it and why (what its version records)."""

    source: Source = "file"
    author: str = "file"
    message: str = ""


FILE_CHANGE = Change()
"""A config read from the file (edited by someone pudimd does not know)."""


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One stored version; ``text`` is None when listed without it."""

    id: int
    at: float
    source: str
    author: str
    message: str
    sha256: str
    text: str | None = None


def sha256(text: str) -> str:
    """Hex SHA-256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_META = (
    config_versions.c.id,
    config_versions.c.at,
    config_versions.c.source,
    config_versions.c.author,
    config_versions.c.message,
    config_versions.c.sha256,
)


def _version(row: Any) -> ConfigVersion:
    values = row._asdict()
    return ConfigVersion(
        id=int(values["id"]),
        at=float(values["at"]),
        source=values["source"],
        author=values["author"],
        message=values["message"],
        sha256=values["sha256"],
        text=values.get("text"),
    )


async def record_version(
    engine: AsyncEngine,
    text: str,
    change: Change = FILE_CHANGE,
    *,
    at: float | None = None,
) -> ConfigVersion | None:
    """Store ``text`` as a new version unless it equals the latest one's.  Returns the new
    version, or None when the text is unchanged.  Raises SQLAlchemy's errors.

    One ``INSERT .. SELECT .. WHERE`` statement: on SQLite it takes the write lock up front
    (and waits for it), so it cannot fail on a snapshot another writer made stale."""
    if change.source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {change.source!r}")
    digest = sha256(text)
    moment = time.time() if at is None else at
    latest = (
        sa.select(config_versions.c.sha256)
        .order_by(config_versions.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    values: Any = sa.select(
        sa.literal(moment, sa.Double()),
        sa.literal(change.source, sa.String()),
        sa.literal(change.author, sa.Text()),
        sa.literal(change.message, sa.Text()),
        sa.literal(digest, sa.String()),
        sa.literal(text, sa.Text()),
    ).where(sa.func.coalesce(latest, "") != digest)
    insert = (
        config_versions.insert()
        .from_select(["at", "source", "author", "message", "sha256", "text"], values)
        # SQLAlchemy keeps an INSERT's row count only when asked (psycopg reports -1)
        .execution_options(preserve_rowcount=True)
    )
    async with engine.begin() as conn:
        if (await conn.execute(insert)).rowcount != 1:
            return None
        row = (
            await conn.execute(sa.select(*_META).order_by(config_versions.c.id.desc()).limit(1))
        ).one()
    return _version(row)


async def record_applied(
    engine: AsyncEngine, text: str, change: Change = FILE_CHANGE
) -> ConfigVersion | None:
    """What the daemon calls once a config is applied: :func:`record_version`, logging a
    database error instead of raising it (the config runs either way).  Returns the version
    now current (the new one, or the latest when the text is unchanged), None on error."""
    try:
        version = await record_version(engine, text, change)
        if version is not None:
            log.info(
                "config version recorded",
                version=version.id,
                source=change.source,
                author=change.author,
            )
            return version
        return await latest_version(engine)
    except (SQLAlchemyError, OSError) as exc:
        log.error("cannot record the config version", error=str(exc).splitlines()[0])
        return None


async def latest_version(engine: AsyncEngine) -> ConfigVersion | None:
    """The newest version, without its text; None when none is stored."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(*_META).order_by(config_versions.c.id.desc()).limit(1))
        ).first()
    return None if row is None else _version(row)


async def list_versions(
    engine: AsyncEngine, *, limit: int = 100, before: int | None = None
) -> list[ConfigVersion]:
    """Versions newest first, without their text: at most ``limit``, ids below ``before``."""
    query = sa.select(*_META).order_by(config_versions.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(config_versions.c.id < before)
    async with engine.connect() as conn:
        return [_version(row) for row in await conn.execute(query)]


async def get_version(engine: AsyncEngine, version_id: int) -> ConfigVersion | None:
    """Version ``version_id`` with its text; None when there is no such version."""
    query = sa.select(config_versions).where(config_versions.c.id == version_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else _version(row)


def unified_diff(old: ConfigVersion, new: ConfigVersion, *, context: int = 3) -> str:
    """The unified diff from ``old`` to ``new`` (both with their text), headed
    ``--- version N`` / ``+++ version M``; empty when the texts are equal.  A last line
    without its newline is marked as ``diff`` does."""
    assert old.text is not None and new.text is not None
    return "".join(
        difflib.unified_diff(
            _lines(old.text),
            _lines(new.text),
            fromfile=f"version {old.id}",
            tofile=f"version {new.id}",
            n=context,
        )
    )


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


# -- the config file ------------------------------------------------------------------------


read_config_file = read_config_text
"""The config file's text, as the loader reads it (raises ConfigError)."""


def write_config_file(path: Path, text: str) -> None:
    """Replace the config file at ``path`` by ``text`` atomically (temporary file, fsync,
    rename; permission bits kept, a symlink's target replaced).  Raises OSError."""
    write_atomically(path, text.encode("utf-8"))
