from __future__ import annotations

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


def test_migrated_database_is_opened_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pudimd.db'}"
    assert open_in_fresh_process(url) == "True", "a new database is migrated with Alembic"
    assert open_in_fresh_process(url) == "False", "one at the head revision needs no Alembic"
