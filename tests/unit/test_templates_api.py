"""Target templates through the running daemon (in this process, over real HTTP): a built-in
checked end to end by the real http probe against a loopback server, and the
``/api/v1/templates`` endpoints (list, export, dry-run expansion, import)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pudimd_plugins.probes.http as http_probe
import pudimd_plugins.probes.tls as tls_probe
import pytest
import yaml_rs
from aiohttp import web

from pudimd.api.problems import CONTENT_TYPE
from pudimd.config.template_files import builtin_templates
from pudimd.daemon import Daemon
from pudimd.hookspecs import hookimpl
from pudimd.plugins import PluginHost
from pudimd.results import ProbeResult
from pudimd.sdnotify import Notifier
from tests.auth_helpers import auth_headers
from tests.testplugins import EchoPlugin

pytestmark = pytest.mark.anyio


class Recorder:
    """Every result, and a way to wait for one that matches."""

    def __init__(self) -> None:
        self.results: list[tuple[str, str, ProbeResult]] = []
        self._changed = anyio.Event()

    @hookimpl
    def pudimd_result(self, job: Any, result: ProbeResult) -> None:
        self.results.append((job.name, job.target.target, result))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, match: Callable[[str, str, ProbeResult], bool]) -> ProbeResult:
        with anyio.fail_after(20):
            seen = 0
            while True:
                for name, target, result in self.results[seen:]:
                    if match(name, target, result):
                        return result
                seen = len(self.results)
                await self._changed.wait()


class Running:
    def __init__(self, daemon: Daemon, http: aiohttp.ClientSession, recorder: Recorder) -> None:
        self.daemon = daemon
        self.http = http
        self.recorder = recorder
        self.base = f"http://127.0.0.1:{daemon.port}/api/v1/templates"

    async def call(self, method: str, path: str = "", status: int = 200, **kwargs: Any) -> Any:
        headers = {**await auth_headers(self.daemon), **kwargs.pop("headers", {})}
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as resp:
            assert resp.status == status, await resp.text()
            if status >= 400:
                assert resp.content_type == CONTENT_TYPE
            if resp.content_type in ("application/json", CONTENT_TYPE):
                return await resp.json(content_type=None)
            return await resp.text()


@asynccontextmanager
async def running(tmp_path: Path, migrated: Path, config: str) -> AsyncIterator[Running]:
    (tmp_path / "pudimd.yaml").write_text(config)
    (tmp_path / "state").mkdir()
    shutil.copyfile(migrated, tmp_path / "state" / "pudimd.db")
    host = PluginHost()
    recorder = Recorder()
    host.register(EchoPlugin(), "echo")
    host.register(http_probe, "http")
    host.register(tls_probe, "tls")
    host.register(recorder, "recorder")
    daemon = Daemon(
        tmp_path / "pudimd.yaml",
        listen="127.0.0.1:0",
        state_dir=tmp_path / "state",
        host=host,
        notifier=Notifier(""),
    )
    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as http:
        tg.start_soon(daemon.run)
        with anyio.fail_after(10):
            while not daemon.ready:
                await anyio.sleep(0.02)
        try:
            yield Running(daemon, http, recorder)
        finally:
            daemon.stop()


@asynccontextmanager
async def health_server(state: dict[str, str]) -> AsyncIterator[str]:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"data": {"status": state["status"]}})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/health"
    finally:
        await runner.cleanup()


async def test_json_health_checked_end_to_end_by_the_http_probe(
    tmp_path: Path, migrated: Path
) -> None:
    state = {"status": "UP"}
    async with health_server(state) as url:
        config = (
            "targets:\n"
            f"  - {{name: api, use: json_health, params: {{url: '{url}', field: data.status}},"
            " interval: 200ms, timeout: 200ms, labels: {team: core}}\n"
        )
        async with running(tmp_path, migrated, config) as run:
            assert run.daemon.scheduler is not None and set(run.daemon.scheduler.jobs) == {"api"}
            target = run.daemon.scheduler.jobs["api"].target
            assert target.probe == "http" and target.labels == {"team": "core"}
            ok = await run.recorder.wait_for(
                lambda name, _t, result: name == "api" and result.success
            )
            assert ok.status == 200
            state["status"] = "DOWN"
            down = await run.recorder.wait_for(
                lambda name, _t, result: name == "api" and "(DOWN) == UP" in result.message
            )
            assert down.success is False
            assert down.message == "condition [BODY].data.status (DOWN) == UP failed"


SVC_V1 = "name: svc\nversion: 1\ntargets:\n  - {probe: echo, target: one}\n"
CONFIG = (
    "templates:\n"
    "  - {name: inline, description: here, params: {t: {type: string, default: x}},"
    " targets: [{probe: echo, target: '${params.t}'}]}\n"
    "targets:\n"
    "  - {name: svc, use: svc, interval: 100ms}\n"
    "  - {name: plain, probe: echo, target: p, interval: 1h}\n"
)


@pytest.fixture
async def served(tmp_path: Path, migrated: Path) -> AsyncIterator[Running]:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "svc.v1.yaml").write_text(SVC_V1)
    async with running(tmp_path, migrated, CONFIG) as run:
        yield run


async def test_list_names_every_template_with_its_source(served: Running) -> None:
    listed = {(t["name"], t["version"]): t for t in (await served.call("GET"))["templates"]}
    assert {name for name, _ in listed} == {
        "dns_record", "json_health", "postgres", "redis", "website", "inline", "svc"
    }  # fmt: skip
    assert listed[("website", 1)]["source"] == "builtin"
    assert listed[("website", 1)]["params"]["url"] == {
        "type": "url",
        "required": True,
        "description": "The page to fetch (https://...)",
        "pattern": "https://.+",
    }
    assert listed[("inline", 1)]["source"] == "config"
    assert listed[("inline", 1)]["params"] == {
        "t": {"type": "string", "required": False, "default": "x"}
    }
    svc = listed[("svc", 1)]
    assert svc["source"] == "file"
    assert svc["file"] == str(
        (served.daemon.config_path.parent / "templates/svc.v1.yaml").resolve()
    )


async def test_export_as_json_or_yaml(served: Running) -> None:
    website = next(t for t in builtin_templates() if t.spec.name == "website")
    assert await served.call("GET", "/website") == website.export()
    assert await served.call("GET", "/website?version=1") == website.export()
    text = await served.call("GET", "/website?format=yaml")
    assert yaml_rs.loads(text) == website.export()
    text = await served.call("GET", "/website", headers={"Accept": "application/yaml"})
    assert yaml_rs.loads(text) == website.export()
    problem = await served.call("GET", "/website?version=7", status=404)
    assert problem["detail"] == "no template website@7"
    await served.call("GET", "/nope", status=404)
    await served.call("GET", "/website?version=x", status=400)


async def test_expand_is_a_dry_run_with_field_paths(served: Running) -> None:
    body = {"name": "shop", "use": "website", "params": {"url": "https://shop.example"}}
    got = await served.call("POST", "/expand", json=body)
    assert [t["name"] for t in got["targets"]] == ["shop", "shop:tls"]
    assert got["targets"][1]["target"] == "shop.example:443"
    assert got["template"]["name"] == "website"
    bad = await served.call(
        "POST", "/expand", status=422, json={**body, "params": {"url": "ftp:x", "warn_days": "y"}}
    )
    assert {e["field"] for e in bad["errors"]} == {"params.url", "params.warn_days"}
    missing = await served.call("POST", "/expand", status=422, json={"name": "a", "use": "svc@4"})
    assert missing["errors"] == [
        {"field": "use", "message": "template 'svc' has no version 4 (versions: 1)"}
    ]
    invalid = await served.call(
        "POST", "/expand", status=422, json={**body, "tls": {"min_version": "TLSv9"}}
    )
    assert invalid["errors"][0]["field"] == "targets[1].tls.min_version"
    assert served.daemon.scheduler is not None
    assert set(served.daemon.scheduler.jobs) == {"svc", "plain"}, "nothing was applied"


async def test_import_writes_the_template_and_the_daemon_runs_it(served: Running) -> None:
    directory = served.daemon.config_path.parent / "templates"
    v2 = (
        "name: svc\nversion: 2\ndescription: two checks\n"
        "params: {extra: {type: string, default: two}}\n"
        "targets:\n"
        "  - {probe: echo, target: main}\n"
        "  - {name_suffix: extra, probe: echo, target: '${params.extra}'}\n"
    )
    got = await served.call(
        "POST", "", status=201, data=v2, headers={"Content-Type": "application/yaml"}
    )
    written = directory / "svc.v2.yaml"
    assert got["file"] == str(written.resolve()) and got["reloaded"] is True
    assert got["template"]["source"] == "file" and got["template"]["version"] == 2
    stored: Any = yaml_rs.loads(written.read_text())
    assert stored["targets"][1]["name_suffix"] == "extra"
    assert served.daemon.scheduler is not None
    assert set(served.daemon.scheduler.jobs) == {"svc", "svc:extra", "plain"}
    await served.recorder.wait_for(lambda name, target, _r: (name, target) == ("svc:extra", "two"))
    await served.recorder.wait_for(lambda name, target, _r: (name, target) == ("svc", "main"))
    listed = await served.call("GET")
    assert {t["version"] for t in listed["templates"] if t["name"] == "svc"} == {1, 2}
    again = await served.call(
        "POST",
        "",
        status=201,
        json={**stored, "params": {"extra": {"type": "string", "default": "2b"}}},
    )
    assert again["file"] == str(written.resolve()), "importing a version again replaces it"
    await served.recorder.wait_for(lambda name, target, _r: (name, target) == ("svc:extra", "2b"))


async def test_an_import_that_breaks_the_config_is_refused_and_nothing_is_written(
    served: Running,
) -> None:
    directory = served.daemon.config_path.parent / "templates"
    before = sorted(p.name for p in directory.iterdir())
    breaking = {
        "name": "svc",
        "version": 3,
        "targets": [{"probe": "echo", "target": "x", "echo": {"succeed": "maybe"}}],
    }
    refused = await served.call("POST", "", status=422, json=breaking)
    assert "nothing was written" in refused["detail"]
    (error,) = refused["errors"]
    assert error["field"] == "targets[0]"
    assert error["location"] == f"{served.daemon.config_path}:4:5"
    assert (
        "template svc@3, target 'svc': echo.succeed: Input should be a valid boolean"
        in (error["message"])
    )
    invalid = await served.call("POST", "", status=422, json={"name": "x", "targets": []})
    assert invalid["errors"][0]["field"] == "targets"
    for name in ("../evil", "a/b", "a\\b", ".."):
        evil = await served.call(
            "POST",
            "",
            status=422,
            json={"name": name, "targets": [{"probe": "echo", "target": "x"}]},
        )
        assert evil["errors"][0]["field"] == "name"
        assert "invalid template name" in evil["errors"][0]["message"]
    await served.call(
        "POST", "", status=400, data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert sorted(p.name for p in directory.iterdir()) == before
    assert not (served.daemon.config_path.parent / "evil.v1.yaml").exists()
    assert served.daemon.scheduler is not None
    assert set(served.daemon.scheduler.jobs) == {"svc", "plain"}
