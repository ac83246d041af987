"""Config versions through the real daemon and the real CLI: recorded at start and on
reloads (SIGHUP, POST /-/reload), not on a refused config, diffed, and rolled back (the
file rewritten atomically, reloaded, recorded); a version that no longer validates is
refused with file:line errors and changes nothing."""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pudimd.store import Store
from pudimd.store.versions import (
    Change,
    get_version,
    list_versions,
    record_version,
    sha256,
)
from tests.helpers import PUDIMD, missing
from tests.integration.daemon_harness import DaemonProcess, running_daemon

pytestmark = pytest.mark.integration

V1 = """\
# version one
server:
  listen: ${VERSIONS_TEST_UNSET_LISTEN:-127.0.0.1:9115}
targets:
  - {name: first, probe: tcp, target: '127.0.0.1:9', interval: 1h}
"""
V2 = V1 + "  - {name: added, probe: tcp, target: '127.0.0.1:9', interval: 1h}\n"
BAD = V2 + "  - {name: broken, probe: tcp, target: x, interval: soon}\n"


def pudimd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUDIMD, *args], capture_output=True, text=True, timeout=60, check=False)


def ok(*args: str) -> str:
    out = pudimd(*args)
    assert out.returncode == 0, f"pudimd {' '.join(args)}: {out.stderr}{out.stdout}"
    return out.stdout


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    path = tmp_path / "pudimd.yaml"
    path.write_text(V1)
    yield from running_daemon(path, tmp_path / "state", token_env=True)


def versions(daemon: DaemonProcess) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        ok("config", "versions", "--url", daemon.url, "-o", "json")
    )
    return found


def wait_versions(daemon: DaemonProcess, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = daemon.get("/api/v1/config/versions")
        assert status == 200, body
        found: list[dict[str, Any]] = json.loads(body)["versions"]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, f"{found}\n{daemon.log}"
            return found
        time.sleep(0.05)


def scheduled(daemon: DaemonProcess, target: str) -> bool:
    return daemon.metric("pudimd_target_checks_total", target=target, probe="tcp") is not None


def test_versions_recorded_diffed_and_rolled_back(daemon: DaemonProcess, tmp_path: Path) -> None:
    config = daemon.config
    first = versions(daemon)
    assert [(v["id"], v["source"], v["author"], v["current"]) for v in first] == [
        (1, "start", "file", True)
    ]
    status, body = daemon.get("/api/v1/config/versions/1")
    assert status == 200 and json.loads(body)["text"] == V1, "as read: ${...} unexpanded"

    # an edit and SIGHUP: version 2, from the file
    config.write_text(V2)
    daemon.signal(signal.SIGHUP)
    second = wait_versions(daemon, 2)[0]
    assert (second["id"], second["source"], second["author"]) == (2, "file", "file")
    assert second["sha256"] == sha256(V2) and second["current"] is True
    assert scheduled(daemon, "added")

    # the same text again (POST /-/reload): no new version
    assert daemon.post("/-/reload")[0] == 200
    assert len(versions(daemon)) == 2

    # a bad edit: refused, nothing recorded, the old config keeps running
    config.write_text(BAD)
    status, body = daemon.post("/-/reload")
    assert status == 500 and "targets[2].interval" in body
    listed = versions(daemon)
    assert [(v["id"], v["current"]) for v in listed] == [(2, True), (1, False)]
    assert scheduled(daemon, "added") and not scheduled(daemon, "broken")

    # the diff between 1 and 2, as the CLI prints it
    diff = ok("config", "diff", "1", "2", "--url", daemon.url)
    assert diff.startswith("--- version 1\n+++ version 2\n@@ ")
    assert "\n+  - {name: added, probe: tcp, target: '127.0.0.1:9', interval: 1h}\n" in diff
    assert [line for line in diff.splitlines() if line[:1] in "+-"] == [
        "--- version 1",
        "+++ version 2",
        "+  - {name: added, probe: tcp, target: '127.0.0.1:9', interval: 1h}",
    ]

    # rollback to 1: the file is version 1's text again (a new file renamed over the old
    # one), reloaded, recorded as version 3
    inode = config.stat().st_ino
    out = ok(
        "config", "rollback", "1", "--url", daemon.url, "-m", "added was a mistake", "--as", "ann"
    )
    assert out.strip() == "rolled back to version 1: now running as version 3"
    assert config.read_text() == V1
    assert config.stat().st_ino != inode, "replaced by rename, not rewritten in place"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    third = versions(daemon)[0]
    assert (third["id"], third["source"], third["author"], third["message"]) == (
        3,
        "rollback",
        "ann",
        "added was a mistake",
    )
    assert third["sha256"] == sha256(V1) and third["current"] is True
    assert daemon.metric("pudimd_config_last_reload_successful") == 1
    assert not scheduled(daemon, "added")

    table = ok("config", "versions", "--url", daemon.url)
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "APPLIED", "SOURCE", "AUTHOR", "MESSAGE"]
    assert (
        lines[1].startswith("3* ") and "rollback" in lines[1] and "added was a mistake" in lines[1]
    )
    assert lines[3].startswith("1 ") and "start" in lines[3]

    # diff 2 -> current (3): the target removed
    back = ok("config", "diff", "2", "--url", daemon.url)
    assert back.startswith("--- version 2\n+++ version 3\n")
    assert "\n-  - {name: added," in back


def test_a_version_that_no_longer_validates_is_refused(daemon: DaemonProcess) -> None:
    config = daemon.config
    # a version recorded when a plugin with probe type "gone" was installed
    stale = V1 + "  - {name: old, probe: gone, target: x}\n"
    with sqlite3.connect(config.parent / "state" / "pudimd.db", timeout=10) as db:
        db.execute(
            "INSERT INTO config_versions (at, source, author, message, sha256, text)"
            " VALUES (?, 'file', 'file', '', ?, ?)",
            (time.time(), sha256(stale), stale),
        )
    out = pudimd("config", "rollback", "2", "--url", daemon.url)
    assert out.returncode == 1, out
    assert "HTTP 400" in out.stderr and "version 2 does not validate" in out.stderr
    assert f"{config}:6" in out.stderr and "gone" in out.stderr, out.stderr
    assert config.read_text() == V1, "the file is untouched"
    assert [v["id"] for v in versions(daemon)] == [2, 1], "nothing recorded"
    assert [v["current"] for v in versions(daemon)] == [False, True]
    assert scheduled(daemon, "first") and not scheduled(daemon, "old")

    missing = pudimd("config", "rollback", "9", "--url", daemon.url)
    assert missing.returncode == 1 and "no config version 9" in missing.stderr


@pytest.mark.anyio
async def test_versions_on_postgresql() -> None:
    """The same queries on PostgreSQL (the server on this machine, a database made for the
    test): recorded only when the text changes, listed, fetched."""
    server = "postgres@127.0.0.1:5432"
    try:
        admin = await asyncpg.connect(f"postgresql://{server}/test", timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        missing("PostgreSQL at 127.0.0.1:5432")
    name = f"pudimd_test_{secrets.token_hex(6)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        store = await Store.open(f"postgresql://{server}/{name}")
        try:
            first = await record_version(store.engine, V1, Change("start"))
            assert first is not None and first.id == 1
            assert await record_version(store.engine, V1) is None
            second = await record_version(store.engine, V2, Change("rollback", "ann", "why"))
            assert second is not None and second.id == 2 and second.author == "ann"
            assert [v.id for v in await list_versions(store.engine)] == [2, 1]
            got = await get_version(store.engine, 1)
            assert got is not None and got.text == V1 and got.sha256 == sha256(V1)
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
