"""Shared pieces of the daemon benchmarks (bench_throughput, bench_idle, bench_reload).

Everything runs on 127.0.0.1 and is cleaned up on exit: a local nginx in a temporary prefix,
the daemon started as ``python -m pudimd run`` on a free port with a temporary state dir,
/metrics scraped and parsed, Prometheus-style histogram quantiles.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "NGINX",
    "DaemonProc",
    "Metrics",
    "Nginx",
    "TcpSink",
    "bucket_delta",
    "cpu_pin_cmd",
    "cpu_window",
    "free_port",
    "histogram_quantile",
    "http_get",
    "http_post",
    "install_signal_cleanup",
    "nginx",
    "temp_dir",
    "wait_port",
    "write_config",
]

NGINX = "/usr/sbin/nginx"
ROOT = Path(__file__).resolve().parent.parent
LabelKey = tuple[tuple[str, str], ...]
CPUS = frozenset(os.sched_getaffinity(0))
"""The CPUs this bench may use (taken at import, before a bench narrows its own)."""


# -- processes and ports -------------------------------------------------------------------


def install_signal_cleanup() -> None:
    """Turn SIGTERM/SIGHUP to the bench into SystemExit, so ``finally`` blocks clean up."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")


def cpu_pin_cmd(cpu: int | None) -> list[str]:
    """``taskset -c CPU`` when taskset exists, the CPU exists and the machine has >1 CPU."""
    if cpu is None or shutil.which("taskset") is None:
        return []
    if len(CPUS) < 2 or cpu not in CPUS:
        return []
    return ["taskset", "-c", str(cpu)]


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


# -- nginx ----------------------------------------------------------------------------------


@dataclass
class Nginx:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def nginx(tmp: Path, cpu: int | None = 1) -> Iterator[Nginx]:
    """nginx in the foreground (``daemon off``), one worker, no access log, answering
    ``200 ok`` for any path on a free 127.0.0.1 port; pinned to ``cpu`` when possible."""
    if not os.access(NGINX, os.X_OK):
        raise SystemExit(f"{NGINX} not found: install nginx (make deb-deps)")
    prefix = tmp / "nginx"
    prefix.mkdir()
    prefix.chmod(0o755)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client; proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_timeout 5s;
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
}}
"""
    )
    cmd = [*cpu_pin_cmd(cpu), NGINX, "-p", str(prefix), "-c", str(conf)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield Nginx(port, proc)
    finally:
        _stop_process(proc)


# -- a TCP sink the tcp probe can connect to -------------------------------------------------


class TcpSink:
    """A 127.0.0.1 listening socket whose thread accepts and closes every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._closed = True
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(2)


# -- config -----------------------------------------------------------------------------------


def _yaml(value: Any) -> str:
    """A flow-style YAML rendering (JSON is YAML)."""
    return json.dumps(value, separators=(", ", ": "))


def write_config(
    path: Path, targets: Sequence[Mapping[str, Any]], **sections: Mapping[str, Any]
) -> None:
    """Write a pudimd config: each keyword is a top-level section (``scheduler={...}``),
    ``targets`` one flow-style mapping per line (fast to write and to diff)."""
    lines = [f"{name}: {_yaml(dict(value))}" for name, value in sections.items()]
    lines.append("targets:")
    lines.extend(f"  - {_yaml(dict(target))}" for target in targets)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


# -- HTTP -------------------------------------------------------------------------------------


