"""Escalation policies through the real engine: levels notify users' receivers in turn,
repeat, stop on acknowledgement, and survive a restart at the time they were due."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import anyio
import orjson
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pudimd_plugins.notifiers.webhook import WebhookNotifier

from pudimd.alerting.alert import PostableAlert, fingerprint
from pudimd.alerting.config import build_alerting_model
from pudimd.alerting.escalation import escalation_problems
from pudimd.alerting.oncall import OncallConfig, OncallDirectory
from pudimd.alerting.workflow import Action
from pudimd.api.oncall import oncall_routes
from pudimd.store import Store
from pudimd.store.tables import alert_events, escalations
from tests.unit.alerting_fixtures import Collector, collector, running_engine

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

pytestmark = pytest.mark.anyio

MODEL = build_alerting_model({"webhook": WebhookNotifier})
TYPES: dict[str, type[Any]] = {"webhook": WebhookNotifier}
LABELS = {"alertname": "DbDown", "severity": "page"}
FP = fingerprint(LABELS)
STEP = 0.4


def hook(name: str, c: Collector) -> dict[str, Any]:
    return {"name": name, "webhook_configs": [{"url": f"http://127.0.0.1:{c.port}/hook"}]}


def alerting_config(team: Collector, alice: Collector, bob: Collector) -> Any:
    return MODEL.model_validate(
        {
            "route": {
                "receiver": "team",
                "group_by": ["alertname"],
                "group_wait": "0s",
                "group_interval": "50ms",
                "escalation_policy": "page",
            },
            "receivers": [hook("team", team), hook("alice", alice), hook("bob", bob)],
        }
    )


def oncall(step: float = STEP, repeat: int = 1) -> OncallDirectory:
    ms = f"{int(step * 1000)}ms"
    return OncallDirectory(
        OncallConfig.model_validate(
            {
                "users": [
                    {"name": "alice", "receiver": "alice"},
                    {"name": "bob", "receiver": "bob"},
                ],
                "schedules": [
                    {
                        "name": "primary",
                        "layers": [
                            {
                                "name": "all",
                                "start": "2026-01-01T00:00",
                                "rotation": "1d",
                                "users": ["alice"],
                            }
                        ],
                    }
                ],
                "escalation_policies": [
                    {
                        "name": "page",
                        "repeat": repeat,
                        "levels": [
                            {"targets": [{"schedule": "primary"}], "delay": ms},
                            {"targets": [{"user": "bob"}], "delay": ms},
                        ],
                    }
                ],
            }
        )
    )


@asynccontextmanager
async def three() -> AsyncIterator[tuple[Collector, Collector, Collector]]:
    async with AsyncExitStack() as stack:
        yield (
            await stack.enter_async_context(collector()),
            await stack.enter_async_context(collector()),
            await stack.enter_async_context(collector()),
        )


async def table(directory: Path, table: sa.Table) -> list[Any]:
    store = await Store.open(f"sqlite:///{directory / 'pudimd.db'}")
    try:
        async with store.engine.connect() as conn:
            return list(await conn.execute(sa.select(table)))
    finally:
        await store.close()


async def test_levels_notify_in_turn_repeat_and_stop_on_acknowledgement(
    migrated: Path, tmp_path: Path
) -> None:
    async with (
        three() as (team, alice, bob),
        running_engine(
            migrated, tmp_path, alerting_config(team, alice, bob), notifier_types=TYPES
        ) as alerting,
    ):
        alerting.set_oncall(oncall())
        t0 = time.monotonic()
        await alerting.post([PostableAlert(labels=LABELS)])
        await team.wait(1)
        await alice.wait(1, within=2)  # level 1 at once: the schedule's on-call user
        assert time.monotonic() - t0 < STEP
        assert bob.payloads == []
        await bob.wait(1, within=2)  # level 2 after the level-1 delay
        assert time.monotonic() - t0 >= STEP * 0.9
        await alice.wait(2, within=2)  # repeat once: level 1 again
        await bob.wait(2, within=2)
        [running] = alerting.escalations()
        assert running.next_at is None  # every level and repeat done
        await alerting.act(FP, Action("acknowledge", actor="alice"))
        await anyio.sleep(0.2)
        assert alerting.escalations() == []
        assert [p["alerts"][0]["labels"] for p in alice.payloads + bob.payloads] == [LABELS] * 4
    rows = await table(tmp_path, alert_events)
    escalated = [orjson.loads(r.detail) for r in rows if r.kind == "escalated"]
    assert [(d["level"], d["cycle"], d["receivers"]) for d in escalated] == [
        (1, 0, ["alice"]),
        (2, 0, ["bob"]),
        (1, 1, ["alice"]),
        (2, 1, ["bob"]),
    ]
    assert escalated[0]["targets"] == ["schedule:primary"]
    assert await table(tmp_path, escalations) == []  # stopped: deleted


async def test_an_acknowledgement_before_the_next_level_stops_it(
    migrated: Path, tmp_path: Path
) -> None:
    async with (
        three() as (team, alice, bob),
        running_engine(
            migrated, tmp_path, alerting_config(team, alice, bob), notifier_types=TYPES
        ) as alerting,
    ):
        alerting.set_oncall(oncall())
        await alerting.post([PostableAlert(labels=LABELS)])
        await alice.wait(1, within=2)
        await alerting.act(FP, Action("acknowledge", actor="alice"))
        await anyio.sleep(STEP * 2)
        assert bob.payloads == [] and alerting.escalations() == []


async def test_a_restart_mid_escalation_fires_the_next_level_when_it_was_due(
    migrated: Path, tmp_path: Path
) -> None:
    step = 1.5
    async with three() as (team, alice, bob):
        async with running_engine(
            migrated, tmp_path, alerting_config(team, alice, bob), notifier_types=TYPES
        ) as alerting:
            alerting.set_oncall(oncall(step, repeat=0))
            await alerting.post([PostableAlert(labels=LABELS)])
            await alice.wait(1, within=2)
            [running] = alerting.escalations()
            due = running.next_at
            assert due is not None and running.level == 1
        [row] = await table(tmp_path, escalations)
        assert (row.level, row.next_at) == (1, due)
        again = tmp_path / "again"
        again.mkdir()
        async with running_engine(
            tmp_path / "pudimd.db", again, alerting_config(team, alice, bob), notifier_types=TYPES
        ) as alerting:
            alerting.set_oncall(oncall(step, repeat=0))
            [loaded] = alerting.escalations()
            assert (loaded.level, loaded.next_at) == (1, due)
            await bob.wait(1, within=step + 2)
            assert abs(time.time() - due) < 0.5  # at the time it would have fired
            assert len(alice.payloads) == 1  # level 1 was not notified again


def test_check_config_problems() -> None:
    directory = oncall()
    config = directory.config.model_copy(
        update={
            "escalation_policies": [
                *directory.config.escalation_policies,
                directory.config.escalation_policies[0],
            ]
        }
    )
    found = escalation_problems(config, ["alice"], [(["routes", 0], "nope")])
    assert found == [
        (["oncall", "escalation_policies", 1, "name"], "duplicate 'page'"),
        (
            ["alerting", "route", "routes", 0, "escalation_policy"],
            "unknown escalation policy 'nope' (oncall.escalation_policies: page)",
        ),
    ]
    bad = OncallConfig.model_validate(
        {"escalation_policies": [{"name": "x", "levels": [{"targets": [{"receiver": "r"}]}]}]}
    )
    assert escalation_problems(bad, [], []) == [
        (
            ["oncall", "escalation_policies", 0, "levels", 0, "targets", 0, "receiver"],
            "unknown receiver 'r'",
        )
    ]
    with pytest.raises(ValueError, match="exactly one of receiver, user, team or schedule"):
        OncallConfig.model_validate(
            {"escalation_policies": [{"name": "x", "levels": [{"targets": [{}]}]}]}
        )
    with pytest.raises(ValueError, match="at least 1"):
        OncallConfig.model_validate({"escalation_policies": [{"name": "x", "levels": []}]})


async def test_escalate_now_and_stop_through_the_api(migrated: Path, tmp_path: Path) -> None:
    async with (
        three() as (team, alice, bob),
        running_engine(
            migrated, tmp_path, alerting_config(team, alice, bob), notifier_types=TYPES
        ) as alerting,
    ):
        alerting.set_oncall(oncall(step=3600))
        app = web.Application()
        app.add_routes(oncall_routes(cast("Daemon", SimpleNamespace(alerting=alerting))))
        async with TestClient(TestServer(app)) as client:
            await alerting.post([PostableAlert(labels=LABELS)])
            await alice.wait(1, within=2)
            listed = await (await client.get("/api/v1/escalations")).json()
            [shown] = listed["escalations"]
            assert (shown["policy"], shown["nextLevel"], shown["cycle"]) == ("page", 2, 0)
            assert shown["group"] == '{}:{alertname="DbDown"}'
            override = await client.post(
                f"/api/v1/escalations/{shown['id']}/notify", json={"targets": [{"user": "bob"}]}
            )
            assert override.status == 200 and (await override.json())["receivers"] == ["bob"]
            await bob.wait(1, within=2)  # the override, level 2 still an hour away
            assert (await override.json())["nextLevel"] == 2
            bad = await client.post(
                f"/api/v1/escalations/{shown['id']}/notify",
                json={"targets": [{"user": "a", "team": "b"}]},
            )
            assert bad.status == 400 and "exactly one" in (await bad.json())["detail"]
            now = await client.post(f"/api/v1/escalations/{shown['id']}/escalate")
            assert now.status == 200
            await bob.wait(2, within=2)  # level 2 without waiting its hour
            stopped = await client.post(f"/api/v1/escalations/{shown['id']}/stop")
            assert stopped.status == 200
            assert (await (await client.get("/api/v1/escalations")).json())["escalations"] == []
            missing = await client.post(f"/api/v1/escalations/{shown['id']}/escalate")
            assert missing.status == 404
            assert (await missing.json())["detail"].startswith("no escalation")
