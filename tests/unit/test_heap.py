"""What pudimd does to keep the daemon's resident memory down: heap.settle after start-up
and reloads, and mimalloc's eager commit turned off for yaml-rs."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pudimd import heap

PRINT_OPTION = "import os, pudimd; print(os.environ['MIMALLOC_ARENA_EAGER_COMMIT'])"


def run_python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")} | env
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environ
    )
    return out.stdout.strip()


def test_importing_pudimd_turns_off_mimallocs_eager_commit() -> None:
    assert run_python(PRINT_OPTION) == "0"


def test_the_operators_own_mimalloc_setting_wins() -> None:
    assert run_python(PRINT_OPTION, MIMALLOC_ARENA_EAGER_COMMIT="1") == "1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_settle_freezes_what_exists_and_trims_the_heap() -> None:
    kept = [object() for _ in range(1000)]
    try:
        heap.settle()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


LAZY = ("alembic", "sqlalchemy.orm", "ruamel.yaml", "tarfile", "jinja2", "argon2", "croniter")
"""Libraries the daemon imports only when something needs them (a migration, an error to
locate, an API edit, a backup, a template, a password, a cron schedule): each would
otherwise stay resident for the daemon's lifetime."""


def test_the_daemon_and_its_plugins_leave_heavy_libraries_unloaded(tmp_path: Path) -> None:
    config = tmp_path / "pudimd.yaml"
    config.write_text("targets:\n  - {name: web, probe: http, target: http://127.0.0.1:9/}\n")
    code = (
        "import sys, pudimd.daemon as d; d.Daemon(sys.argv[1], host=d.make_host(sys.argv[1]));"
        f"print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(config)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
