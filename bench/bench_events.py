"""Result -> live event latency: the daemon (``python -m pudimd run``, pinned to CPU 0)
checks ``--targets`` ``tcp`` targets every ``--interval`` against a loopback listener,
while ``--sse`` Server-Sent Events clients and ``--ws`` WebSocket clients (two client
processes, pinned to CPU 1) read ``/api/v1/events`` and ``/api/v1/events/ws``.

Every result event carries ``at``, when its check completed (start + duration); a client
stamps each event when it reads it: latency = receipt - ``at``.  Printed: p50, p99 and max
over ``--seconds`` (after ``--warmup``), events received per client and per second,
events the daemon dropped for slow clients, and the daemon's CPU without any client and
with them (the cost of the streams: bus, encoding, transport).  Then, in this process, the
bus alone: ``publish_result`` per event with no subscriber and with 40.

Bar (issue #7): p99 result -> event latency < 500 ms.

Auth is off in the daemon's config (``auth.enabled: false``): the bench measures the
streams, not the token check (made once per connection anyway).

    python bench/bench_events.py [--targets 2000] [--interval 1] [--sse 20] [--ws 20]
        [--seconds 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import (
    CPUS,
    DaemonProc,
    TcpSink,
    bucket_delta,
    histogram_quantile,
    install_signal_cleanup,
    temp_dir,
    write_config,
)

BAR_P99 = 0.5
_AT = b'"at":"'


def _at(data: bytes) -> float | None:
    """The ``at`` of a result event's JSON, without parsing all of it (the clients must
    keep up with tens of thousands of events a second)."""
    i = data.rfind(_AT)
    if i < 0 or b'"type":"result"' not in data:
        return None
    text = data[i + len(_AT) : i + len(_AT) + 24].decode()
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class _Tally:
    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.latencies: list[float] = []
        self.events = 0
        self.dropped = 0

    def add(self, data: bytes, received: float) -> None:
        if b'"type":"dropped"' in data:
            self.dropped += int(data.rsplit(b":", 1)[1].rstrip(b"}"))
            return
        at = _at(data)
        if at is None or not self.start <= received < self.end:
            return
        self.events += 1
        self.latencies.append(received - at)


async def _sse_client(base: str, tally: _Tally) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{base}/api/v1/events?types=result") as resp,
    ):
        buffer = b""
        async for chunk in resp.content.iter_any():
            received = time.time()
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                for line in event.split(b"\n"):
                    if line.startswith(b"data: "):
                        tally.add(line[6:], received)
            if received >= tally.end:
                return


async def _ws_client(base: str, tally: _Tally) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/api/v1/events/ws?types=result", max_msg_size=0) as ws,
    ):
        async for message in ws:
            received = time.time()
            if message.type == aiohttp.WSMsgType.TEXT:
                tally.add(message.data.encode(), received)
            if received >= tally.end:
                return


def _clients(kind: str, base: str, n: int, start: float, end: float, out: Connection) -> None:
    """A client process: ``n`` clients of ``kind``; sends back latencies and counts."""
    if len(CPUS) > 1:
        os.sched_setaffinity(0, {max(CPUS)})
    tallies = [_Tally(start, end) for _ in range(n)]
    client = _sse_client if kind == "sse" else _ws_client

    async def main() -> None:
        await asyncio.gather(*(client(base, t) for t in tallies))

    asyncio.run(main())
    out.send(
        {
            "latencies": [x for t in tallies for x in t.latencies],
            "events": [t.events for t in tallies],
            "dropped": sum(t.dropped for t in tallies),
        }
    )
    out.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(args: argparse.Namespace, daemon: DaemonProc) -> dict[str, Any]:
    time.sleep(args.warmup)
    cpu0, t0 = daemon.cpu_seconds(), time.monotonic()
    time.sleep(args.idle)
    idle_cpu = (daemon.cpu_seconds() - cpu0) / (time.monotonic() - t0)

    start = time.time() + args.warmup
    end = start + args.seconds
    ctx = multiprocessing.get_context("spawn")
    procs: list[tuple[Any, Connection]] = []
    for kind, n in (("sse", args.sse), ("ws", args.ws)):
        if n:
            mine, theirs = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_clients, args=(kind, daemon.base, n, start, end, theirs))
            proc.start()
            procs.append((proc, mine))
    time.sleep(max(0.0, start - time.time()))
    cpu0, t0, before = daemon.cpu_seconds(), time.monotonic(), daemon.scrape()
    time.sleep(max(0.0, end - time.time()))
    busy_cpu = (daemon.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    after = daemon.scrape()
    lateness = "pudimd_scheduler_lateness_seconds"
    late = bucket_delta(after.buckets(lateness), before.buckets(lateness))
    results = []
    for proc, conn in procs:
        if not conn.poll(60):
            raise SystemExit("a client process did not report")
        results.append(conn.recv())
        proc.join(10)
    latencies = [x for r in results for x in r["latencies"]]
    per_client = [e for r in results for e in r["events"]]
    return {
        "latencies": latencies,
        "per_client": per_client,
        "dropped": sum(r["dropped"] for r in results),
        "idle_cpu": idle_cpu,
        "busy_cpu": busy_cpu,
        "checks_per_s": (after.get("pudimd_checks_total") - before.get("pudimd_checks_total"))
        / (after.at - before.at),
        "lateness_p99": histogram_quantile(0.99, late),
    }


def bus_alone(n: int = 20_000, subscribers: int = 40) -> tuple[float, float]:
    """Microseconds per ``publish_result`` with no subscriber, then with ``subscribers``
    (each with a type filter; their queues drained as a stream would)."""
    from pudimd.events import EventBus, parse_filter
    from pudimd.results import ProbeResult

    async def run() -> tuple[float, float]:
        bus = EventBus(linger=0)
        result = ProbeResult(success=True, duration=0.001, message="", timestamp=time.time())
        t0 = time.perf_counter()
        for i in range(n):
            bus.publish_result(f"t{i % 2000}", "tcp", result)
        idle = (time.perf_counter() - t0) / n * 1e6
        subs = [bus.subscribe(parse_filter(["result"], None)) for _ in range(subscribers)]
        t0 = time.perf_counter()
        for i in range(n):
            bus.publish_result(f"t{i % 2000}", "tcp", result)
            if i % 500 == 499:
                for sub in subs:
                    await sub.next(0)
        busy = (time.perf_counter() - t0) / n * 1e6
        return idle, busy

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--sse", type=int, default=20)
    parser.add_argument("--ws", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--idle", type=float, default=10, help="seconds of CPU without clients")
    args = parser.parse_args()
    install_signal_cleanup()
    sink = TcpSink()
    try:
        with temp_dir("pudimd-bench-events-") as tmp:
            config = tmp / "pudimd.yaml"
            write_config(
                config,
                [
                    {
                        "name": f"t{i:05d}",
                        "probe": "tcp",
                        "target": f"127.0.0.1:{sink.port}",
                        "interval": f"{args.interval:g}s",
                    }
                    for i in range(args.targets)
                ],
                auth={"enabled": False},
                logging={"format": "json", "level": "warning"},
            )
            with DaemonProc(config, tmp / "state", cpu=0) as daemon:
                print(f"daemon ready after {daemon.wait_ready():.1f} s")
                got = measure(args, daemon)
                rss = daemon.rss_mb()
    finally:
        sink.close()
    lat = got["latencies"]
    if not lat:
        raise SystemExit("no result event received")
    clients = args.sse + args.ws
    p50, p99, top = _pct(lat, 0.5), _pct(lat, 0.99), max(lat)
    print(
        f"{args.targets:,} tcp targets every {args.interval:g} s, {args.sse} SSE + {args.ws} "
        f"WebSocket clients, {args.seconds:g} s"
    )
    print(
        f"events received: {len(lat):,} ({len(lat) / args.seconds / max(clients, 1):,.0f}/s "
        f"per client; fewest {min(got['per_client']):,}, most {max(got['per_client']):,} "
        f"per client); dropped by the daemon for slow clients: {got['dropped']:,}"
    )
    print(
        f"result -> event latency: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {top * 1000:.1f} ms, mean {statistics.fmean(lat) * 1000:.1f} ms "
        f"(bar p99 < {BAR_P99 * 1000:.0f} ms: {'pass' if p99 < BAR_P99 else 'MISS'})"
    )
    print(
        f"checks: {got['checks_per_s']:,.0f}/s with the clients, scheduler lateness p99 "
        f"{got['lateness_p99'] * 1000:.1f} ms"
    )
    print(
        f"daemon CPU: {got['idle_cpu'] * 100:.0f} % of a core without clients, "
        f"{got['busy_cpu'] * 100:.0f} % with them; RSS {rss:.0f} MB"
    )
    idle, busy = bus_alone()
    print(
        f"bus alone: publish_result {idle:.2f} us/event with no subscriber, "
        f"{busy:.2f} us/event with 40 (encode once, queue 40 times)"
    )


if __name__ == "__main__":
    main()
