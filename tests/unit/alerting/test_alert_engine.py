"""The alerting engine end to end in one process: a real SQLite store, the real webhook
notifier and a real HTTP collector on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from pudimd_plugins.notifiers.webhook import WebhookNotifier

from pudimd.alerting.alert import PostableAlert, fingerprint
from pudimd.alerting.config import build_alerting_model
from pudimd.alerting.engine import Alerting
from pudimd.alerting.matchers import parse_matchers
from pudimd.alerting.metrics import AlertingMetrics
from pudimd.alerting.silences import Silence
from pudimd.store import Store
from pudimd.store.alerting import AlertingDB
from tests.unit.alerting_fixtures import collector

pytestmark = pytest.mark.anyio

MODEL = build_alerting_model({"webhook": WebhookNotifier})


def config(port: int, **route: Any) -> Any:
    extra = route.pop("extra", {})
    return MODEL.model_validate(
        {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname"],
                "group_wait": "0s",
                "group_interval": "100ms",
                **route,
            },
            "receivers": [
                {"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{port}/hook"}]}
            ],
            "outbox": {"backoff_initial": "50ms", "backoff_max": "200ms"},
            **extra,
        }
    )


@asynccontextmanager
async def engine(db_path: Path, cfg: Any, **kwargs: Any) -> AsyncIterator[Alerting]:
    store = await Store.open(f"sqlite:///{db_path}")
    alerting = Alerting(
        AlertingDB(store.engine),
        {"webhook": WebhookNotifier},
        AlertingMetrics(),
        **kwargs,
    )
    await alerting.start(cfg)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(alerting.run)
            yield alerting
            tg.cancel_scope.cancel()
    finally:
        for notifier in alerting.notifiers():
            await notifier.aclose()
        await store.close()


def alert(name: str = "Down", **labels: str) -> PostableAlert:
    return PostableAlert(labels={"alertname": name, **labels}, annotations={"summary": name})


def sample(metrics: AlertingMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_a_posted_alert_reaches_the_webhook_as_version_4(tmp_path: Path) -> None:
    async with collector() as hook, engine(tmp_path / "db", config(hook.port)) as alerting:
        await alerting.post([alert(instance="a"), alert(instance="b")])
        await hook.wait(1)
    payload = hook.payloads[0]
    assert payload["version"] == "4"
    assert payload["status"] == "firing"
    assert payload["receiver"] == "hook"
    assert payload["groupLabels"] == {"alertname": "Down"}
    assert payload["commonLabels"] == {"alertname": "Down"}
    assert payload["groupKey"] == '{}:{alertname="Down"}'
    assert {a["labels"]["instance"] for a in payload["alerts"]} == {"a", "b"}
    assert all(a["endsAt"] == "0001-01-01T00:00:00Z" for a in payload["alerts"])
    assert payload["alerts"][0]["fingerprint"] == fingerprint(payload["alerts"][0]["labels"])


async def test_a_repost_of_the_same_alert_does_not_notify_again(tmp_path: Path) -> None:
    async with collector() as hook, engine(tmp_path / "db", config(hook.port)) as alerting:
        await alerting.post([alert()])
        await hook.wait(1)
        await alerting.post([alert()])
        await anyio.sleep(0.4)
    assert len(hook.payloads) == 1


async def test_resolving_an_alert_sends_resolved(tmp_path: Path) -> None:
    async with collector() as hook, engine(tmp_path / "db", config(hook.port)) as alerting:
        await alerting.post([alert()])
        await hook.wait(1)
        done = alerting.clock()
        await alerting.post([PostableAlert(labels={"alertname": "Down"}, ends_at=done - 1)])
        await hook.wait(2)
        assert alerting.alerts() == []
    assert hook.payloads[1]["status"] == "resolved"
    assert hook.payloads[1]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"


async def test_an_alert_without_ends_at_resolves_after_resolve_timeout(tmp_path: Path) -> None:
    async with collector() as hook:
        cfg = config(hook.port, extra={"global": {"resolve_timeout": "300ms"}})
        async with engine(tmp_path / "db", cfg) as alerting:
            await alerting.post([alert()])
            await hook.wait(2)
    assert [p["status"] for p in hook.payloads] == ["firing", "resolved"]


async def test_a_silenced_alert_is_not_notified_and_shows_its_silence(tmp_path: Path) -> None:
    async with collector() as hook, engine(tmp_path / "db", config(hook.port)) as alerting:
        now = alerting.clock()
        silence_id = await alerting.put_silence(
            Silence(tuple(parse_matchers('alertname="Down"')), now, now + 3600, "me", "maint")
        )
        await alerting.post([alert(), alert("Other")])
        await hook.wait(1)
        await anyio.sleep(0.3)
        views = {v.alert.labels["alertname"]: v for v in alerting.alerts()}
    assert [p["groupLabels"]["alertname"] for p in hook.payloads] == ["Other"]
    assert views["Down"].state == "suppressed"
    assert views["Down"].silenced_by == [silence_id]
    assert views["Other"].state == "active"


async def test_expiring_a_silence_lets_the_alert_through(tmp_path: Path) -> None:
    async with collector() as hook, engine(tmp_path / "db", config(hook.port)) as alerting:
        now = alerting.clock()
        silence_id = await alerting.put_silence(
            Silence(tuple(parse_matchers('alertname="Down"')), now, now + 3600, "me", "maint")
        )
        await alerting.post([alert()])
        await anyio.sleep(0.3)
        assert hook.payloads == []
        await alerting.expire_silence(silence_id)
        await hook.wait(1)
        assert alerting.silences.get(silence_id).state(alerting.clock()) == "expired"


async def test_silence_expires_when_alert_resolves(tmp_path: Path) -> None:
    async with collector() as hook, engine(tmp_path / "db", config(hook.port)) as alerting:
        now = alerting.clock()
        silence_id = await alerting.put_silence(
            Silence(
                tuple(parse_matchers('alertname="Down"')),
                now,
                now + 3600,
                "me",
                "until fixed",
                expire_on_resolve=True,
            )
        )
        await alerting.post([alert()])
        await anyio.sleep(0.3)
        assert alerting.silences.get(silence_id).state(alerting.clock()) == "active"
        await alerting.post(
            [PostableAlert(labels={"alertname": "Down"}, ends_at=alerting.clock() - 1)]
        )
        with anyio.fail_after(3):
            while alerting.silences.get(silence_id).state(alerting.clock()) != "expired":
                await anyio.sleep(0.05)
    assert hook.payloads == []


async def test_an_inhibited_alert_is_held_while_its_source_fires(tmp_path: Path) -> None:
    rules = {
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["cluster"],
            }
        ]
    }
    async with collector() as hook:
        cfg = config(hook.port, group_by=["alertname", "severity"], extra=rules)
        async with engine(tmp_path / "db", cfg) as alerting:
            await alerting.post(
                [
                    alert("NodeDown", severity="critical", cluster="a"),
                    alert("High", severity="warning", cluster="a"),
                    alert("High", severity="warning", cluster="b"),
                ]
            )
            await hook.wait(2)
            await anyio.sleep(0.3)
            views = alerting.alerts(matchers=parse_matchers('alertname="High"'))
    sent = {
        (p["groupLabels"]["alertname"], a["labels"]["cluster"])
        for p in hook.payloads
        for a in p["alerts"]
    }
    assert sent == {("NodeDown", "a"), ("High", "b")}
    inhibited = [v for v in views if v.inhibited_by]
    assert [v.alert.labels["cluster"] for v in inhibited] == ["a"]


async def test_restart_keeps_alerts_silences_and_notification_state(tmp_path: Path) -> None:
    async with collector() as hook:
        async with engine(tmp_path / "db", config(hook.port)) as alerting:
            now = alerting.clock()
            silence_id = await alerting.put_silence(
                Silence(tuple(parse_matchers('team="x"')), now, now + 3600, "me", "kept")
            )
            await alerting.post([alert()])
            await hook.wait(1)
        async with engine(tmp_path / "db", config(hook.port)) as alerting:
            assert [v.alert.labels for v in alerting.alerts()] == [{"alertname": "Down"}]
            assert alerting.silences.get(silence_id).comment == "kept"
            await anyio.sleep(0.4)
    assert len(hook.payloads) == 1  # the notification log survived: no duplicate


async def test_a_receiver_that_is_down_gets_everything_once_back(tmp_path: Path) -> None:
    async with collector() as hook, engine(tmp_path / "db", config(hook.port)) as alerting:
        hook.status = 503
        await alerting.post([alert("A")])
        await alerting.post([alert("B")])
        await anyio.sleep(0.6)
        assert alerting.outbox.depth == 2
        assert sample(alerting.metrics, "pudimd_notifications_total", receiver="hook",
                      integration="webhook/0", outcome="retry") >= 2
        hook.status = 200
        await hook.wait(2)
        assert {p["groupLabels"]["alertname"] for p in hook.payloads} == {"A", "B"}
        with anyio.fail_after(2):
            while alerting.outbox.depth:
                await anyio.sleep(0.05)
        rows = await alerting.db.notifications()
        assert {r.state for r in rows} == {"delivered"}
        attempts = await alerting.db.attempts(rows[0].id)
        assert attempts[-1]["outcome"] == "delivered"
        assert all(a["outcome"] == "retry" for a in attempts[:-1]) and len(attempts) >= 2


async def test_a_pending_notification_survives_a_restart_with_its_key(tmp_path: Path) -> None:
    async with collector() as hook:
        hook.status = 503
        async with engine(tmp_path / "db", config(hook.port)) as alerting:
            await alerting.post([alert()])
            with anyio.fail_after(2):
                while not (await alerting.db.notifications()):
                    await anyio.sleep(0.05)
            key = (await alerting.db.notifications())[0].idempotency_key
        hook.status = 200
        async with engine(tmp_path / "db", config(hook.port)):
            await hook.wait(1)
    assert hook.keys == [key]


async def test_a_notification_older_than_max_age_is_recorded_as_expired(tmp_path: Path) -> None:
    async with collector() as hook:
        hook.status = 503
        cfg = config(hook.port, extra={"outbox": {"max_age": "300ms", "backoff_initial": "50ms",
                                                  "backoff_max": "100ms"}})
        async with engine(tmp_path / "db", cfg) as alerting:
            await alerting.post([alert()])
            with anyio.fail_after(3):
                while alerting.outbox.depth or not await alerting.db.notifications():
                    await anyio.sleep(0.05)
            rows = await alerting.db.notifications()
            expired = sample(alerting.metrics, "pudimd_notifications_total", receiver="hook",
                             integration="webhook/0", outcome="expired")
    assert [r.state for r in rows] == ["expired"]
    assert expired == 1


async def test_an_unchanged_firing_group_is_repeated_after_repeat_interval(tmp_path: Path) -> None:
    async with collector() as hook:
        cfg = config(hook.port, repeat_interval="300ms")
        async with engine(tmp_path / "db", cfg) as alerting:
            await alerting.post([alert()])
            await hook.wait(2)
    assert hook.keys[0] != hook.keys[1]
    assert [p["status"] for p in hook.payloads] == ["firing", "firing"]


async def test_routes_send_to_the_first_matching_child(tmp_path: Path) -> None:
    cfg: Callable[[int], Any] = lambda port: MODEL.model_validate(  # noqa: E731
        {
            "route": {
                "receiver": "default",
                "group_wait": "0s",
                "routes": [{"matchers": ['team="db"'], "receiver": "db"}],
            },
            "receivers": [
                {"name": "default", "webhook_configs": [{"url": f"http://127.0.0.1:{port}/x"}]},
                {"name": "db", "webhook_configs": [{"url": f"http://127.0.0.1:{port}/hook"}]},
            ],
        }
    )
    async with collector() as hook, engine(tmp_path / "db", cfg(hook.port)) as alerting:
        await alerting.post([alert(team="db")])
        await hook.wait(1)
        view = alerting.alerts()[0]
    assert hook.payloads[0]["receiver"] == "db"
    assert view.receivers == ["db"]
    assert json.dumps(hook.payloads[0])
