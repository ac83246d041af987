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

anyio.run(main, sys.argv[1])
"""


def open_in_fresh_process(url: str) -> str:
    out = subprocess.run([sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_daemon_process_never_imports_alembic(tmp_path: Path) -> None:
    path = tmp_path / "pudimd.db"
    url = f"sqlite+aiosqlite:///{path}"
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
        [sys.executable, "-c", script, f"sqlite+aiosqlite:///{path}"], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "StoreError: cannot open database sqlite+aiosqlite:///" in out.stderr
    assert "migration failed:" in out.stderr and "already exists" in out.stderr