def http_get(
    url: str, timeout: float = 30, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- metrics ----------------------------------------------------------------------------------


class Metrics:
    """One /metrics scrape: every sample by (sample name, sorted label pairs)."""

    def __init__(self, text: str, at: float, seconds: float) -> None:
        self.at = at
        self.seconds = seconds
        self.size = len(text)
        self.samples: dict[tuple[str, LabelKey], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                self.samples[key] = float(sample.value)

    def get(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(
            value
            for (sname, lkey), value in self.samples.items()
            if sname == name and want <= set(lkey)
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """``{label value: sample value}`` of the samples called ``name``."""
        out: dict[str, float] = {}
        for (sname, lkey), value in self.samples.items():
            if sname == name:
                out[dict(lkey).get(label, "")] = value
        return out

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """Cumulative ``(le, count)`` of histogram ``name``, sorted by ``le``."""
        out = [
            (float(dict(lkey)["le"]), value)
            for (sname, lkey), value in self.samples.items()
            if sname == f"{name}_bucket"
        ]
        return sorted(out)


def bucket_delta(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    old = dict(before)
    return [(le, count - old.get(le, 0.0)) for le, count in after]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over cumulative ``(le, count)`` buckets (with +Inf):
    linear interpolation inside the bucket holding the rank; the lowest bucket starts at 0;
    a rank in the +Inf bucket answers the highest finite bound."""
    if not buckets or buckets[-1][0] != math.inf:
        return math.nan
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for i, (le, count) in enumerate(buckets):
        if count >= rank:
            if le == math.inf:
                return buckets[i - 1][0] if i > 0 else math.nan
            if i == 0 and le <= 0:
                return le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return math.nan


# -- the daemon -------------------------------------------------------------------------------


class DaemonProc:
    """``python -m pudimd run -c CONFIG --listen 127.0.0.1:PORT --state-dir DIR``, pinned to
    ``cpu`` when possible, stderr to a file (``log_lines()`` reads it); ``python`` is this
    interpreter unless given."""

    def __init__(
        self,
        config: Path,
        state_dir: Path,
        *,
        port: int | None = None,
        cpu: int | None = 0,
        python_args: Sequence[str] = (),
        python: str | None = None,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stderr_path = state_dir / "daemon.stderr"
        state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            *cpu_pin_cmd(cpu),
            python or sys.executable,
            *python_args,
            "-m",
            "pudimd",
            "run",
            "-c",
            str(config),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--state-dir",
            str(state_dir),
        ]
        self._stderr = self.stderr_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, cwd=str(ROOT)
        )
        self.ps = psutil.Process(self.proc.pid)
        self.ready_after: float | None = None

    def __enter__(self) -> DaemonProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 120) -> float:
        """Wait for 200 from /-/ready; returns seconds since the process started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"pudimd exited with {self.proc.returncode}:\n{self.stderr_text()[-3000:]}"
                )
            try:
                status, _ = http_get(f"{self.base}/-/ready", timeout=2)
                if status == 200:
                    self.ready_after = time.monotonic() - self.started
                    return self.ready_after
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"pudimd not ready after {timeout:g}s:\n{self.stderr_text()[-3000:]}")

    def admin_token(self) -> str:
        """A new admin API token of this daemon, made in its store (the daemon has
        migrated it once ready)."""
        import anyio

        from pudimd.auth.tokens import create_token
        from pudimd.store import Store

        async def make() -> str:
            store = await Store.open(f"sqlite:///{self.state_dir / 'pudimd.db'}")
            try:
                secret, _ = await create_token(store.engine, "bench", "admin", created_by="bench")
                return secret
            finally:
                await store.close()

        return anyio.run(make)

    def scrape(self) -> Metrics:
        at = time.time()
        t0 = time.perf_counter()
        status, body = http_get(f"{self.base}/metrics", timeout=60)
        seconds = time.perf_counter() - t0
        if status != 200:
            raise SystemExit(f"/metrics answered {status}")
        return Metrics(body.decode(), at, seconds)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the daemon process so far."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 1e6

    def stderr_text(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (``logging: {format: json}``)."""
        out: list[dict[str, Any]] = []
        for line in self.stderr_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def stop(self) -> None:
        """SIGTERM, wait for the graceful stop (10 s budget), then SIGKILL."""
        try:
            _stop_process(self.proc, timeout=20)
        finally:
            self._stderr.close()


@contextmanager
def cpu_window(daemon: DaemonProc) -> Iterator[dict[str, float]]:
    """Measure daemon CPU % (of one core) and wall seconds over the ``with`` body."""
    out: dict[str, float] = {}
    wall0, cpu0 = time.monotonic(), daemon.cpu_seconds()
    try:
        yield out
    finally:
        wall = time.monotonic() - wall0
        out["wall"] = wall
        out["cpu_pct"] = 100.0 * (daemon.cpu_seconds() - cpu0) / wall if wall > 0 else math.nan
