"""``/api/v1/targets/{name}/uptime``, ``/api/v1/reports/response`` and
``/api/v1/history/receivers/{name}`` against the real alerting engine and store (SQLite in
a temporary directory), and ``pudimd alerts history --target`` / ``pudimd alerts report``
run as subprocesses against them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pudimd.alerting.alert import PostableAlert, fingerprint
from pudimd.alerting.config import AlertingBase, ReceiverBase
from pudimd.alerting.engine import Alerting
from pudimd.alerting.oncall import OncallConfig, OncallDirectory
from pudimd.alerting.routing import RouteConfig
from pudimd.alerting.workflow import Action
from pudimd.api._amjson import api_time
from pudimd.api.oncall import oncall_routes
from pudimd.api.problems import CONTENT_TYPE
from pudimd.api.reports import reports_routes
from pudimd.results import ProbeResult
from pudimd.store import Store
from tests.helpers import PUDIMD
from tests.unit.alerting_fixtures import migrated_database, running_engine

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

pytestmark = pytest.mark.anyio

Client = TestClient[web.Request, web.Application]

# critical alerts reach pager and go on to chat; warnings reach chat
CONFIG = AlertingBase(
    route=RouteConfig.model_validate(
        {
            "receiver": "chat",
            "group_by": ["alertname"],
            "routes": [
                {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
                {"matchers": ['severity=~"critical|warning"'], "receiver": "chat"},
            ],
        }
    ),
    receivers=[ReceiverBase(name=name) for name in ("chat", "pager", "quiet")],
)
ONCALL = OncallConfig.model_validate(
    {
        "users": [{"name": "alice"}, {"name": "bob"}],
        "teams": [{"name": "dba", "members": ["bob"]}, {"name": "web", "members": ["alice"]}],
    }
)
DISK = {"alertname": "DiskFull", "target": "db1", "severity": "critical"}
PING = {"alertname": "PingDown", "target": "web", "severity": "warning"}
DISK_FP, PING_FP = fingerprint(DISK), fingerprint(PING)


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_database(tmp_path_factory.mktemp("db"))


@pytest.fixture
async def engine(migrated_db: Path, tmp_path: Path) -> AsyncIterator[Alerting]:
    async with running_engine(migrated_db, tmp_path, CONFIG) as alerting:
        alerting.set_people(["alice", "bob"], ["dba", "web"])
        yield alerting


@pytest.fixture
async def store(engine: Alerting, tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite:///{tmp_path / 'pudimd.db'}")
    yield store
    await store.close()


@pytest.fixture
async def client(engine: Alerting, store: Store) -> AsyncIterator[Client]:
    daemon = SimpleNamespace(
        alerting=engine,
        store=store,
        config=SimpleNamespace(targets=[SimpleNamespace(name="web"), SimpleNamespace(name="new")]),
        oncall=OncallDirectory(ONCALL),
    )
    app = web.Application()
    app.add_routes(oncall_routes(cast("Daemon", daemon)))
    app.add_routes(reports_routes(cast("Daemon", daemon)))
    async with TestClient(TestServer(app)) as served:
        yield served


async def get(client: Client, path: str, status: int = 200, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status == status, await response.text()
    if status != 200:
        assert response.content_type == CONTENT_TYPE
    return await response.json()


async def checks(store: Store, target: str, outcomes: list[tuple[float, bool]]) -> None:
    for ts, ok in outcomes:
        store.enqueue(target, "http", ProbeResult(success=ok, duration=0.01, timestamp=ts))
    await store.flush()


def act(engine: Alerting, fp: str, kind: Any, actor: str = "alice", **fields: Any) -> Any:
    return engine.act(fp, Action(kind, actor=actor, interface="cli", **fields))


# -- uptime ------------------------------------------------------------------------------


async def test_uptime_of_a_target_over_the_four_windows(client: Client, store: Store) -> None:
    now = time.time()
    # 2 days ago: 3 checks, 1 failed; 2 hours ago: 5 checks, 2 failed; 60 days ago: 4 ok
    await checks(store, "web", [(now - 2 * 86_400 + i, i != 0) for i in range(3)])
    await checks(store, "web", [(now - 7200 + i, i >= 2) for i in range(5)])
    await checks(store, "web", [(now - 60 * 86_400 + i, True) for i in range(4)])
    shown = await get(client, "/api/v1/targets/web/uptime")
    assert shown["target"] == "web" and "successful checks" in shown["definition"]
    windows = {w["window"]: w for w in shown["windows"]}
    assert list(windows) == ["24h", "7d", "30d", "90d"]
    assert (windows["24h"]["checks"], windows["24h"]["failures"]) == (5, 2)
    assert windows["24h"]["uptimePercent"] == pytest.approx(60.0)
    assert (windows["7d"]["checks"], windows["7d"]["failures"]) == (8, 3)
    assert windows["30d"]["checks"] == 8
    assert (windows["90d"]["checks"], windows["90d"]["failures"]) == (12, 3)
    assert windows["90d"]["uptimePercent"] == pytest.approx(75.0)
    assert windows["24h"]["until"] == shown["until"]
    # as of 36 hours ago: the checks of two days ago, and those of 60 days ago in 90d
    earlier = await get(client, "/api/v1/targets/web/uptime", until=api_time(now - 1.5 * 86_400))
    assert [w["checks"] for w in earlier["windows"]] == [3, 3, 3, 7]


async def test_uptime_of_targets_with_and_without_checks(client: Client, store: Store) -> None:
    # configured, never checked: no figure, not an error
    new = await get(client, "/api/v1/targets/new/uptime")
    assert [(w["checks"], w["uptimePercent"]) for w in new["windows"]] == [(0, None)] * 4
    # gone from the config but with checks stored: shown
    await checks(store, "retired", [(time.time() - 3600, False)])
    retired = await get(client, "/api/v1/targets/retired/uptime")
    assert retired["windows"][0]["uptimePercent"] == 0.0
    problem = await get(client, "/api/v1/targets/nobody/uptime", 404)
    assert problem["status"] == 404 and "nobody" in problem["detail"]
    bad = await get(client, "/api/v1/targets/web/uptime", 400, until="yesterday")
    assert bad["errors"][0]["field"] == "until"
    unknown = await get(client, "/api/v1/targets/web/uptime", 400, since="2026-01-01T00:00:00Z")
    assert unknown["detail"] == "unknown query parameter 'since'"


# -- MTTA / MTTR -------------------------------------------------------------------------


async def test_response_report_of_real_actions_per_receiver_and_team(
    client: Client, engine: Alerting
) -> None:
    await engine.post([PostableAlert(labels=DISK), PostableAlert(labels=PING)])
    await act(engine, DISK_FP, "acknowledge")
    await act(engine, DISK_FP, "assign", assignee="user:bob")  # bob is in dba
    await act(engine, DISK_FP, "resolve")
    await act(engine, PING_FP, "comment", comment="flaky")
    report = await get(client, "/api/v1/reports/response")
    assert report["total"]["episodes"] == 2
    receivers = {r["receiver"]: r for r in report["receivers"]}
    assert sorted(receivers) == ["chat", "pager"]
    pager = receivers["pager"]
    assert (pager["episodes"], pager["acknowledged"], pager["resolved"], pager["open"]) == (
        1,
        1,
        1,
        0,
    )
    mtta, mttr = pager["mtta"]["meanSeconds"], pager["mttr"]["meanSeconds"]
    assert 0 <= mtta <= mttr < 30 and pager["mtta"]["medianSeconds"] == mtta
    chat = receivers["chat"]
    assert (chat["episodes"], chat["unacknowledged"], chat["open"]) == (2, 1, 1)
    assert [(t["team"], t["episodes"]) for t in report["teams"]] == [("dba", 1)]
    assert report["noTeam"]["episodes"] == 1 and report["noTeam"]["mtta"]["meanSeconds"] is None


async def test_response_report_over_a_range_from_the_timeline(
    client: Client, engine: Alerting
) -> None:
    day = 86_400.0
    t0 = time.time() - 10 * day

    def event(fp: str, at: float, kind: str, **detail: Any) -> dict[str, Any]:
        return {"fingerprint": fp, "at": t0 + at, "kind": kind, "alertname": "x",
                "target": "t", "actor": None, "interface": None, "detail": detail}  # fmt: skip

    await engine.db.write_alerts(
        [],
        events=[
            event("d1", 0, "fired", labels=DISK),
            event("d1", 60, "acknowledged"),
            event("d1", 70, "assigned", assignee="team:web"),
            event("d1", 600, "resolved"),
            event("d2", 1000, "fired", labels=DISK),
            event("d2", 1300, "snoozed", until=t0 + 9999),
            event("d2", 2800, "resolved"),
            event("p1", 5 * day, "fired", labels=PING),  # after the range asked below
            event("old", -40 * day, "fired", labels=PING),  # before the default 30 days
        ],
    )
    report = await get(
        client,
        "/api/v1/reports/response",
        since=api_time(t0 - 1),
        until=api_time(t0 + day),
    )
    pager = next(r for r in report["receivers"] if r["receiver"] == "pager")
    assert pager["episodes"] == 2
    assert pager["mtta"] == {"meanSeconds": 180.0, "medianSeconds": 180.0}
    assert pager["mttr"] == {"meanSeconds": 1200.0, "medianSeconds": 1200.0}
    assert [(t["team"], t["episodes"]) for t in report["teams"]] == [("web", 1)]
    assert report["since"] == api_time(t0 - 1)
    assert report["eventsRead"] == 8  # from since on: p1 too, not old
    default = await get(client, "/api/v1/reports/response")
    assert default["total"]["episodes"] == 3  # d1, d2, p1; not old
    assert default["total"]["open"] == 1
    bad = await get(client, "/api/v1/reports/response", 400, since=api_time(t0), until=api_time(t0))
    assert bad["errors"] == [{"field": "since", "message": "not before until"}]
    await get(client, "/api/v1/reports/response", 400, receiver="pager")


# -- events by receiver ------------------------------------------------------------------


async def test_history_by_receiver(client: Client, engine: Alerting) -> None:
    before = time.time()
    await engine.post([PostableAlert(labels=DISK), PostableAlert(labels=PING)])
    await act(engine, PING_FP, "acknowledge")
    pager = await get(client, "/api/v1/history/receivers/pager")
    assert [(e["fingerprint"], e["kind"]) for e in pager["events"]] == [(DISK_FP, "fired")]
    assert pager["alerts"] == {"seen": 2, "routed": 1, "unknown": 0}
    assert pager["eventsRead"] == 3  # the two fired (held by the engine), the ack
    chat = await get(client, "/api/v1/history/receivers/chat", limit="10")
    assert sorted((e["fingerprint"], e["kind"]) for e in chat["events"]) == sorted(
        [(DISK_FP, "fired"), (PING_FP, "fired"), (PING_FP, "acknowledged")]
    )
    quiet = await get(client, "/api/v1/history/receivers/quiet")
    assert quiet["events"] == [] and quiet["alerts"]["seen"] == 2
    later = await get(client, "/api/v1/history/receivers/chat", since=api_time(time.time() + 60))
    assert later["events"] == [] and later["since"] is not None
    ranged = await get(
        client, "/api/v1/history/receivers/chat", since=api_time(before - 1), limit="1"
    )
    assert len(ranged["events"]) == 1
    missing = await get(client, "/api/v1/history/receivers/nobody", 404)
    assert "receivers: chat, pager, quiet" in missing["detail"]
    await get(client, "/api/v1/history/receivers/chat", 400, limit="0")
    await get(client, "/api/v1/history/receivers/chat", 400, limit="many")
    await get(
        client,
        "/api/v1/history/receivers/chat",
        400,
        since=api_time(before + 10),
        until=api_time(before),
    )


async def test_history_by_receiver_routes_alerts_no_longer_held(
    client: Client, engine: Alerting
) -> None:
    # an alert the engine forgot long ago: its labels come from its stored fired event,
    # even when that event is before the range asked for
    old = {"alertname": "Old", "severity": "critical"}
    t = time.time() - 3600
    await engine.db.write_alerts(
        [],
        events=[
            {"fingerprint": fingerprint(old), "at": t + offset, "kind": kind, "alertname": "Old",
             "target": "", "actor": None, "interface": None, "detail": detail}
            for offset, kind, detail in (
                (0, "fired", {"labels": old}), (60, "commented", {"comment": "hm"}),
                (120, "resolved", {}),
            )
        ],
    )  # fmt: skip
    pager = await get(client, "/api/v1/history/receivers/pager")
    assert [e["kind"] for e in pager["events"]] == ["fired", "commented", "resolved"]
    later = await get(client, "/api/v1/history/receivers/pager", since=api_time(t + 30))
    assert [e["kind"] for e in later["events"]] == ["commented", "resolved"]
    assert later["alerts"] == {"seen": 1, "routed": 1, "unknown": 0}
    quiet = await get(client, "/api/v1/history/receivers/quiet", since=api_time(t + 30))
    assert quiet["events"] == [] and quiet["alerts"] == {"seen": 1, "routed": 0, "unknown": 0}


# -- the CLI -----------------------------------------------------------------------------


async def pudimd(*args: str) -> subprocess.CompletedProcess[str]:
    run = partial(subprocess.run, [*PUDIMD, *args], capture_output=True, text=True, timeout=60)
    return await anyio.to_thread.run_sync(run)


async def ok(*args: str) -> str:
    out = await pudimd(*args)
    assert out.returncode == 0 and out.stderr == "", out.stderr + out.stdout
    return out.stdout


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


async def test_cli_history_of_a_target_and_the_report(
    client: Client, engine: Alerting, store: Store
) -> None:
    url = str(client.make_url("")).rstrip("/")
    now = time.time()
    await checks(store, "web", [(now - 3 * 86_400 + i, i > 0) for i in range(4)])
    await engine.post([PostableAlert(labels=PING)])
    await act(engine, PING_FP, "acknowledge", actor="bob")
    shown = rows(await ok("alerts", "history", "--url", url, "--target", "web", "--since", "2d"))
    assert shown[0] == ["WINDOW", "CHECKS", "FAILURES", "UPTIME"]
    assert shown[1] == ["24h", "0", "0", "-"]
    assert shown[2] == ["7d", "4", "1", "75.000%"]
    assert shown[5][:3] == ["AT", "ALERT", "FINGERPRINT"]
    assert [r[2:] for r in shown[6:]] == [
        ["PingDown", PING_FP, "fired"],
        ["PingDown", PING_FP, "acknowledged", "bob", "(cli)"],
    ]
    found = json.loads(await ok("alerts", "history", "--url", url, "--target", "web", "-o", "json"))
    assert found["uptime"]["windows"][1]["checks"] == 4
    assert [e["kind"] for e in found["events"]] == ["fired", "acknowledged"]
    capped = await ok("alerts", "history", "--url", url, "--target", "web", "--limit", "1")
    assert "(the first 1 events since" in capped
    quiet = await ok("alerts", "history", "--url", url, "--target", "new", "--since", "1h")
    assert "No alert events for new in the last 1h." in quiet
    # the fingerprint form is unchanged
    timeline = rows(await ok("alerts", "history", "--url", url, PING_FP))
    assert [r[2] for r in timeline[1:]] == ["fired", "acknowledged"]
    # one of the two, --since only with --target
    for args in ([], [PING_FP, "--target", "web"], [PING_FP, "--since", "1d"]):
        out = await pudimd("alerts", "history", "--url", url, *args)
        assert out.returncode == 2 and "Error:" in out.stderr, out.stderr
    missing = await pudimd("alerts", "history", "--url", url, "--target", "nobody")
    assert missing.returncode == 1 and "no target 'nobody'" in missing.stderr

    report = rows(await ok("alerts", "report", "--url", url, "--since", "1d"))
    assert report[0][:3] == ["BY", "NAME", "EPISODES"]
    by = {(r[0], r[1]): r for r in report[1:]}
    assert by[("all", "-")][2] == "1"
    assert by[("receiver", "chat")][2:7] == ["1", "1", "0", "0", "1"]
    assert by[("receiver", "chat")][9:] == ["-", "-"]  # not resolved: no MTTR
    assert by[("team", "(none)")][2] == "1"
    as_json = json.loads(await ok("alerts", "report", "--url", url, "-o", "json"))
    assert as_json["total"]["acknowledged"] == 1
