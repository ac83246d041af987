"""Store write throughput: N results for ~2,000 targets through ``Store.enqueue`` and the
writer task into SQLite in a temporary directory.  Prints results/s.

    .venv/bin/python bench/bench_store.py [--results 200000] [--targets 2000] [--url URL]

The clock runs from the first enqueue until the writer has committed the last row; the
producer hands the event loop back every 1,000 results, as the scheduler would.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import anyio
import anyio.lowlevel

from pudimd.results import ProbeResult
from pudimd.store import Store

BAR = 20_000  # results/s into SQLite


def make_results(n: int, targets: int) -> list[tuple[str, str, ProbeResult]]:
    """Realistic-looking results, built before the clock starts."""
    rng = random.Random(1)
    now = time.time()
    names = [f"https://service-{i}.example.com/health" for i in range(targets)]
    out = []
    for i in range(n):
        ok = rng.random() > 0.05
        duration = rng.lognormvariate(-3.5, 0.8)
        result = ProbeResult(
            success=ok,
            duration=duration,
            message="" if ok else "HTTP 503 Service Unavailable",
            status=200 if ok else 503,
            phases={"dns": duration * 0.1, "connect": duration * 0.2, "first_byte": duration * 0.6}
            if i % 2
            else {},
            timestamp=now - (n - i) * 0.001,
        )
        out.append((names[i % targets], "http", result))
    return out


async def bench(url: str, n: int, targets: int) -> float:
    items = make_results(n, targets)
    written = 0
    transactions = 0

    def on_written(count: int) -> None:
        nonlocal written, transactions
        written += count
        transactions += 1

    store = await Store.open(url, on_written=on_written)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            start = time.perf_counter()
            for i, (target, probe, result) in enumerate(items, 1):
                store.enqueue(target, probe, result)
                if i % 1000 == 0:
                    await anyio.lowlevel.checkpoint()
            while written < n:
                await anyio.sleep(0.001)
            elapsed = time.perf_counter() - start
            tg.cancel_scope.cancel()
        rollups = len(await store.rollups(items[0][0], "1m"))
        print(f"  {transactions} transactions, {n // transactions} results each on average")
        print(f"  minute rollups written for one target: {rollups}")
    finally:
        await store.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=200_000)
    parser.add_argument("--targets", type=int, default=2_000)
    parser.add_argument("--url", help="database URL (default: SQLite in a temporary dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'pudimd.db'}"
        print(f"store write: {args.results} results, {args.targets} targets, {url.split(':')[0]}")
        rate = anyio.run(bench, url, args.results, args.targets)
    verdict = ""
    if args.url is None:
        verdict = " (ok)" if rate >= BAR else f" (BELOW the bar of {BAR} for SQLite)"
    print(f"store write: {rate:,.0f} results/s{verdict}")


if __name__ == "__main__":
    main()
