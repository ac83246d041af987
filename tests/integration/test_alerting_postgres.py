"""The alerting tables (alerts, silences, notification log, outbox) on the real PostgreSQL
server of this machine, through the same code that writes them to SQLite."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from pudimd.store import Store
from pudimd.store.alerting import AlertingDB, OutboxRow
from tests.integration.test_store_postgres import pg_url  # noqa: F401 (fixture)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[AlertingDB]:  # noqa: F811
    store = await Store.open(pg_url)
    try:
        yield AlertingDB(store.engine)
    finally:
        await store.close()


def alert_row(fp: str, ends_at: float, **extra: object) -> dict[str, object]:
    now = time.time()
    return {
        "fingerprint": fp,
        "labels": {"alertname": "Down", "instance": fp, "note": "ünïcødé"},
        "annotations": {"summary": f"{fp} is down"},
        "starts_at": now - 60,
        "ends_at": ends_at,
        "updated_at": now,
        "generator_url": "",
        "timeout": False,
        "blocked_by": (),
        **extra,
    }


async def test_alerts_are_upserted_and_deleted(db: AlertingDB) -> None:
    now = time.time()
    await db.write_alerts([alert_row(f"{i:016x}", now + 300) for i in range(250)])
    # a re-post changes some columns of an existing row; others are deleted
    await db.write_alerts(
        [alert_row("0000000000000001", now + 600, timeout=True, blocked_by=("db",))],
        deleted=[f"{i:016x}" for i in range(100, 250)],
    )
    loaded = await db.load()
    rows = {row["fingerprint"]: row for row in loaded.alerts}
    assert len(rows) == 100
    changed = rows["0000000000000001"]
    assert changed["ends_at"] == pytest.approx(now + 600)
    assert changed["timeout"] is True
    assert changed["blocked_by"] == ("db",)
    assert changed["labels"]["note"] == "ünïcødé"
    assert rows["0000000000000002"]["blocked_by"] == ()


async def test_outbox_and_notification_log_round_trip(db: AlertingDB) -> None:
    now = time.time()

    def row(key: str) -> OutboxRow:
        return OutboxRow(0, key, "hook", "webhook/0", "{}:{}", {"alerts": []}, "pending",
                         now, now, 0)  # fmt: skip

    log1 = ("{}:{}", "hook/webhook/0", ["a"], [], now, [])
    first = await db.enqueue([row("k1"), row("k2")], [log1], [])
    log2 = ("{}:{}", "hook/webhook/0", ["a", "b"], [], now, ["a"])
    again = await db.enqueue([row("k1")], [log2], [])
    assert again == first[:1]  # the same idempotency key is one row
    await db.finish([first[1]], "delivered", now, "ok")
    loaded = await db.load()
    assert [r.id for r in loaded.pending] == first[:1]
    assert loaded.nflog == [("{}:{}", "hook/webhook/0", ["a", "b"], [], pytest.approx(now), ["a"])]


async def test_acks_and_the_timeline(db: AlertingDB) -> None:
    now = time.time()
    await db.write_alerts(
        [alert_row("00000000000000aa", now + 300)],
        events=[
            {"fingerprint": "00000000000000aa", "at": now, "kind": "fired", "alertname": "Down",
             "target": "db", "actor": None, "interface": None, "detail": {}},
            {"fingerprint": "00000000000000aa", "at": now + 1, "kind": "acknowledged",
             "alertname": "Down", "target": "db", "actor": "alice", "interface": "cli",
             "detail": {"comment": "on it"}},
        ],
        acks=[{"fingerprint": "00000000000000aa", "acked_by": "alice", "acked_at": now,
               "ack_until": None, "assignee": "team:dba"}],
    )  # fmt: skip
    loaded = await db.load()
    assert loaded.acks == [
        {"fingerprint": "00000000000000aa", "acked_by": "alice", "acked_at": pytest.approx(now),
         "ack_until": None, "assignee": "team:dba"}
    ]  # fmt: skip
    timeline = await db.events(target="db", since=now - 1)
    assert [(e["kind"], e["actor"], e["detail"]) for e in timeline] == [
        ("fired", None, {}),
        ("acknowledged", "alice", {"comment": "on it"}),
    ]
    # an ack row with nobody acknowledging and nobody assigned goes; so does a deleted alert's
    await db.write_alerts([], deleted=["00000000000000aa"])
    assert (await db.load()).acks == []
