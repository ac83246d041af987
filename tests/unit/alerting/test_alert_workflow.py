"""On-call actions on alerts through the real engine: a real SQLite store, the webhook
notifier and an HTTP collector on loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from pudimd_plugins.notifiers.webhook import WebhookNotifier

from pudimd.alerting.alert import PostableAlert, fingerprint
from pudimd.alerting.config import build_alerting_model
from pudimd.alerting.engine import Alerting
from pudimd.alerting.workflow import Action, ActionError
from pudimd.store import Store
from pudimd.store.tables import alert_events
from tests.unit.alerting_fixtures import Collector, collector, running_engine

pytestmark = pytest.mark.anyio

MODEL = build_alerting_model({"webhook": WebhookNotifier})
TYPES: dict[str, type[Any]] = {"webhook": WebhookNotifier}
LABELS = {"alertname": "DiskFull", "target": "db1", "severity": "page"}
FP = fingerprint(LABELS)


def config(port: int, repeat: str = "1h") -> Any:
    return MODEL.model_validate(
        {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname"],
                "group_wait": "0s",
                "group_interval": "50ms",
                "repeat_interval": repeat,
            },
            "receivers": [
                {"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{port}/hook"}]}
            ],
        }
    )


def firing(**labels: str) -> PostableAlert:
    return PostableAlert(labels={**LABELS, **labels}, annotations={"summary": "disk full"})


def ack(**kwargs: Any) -> Action:
    return Action("acknowledge", actor="alice", interface="cli", **kwargs)


async def quiet(hook: Collector, count: int, seconds: float = 0.4) -> None:
    await anyio.sleep(seconds)
    assert len(hook.payloads) == count, hook.payloads[count:]


async def events(alerting: Alerting) -> list[tuple[str, str | None, str | None, dict[str, Any]]]:
    """The alert's timeline as the engine shows it (written events and the live episode)."""
    timeline = await alerting.timeline(fingerprint=FP)
    return [(e["kind"], e["actor"], e["interface"], e["detail"]) for e in timeline]


async def stored(directory: Path) -> list[str]:
    """The kinds of the events written to the database."""
    store = await Store.open(f"sqlite:///{directory / 'pudimd.db'}")
    try:
        async with store.engine.connect() as conn:
            rows = await conn.execute(sa.select(alert_events).order_by(alert_events.c.id))
            return [r.kind for r in rows]
    finally:
        await store.close()


async def test_acknowledging_tells_the_receiver_and_stops_repeats(
    migrated: Path, tmp_path: Path
) -> None:
    async with collector() as hook, running_engine(
        migrated, tmp_path, config(hook.port, repeat="200ms"), notifier_types=TYPES
    ) as alerting:
        await alerting.post([firing()])
        await hook.wait(1)
        assert "acknowledged" not in hook.payloads[0]
        await hook.wait(2)  # repeat_interval 200ms: unacknowledged, it repeats
        view = await alerting.act(FP, ack(comment="looking"))
        assert view.alert.acked_by == "alice" and view.alert.ack_until is None
        await hook.wait(3, within=1.0)  # at once, not after group_interval or repeat
        follow_up = hook.payloads[-1]
        assert follow_up["acknowledged"] is True and follow_up["status"] == "firing"
        assert follow_up["version"] == "4"
        await quiet(hook, 3, 0.6)  # acknowledged: no repeats
        await alerting.act(FP, Action("unacknowledge", actor="alice"))
        await hook.wait(4, within=1.0)
        assert "acknowledged" not in hook.payloads[-1]
        await hook.wait(5, within=1.0)  # repeats again
        got = await events(alerting)
    assert [(kind, actor, interface) for kind, actor, interface, _ in got] == [
        ("fired", None, None),
        ("acknowledged", "alice", "cli"),
        ("unacknowledged", "alice", "api"),
    ]
    assert got[1][3] == {"comment": "looking"}
    # the episode is still on: only the engineers' actions are written so far
    assert await stored(tmp_path) == ["acknowledged", "unacknowledged"]


async def test_an_acknowledgement_until_a_time_runs_out_and_notifies_again(
    migrated: Path, tmp_path: Path
) -> None:
    async with collector() as hook, running_engine(
        migrated, tmp_path, config(hook.port), notifier_types=TYPES
    ) as alerting:
        await alerting.post([firing()])
        await hook.wait(1)
        await alerting.act(FP, ack(until=time.time() + 0.5))
        await hook.wait(2, within=1.0)
        assert hook.payloads[-1]["acknowledged"] is True
        await hook.wait(3, within=3.0)  # ran out: the alert still fires
        assert "acknowledged" not in hook.payloads[-1]
        alert = alerting.alert(FP)
        assert alert is not None and alert.acked_by is None
        await alerting.post([])  # the writer has caught up
        assert [e[0] for e in await events(alerting)] == ["fired", "acknowledged", "ack_expired"]


