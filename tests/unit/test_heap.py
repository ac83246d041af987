"""What pudimd does to keep the daemon's resident memory down: heap.settle after start-up
and reloads, and mimalloc's eager commit turned off for yaml-rs."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

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
