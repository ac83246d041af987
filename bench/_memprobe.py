"""Where the idle daemon's memory goes (run by bench_idle.py when RSS misses its bar).

    python bench/_memprobe.py CONFIG STATE_DIR PORT SECONDS

Two child processes, so neither measurement disturbs the other:

- ``rss``: imports the daemon's dependencies one package at a time (each row is what that
  import added, its not-yet-loaded dependencies included), then ``pudimd.daemon``, the
  plugins, the daemon object, and runs it for SECONDS; prints RSS after each stage.
- ``floor``: a fresh interpreter importing every module the ``rss`` run's daemon had
  loaded except pudimd's own: the memory the libraries alone take, whatever pudimd does.
- ``trace``: the same daemon under tracemalloc (started before any import); prints the
  top allocation sites by package of the allocating file: live Python allocations, not
  extension modules' own (Rust/C) heaps.
"""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import psutil

# What the daemon imports, heaviest first, so each row is mostly the package itself (its
# dependencies are listed with it when they are not shared).  Everything up to FLOOR is a
# library the issue or the brief names (or the interpreter and stdlib under them): the
# memory no pudimd code can avoid.
PACKAGES = [
    ("stdlib (asyncio, ssl, sqlite3, json, email, logging ...)",
     ["asyncio", "ssl", "sqlite3", "json", "email.message", "http.client", "logging",
      "concurrent.futures", "zoneinfo", "uuid", "decimal", "typing", "dataclasses"]),
    ("sqlalchemy core, sqlite dialect", ["sqlalchemy", "sqlalchemy.dialects.sqlite.pysqlite"]),
    ("aiohttp (+ multidict, yarl, frozenlist, ...)", ["aiohttp", "aiohttp.web"]),
    ("pydantic (+ pydantic_core, typing_extensions)", ["pydantic", "pydantic.main"]),
    ("prometheus_client", ["prometheus_client"]),
    ("structlog", ["structlog"]),
    ("anyio", ["anyio"]),
    ("pluggy (+ importlib.metadata)", ["pluggy", "importlib.metadata"]),
    ("uvloop", ["uvloop"]),
    ("click", ["click"]),
    ("psutil", ["psutil"]),
    ("yaml_rs", ["yaml_rs"]),
    ("orjson", ["orjson"]),
]  # fmt: skip
FLOOR = len(PACKAGES)
"""Every row above is a library the daemon cannot run without."""


def rss() -> float:
    return float(psutil.Process().memory_info().rss) / 1e6


def package_of(filename: str) -> str:
    """The package (or stdlib module) a source file belongs to."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    for name in ("pudimd_plugins", "pudimd"):
        if f"/{name}/" in filename:
            return name
    if filename.startswith("<frozen importlib"):
        return "import machinery (module code objects, class dicts)"
    if "/lib/python3" in filename:
        rest = filename.split("/lib/python3", 1)[1].split("/", 1)[-1]
        return "stdlib " + rest.split("/", 1)[0].removesuffix(".py")
    return filename


async def _run_daemon(daemon: object, seconds: float) -> None:
    import anyio

    from pudimd.daemon import Daemon

    assert isinstance(daemon, Daemon)
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        while not daemon.ready:
            await anyio.sleep(0.05)
        await anyio.sleep(seconds)
        daemon.stop()


def child(mode: str, config: str, state: str, port: str, seconds: float) -> None:
    if mode == "trace":
        tracemalloc.start(1)
    importlib.import_module("pudimd")  # the package alone: sets mimalloc's options, as the daemon
    stages: list[tuple[str, float]] = [("python interpreter", rss())]
    for label, modules in PACKAGES:
        for module in modules:
            importlib.import_module(module)
        stages.append((label, rss()))
    stages.append(("= the libraries above, before any pudimd code", stages[-1][1]))
    import anyio

    import pudimd.daemon

    stages.append(("pudimd core (pudimd.daemon and what is left)", rss()))
    host = pudimd.daemon.make_host(config)
    stages.append(("plugins loaded (entry points)", rss()))
    daemon = pudimd.daemon.Daemon(config, listen=f"127.0.0.1:{port}", state_dir=state, host=host)
    stages.append(("Daemon() (config schema built)", rss()))
    anyio.run(_run_daemon, daemon, seconds)
    stages.append((f"ran {seconds:g} s (config, store, listener, 100 targets)", rss()))
    if mode == "rss":
        libraries = sorted(m for m in sys.modules if not m.startswith(("pudimd", "__main__")))
        (Path(state) / FLOOR_MODULES).write_text("\n".join(libraries))
        prev = 0.0
        for label, value in stages:
            if label.startswith("="):
                print(f"  {'':>10}    {value:6.1f} MB  {label}")
                continue
            print(f"  {value - prev:+7.1f} MB -> {value:6.1f} MB  {label}")
            prev = value
        return
    snapshot = tracemalloc.take_snapshot()
    by_package: Counter[str] = Counter()
    for stat in snapshot.statistics("filename"):
        by_package[package_of(stat.traceback[0].filename)] += stat.size
    total = sum(by_package.values())
    print(f"  tracemalloc: {total / 1e6:.1f} MB of live Python allocations; top 10 by package:")
    for name, size in by_package.most_common(10):
        print(f"    {size / 1e6:6.1f} MB  {name}")


FLOOR_MODULES = "floor-modules.txt"


def floor(modules_file: Path) -> None:
    importlib.import_module("pudimd")  # the package alone: mimalloc's options
    modules = modules_file.read_text().split()
    for module in modules:
        with contextlib.suppress(ImportError):  # one importable only where it was (rare)
            importlib.import_module(module)
    print(f"  {'':>10}    {rss():6.1f} MB  = every library module that daemon had loaded "
          f"({len(modules)}), in a fresh interpreter: the floor below any pudimd code")  # fmt: skip


def main() -> None:
    if sys.argv[1] in ("rss", "trace"):
        child(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
        return
    if sys.argv[1] == "floor":
        floor(Path(sys.argv[2]))
        return
    config, state, port, seconds = sys.argv[1:5]
    print("where the memory goes (RSS after each import / start stage, one process):")
    for mode in ("rss", "trace"):
        state_dir = Path(state) / mode
        proc = subprocess.run(
            [sys.executable, __file__, mode, config, str(state_dir), port, seconds],
            capture_output=True,
            text=True,
            timeout=float(seconds) + 120,
        )
        if proc.returncode != 0:
            print(f"  ({mode} failed: {proc.stderr.strip()[-1500:]})")
        print(proc.stdout.rstrip())
        if mode == "rss" and (state_dir / FLOOR_MODULES).exists():
            proc = subprocess.run(
                [sys.executable, __file__, "floor", str(state_dir / FLOOR_MODULES)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            print(proc.stdout.rstrip() or f"  (floor failed: {proc.stderr.strip()[-1500:]})")


if __name__ == "__main__":
    main()
