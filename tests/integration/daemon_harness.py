"""Runs the real ``pudimd run`` in a subprocess, with a fake systemd notify socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port


class DaemonProcess:
    def __init__(self, config: Path, state_dir: Path, *, watchdog_usec: int | None = None) -> None:
        self.config = config
        self.port = free_port()
        self.notify_path = config.parent / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_path.unlink(missing_ok=True)  # left by an earlier daemon of the test
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_PID", None)
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.stderr_path = config.parent / "daemon.log"
        self._stderr = self.stderr_path.open("wb")
        self.state_dir = state_dir
        self._token: str | None = None
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pudimd",
                "run",
                "-c",
                str(config),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--state-dir",
                str(state_dir),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    @property
    def token(self) -> str:
        """An admin API token of this daemon, made by ``pudimd tokens create`` on first use."""
        if self._token is None:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pudimd",
                    "tokens",
                    "create",
                    "-c",
                    str(self.config),
                    "--state-dir",
                    str(self.state_dir),
                    "--name",
                    "harness",
                    "--role",
                    "admin",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert out.returncode == 0, f"pudimd tokens create: {out.stderr}"
            self._token = out.stdout.strip()
        return self._token

    def _headers(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if path.startswith("/api/") else {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return self.messages

    def wait_for_message(self, prefix: str, timeout: float = 20.0, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            for message in self.messages[after:]:
                if message.startswith(prefix):
                    return message
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log}")
        raise AssertionError(
            f"no {prefix!r} notification within {timeout}s; got {self.messages}\n{self.log}"
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            request = urllib.request.Request(self.url + path, headers=self._headers(path))
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def post(self, path: str) -> tuple[int, str]:
        request = urllib.request.Request(
            self.url + path, method="POST", headers=self._headers(path)
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, **labels: str) -> float | None:
        _, text = self.get("/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric, _, label_text = series.partition("{")
            if metric != name:
                continue
            got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if got == want:
                return float(value)
        return None

    def wait_metric(
        self, name: str, predicate: object, timeout: float = 20.0, **labels: str
    ) -> float:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.metric(name, **labels)
            if value is not None and predicate(value):  # type: ignore[operator]
                return value
            time.sleep(0.1)
        raise AssertionError(f"{name}{labels} = {value} did not satisfy the condition\n{self.log}")

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        self._stderr.close()
        return self.proc.returncode


def running_daemon(
    config: Path, state_dir: Path, *, token_env: bool = False, **kwargs: int | None
) -> Iterator[DaemonProcess]:
    """The daemon, started and ready; with ``token_env``, ``PUDIMD_TOKEN`` holds an admin
    token of it (for ``pudimd`` commands run as subprocesses) until it stops."""
    daemon = DaemonProcess(config, state_dir, **kwargs)
    try:
        daemon.wait_for_message("READY=1")
        with pytest.MonkeyPatch.context() as patch:
            if token_env:
                patch.setenv("PUDIMD_TOKEN", daemon.token)
            yield daemon
    finally:
        daemon.stop()
