"""The REST API on a big config: listing targets under load, a bulk import, a single edit.

1. Start ``python -m pudimd run`` (pinned to CPU 0; wrk and this script on CPU 1) on a
   config of ``--targets`` (10,000) ``tcp`` targets checking a local listener every hour,
   and make an admin token in its store.
2. ``GET /api/v1/targets`` (a page of 100, the default) with wrk: ``--connections`` (50)
   concurrent clients for ``--seconds`` (10), twice: the same page over and over (the
   daemon keeps a built page until a result or an edit changes it), then with a
   different query string on every request (every page built: the worst case, what a
   10,000-target config checked every few seconds would see); then the same for pages of
   1,000, for information.
3. A single-target edit: ``PATCH /api/v1/targets/{name}`` ``--edits`` (20) times, each
   answered once the file is written, validated, reloaded and the target rescheduled (the
   answer comes after all that); each edit is checked through ``GET``.
4. A bulk import: a second daemon on a config without targets, ``POST
   /api/v1/targets/import`` of ``--targets`` targets as JSON; timed until the answer
   (written, validated, applied, every target scheduled), then checked through ``GET``;
   then the same import with every target changed (all of them updated in place), for
   information.

Bars (issue #7): GET p99 under 50 ms with 10,000 targets and 50 clients; bulk import of
10,000 targets under 5 s; a single edit applied under 1 s.

    python bench/bench_api.py [--targets 10000] [--connections 50] [--seconds 10]
        [--edits 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DaemonProc,
    TcpSink,
    cpu_pin_cmd,
    install_signal_cleanup,
    temp_dir,
    write_config,
)

GET_P99_BAR_MS = 50.0
IMPORT_BAR_S = 5.0
EDIT_BAR_S = 1.0


def request(
    port: int, method: str, path: str, token: str, body: Any = None, timeout: float = 120
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()


def targets(count: int, port: int, prefix: str = "t") -> list[dict[str, Any]]:
    width = len(str(count))
    return [
        {
            "name": f"{prefix}{i:0{width}}",
            "probe": "tcp",
            "target": f"127.0.0.1:{port}",
            "interval": "1h",
            "labels": {"team": f"team{i % 20}"},
        }
        for i in range(count)
    ]


_LATENCY = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str, token: str, connections: int, seconds: int, tmp: Path, *, unique: bool = False
) -> dict[str, float]:
    """wrk's latency percentiles (ms) and rate; ``unique`` adds a different query parameter
    to every request, so no answer can come from the daemon's page cache."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install it (make deb-deps)")
    script = tmp / "auth.lua"
    lua = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    if unique:
        lua += (
            "local n = 0\n"
            "request = function()\n"
            "  n = n + 1\n"
            '  return wrk.format(nil, wrk.path .. "&n=" .. n .. "-" .. math.random(1e9))\n'
            "end\n"
        )
    script.write_text(lua)
    cmd = [
        *cpu_pin_cmd(1),
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    found = {f"p{m[0]}": float(m[1]) * _UNIT[m[2]] for m in _LATENCY.findall(out)}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    found["rps"] = float(rate.group(1)) if rate else 0.0
    found["non2xx"] = float(errors.group(1)) if errors else 0.0
    return found


def main() -> None:
    install_signal_cleanup()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    sink = TcpSink()
    failed = []
    with temp_dir("pudimd-bench-api-") as tmp:
        config = tmp / "pudimd.yaml"
        # one token stands for the 50 clients here: lift its rate limit (1,000/s by default)
        unlimited = {"rate_limit": {"per_token": {"rate": 1e6, "burst": 1_000_000}}}
        write_config(
            config, targets(args.targets, sink.port), logging={"level": "warning"}, auth=unlimited
        )
        state = tmp / "state"
        with DaemonProc(config, state) as daemon:
            ready = daemon.wait_ready()
            token = daemon.admin_token()
            print(f"daemon with {args.targets} targets ready in {ready:.1f}s")
            # warm the listing cache (the file is parsed once per state of it)
            status, body = request(daemon.port, "GET", "/api/v1/targets", token)
            assert status == 200 and body["total"] == args.targets, (status, body)
            for limit, unique in ((100, False), (100, True), (1000, False), (1000, True)):
                url = f"{daemon.base}/api/v1/targets?limit={limit}"
                got = wrk(url, token, args.connections, args.seconds, tmp, unique=unique)
                what = "every page built" if unique else "pages cached between results"
                print(
                    f"GET /api/v1/targets?limit={limit} ({what}), {args.connections} clients, "
                    f"{args.seconds}s: {got['rps']:.0f} req/s, p50 {got['p50']:.1f} ms, "
                    f"p90 {got['p90']:.1f} ms, p99 {got['p99']:.1f} ms"
                    + (f", {got['non2xx']:.0f} non-2xx" if got["non2xx"] else "")
                )
                if got["non2xx"]:
                    failed.append(f"GET limit={limit}: non-2xx answers")
                if limit == 100 and got["p99"] >= GET_P99_BAR_MS:
                    failed.append(f"GET p99 {got['p99']:.1f} ms >= {GET_P99_BAR_MS:g} ms")
            # single edits
            name = f"t{args.targets // 2:0{len(str(args.targets))}}"
            took = []
            for i in range(args.edits):
                value = f"127.0.0.{2 + i % 200}:{sink.port}"
                started = time.perf_counter()
                status, body = request(
                    daemon.port, "PATCH", f"/api/v1/targets/{name}", token, {"target": value}
                )
                took.append(time.perf_counter() - started)
                if status != 200:
                    raise SystemExit(f"PATCH answered {status}: {body}")
                status, body = request(daemon.port, "GET", f"/api/v1/targets/{name}", token)
                assert body["target"] == value and body["status"]["scheduled"], body
            took.sort()
            p95 = took[max(0, int(len(took) * 0.95) - 1)]
            print(
                f"single edit of 1 of {args.targets} targets (written, validated, applied): "
                f"median {statistics.median(took) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
                f"max {took[-1] * 1000:.0f} ms"
            )
            if took[-1] >= EDIT_BAR_S:
                failed.append(f"single edit max {took[-1]:.2f}s >= {EDIT_BAR_S:g}s")
        # bulk import into a daemon without targets
        empty = tmp / "empty.yaml"
        empty.write_text('logging: {level: warning}\n', encoding="utf-8")
        state2 = tmp / "state2"
        with DaemonProc(empty, state2) as daemon:
            daemon.wait_ready()
            token = daemon.admin_token()
            items = targets(args.targets, sink.port, prefix="imp")
            started = time.perf_counter()
            status, body = request(daemon.port, "POST", "/api/v1/targets/import", token, items)
            seconds = time.perf_counter() - started
            if status != 200:
                raise SystemExit(f"import answered {status}: {body}")
            status, listed = request(daemon.port, "GET", "/api/v1/targets?limit=1", token)
            assert listed["total"] == args.targets and body["created"] == args.targets, body
            metrics = daemon.scrape()
            scheduled = metrics.get("pudimd_targets")
            print(
                f"bulk import of {args.targets} targets (written, validated, applied): "
                f"{seconds:.2f}s; targets scheduled per /metrics: {scheduled:.0f}"
            )
            if seconds >= IMPORT_BAR_S:
                failed.append(f"bulk import {seconds:.2f}s >= {IMPORT_BAR_S:g}s")
            # the same import again with every target changed: 10,000 updates in place
            for item in items:
                item["interval"] = "30m"
            started = time.perf_counter()
            status, body = request(daemon.port, "POST", "/api/v1/targets/import", token, items)
            seconds = time.perf_counter() - started
            if status != 200 or body["updated"] != args.targets:
                raise SystemExit(f"re-import answered {status}: {body}")
            print(
                f"re-import changing all {args.targets} targets (updated in place): "
                f"{seconds:.2f}s"
            )
    sink.close()
    if failed:
        print("FAILED: " + "; ".join(failed))
        raise SystemExit(1)
    print("all bars met")


if __name__ == "__main__":
    main()
