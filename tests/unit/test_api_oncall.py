"""``/api/v1/alerts/{fp}``, its actions and history, against the real alerting engine
(SQLite in a temporary directory; one receiver, no integrations)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pudimd.alerting.alert import PostableAlert, fingerprint
from pudimd.alerting.config import AlertingBase, ReceiverBase
from pudimd.alerting.engine import Alerting
from pudimd.alerting.routing import RouteConfig
from pudimd.api.oncall import oncall_routes
from pudimd.api.problems import CONTENT_TYPE
from tests.unit.alerting_fixtures import migrated_database, running_engine

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

pytestmark = pytest.mark.anyio

Client = TestClient[web.Request, web.Application]

CONFIG = AlertingBase(
    route=RouteConfig(receiver="hook", group_by=["alertname"]),
    receivers=[ReceiverBase(name="hook")],
)
LABELS = {"alertname": "DiskFull", "target": "db1"}
FP = fingerprint(LABELS)


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_database(tmp_path_factory.mktemp("db"))


@pytest.fixture
async def engine(migrated_db: Path, tmp_path: Path) -> AsyncIterator[Alerting]:
    async with running_engine(migrated_db, tmp_path, CONFIG) as alerting:
        alerting.set_people(["alice", "bob"], ["dba"])
        await alerting.post([PostableAlert(labels=LABELS, annotations={"summary": "full"})])
        yield alerting


@pytest.fixture
async def client(engine: Alerting) -> AsyncIterator[Client]:
    app = web.Application()
    app.add_routes(oncall_routes(cast("Daemon", SimpleNamespace(alerting=engine))))
    async with TestClient(TestServer(app)) as served:
        yield served


async def act(client: Client, action: str, status: int = 200, **body: Any) -> Any:
    headers = {"X-Pudimd-Interface": "cli"}
    response = await client.post(f"/api/v1/alerts/{FP}/{action}", json=body, headers=headers)
    assert response.status == status, await response.text()
    if status != 200:
        assert response.content_type == CONTENT_TYPE
    return await response.json()


async def test_get_an_alert(client: Client) -> None:
    response = await client.get(f"/api/v1/alerts/{FP}")
    assert response.status == 200
    shown = await response.json()
    assert shown["labels"] == LABELS and shown["firing"] is True
    assert shown["acknowledged"] is None and shown["assignee"] is None
    assert shown["receivers"] == ["hook"] and shown["state"] == "active"
    missing = await client.get("/api/v1/alerts/00000000000000ff")
    assert missing.status == 404 and missing.content_type == CONTENT_TYPE
    problem = await missing.json()
    assert problem["status"] == 404 and problem["title"] == "Not Found"
    assert "00000000000000ff" in problem["detail"]


async def test_ack_for_a_while_then_assign_comment_and_resolve(client: Client) -> None:
    before = time.time()
    shown = await act(client, "ack", actor="alice", **{"for": "2h"}, comment="on it")
    ack = shown["acknowledged"]
    assert ack["by"] == "alice" and ack["until"] is not None
    assert ack["until"] > time.strftime("%Y-%m-%dT%H", time.gmtime(before + 7100))
    shown = await act(client, "assign", actor="alice", assignee="team:dba")
    assert shown["assignee"] == "team:dba"
    await act(client, "comment", actor="bob", comment="disk at 99%")
    shown = await act(client, "resolve", actor="alice")
    assert shown["firing"] is False
    history = await (await client.get(f"/api/v1/alerts/{FP}/history")).json()
    assert [(e["kind"], e["actor"], e["interface"]) for e in history["events"]] == [
        ("fired", None, None),
        ("acknowledged", "alice", "cli"),
        ("assigned", "alice", "cli"),
        ("commented", "bob", "cli"),
        ("resolved", "alice", "cli"),
    ]
    assert history["events"][0]["detail"] == {"labels": LABELS, "routed": ["hook"]}
    assert history["events"][1]["detail"]["comment"] == "on it"
    assert history["alert"]["fingerprint"] == FP
    assert history["notifications"] == []  # the receiver has no integrations
    found = await (await client.get("/api/v1/history", params={"target": "db1"})).json()
    assert [e["kind"] for e in found["events"]] == [e["kind"] for e in history["events"]]
    later = await client.get(
        "/api/v1/history", params={"target": "db1", "since": "2999-01-01T00:00:00Z"}
    )
    assert (await later.json())["events"] == []


@pytest.mark.parametrize(
    ("action", "body", "status", "field"),
    [
        ("ack", {}, 400, "actor"),
        ("ack", {"actor": "a", "until": "yesterday"}, 400, "until"),
        ("ack", {"actor": "a", "until": "2001-01-01T00:00:00Z"}, 400, "until"),
        ("ack", {"actor": "a", "for": "2h", "until": "2999-01-01T00:00:00Z"}, 400, "for"),
        ("ack", {"actor": "a", "for": "soon"}, 400, "for"),
        ("ack", {"actor": "a", "colour": "red"}, 400, "colour"),
        ("ack", {"actor": 7}, 400, "actor"),
        ("snooze", {"actor": "a"}, 400, "until"),
        ("unack", {"actor": "a"}, 409, None),
        ("assign", {"actor": "a", "assignee": "user:carol"}, 400, "assignee"),
        ("assign", {"actor": "a", "assignee": "carol"}, 400, "assignee"),
        ("comment", {"actor": "a"}, 400, "comment"),
        ("dance", {"actor": "a"}, 404, None),
    ],
)
async def test_bad_actions_are_refused_with_a_problem_and_change_nothing(
    client: Client,
    engine: Alerting,
    action: str,
    body: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    problem = await act(client, action, status, **body)
    assert problem["status"] == status and problem["detail"]
    if field is not None:
        assert field in [e["field"] for e in problem.get("errors", [])], problem
    alert = engine.alert(FP)
    assert alert is not None and alert.acked_by is None and alert.assignee is None
    history = await (await client.get(f"/api/v1/alerts/{FP}/history")).json()
    assert [e["kind"] for e in history["events"]] == ["fired"]


async def test_a_resolved_alert_cannot_be_acknowledged(client: Client) -> None:
    await act(client, "resolve", actor="alice")
    problem = await act(client, "ack", 409, actor="alice")
    assert "resolved" in problem["detail"]
    malformed = await client.post(
        f"/api/v1/alerts/{FP}/ack", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status == 400 and malformed.content_type == CONTENT_TYPE


async def test_the_history_shows_the_silences_that_muted_the_alert(
    client: Client, engine: Alerting
) -> None:
    from pudimd.alerting.matchers import parse_matchers
    from pudimd.alerting.silences import Silence

    now = time.time()
    silence_id = await engine.put_silence(
        Silence(tuple(parse_matchers('target="db1"')), now, now + 3600, "bob", "maintenance")
    )
    await engine.put_silence(
        Silence(tuple(parse_matchers('target="db2"')), now, now + 3600, "bob", "not this one")
    )
    history = await (await client.get(f"/api/v1/alerts/{FP}/history")).json()
    assert [e["kind"] for e in history["events"]] == ["fired", "silenced"]
    silenced = history["events"][1]["detail"]
    assert (silenced["silence"], silenced["by"], silenced["comment"]) == (
        silence_id,
        "bob",
        "maintenance",
    )
