"""Receivers, routes, rules and silences through ``/api/v1`` against the daemon running in
this process: edits land in the config file's ``alerting`` section with its comments kept,
are validated like a reload, and applied."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.api_harness import Api, served

pytestmark = pytest.mark.anyio

CONFIG = """\
targets:
  - {name: web, probe: echo, target: a.example, interval: 1h}

alerting:
  route:
    receiver: ops   # everything to ops
    group_by: [alertname]
  receivers:
    # the ops team
    - name: ops
      webhook_configs:
        - url: http://127.0.0.1:9/hook
  rules:
    - name: TargetDown
      failure_threshold: 3
      for: 1m
"""


@pytest.fixture
async def api(tmp_path: Path, migrated: Path) -> AsyncIterator[Api]:
    async with served(tmp_path, migrated, CONFIG, plugins=True) as run:
        yield run


def receivers(api: Api) -> list[str]:
    assert api.daemon.config is not None
    return [r.name for r in api.daemon.config.alerting.receivers]


async def test_receivers_read_put_delete(api: Api) -> None:
    listed, _ = await api.call("GET", "/receivers")
    assert [r["name"] for r in listed["receivers"]] == ["ops"]
    one, resp = await api.call("GET", "/receivers/ops")
    assert one["webhook_configs"] == [{"url": "<secret>"}]  # it may hold a token
    assert resp.headers["ETag"]
    new = {"webhook_configs": [{"url": "http://127.0.0.1:9/dev"}]}
    _, resp = await api.call("PUT", "/receivers/dev", 201, json=new)
    assert receivers(api) == ["ops", "dev"]
    text = api.file()
    assert "# the ops team" in text and "# everything to ops" in text
    # the secret placeholder keeps the value in the file
    ops = {"webhook_configs": [{"url": "<secret>", "send_resolved": False}]}
    await api.call("PUT", "/receivers/ops", json=ops)
    assert "url: http://127.0.0.1:9/hook" in api.file() and "send_resolved: false" in api.file()
    # the route still sends to ops: deleting it does not validate
    problem, _ = await api.call("DELETE", "/receivers/ops", 422)
    assert "ops" in problem["detail"] or any("ops" in e["message"] for e in problem["errors"])
    await api.call("DELETE", "/receivers/dev", 204)
    assert receivers(api) == ["ops"]
    await api.call("DELETE", "/receivers/dev", 404)
    await api.call("PUT", "/receivers/a%5Cb", 422, json=new)


async def test_route_tree_replaced(api: Api) -> None:
    got, _ = await api.call("GET", "/routes")
    assert got["route"]["receiver"] == "ops"
    await api.call(
        "PUT", "/receivers/dev", 201, json={"webhook_configs": [{"url": "http://127.0.0.1:9/d"}]}
    )
    route = {
        "receiver": "ops",
        "group_by": ["alertname"],
        "routes": [{"receiver": "dev", "matchers": ['team="dev"']}],
    }
    await api.call("PUT", "/routes", json={"route": route})
    assert api.daemon.config is not None and api.daemon.config.alerting.route is not None
    assert api.daemon.config.alerting.route.routes[0].receiver == "dev"
    assert "# everything to ops" in api.file()
    await api.call("PUT", "/routes", 422, json={"route": {"receiver": "nobody"}})
    await api.call(
        "PUT", "/routes", 422, json={"route": {"receiver": "ops", "group_wait": "later"}}
    )


async def test_rules_put_and_delete(api: Api) -> None:
    listed, _ = await api.call("GET", "/rules")
    assert [r["name"] for r in listed["rules"]] == ["TargetDown"]
    rule = {"failure_threshold": 2, "for": "5m", "labels": {"severity": "page"}}
    await api.call("PUT", "/rules/TargetDown", json=rule)
    one, _ = await api.call("GET", "/rules/TargetDown")
    assert one["for"] == "5m" and one["labels"] == {"severity": "page"}
    await api.call("PUT", "/rules/Slow", 201, json={"failure_threshold": 5})
    problem, _ = await api.call("PUT", "/rules/Slow", 422, json={"for": "soon"})
    assert any("for" in e["field"] for e in problem["errors"])
    await api.call("DELETE", "/rules/TargetDown", 204)
    listed, _ = await api.call("GET", "/rules")
    assert [r["name"] for r in listed["rules"]] == ["Slow"]


async def test_silences_create_list_expire(api: Api) -> None:
    body = {
        "matchers": [{"name": "alertname", "value": "TargetDown", "isRegex": False}],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "comment": "maintenance",
    }
    created, _ = await api.call("POST", "/silences", 201, json=body)
    silence_id = created["silenceID"]
    one, _ = await api.call("GET", f"/silences/{silence_id}")
    assert one["status"]["state"] == "active" and one["createdBy"] == "token:test"
    listed, _ = await api.call("GET", "/silences?filter=alertname%3DTargetDown")
    assert [s["id"] for s in listed["silences"]] == [silence_id]
    await api.call("DELETE", f"/silences/{silence_id}", 204)
    one, _ = await api.call("GET", f"/silences/{silence_id}")
    assert one["status"]["state"] == "expired"
    await api.call("GET", "/silences/nope", 404)
    await api.call("POST", "/silences", 400, json={"matchers": []})
