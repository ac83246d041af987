"""How many ``http`` probe checks per second one core does, and what each costs in CPU.

Starts a local server (nginx when /usr/sbin/nginx exists, with a temporary config on a free
port serving a small static file; else an aiohttp server in a subprocess), then runs N checks
at a fixed concurrency through the probe in this one process, pinned to one CPU (the server
gets the others), and prints checks/s and CPU milliseconds per check.

``--client aiohttp`` runs the same checks through aiohttp instead (a fresh connection per
check, TraceConfig timings on), the alternative the probe's own client was measured against.

    python bench/bench_http_client.py [-n 5000] [-c 64] [--tls] [--host localhost]
        [--client probe|aiohttp|both] [--server auto|nginx|aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from pudimd_plugins.probes.http import HttpProbe, HttpSettings  # noqa: E402

NGINX = "/usr/sbin/nginx"
BODY = b"ok\n" + b"x" * 200

_AIOHTTP_SERVER = """
import ssl, sys
from aiohttp import web
port, body, cert, key = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3], sys.argv[4]
ctx = None
if cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
app = web.Application()
app.router.add_get("/index.html", lambda request: web.Response(body=body))
web.run_app(app, host="127.0.0.1", port=port, ssl_context=ctx, print=None, access_log=None)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start listening")


def _server_cpus() -> set[int] | None:
    cpus = os.sched_getaffinity(0)
    return (cpus - {min(cpus)}) if len(cpus) > 1 else None


@contextmanager
def serve(tmp: Path, tls: bool, server: str, host: str) -> Iterator[tuple[str, Path | None]]:
    """Run the server; yield (url, CA file or None)."""
    port = _free_port()
    tmp.chmod(0o755)  # nginx workers may run as another user (nobody)
    (tmp / "html").mkdir()
    (tmp / "html" / "index.html").write_bytes(BODY)
    cert = key = ca = None
    if tls:
        import trustme

        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1", "localhost")
        cert, key, ca = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        for extra in issued.cert_chain_pems[1:]:
            extra.write_to_path(str(cert), append=True)
        issued.private_key_pem.write_to_path(str(key))
        authority.cert_pem.write_to_path(str(ca))
    use_nginx = server == "nginx" or (server == "auto" and os.access(NGINX, os.X_OK))
    if use_nginx:
        ssl_conf = f"ssl_certificate {cert}; ssl_certificate_key {key};" if tls else ""
        conf = tmp / "nginx.conf"
        conf.write_text(
            f"""
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port}{" ssl" if tls else ""};
        {ssl_conf}
        root {tmp}/html;
    }}
}}
"""
        )
        cmd = [NGINX, "-p", str(tmp), "-c", str(conf)]
        name = "nginx"
    else:
        cmd = [sys.executable, "-c", _AIOHTTP_SERVER, str(port), BODY.decode(),
               str(cert or ""), str(key or "")]  # fmt: skip
        name = "aiohttp server"
    cpus = _server_cpus()
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    try:
        _wait_port(port, proc)
        scheme = "https" if tls else "http"
        print(f"server: {name} on port {port} ({scheme})")
        yield f"{scheme}://{host}:{port}/index.html", ca
    finally:
        proc.terminate()
        proc.wait(10)


async def _run(
    check: Callable[[], Awaitable[bool]], n: int, concurrency: int
) -> tuple[float, float, int]:
    done = 0
    failures = 0

    async def worker() -> None:
        nonlocal done, failures
        while done < n:
            done += 1
            if not await check():
                failures += 1

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu, failures


async def bench_probe(
    url: str, ca: Path | None, n: int, concurrency: int
) -> tuple[float, float, int]:
    probe = HttpProbe(HttpSettings(ca_file=ca, body_contains="ok", ip_version="ipv4"))
    first = await probe.check(url, 5.0)
    if not first.success:
        raise SystemExit(f"probe failed: {first.message}")

    async def check() -> bool:
        return (await probe.check(url, 5.0)).success

    try:
        return await _run(check, n, concurrency)
    finally:
        await probe.aclose()


async def bench_aiohttp(
    url: str, ca: Path | None, n: int, concurrency: int
) -> tuple[float, float, int]:
    import ssl

    import aiohttp

    trace = aiohttp.TraceConfig()

    async def mark(session: Any, ctx: Any, params: Any) -> None:
        ctx.trace_request_ctx.marks.append(time.perf_counter())

    for signal in (trace.on_request_start, trace.on_connection_create_start,
                   trace.on_connection_create_end, trace.on_request_end):  # fmt: skip
        signal.append(mark)
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    connector = aiohttp.TCPConnector(force_close=True, limit=0, ssl=ctx)
    session = aiohttp.ClientSession(connector=connector, trace_configs=[trace])

    async def check() -> bool:
        marks: list[float] = []
        timeout = aiohttp.ClientTimeout(total=5)
        async with session.get(url, timeout=timeout, trace_request_ctx=_Ctx(marks)) as resp:
            body = await resp.read()
        return resp.status == 200 and b"ok" in body

    try:
        return await _run(check, n, concurrency)
    finally:
        await session.close()


class _Ctx:
    def __init__(self, marks: list[float]) -> None:
        self.marks = marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5000, help="checks per run")
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("--tls", action="store_true", help="https with a trustme CA")
    parser.add_argument("--client", choices=["probe", "aiohttp", "both"], default="both")
    parser.add_argument(
        "--host", default="127.0.0.1", help="host in the URL (a name costs a getaddrinfo)"
    )
    parser.add_argument("--server", choices=["auto", "nginx", "aiohttp"], default="auto")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(
        f"python {sys.version.split()[0]}, client pinned to CPU {sorted(os.sched_getaffinity(0))}"
    )
    clients = ["probe", "aiohttp"] if args.client == "both" else [args.client]
    with (
        tempfile.TemporaryDirectory(prefix="pudimd-bench-") as tmp,
        serve(Path(tmp), args.tls, args.server, args.host) as (url, ca),
    ):
        for client in clients:
            run = bench_probe if client == "probe" else bench_aiohttp
            asyncio.run(run(url, ca, min(500, args.n), args.concurrency))  # warm up
            wall, cpu, failures = asyncio.run(run(url, ca, args.n, args.concurrency))
            print(
                f"{client:8s} {args.n} checks, concurrency {args.concurrency}: "
                f"{args.n / wall:7.0f} checks/s, {cpu / args.n * 1000:.3f} ms CPU/check, "
                f"{failures} failed"
            )


if __name__ == "__main__":
    main()
