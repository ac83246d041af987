from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pudimd.sdnotify import Notifier, watchdog_interval


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_notifier_sends_states_to_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        notifier = Notifier(str(path))
        assert notifier.ready("3 targets")
        assert receive(sock) == "READY=1\nSTATUS=3 targets"
        assert notifier.reloading()
        lines = receive(sock).splitlines()
        assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
        assert int(lines[1].split("=")[1]) > 0
        assert notifier.watchdog() and receive(sock) == "WATCHDOG=1"
        assert notifier.stopping() and receive(sock) == "STOPPING=1"


def test_abstract_socket_names_are_supported() -> None:
    name = f"pudimd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier("@" + name).ready()
        assert receive(sock) == "READY=1"


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready()


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None, "the watchdog is meant for another process"
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None
