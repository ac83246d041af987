from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, anyio
from pudimd.store import Store

async def main(url):
    store = await Store.open(url)
    await store.close()
    print("alembic" in sys.modules)
    print(sorted(m for m in ("sqlalchemy.orm", "sqlalchemy.ext.asyncio") if m in sys.modules))

anyio.run(main, sys.argv[1])
"""


def open_in_fresh_process(url: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[0]


def test_the_store_leaves_the_orm_unloaded(tmp_path: Path) -> None:
    """pudimd uses SQLAlchemy Core through worker threads (pudimd.store.threaded): the ORM,
    which sqlalchemy.ext.asyncio imports, would cost ~7 MB for nothing.  (greenlet is not
    checked: structlog imports it whenever it is installed.)"""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"sqlite:///{tmp_path / 'pudimd.db'}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines()[1] == "[]"


def test_the_daemon_process_never_imports_alembic(tmp_path: Path) -> None:
    path = tmp_path / "pudimd.db"
    url = f"sqlite:///{path}"
    assert open_in_fresh_process(url) == "False", "a new database is migrated by a child"
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
    assert {"results", "rollups", "alembic_version"} <= tables
    assert open_in_fresh_process(url) == "False", "one at the head revision needs nothing"


def test_a_failed_migration_is_a_one_line_store_error(tmp_path: Path) -> None:
    path = tmp_path / "pudimd.db"
    with sqlite3.connect(path) as db:  # a table in the way of the first migration
        db.execute("create table results (x int)")
    script = SCRIPT.replace("print(", "print(") + ""
    out = subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{path}"], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "StoreError: cannot open database sqlite:///" in out.stderr
    assert "migration failed:" in out.stderr and "already exists" in out.stderr
