"""Copying the state database out and back in: SQLite through its online backup API,
PostgreSQL through ``pg_dump --format=custom`` and ``pg_restore --clean``.  Blocking: run
these in a worker thread."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import URL, make_url

__all__ = [
    "DatabaseError",
    "pg_dump",
    "pg_restore",
    "pg_revision",
    "sqlite_path",
    "sqlite_restore",
    "sqlite_revision",
    "sqlite_snapshot",
]

PG_TIMEOUT = 3600.0
"""Seconds pg_dump or pg_restore may take."""
SQLITE_BUSY_MS = 30_000


class DatabaseError(Exception):
    """The database could not be copied out or back."""


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL; None for another database (or in-memory SQLite)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite":
        return None
    if database in ("", ":memory:") or database.startswith("file:"):
        raise DatabaseError(f"cannot back up the SQLite database {database or ':memory:'!r}")
    return Path(database)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    return conn


def sqlite_snapshot(source: Path, dest: Path) -> None:
    """A consistent copy of the SQLite database ``source`` at ``dest``, taken while it is
    in use: the backup API copies every page in one step under a read transaction, so
    writers (WAL mode) go on meanwhile and the copy is one committed state."""
    if not source.is_file():
        raise DatabaseError(f"no SQLite database at {source}")
    src = _connect(source)
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        dst = sqlite3.connect(dest, isolation_level=None)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            check = dst.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise DatabaseError(f"the snapshot of {source} fails its check: {check}")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot snapshot {source}: {exc}") from None
    finally:
        src.close()


def sqlite_revision(path: Path) -> str | None:
    """The Alembic revision of the SQLite database at ``path`` (None: never migrated)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
        if row is None:
            return None
        found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if found is None else str(found[0])
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot read {path}: {exc}") from None
    finally:
        conn.close()


def sqlite_restore(snapshot: Path, target: Path, aside: Path) -> None:
    """Put ``snapshot`` in place of the SQLite database ``target``, after copying the
    current one to ``aside`` (when there is one).  Both through the backup API, which
    takes the database's write lock and handles its WAL: no stale ``-wal`` file can be
    replayed over the restored pages."""
    try:
        if target.exists():
            current = _connect(target)
            try:
                fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.close(fd)
                keep = sqlite3.connect(aside, isolation_level=None)
                try:
                    current.backup(keep)
                finally:
                    keep.close()
            finally:
                current.close()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600))
        src = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
        dst = _connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot restore {target}: {exc}") from None


# -- PostgreSQL ---------------------------------------------------------------------------


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for SQLAlchemy ``url`` (no password: it goes in the
    environment, not on a command line anyone can read) and the environment to run with."""
    parsed: URL = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    query = dict(parsed.query)
    ssl = query.pop("ssl", None)
    libpq = parsed.set(drivername="postgresql", password=None, query={})
    if isinstance(ssl, str) and ssl:
        libpq = libpq.update_query_dict({"sslmode": ssl})
    return libpq.render_as_string(hide_password=False), env


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DatabaseError(
            f"{name} is not installed (the PostgreSQL client tools: Debian's postgresql-client)"
        )
    return found


def _run(args: list[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatabaseError(f"{Path(args[0]).name} failed: {exc}") from None
    if done.returncode != 0:
        reason = done.stderr.strip() or f"exit status {done.returncode}"
        raise DatabaseError(f"{Path(args[0]).name} failed: {reason}")


def pg_dump(url: str, dest: Path) -> None:
    """``pg_dump --format=custom`` of the database at ``url`` into ``dest`` (mode 0600)."""
    uri, env = _libpq(url)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    _run([_binary("pg_dump"), "--format=custom", "--no-owner", f"--file={dest}", uri], env)


def pg_restore(url: str, dump: Path) -> None:
    """``pg_restore --clean --if-exists`` of ``dump`` into the database at ``url``, in one
    transaction (all or nothing)."""
    uri, env = _libpq(url)
    _run(
        [
            _binary("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={uri}",
            str(dump),
        ],
        env,
    )


def pg_revision(url: str) -> str | None:
    """The Alembic revision of the PostgreSQL database at ``url`` (psql; None when it
    cannot be read)."""
    uri, env = _libpq(url)
    query = "SELECT version_num FROM alembic_version"
    try:
        done = subprocess.run(
            [_binary("psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query, uri],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatabaseError(f"psql failed: {exc}") from None
    if done.returncode != 0:
        return None
    text = done.stdout.strip()
    return text or None
