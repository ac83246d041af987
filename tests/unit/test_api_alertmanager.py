"""Alertmanager's API v2 as pudimd serves it: the shapes amtool needs, validation,
filters and silences, against the real alerting engine (SQLite in a temporary directory,
a route tree with two receivers and no integrations)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pudimd import __version__
from pudimd.alerting.alert import PostableAlert, fingerprint
from pudimd.alerting.config import AlertingBase, ReceiverBase
from pudimd.alerting.engine import Alerting
from pudimd.alerting.routing import RouteConfig
from pudimd.api._amjson import receiver_param
from pudimd.api.alertmanager import alertmanager_routes
from tests.unit.alerting_fixtures import migrated_database, running_engine

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

pytestmark = pytest.mark.anyio

Client = TestClient[web.Request, web.Application]

CONFIG_TEXT = """route:
  receiver: hook
  group_by: [alertname]
  routes: [{receiver: pager, matchers: ['severity="page"']}]
receivers: [{name: hook}, {name: pager}]
"""
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"

CONFIG = AlertingBase(
    route=RouteConfig(
        receiver="hook",
        group_by=["alertname"],
        routes=[RouteConfig.model_validate({"receiver": "pager", "matchers": ['severity="page"']})],
    ),
    receivers=[ReceiverBase(name="hook"), ReceiverBase(name="pager")],
)


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_database(tmp_path_factory.mktemp("db"))


@pytest.fixture
async def engine(migrated_db: Path, tmp_path: Path) -> AsyncIterator[Alerting]:
    async with running_engine(migrated_db, tmp_path, CONFIG, CONFIG_TEXT) as alerting:
        yield alerting


@pytest.fixture
async def client(engine: Alerting) -> AsyncIterator[Client]:
    app = web.Application()
    app.add_routes(alertmanager_routes(cast("Daemon", SimpleNamespace(alerting=engine))))
    async with TestClient(TestServer(app)) as served:
        yield served


def _rfc3339(seconds: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int(seconds % 1 * 1000):03d}Z"
    )


def _silence(**changes: Any) -> dict[str, Any]:
    now = time.time()
    body: dict[str, Any] = {
        "matchers": [{"name": "alertname", "value": "Down", "isRegex": False}],
        "startsAt": _rfc3339(now - 60),
        "endsAt": _rfc3339(now + 3600),
        "createdBy": "ops",
        "comment": "maintenance",
    }
    body.update(changes)
    return body


async def _alerts(client: Client, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v2/alerts", params=params)
    assert response.status == 200, await response.text()
    alerts: list[dict[str, Any]] = await response.json()
    return alerts


async def _post(client: Client, *alerts: dict[str, Any]) -> None:
    response = await client.post("/api/v2/alerts", json=list(alerts))
    assert response.status == 200, await response.text()


async def _silence_id(client: Client, **changes: Any) -> str:
    response = await client.post("/api/v2/silences", json=_silence(**changes))
    assert response.status == 200, await response.text()
    silence_id: str = (await response.json())["silenceID"]
    return silence_id


# -- status and receivers ----------------------------------------------------------------


async def test_status_has_every_field_amtool_requires(client: Client, engine: Alerting) -> None:
    response = await client.get("/api/v2/status")
    assert response.status == 200
    assert response.content_type == "application/json"
    status = await response.json()
    assert status["cluster"]["status"] == "disabled"
    assert set(status["versionInfo"]) == {
        "version",
        "revision",
        "branch",
        "buildUser",
        "buildDate",
        "goVersion",
    }
    assert status["versionInfo"]["version"] == __version__
    assert status["config"] == {"original": CONFIG_TEXT}
    assert status["uptime"] == _rfc3339(engine.started_at)


async def test_receivers_are_listed_by_name(client: Client) -> None:
    response = await client.get("/api/v2/receivers")
    assert await response.json() == [{"name": "hook"}, {"name": "pager"}]


# -- alerts ------------------------------------------------------------------------------


async def test_posted_alert_is_listed_with_every_field_amtool_requires(client: Client) -> None:
    now = time.time()
    await _post(
        client,
        {
            "labels": {"alertname": "Down", "instance": "db1", "empty": ""},
            "annotations": {"summary": "db1 is down"},
            "startsAt": _rfc3339(now - 60)[:-1] + "456789Z",
            "endsAt": _rfc3339(now + 600).replace("Z", "+00:00"),
            "generatorURL": "http://prometheus/graph",
        },
    )
    assert await _alerts(client) == [
        {
            "annotations": {"summary": "db1 is down"},
            "endsAt": _rfc3339(now + 600),
            "fingerprint": fingerprint({"alertname": "Down", "instance": "db1"}),
            "receivers": [{"name": "hook"}],
            "startsAt": _rfc3339(now - 60),
            "status": {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []},
            "updatedAt": (await _alerts(client))[0]["updatedAt"],
            "generatorURL": "http://prometheus/graph",
            "labels": {"alertname": "Down", "instance": "db1"},
        }
    ]
    [shown] = await _alerts(client)
    assert re.fullmatch(TIME, shown["updatedAt"])
    assert re.fullmatch("[0-9a-f]{16}", shown["fingerprint"])


async def test_alert_without_times_or_generator_url_gets_them_from_the_store(
    client: Client,
) -> None:
    before = time.time()
    await _post(client, {"labels": {"alertname": "Down"}})
    [shown] = await _alerts(client)
    assert "generatorURL" not in shown
    assert shown["annotations"] == {}
    assert _rfc3339(before - 1) < shown["startsAt"] <= _rfc3339(time.time())
    # not re-posted, it resolves after resolve_timeout (5m)
    assert _rfc3339(before + 299) < shown["endsAt"] <= _rfc3339(time.time() + 300)


async def test_alert_given_only_an_end_starts_at_its_end(client: Client) -> None:
    ends = _rfc3339(time.time() + 600)
    await _post(client, {"labels": {"a": "b"}, "endsAt": ends})
    [shown] = await _alerts(client)
    assert shown["startsAt"] == shown["endsAt"] == ends


async def test_alert_posted_with_an_end_in_the_past_resolves_and_is_no_longer_listed(
    client: Client,
) -> None:
    await _post(client, {"labels": {"alertname": "Down"}})
    await _post(client, {"labels": {"alertname": "Down"}, "endsAt": _rfc3339(time.time() - 1)})
    assert await _alerts(client) == []


async def test_alert_routed_to_a_child_route_shows_its_receiver(client: Client) -> None:
    await _post(client, {"labels": {"alertname": "Down", "severity": "page"}})
    [shown] = await _alerts(client)
    assert shown["receivers"] == [{"name": "pager"}]


async def test_blocked_alert_shows_the_targets_blocking_it(
    client: Client, engine: Alerting
) -> None:
    await engine.post([PostableAlert(labels={"alertname": "Down"}, blocked_by=("switch",))])
    [shown] = await _alerts(client)
    assert shown["status"]["state"] == "suppressed"
    assert shown["status"]["blockedBy"] == ["switch"]


@pytest.mark.parametrize(
    ("alert", "reason"),
    [
        ({"annotations": {}}, "alert 1: labels is required"),
        ({"labels": {}}, "alert 1: at least one label pair required"),
        ({"labels": {"a": ""}}, "alert 1: at least one label pair required"),
        ({"labels": {"1x": "b"}}, "alert 1: invalid label name '1x' in labels"),
        ({"labels": {"a": 1}}, "alert 1: the value of labels.a must be a string"),
        ({"labels": ["a"]}, "alert 1: labels must be an object of strings"),
        ({"labels": {"a": "b"}, "annotations": {"a-b": "c"}}, "alert 1: invalid label name"),
        ({"labels": {"a": "b"}, "startsAt": "yesterday"}, "alert 1: startsAt: invalid RFC 3339"),
        ({"labels": {"a": "b"}, "endsAt": "2026-01-02T03:04:05"}, "no time zone"),
        ({"labels": {"a": "b"}, "startsAt": 17}, "alert 1: startsAt must be an RFC 3339"),
        (
            {
                "labels": {"a": "b"},
                "startsAt": "2026-01-02T00:00:00Z",
                "endsAt": "2026-01-01T00:00:00Z",
            },
            "alert 1: start time must be before end time",
        ),
        ({"labels": {"a": "b"}, "generatorURL": 3}, "alert 1: generatorURL must be a string"),
        ("alertname=X", "alert 1: expected an object"),
    ],
)
async def test_a_bad_alert_rejects_the_whole_batch_naming_it(
    client: Client, engine: Alerting, alert: Any, reason: str
) -> None:
    response = await client.post("/api/v2/alerts", json=[{"labels": {"ok": "yes"}}, alert])
    assert response.status == 400
    assert response.content_type == "application/json"
    message = await response.json()
    assert isinstance(message, str) and reason in message
    assert await _alerts(client) == []
    assert engine.metrics.registry.get_sample_value("pudimd_alerts_invalid_total") == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "the request body is empty"),
        (b"[{", "the request body is not valid JSON"),
        (b'{"labels": {"a": "b"}}', "expected a JSON list of alerts"),
    ],
)
async def test_a_body_that_is_not_a_list_of_alerts_is_rejected(
    client: Client, body: bytes, reason: str
) -> None:
    response = await client.post(
        "/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert reason in await response.json()
    assert await _alerts(client) == []


async def test_an_empty_list_of_alerts_is_accepted(client: Client) -> None:
    response = await client.post("/api/v2/alerts", json=[])
    assert response.status == 200
    assert await _alerts(client) == []


async def test_alerts_are_filtered_by_matchers(client: Client) -> None:
    await _post(
        client,
        {"labels": {"alertname": "Down", "severity": "critical"}},
        {"labels": {"alertname": "Down", "severity": "warning"}},
        {"labels": {"alertname": "Slow", "severity": "critical"}},
    )
    response = await client.get(
        "/api/v2/alerts", params=[("filter", 'alertname="Down"'), ("filter", "severity=~crit.*")]
    )
    assert [a["labels"] for a in await response.json()] == [
        {"alertname": "Down", "severity": "critical"}
    ]


async def test_alerts_are_filtered_by_an_anchored_receiver_regex(client: Client) -> None:
    await _post(
        client,
        {"labels": {"alertname": "Down", "severity": "page"}},
        {"labels": {"alertname": "Slow"}},
    )
    assert [a["labels"]["alertname"] for a in await _alerts(client, receiver="pager")] == ["Down"]
    assert [a["labels"]["alertname"] for a in await _alerts(client, receiver="ho.*")] == ["Slow"]
    assert await _alerts(client, receiver="page") == []
    assert len(await _alerts(client, receiver="(?i)HOOK|PAGER")) == 2


async def test_silenced_alert_is_suppressed_and_filtered(client: Client) -> None:
    await _post(client, {"labels": {"alertname": "Down"}}, {"labels": {"alertname": "Slow"}})
    silence_id = await _silence_id(client)
    shown = {a["labels"]["alertname"]: a["status"] for a in await _alerts(client)}
    assert shown == {
        "Down": {
            "state": "suppressed",
            "silencedBy": [silence_id],
            "inhibitedBy": [],
            "mutedBy": [],
        },
        "Slow": {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []},
    }
    assert [a["labels"]["alertname"] for a in await _alerts(client, silenced="false")] == ["Slow"]
    assert [a["labels"]["alertname"] for a in await _alerts(client, active="false")] == ["Down"]


async def test_groups_show_their_labels_receiver_and_alerts(client: Client) -> None:
    await _post(
        client,
        {"labels": {"alertname": "Down", "instance": "a"}},
        {"labels": {"alertname": "Down", "instance": "b"}},
        {"labels": {"alertname": "Slow", "severity": "page"}},
    )
    response = await client.get("/api/v2/alerts/groups")
    assert response.status == 200
    groups = sorted(await response.json(), key=lambda g: g["labels"]["alertname"])
    assert [(g["labels"], g["receiver"]) for g in groups] == [
        ({"alertname": "Down"}, {"name": "hook"}),
        ({"alertname": "Slow"}, {"name": "pager"}),
    ]
    assert sorted(a["labels"]["instance"] for a in groups[0]["alerts"]) == ["a", "b"]
    assert set(groups[1]["alerts"][0]) >= {
        "annotations",
        "endsAt",
        "fingerprint",
        "receivers",
        "startsAt",
        "status",
        "updatedAt",
    }
    response = await client.get(
        "/api/v2/alerts/groups", params={"filter": "instance=b", "receiver": "hook"}
    )
    [group] = await response.json()
    assert [a["labels"]["instance"] for a in group["alerts"]] == ["b"]
    response = await client.get("/api/v2/alerts/groups", params={"active": "false"})
    assert await response.json() == []


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        ("/api/v2/alerts", {"filter": 'a=="'}, "bad filter: invalid matcher"),
        ("/api/v2/alerts", {"receiver": "("}, "failed to parse receiver param"),
        ("/api/v2/alerts", {"active": "maybe"}, "invalid value 'maybe' for the query parameter"),
        ("/api/v2/alerts/groups", {"filter": "a=~("}, "invalid regex"),
        ("/api/v2/silences", {"filter": "=b"}, "bad filter"),
    ],
)
async def test_bad_query_parameters_are_rejected(
    client: Client, path: str, params: dict[str, str], reason: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status == 400
    assert reason in await response.json()


@pytest.mark.parametrize(
    ("text", "matching", "not_matching"),
    [
        ("hook", ["hook"], ["hooks", "a-hook"]),
        ("a|b", ["a", "b"], ["ab"]),
        ("(?i)hook", ["HOOK", "hook"], ["HOOKS"]),
    ],
)
def test_receiver_regex_is_anchored(
    text: str, matching: list[str], not_matching: list[str]
) -> None:
    pattern = receiver_param(text)
    assert pattern is not None
    for name in matching:
        assert pattern.search(name), name
    for name in not_matching:
        assert not pattern.search(name), name


# -- silences: validation and round trips ------------------------------------------------


async def test_silence_is_created_and_read_back(client: Client) -> None:
    body = _silence(
        matchers=[
            {"name": "alertname", "value": "Down", "isRegex": False},
            {"name": "env", "value": "prod|dev", "isRegex": True, "isEqual": False},
        ],
        expireOnResolve=True,
    )
    response = await client.post("/api/v2/silences", json=body)
    assert response.status == 200
    silence_id = (await response.json())["silenceID"]
    response = await client.get(f"/api/v2/silence/{silence_id}")
    assert response.status == 200
    shown = await response.json()
    assert shown["id"] == silence_id
    assert shown["status"] == {"state": "active"}
    assert shown["matchers"] == [
        {"name": "alertname", "value": "Down", "isRegex": False, "isEqual": True},
        {"name": "env", "value": "prod|dev", "isRegex": True, "isEqual": False},
    ]
    assert (shown["createdBy"], shown["comment"]) == ("ops", "maintenance")
    assert shown["endsAt"] == body["endsAt"]
    assert shown["expireOnResolve"] is True
    for key in ("startsAt", "updatedAt"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", shown[key])
    assert (await (await client.get("/api/v2/silences")).json()) == [shown]


async def test_silence_without_expire_on_resolve_shows_false(client: Client) -> None:
    response = await client.post("/api/v2/silences", json=_silence())
    silence_id = (await response.json())["silenceID"]
    shown = await (await client.get(f"/api/v2/silence/{silence_id}")).json()
    assert shown["expireOnResolve"] is False


async def test_pending_silence_is_updated_in_place_by_id(client: Client) -> None:
    now = time.time()
    response = await client.post(
        "/api/v2/silences", json=_silence(startsAt=_rfc3339(now + 600), endsAt=_rfc3339(now + 900))
    )
    silence_id = (await response.json())["silenceID"]
    response = await client.post(
        "/api/v2/silences",
        json=_silence(
            id=silence_id,
            startsAt=_rfc3339(now + 600),
            endsAt=_rfc3339(now + 1200),
            comment="longer",
        ),
    )
    assert response.status == 200
    assert await response.json() == {"silenceID": silence_id}
    shown = await (await client.get(f"/api/v2/silence/{silence_id}")).json()
    assert (shown["comment"], shown["status"]["state"]) == ("longer", "pending")


async def test_updating_an_unknown_silence_is_not_found(client: Client) -> None:
    response = await client.post(
        "/api/v2/silences", json=_silence(id="00000000-0000-0000-0000-000000000000")
    )
    assert response.status == 404
    assert await response.json() == "silence not found"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"matchers": []}, "matchers must be a list of at least one matcher"),
        ({"matchers": [{"name": "a", "value": "b"}]}, "isRegex must be true or false"),
        ({"matchers": [{"name": "a", "value": "(", "isRegex": True}]}, "invalid regex"),
        ({"matchers": [{"name": "a", "value": ".*", "isRegex": True}]}, "must not match the empty"),
        ({"startsAt": None}, "startsAt is required"),
        ({"endsAt": "soon"}, "endsAt: invalid RFC 3339 time"),
        ({"endsAt": "2020-01-01T00:00:00Z"}, "silence invalid: endsAt"),
        ({"createdBy": None}, "createdBy is required"),
        ({"comment": 5}, "comment must be a string"),
        ({"comment": " "}, "silence invalid: comment is required"),
        ({"expireOnResolve": "yes"}, "expireOnResolve must be true or false"),
    ],
)
async def test_invalid_silence_is_rejected(
    client: Client, engine: Alerting, changes: dict[str, Any], reason: str
) -> None:
    response = await client.post("/api/v2/silences", json=_silence(**changes))
    assert response.status == 400
    assert reason in await response.json()
    assert len(engine.silences) == 0


async def test_silence_body_must_be_an_object(client: Client) -> None:
    response = await client.post("/api/v2/silences", json=[_silence()])
    assert response.status == 400
    assert "the silence must be a JSON object" in await response.json()


async def test_unknown_silence_is_not_found(client: Client) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, "/api/v2/silence/nope")
        assert response.status == 404, method
        assert await response.json() == "silence not found"


async def test_deleting_a_silence_expires_it_and_keeps_it(client: Client) -> None:
    silence_id = (await (await client.post("/api/v2/silences", json=_silence())).json())[
        "silenceID"
    ]
    response = await client.delete(f"/api/v2/silence/{silence_id}")
    assert response.status == 200
    shown = await (await client.get(f"/api/v2/silence/{silence_id}")).json()
    assert shown["status"] == {"state": "expired"}
    again = await client.delete(f"/api/v2/silence/{silence_id}")
    assert again.status == 200


async def test_silences_are_filtered_by_their_matchers(client: Client) -> None:
    for value in ("Down", "Up"):
        await client.post(
            "/api/v2/silences",
            json=_silence(matchers=[{"name": "alertname", "value": value, "isRegex": False}]),
        )
    response = await client.get("/api/v2/silences", params={"filter": "alertname=Up"})
    [shown] = await response.json()
    assert shown["matchers"][0]["value"] == "Up"


async def test_silences_list_active_then_pending_then_expired(client: Client) -> None:
    now = time.time()
    ids = {}
    for name, starts, ends in (
        ("pending", now + 100, now + 200),
        ("active-late", now - 10, now + 500),
        ("active-soon", now - 10, now + 300),
        ("expired", now - 10, now + 400),
    ):
        body = _silence(startsAt=_rfc3339(starts), endsAt=_rfc3339(ends), comment=name)
        ids[name] = (await (await client.post("/api/v2/silences", json=body)).json())["silenceID"]
    await client.delete(f"/api/v2/silence/{ids['expired']}")
    shown = await (await client.get("/api/v2/silences")).json()
    assert [s["comment"] for s in shown] == ["active-soon", "active-late", "pending", "expired"]
