"""Helpers shared by the test suite."""

from __future__ import annotations

import os
import shutil
import socket
import sys

import pytest

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


def has_ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False
