"""``/api/v1/targets``, ``/config``, ``/validate``, ``/export`` and ``/import`` against the
daemon running in this process (echo probes, SQLite), over real HTTP: every edit goes
through the config file, is validated like a reload, and a bad one changes nothing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml_rs

from pudimd.store.versions import list_versions
from tests.unit.api_harness import Api, served

pytestmark = pytest.mark.anyio

CONFIG = """\
# the test config
targets:
  # the shop
  - name: web   # keep this comment
    probe: echo
    target: a.example
    interval: 1h
    labels: {team: shop}
  - name: api
    probe: echo
    target: b.example
    interval: 1h
    echo:
      token: s3cret

# alerting
alerting:
  route:
    receiver: default
  receivers:
    - name: default
"""


@pytest.fixture
async def api(tmp_path: Path, migrated: Path) -> AsyncIterator[Api]:
    async with served(tmp_path, migrated, CONFIG) as run:
        yield run


async def test_get_one_with_etag_status_and_redacted_secret(api: Api) -> None:
    body, resp = await api.call("GET", "/targets/api")
    assert body["name"] == "api" and body["target"] == "b.example"
    assert body["echo"] == {"token": "<secret>"}
    assert body["status"]["scheduled"] is True and body["status"]["health"] in ("up", "unknown")
    assert resp.headers["ETag"].startswith('"')
    await api.call("GET", "/targets/nope", 404)


async def test_list_pages_by_name_with_a_cursor(api: Api) -> None:
    new = [
        {"name": f"t{i:03}", "probe": "echo", "target": f"h{i}", "interval": "1h"}
        for i in range(250)
    ]
    await api.call("POST", "/targets/bulk", json={"create": new})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
        body, _ = await api.call("GET", "/targets" + query)
        pages += 1
        seen += [t["name"] for t in body["targets"]]
        assert body["total"] == 252
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 252
    body, _ = await api.call("GET", "/targets?label=team=shop")
    assert [t["name"] for t in body["targets"]] == ["web"]
    body, _ = await api.call("GET", "/targets?q=H24&limit=1000")
    assert {t["name"] for t in body["targets"]} == {"t024"} | {f"t{i}" for i in range(240, 250)}
    await api.call("GET", "/targets?cursor=%%%", 400)
    await api.call("GET", "/targets?limit=0", 400)
    await api.call("GET", "/targets?label=nolabel", 400)


async def test_create_is_written_applied_and_versioned(api: Api) -> None:
    item = {"name": "new", "probe": "echo", "target": "c.example", "interval": "1h"}
    body, resp = await api.call("POST", "/targets", 201, json=item)
    assert resp.headers["Location"] == "/api/v1/targets/new"
    assert body["name"] == "new"
    assert "new" in api.jobs()
    assert "# keep this comment" in api.file() and "  - name: new\n" in api.file()
    assert api.daemon.store is not None
    versions = await list_versions(api.daemon.store.engine)
    assert versions[0].source == "api" and "targets.create" in versions[0].message
    await api.call("POST", "/targets", 409, json=item)


async def test_put_keeps_comments_and_if_match_catches_a_hand_edit(api: Api) -> None:
    body, resp = await api.call("GET", "/targets/web")
    etag = resp.headers["ETag"]
    del body["status"]
    body["target"] = "changed.example"
    _, resp = await api.call("PUT", "/targets/web", json=body, headers={"If-Match": etag})
    assert "  - name: web   # keep this comment\n" in api.file()
    assert "    target: changed.example\n" in api.file()
    assert api.daemon.scheduler is not None
    assert api.daemon.scheduler.jobs["web"].target.target == "changed.example"
    # someone edits the file by hand; the old ETag no longer matches
    api.daemon.config_path.write_text(api.file().replace("changed.example", "hand.example"))
    body["target"] = "api.example"
    problem, _ = await api.call(
        "PUT", "/targets/web", 409, json=body, headers={"If-Match": resp.headers["ETag"]}
    )
    assert "changed since it was read" in problem["detail"]
    assert "hand.example" in api.file()


async def test_patch_merges_and_secret_placeholder_keeps_the_value(api: Api) -> None:
    await api.call(
        "PATCH", "/targets/api", json={"labels": {"tier": "1"}, "echo": {"token": "<secret>"}}
    )
    text = api.file()
    assert "token: s3cret" in text and "tier:" in text
    await api.call("PATCH", "/targets/api", json={"labels": None})
    assert "tier:" not in api.file()


async def test_delete_unschedules(api: Api) -> None:
    await api.call("DELETE", "/targets/api", 204)
    assert api.jobs() == {"web"}
    assert "name: api" not in api.file() and "# alerting" in api.file()
    await api.call("DELETE", "/targets/api", 404)


async def test_bulk_is_all_or_nothing(api: Api) -> None:
    before = api.file()
    problem, _ = await api.call(
        "POST",
        "/targets/bulk",
        422,
        json={
            "create": [
                {"name": "ok", "probe": "echo", "target": "x"},
                {"name": "bad", "probe": "echo", "target": "x", "interval": "soon"},
            ],
            "delete": ["api"],
        },
    )
    assert any(e.get("target") == "bad" and "interval" in e["field"] for e in problem["errors"])
    assert api.file() == before and api.jobs() == {"web", "api"}
    body, _ = await api.call(
        "POST",
        "/targets/bulk",
        json={
            "create": [{"name": "ok", "probe": "echo", "target": "x"}],
            "update": [{"name": "web", "probe": "echo", "target": "w2", "interval": "1h"}],
            "delete": ["api"],
        },
    )
    assert body == {"created": 1, "updated": 1, "deleted": 1, "changed": True}
    assert api.jobs() == {"web", "ok"}


async def test_bad_input_changes_nothing(api: Api) -> None:
    before = api.file()
    await api.call(
        "POST", "/targets", 400, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    await api.call(
        "POST", "/targets", 422, json={"name": "x", "probe": "echo", "target": "t", "colour": "red"}
    )
    await api.call(
        "POST",
        "/targets",
        422,
        json={"name": "x", "probe": "echo", "target": "t", "interval": "5 parsecs"},
    )
    await api.call(
        "POST", "/targets", 422, json={"name": "../etc/passwd", "probe": "echo", "target": "t"}
    )
    await api.call("POST", "/targets", 422, json={"name": "a/../b", "probe": "echo", "target": "t"})
    await api.call("POST", "/targets", 422, json={"probe": "echo", "target": "t"})
    await api.call("POST", "/targets", 409, json={"name": "web", "probe": "echo", "target": "t"})
    await api.call(
        "POST",
        "/targets/bulk",
        422,
        json={"create": [{"name": "d", "probe": "echo", "target": "t"}] * 2},
    )
    await api.call(
        "POST",
        "/targets",
        413,
        data=io.BytesIO(b"x" * (33 * 1024 * 1024)),
        headers={"Content-Type": "application/json"},
    )
    assert api.file() == before and api.jobs() == {"web", "api"}


async def test_export_and_import_round_trip(api: Api) -> None:
    exported, _ = await api.call("GET", "/targets?format=yaml")
    data: Any = yaml_rs.loads(exported)
    assert [t["name"] for t in data["targets"]] == ["api", "web"]
    assert "status" not in data["targets"][0]
    as_json, _ = await api.call("GET", "/targets?format=json")
    assert as_json == data
    # import a YAML document in merge mode: one new, one changed
    doc = "targets:\n  - {name: db, probe: echo, target: d, interval: 1h}\n  - {name: web, probe: echo, target: w3, interval: 1h}\n"
    body, _ = await api.call(
        "POST", "/targets/import", data=doc, headers={"Content-Type": "application/yaml"}
    )
    assert body["created"] == 1 and body["updated"] == 1 and body["deleted"] == 0
    assert api.jobs() == {"web", "api", "db"}
    # replace mode from JSON: what is not listed goes
    body, _ = await api.call(
        "POST",
        "/targets/import?mode=replace",
        json=[{"name": "db", "probe": "echo", "target": "d", "interval": "1h"}],
    )
    assert body["deleted"] == 2 and api.jobs() == {"db"}


async def test_whole_config_get_put_validate(api: Api) -> None:
    text, resp = await api.call("GET", "/config")
    assert text == CONFIG
    etag = resp.headers["ETag"]
    valid, _ = await api.call(
        "POST", "/validate", data=CONFIG, headers={"Content-Type": "application/yaml"}
    )
    assert valid["valid"] is True
    bad = CONFIG.replace("interval: 1h\n    labels", "interval: never\n    labels")
    problem, _ = await api.call("POST", "/validate", 422, json={"config": bad})
    assert problem["errors"][0]["line"] == 7 and problem["errors"][0]["target"] == "web"
    problem, _ = await api.call("POST", "/validate", 404, json={"delete": ["nope"]})
    assert problem["errors"] == [{"field": "delete[0]", "message": "not found"}]
    new = CONFIG.replace("b.example", "b2.example")
    await api.call(
        "PUT", "/config", data=new, headers={"Content-Type": "application/yaml", "If-Match": etag}
    )
    assert api.file() == new
    await api.call(
        "PUT",
        "/config",
        409,
        data=CONFIG,
        headers={"Content-Type": "application/yaml", "If-Match": etag},
    )
    await api.call("PUT", "/config", 422, data=bad, headers={"Content-Type": "application/yaml"})
    assert api.file() == new
    exported, _ = await api.call("GET", "/export?format=json")
    assert exported["targets"][1]["target"] == "b2.example"


async def test_dry_run_writes_nothing(api: Api) -> None:
    before = api.file()
    await api.call(
        "POST", "/targets?dry_run=true", 201, json={"name": "x", "probe": "echo", "target": "t"}
    )
    assert api.file() == before and "x" not in api.jobs()


async def test_every_edit_is_audited_with_before_and_after(api: Api) -> None:
    await api.call("PATCH", "/targets/api", json={"target": "c.example"})
    await api.call("DELETE", "/targets/web", 204)
    log, _ = await api.call("GET", "/audit?limit=10")
    entries = {e["action"]: e for e in log["entries"]}
    patched = entries["targets.update"]
    assert patched["actor"] == "token:test" and patched["method"] == "PATCH"
    assert patched["before"]["value"]["target"] == "b.example"
    assert patched["after"]["value"]["target"] == "c.example"
    assert patched["before"]["value"]["echo"] == {"token": "<secret>"}  # never the secret
    assert patched["after"]["config_version"] == patched["before"]["config_version"] + 1
    removed = entries["targets.delete"]
    assert removed["before"]["value"]["name"] == "web" and removed["after"] is None
    assert removed["status"] == 204


async def test_a_listed_page_follows_the_targets_state(api: Api) -> None:
    async def checks() -> int:
        body, _ = await api.call("GET", "/targets?q=web")
        return int(body["targets"][0]["status"]["checks"])

    before = await checks()
    assert before == await checks()  # the same page, answered again
    assert api.daemon.scheduler is not None and api.daemon.scheduler.check_now("web")
    with anyio.fail_after(10):
        while await checks() == before:
            await anyio.sleep(0.05)


async def test_an_oversized_body_is_a_413_problem_on_every_endpoint(api: Api) -> None:
    big = io.BytesIO(b"[" + b"0," * (9 * 1024 * 1024) + b"0]")  # 18 MiB of JSON
    headers = {"Content-Type": "application/json"}
    problem, _ = await api.call("POST", "/config/rollback/1", 413, data=big, headers=headers)
    assert problem["status"] == 413


async def test_concurrent_edits_all_land(api: Api) -> None:
    """Edits hold the reload lock from reading the file to applying it: twenty at once
    are applied one after the other, none lost."""

    async def create(i: int) -> None:
        item = {"name": f"c{i:02}", "probe": "echo", "target": "t", "interval": "1h"}
        await api.call("POST", "/targets", 201, json=item)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(create, i)
    data: Any = yaml_rs.loads(api.file())
    names = {t["name"] for t in data["targets"]}
    assert {f"c{i:02}" for i in range(20)} <= names
    assert {f"c{i:02}" for i in range(20)} <= api.jobs()
    assert "# keep this comment" in api.file()
