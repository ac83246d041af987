"""Helpers shared by the test suite."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from pudimd.results import ProbeResult

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str) -> None:
    """A dependency of this test is missing: skip on a developer's laptop, fail under CI=true
    (where `make test` installs everything, so missing means broken)."""
    if IN_CI:
        pytest.fail(f"{what} is missing (CI=true: a missing dependency is a failure)")
    pytest.skip(f"{what} is missing")  # not under CI: see above


def require_binary(name: str, *extra_dirs: str) -> str:
    """Path of executable ``name`` (also looked up in ``extra_dirs``, e.g. /usr/sbin)."""
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *extra_dirs]))
    if path is None:
        missing(f"the {name!r} binary")
        raise AssertionError("unreachable")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PUDIMD = [sys.executable, "-m", "pudimd"]
"""The ``pudimd`` command of the Python running the tests."""


def require_ipv6_loopback() -> None:
    """The test needs ``::1``: skip on a laptop without it, fail under CI=true (this
    project's machines have it)."""
    if not has_ipv6_loopback():
        missing("an IPv6 loopback (::1)")


def has_ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_listening(
    proc: subprocess.Popen[bytes], name: str, port: int, within: float = 10.0
) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:``port``; fail the test if
    ``proc`` (``name``) exits first or nothing listens within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not listen on {port} within {within:g}s")
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` and reap it (killed when it takes over 10 s)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def run_server(
    name: str, argv: Sequence[str], port: int, within: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run the server ``argv`` (in the foreground) until the ``with`` ends; yield it once it
    listens on 127.0.0.1:``port``.  Fail the test, with what it wrote to stderr, if it exits
    first or does not listen within ``within`` seconds."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: it never blocks the server
        proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=errors)
        try:
            try:
                wait_listening(proc, name, port, within)
            except pytest.fail.Exception as exc:
                errors.seek(0)
                text = errors.read().decode(errors="replace").strip()
                pytest.fail(f"{exc}: {text or 'no error output'}")
            yield proc
        finally:
            stop(proc)


async def run_check(probe_type: Any, target: str, within: float, **settings: Any) -> ProbeResult:
    """One check of ``target`` within ``within`` seconds by a new ``probe_type`` made with
    ``settings`` (validated by its ``Settings``); the probe is closed afterwards."""
    probe = probe_type(probe_type.Settings.model_validate(settings))
    try:
        result: ProbeResult = await probe.check(target, within)
        return result
    finally:
        await probe.aclose()
