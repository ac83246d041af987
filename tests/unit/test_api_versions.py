"""``/api/v1/config/versions``, ``/diff`` and ``/rollback`` against the daemon running in this
process (echo probes, SQLite in a temporary directory), over real HTTP."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pudimd.api.problems import CONTENT_TYPE
from pudimd.daemon import Daemon
from pudimd.store.versions import Change, record_version, sha256
from tests.unit import api_harness

pytestmark = pytest.mark.anyio

V1 = "targets:\n  - {name: web, probe: echo, target: a.example, interval: 1h}\n"
V2 = V1 + "  - {name: api, probe: echo, target: b.example, interval: 1h}\n"


class Running:
    def __init__(self, daemon: Daemon, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
        self.daemon = daemon
        self.http = http
        self.auth = auth
        self.base = f"http://127.0.0.1:{daemon.port}/api/v1/config"

    async def get(self, path: str, status: int = 200, **headers: str) -> Any:
        async with self.http.get(self.base + path, headers={**self.auth, **headers}) as resp:
            assert resp.status == status, await resp.text()
            if resp.content_type in ("application/json", CONTENT_TYPE):
                return await resp.json(content_type=None)
            return await resp.text()

    async def rollback(self, version: int | str, body: Any, status: int = 200) -> Any:
        async with self.http.post(
            f"{self.base}/rollback/{version}", json=body, headers=self.auth
        ) as resp:
            assert resp.status == status, await resp.text()
            if status >= 400:
                assert resp.content_type == CONTENT_TYPE
            return await resp.json(content_type=None)

    async def ids(self) -> list[tuple[int, str]]:
        return [(v["id"], v["source"]) for v in (await self.get("/versions"))["versions"]]


@asynccontextmanager
async def running(config: Path, state: Path) -> AsyncIterator[Running]:
    async with api_harness.running(config, state) as api:
        yield Running(api.daemon, api.http, api.headers)


@pytest.fixture
async def served(tmp_path: Path, migrated: Path) -> AsyncIterator[Running]:
    config = tmp_path / "pudimd.yaml"
    config.write_text(V1)
    (tmp_path / "state").mkdir()
    shutil.copyfile(migrated, tmp_path / "state" / "pudimd.db")
    async with running(config, tmp_path / "state") as run:
        yield run


async def test_start_records_version_one(served: Running) -> None:
    listed = (await served.get("/versions"))["versions"]
    assert len(listed) == 1
    first = listed[0]
    assert first["id"] == 1 and first["source"] == "start" and first["author"] == "file"
    assert first["current"] is True and first["sha256"] == sha256(V1)
    assert first["at"].endswith("Z") and "text" not in first
    got = await served.get("/versions/1")
    assert got["text"] == V1 and got["current"] is True


async def test_reloads_record_new_text_only_and_a_bad_config_records_nothing(
    served: Running,
) -> None:
    daemon = served.daemon
    daemon.config_path.write_text(V2)
    assert await daemon.reload("sighup") is None
    assert await served.ids() == [(2, "file"), (1, "start")]
    assert (await served.get("/versions/2"))["text"] == V2
    assert await daemon.reload("http") is None, "unchanged text"
    assert await served.ids() == [(2, "file"), (1, "start")]
    daemon.config_path.write_text(V2 + "  - {name: bad, probe: nope, target: x}\n")
    assert await daemon.reload("http") is not None
    assert await served.ids() == [(2, "file"), (1, "start")]
    assert daemon.scheduler is not None and set(daemon.scheduler.jobs) == {"web", "api"}
    assert daemon.config_version is not None and daemon.config_version.id == 2


async def test_diff_as_text_and_json(served: Running) -> None:
    served.daemon.config_path.write_text(V2)
    assert await served.daemon.reload() is None
    text = await served.get("/diff?from=1&to=2")
    assert text == (
        "--- version 1\n+++ version 2\n@@ -1,2 +1,3 @@\n"
        " targets:\n"
        "   - {name: web, probe: echo, target: a.example, interval: 1h}\n"
        "+  - {name: api, probe: echo, target: b.example, interval: 1h}\n"
    )
    answer = await served.get("/diff?from=1", Accept="application/json")
    assert answer == {"from": 1, "to": 2, "diff": text}, "to defaults to the current one"
    assert (await served.get("/diff?from=2&to=1")).startswith("--- version 2\n+++ version 1\n")
    assert await served.get("/diff?from=2&to=2") == ""


async def test_rollback_writes_reloads_and_records(served: Running) -> None:
    daemon = served.daemon
    daemon.config_path.write_text(V2)
    assert await daemon.reload() is None
    answer = await served.rollback(1, {"author": "alice", "message": "api broke things"})
    assert answer["rolled_back_to"] == 1 and answer["changed"] is True
    recorded = answer["version"]
    assert recorded["id"] == 3 and recorded["source"] == "rollback"
    assert recorded["author"] == "alice" and recorded["message"] == "api broke things"
    assert recorded["sha256"] == sha256(V1) and recorded["current"] is True
    assert daemon.config_path.read_text() == V1
    assert daemon.scheduler is not None and set(daemon.scheduler.jobs) == {"web"}
    assert await served.ids() == [(3, "rollback"), (2, "file"), (1, "start")]
    assert sorted(p.name for p in daemon.config_path.parent.iterdir()) == [
        "pudimd.yaml",
        "state",
    ], "no temporary file left next to the config"

    again = await served.rollback(3, {"author": "bob"})
    assert again["changed"] is False and again["version"]["id"] == 3, "the running text"
    default = await served.rollback(2, {"author": "bob"})
    assert default["version"]["message"] == "rollback to version 2"


async def test_a_version_that_no_longer_validates_is_refused_and_nothing_changes(
    served: Running,
) -> None:
    daemon = served.daemon
    assert daemon.store is not None
    # recorded while a plugin with probe type "gone" was installed
    stale = (
        "targets:\n"
        "  - {name: web, probe: echo, target: a.example}\n"
        "  - {name: old, probe: gone, target: x}\n"
    )
    added = await record_version(daemon.store.engine, stale, Change("file"))
    assert added is not None and added.id == 2
    problem = await served.rollback(2, {"author": "alice"}, status=400)
    assert problem["status"] == 400 and problem["title"] == "Bad Request"
    assert "version 2 does not validate" in problem["detail"]
    assert "nothing was changed" in problem["detail"]
    where = f"{daemon.config_path}:3"
    assert any(e["location"].startswith(where) for e in problem["errors"]), problem
    assert any("gone" in e["message"] for e in problem["errors"]), problem
    assert where in problem["detail"]
    assert daemon.config_path.read_text() == V1, "the file is untouched"
    assert await served.ids() == [(2, "file"), (1, "start")], "no version recorded"
    assert daemon.config_version is not None and daemon.config_version.id == 1


async def test_bad_requests(served: Running) -> None:
    assert (await served.get("/versions/9", status=404))["detail"] == "no config version 9"
    assert "integer" in (await served.get("/versions/x", status=400))["detail"]
    assert "from is required" in (await served.get("/diff", status=400))["detail"]
    assert (await served.get("/diff?from=1&to=7", status=404))["status"] == 404
    assert "limit" in (await served.get("/versions?limit=0", status=400))["detail"]
    # no author: the authenticated caller is (tests/unit/test_auth_api.py checks it)
    unchanged = await served.rollback(1, {"message": "who?"})
    assert unchanged["changed"] is False
    assert (await served.rollback(1, ["author"], status=400))["detail"].startswith("the request")
    assert (await served.rollback(5, {"author": "a"}, status=404))["status"] == 404
    wrong = await served.rollback(1, {"author": "a", "message": 3}, status=400)
    assert wrong["detail"] == "message must be a string"