async def test_snooze_assign_comment_and_resolve_by_hand(migrated: Path, tmp_path: Path) -> None:
    async with collector() as hook, running_engine(
        migrated, tmp_path, config(hook.port), notifier_types=TYPES
    ) as alerting:
        await alerting.post([firing()])
        await hook.wait(1)
        with pytest.raises(ActionError, match="no users or teams are configured") as info:
            await alerting.act(FP, Action("assign", actor="bob", assignee="user:alice"))
        assert info.value.status == 400 and info.value.field == "assignee"
        alerting.set_people(["alice", "bob"], ["dba"])
        with pytest.raises(ActionError, match="unknown user 'carol'"):
            await alerting.act(FP, Action("assign", actor="bob", assignee="user:carol"))
        with pytest.raises(ActionError, match="user:NAME or team:NAME"):
            await alerting.act(FP, Action("assign", actor="bob", assignee="alice"))
        await alerting.act(FP, Action("assign", actor="bob", assignee="team:dba"))
        view = await alerting.act(FP, Action("assign", actor="bob", assignee="user:alice"))
        assert view.alert.assignee == "user:alice"
        with pytest.raises(ActionError, match="needs an end"):
            await alerting.act(FP, Action("snooze", actor="alice"))
        with pytest.raises(ActionError, match="in the future"):
            await alerting.act(FP, Action("snooze", actor="alice", until=time.time() - 1))
        await alerting.act(FP, Action("snooze", actor="alice", until=time.time() + 3600))
        with pytest.raises(ActionError, match="needs text"):
            await alerting.act(FP, Action("comment", actor="alice", comment="  "))
        await alerting.act(FP, Action("comment", actor="alice", comment="rotating logs"))
        await alerting.act(FP, Action("resolve", actor="alice", comment="freed 20G"))
        await hook.wait(3, within=1.0)  # the snooze's follow-up, then the resolution
        assert hook.payloads[-1]["status"] == "resolved"
        # a resolved alert takes comments, nothing else
        with pytest.raises(ActionError, match="is resolved") as conflict:
            await alerting.act(FP, ack())
        assert conflict.value.status == 409
        await alerting.act(FP, Action("comment", actor="alice", comment="post-mortem: #42"))
        with pytest.raises(ActionError) as missing:
            await alerting.act("0000000000000000", ack())
        assert missing.value.status == 404
        got = await events(alerting)
    assert [(kind, detail) for kind, _, _, detail in got] == [
        ("fired", {"labels": LABELS, "routed": ["hook"]}),
        ("assigned", {"assignee": "team:dba"}),
        ("assigned", {"assignee": "user:alice", "previous": "team:dba"}),
        ("snoozed", {"until": pytest.approx(time.time() + 3600, abs=60)}),
        ("commented", {"comment": "rotating logs"}),
        ("resolved", {"comment": "freed 20G", "by_hand": True}),
        ("commented", {"comment": "post-mortem: #42"}),
    ]


async def test_actions_survive_a_restart_and_a_new_episode_starts_clean(
    migrated: Path, tmp_path: Path
) -> None:
    async with collector() as hook:
        async with running_engine(
            migrated, tmp_path, config(hook.port), notifier_types=TYPES
        ) as alerting:
            alerting.set_people(["alice"], [])
            await alerting.post([firing()])
            await hook.wait(1)
            await alerting.act(FP, ack(until=time.time() + 3600))
            await alerting.act(FP, Action("assign", actor="alice", assignee="user:alice"))
            await hook.wait(2, within=1.0)
        # a new engine on (a copy of) that database
        again = tmp_path / "again"
        again.mkdir()
        async with running_engine(
            tmp_path / "pudimd.db", again, config(hook.port), notifier_types=TYPES
        ) as alerting:
            alert = alerting.alert(FP)
            assert alert is not None
            assert (alert.acked_by, alert.assignee) == ("alice", "user:alice")
            assert alert.ack_until is not None and alert.ack_until > time.time() + 3000
            await quiet(hook, 2, 0.3)  # nothing new to say after the restart
            # it resolves, then fires again: a new episode, unacknowledged and unassigned
            await alerting.post([PostableAlert(labels=LABELS, ends_at=time.time())])
            await alerting.post([firing()])
            alert = alerting.alert(FP)
            assert alert is not None and alert.acked_by is None and alert.assignee is None
            await hook.wait(3, within=1.0)
            assert "acknowledged" not in hook.payloads[-1]
            kinds = [kind for kind, *_ in await events(alerting)]
    assert kinds == ["fired", "acknowledged", "assigned", "resolved", "fired"]
    # the episode that ended was written when the new one began
    assert await stored(again) == ["acknowledged", "assigned", "fired", "resolved"]


async def test_a_collected_episode_is_written_to_the_timeline(
    migrated: Path, tmp_path: Path
) -> None:
    async with collector() as hook, running_engine(
        migrated, tmp_path, config(hook.port), notifier_types=TYPES
    ) as alerting:
        started = time.time()
        await alerting.post([firing()])
        await alerting.post([PostableAlert(labels=LABELS, ends_at=time.time())])
        assert await stored(tmp_path) == []  # held by the store: shown, not written
        assert [e[0] for e in await events(alerting)] == ["fired", "resolved"]
        alerting.housekeep(time.time() + alerting.resolved_retention + 120)
        await alerting.post([])  # waits for the writer
        assert alerting.alert(FP) is None
        assert await stored(tmp_path) == ["fired", "resolved"]
        timeline = await alerting.timeline(fingerprint=FP)
        assert [e["kind"] for e in timeline] == ["fired", "resolved"]
        assert timeline[0]["detail"] == {"labels": LABELS, "routed": ["hook"]} and timeline[0]["at"] >= started


async def test_timeline_events_older_than_history_retention_are_deleted(
    migrated: Path, tmp_path: Path
) -> None:
    async with collector() as hook, running_engine(
        migrated, tmp_path, config(hook.port), notifier_types=TYPES
    ) as alerting:
        now = time.time()
        old = now - alerting.history_retention - 86400
        event = {"fingerprint": FP, "kind": "commented", "alertname": "DiskFull",
                 "target": "db1", "actor": "a", "interface": "api", "detail": {}}  # fmt: skip
        await alerting.db.write_alerts([], events=[{**event, "at": old}, {**event, "at": now}])
        async with anyio.create_task_group() as tg:
            tg.start_soon(alerting._prune_history, 0.0, 3600.0)
            with anyio.fail_after(5):
                while len(await alerting.db.events(fingerprint=FP)) != 1:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        [kept] = await alerting.db.events(fingerprint=FP)
        assert kept["at"] == pytest.approx(now)
