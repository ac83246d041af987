"""The live event stream: the bus alone, then ``/api/v1/events`` (SSE) and
``/api/v1/events/ws`` (WebSocket) against the daemon running in this process."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest

from pudimd.alerting.alert import PostableAlert
from pudimd.alerting.workflow import Action
from pudimd.events import EventBus, Filter, parse_filter
from pudimd.results import ProbeResult
from tests.unit.events_helpers import Running, running

pytestmark = pytest.mark.anyio

CONFIG = (
    "targets:\n"
    "  - {name: web, probe: echo, target: a.example, interval: 200ms}\n"
    "  - {name: api, probe: echo, target: b.example, interval: 200ms}\n"
)


@pytest.fixture
async def served(tmp_path: Path, migrated: Path) -> AsyncIterator[Running]:
    async with running(tmp_path, migrated, CONFIG) as run:
        yield run


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class SSE:
    """An SSE client reading with aiohttp: events as (id or None, JSON)."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self) -> tuple[int | None, dict[str, Any], float]:
        """The next event, its id and the time it was received."""
        eid: int | None = None
        data: bytes | None = None
        while True:
            line = await self.resp.content.readline()
            if not line:
                raise EOFError("the stream ended")
            line = line.rstrip(b"\n")
            if line == b"":
                if data is not None:
                    return eid, orjson.loads(data), time.time()
                continue
            if line.startswith(b"id: "):
                eid = int(line[4:])
            elif line.startswith(b"data: "):
                data = line[6:]


async def _sse(run: Running, path: str = "", **headers: str) -> aiohttp.ClientResponse:
    resp = await run.http.get(
        f"{run.base}/events{path}", headers={**run.headers, **headers}, timeout=None
    )
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/event-stream"
    assert await resp.content.readuntil(b": subscribed\n\n")
    return resp


# -- the bus alone -----------------------------------------------------------------------


def _result(success: bool = True) -> ProbeResult:
    return ProbeResult(success=success, duration=0.01, message="m", timestamp=time.time())


async def test_the_bus_does_no_work_when_nobody_listens() -> None:
    bus = EventBus(linger=0)
    first = bus.last_id
    for _ in range(100):
        bus.publish_result("web", "echo", _result())
    assert bus.last_id == first + 100, "ids are still counted"
    assert bus.published == 0
    sub = bus.subscribe(Filter())
    bus.publish_result("web", "echo", _result())
    assert bus.published == 1
    events, dropped = await sub.next(1.0)
    assert [e.id for e in events] == [first + 101] and dropped == 0
    sub.close()
    bus.publish_result("web", "echo", _result())
    assert bus.published == 1, "linger 0: nothing kept once the last subscriber left"


async def test_a_full_queue_drops_its_oldest_events_and_counts_them() -> None:
    bus = EventBus(queue_size=5)
    sub = bus.subscribe(Filter())
    ids = [bus.publish("result", {"n": i}, target="web") for i in range(20)]
    events, dropped = await sub.next(1.0)
    assert dropped == 15 and sub.dropped == 15
    assert [e.id for e in events] == ids[-5:]
    assert await sub.next(0.01) == ([], 0)


async def test_replay_from_the_ring_and_what_it_no_longer_holds() -> None:
    bus = EventBus(replay=4)
    keeper = bus.subscribe(Filter())
    ids = [bus.publish("result", {"n": i}, target="web" if i % 2 else "api") for i in range(10)]
    recent = bus.subscribe(Filter(targets=frozenset({"web"})), last_event_id=ids[6])
    events, dropped = await recent.next(1.0)
    assert dropped == 0 and [e.id for e in events] == [ids[7], ids[9]]
    old = bus.subscribe(Filter(), last_event_id=ids[2])
    events, dropped = await old.next(1.0)
    assert dropped == 3, "ids[3] to ids[5] are gone from the ring"
    assert [e.id for e in events] == ids[6:]
    keeper.close()


def test_filters() -> None:
    with pytest.raises(ValueError, match="unknown event type 'bogus'"):
        parse_filter(["result", "bogus"], None)
    assert parse_filter([""], [" "]) == Filter()
    only = parse_filter(["alert"], ["web"])
    assert only.types == frozenset({"alert"}) and only.targets == frozenset({"web"})


# -- over HTTP ---------------------------------------------------------------------------


async def test_sse_carries_results_within_half_a_second(served: Running) -> None:
    resp = await _sse(served, "?types=result")
    stream = SSE(resp)
    latencies: list[float] = []
    seen: set[str] = set()
    last_id = 0
    with anyio.fail_after(10):
        while len(latencies) < 20:
            eid, event, received = await stream.next()
            assert eid is not None and eid > last_id and event["id"] == eid
            last_id = eid
            assert event["type"] == "result" and event["probe"] == "echo"
            assert event["success"] is True and event["degraded"] is False
            assert event["message"] == {"web": "a.example", "api": "b.example"}[event["target"]]
            assert _seconds(event["started"]) <= _seconds(event["at"])
            seen.add(event["target"])
            latencies.append(received - _seconds(event["at"]))
    resp.close()
    assert seen == {"web", "api"}
    assert statistics.median(latencies) < 0.5, latencies
    assert max(latencies) < 2.0, latencies


async def test_websocket_carries_results_and_takes_a_new_filter(served: Running) -> None:
    url = f"{served.base}/events/ws?types=result&target=web"
    async with served.http.ws_connect(url, headers=served.headers) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello == {"type": "subscribed", "types": ["result"], "targets": ["web"]}
        with anyio.fail_after(10):
            for _ in range(5):
                event = await ws.receive_json()
                assert event["type"] == "result" and event["target"] == "web"
                assert time.time() - _seconds(event["at"]) < 2.0
            await ws.send_json({"subscribe": {"types": ["result"], "target": "api"}})
            reply = await ws.receive_json()
            while reply["type"] == "result":  # sent before the new filter applied
                assert reply["target"] == "web"
                reply = await ws.receive_json()
            assert reply == {"type": "subscribed", "types": ["result"], "targets": ["api"]}
            event = await ws.receive_json()
            while event["target"] == "web":  # queued before the change
                event = await ws.receive_json()
            for _ in range(5):
                assert event["type"] == "result" and event["target"] == "api"
                event = await ws.receive_json()
            await ws.send_json({"subscribe": {"types": ["nope"]}})
            while (reply := await ws.receive_json())["type"] == "result":
                pass
            assert reply["type"] == "error" and "nope" in reply["message"]


async def test_alert_and_reload_events(served: Running) -> None:
    daemon = served.daemon
    assert daemon.alerting is not None
    resp = await _sse(served, "?types=alert,reload")
    stream = SSE(resp)
    labels = {"alertname": "Down", "target": "web"}
    await daemon.alerting.post([PostableAlert(labels=labels)])
    with anyio.fail_after(5):
        _, fired, _ = await stream.next()
    assert fired["type"] == "alert" and fired["state"] == "firing"
    assert fired["alertname"] == "Down" and fired["target"] == "web"
    assert fired["labels"] == labels and len(fired["fingerprint"]) == 16
    await daemon.alerting.post([PostableAlert(labels=labels, ends_at=time.time() - 1)])
    with anyio.fail_after(5):
        _, resolved, _ = await stream.next()
    assert resolved["state"] == "resolved" and resolved["fingerprint"] == fired["fingerprint"]
    assert resolved["id"] > fired["id"]

    assert await daemon.reload("test") is None
    with anyio.fail_after(5):
        _, reload, _ = await stream.next()
    assert reload["type"] == "reload" and reload["ok"] is True and reload["source"] == "test"
    daemon.config_path.write_text("targets: [")
    assert await daemon.reload("test") is not None
    with anyio.fail_after(5):
        _, failed, _ = await stream.next()
    assert failed["ok"] is False and failed["error"]
    resp.close()


async def test_last_event_id_replays_what_was_missed(served: Running) -> None:
    resp = await _sse(served, "?types=result&target=web")
    stream = SSE(resp)
    with anyio.fail_after(10):
        first = [await stream.next() for _ in range(3)]
    resp.close()
    again = await _sse(served, "?types=result&target=web", **{"Last-Event-ID": str(first[0][0])})
    stream = SSE(again)
    with anyio.fail_after(10):
        replayed = [await stream.next() for _ in range(2)]
    again.close()
    assert [(eid, event) for eid, event, _ in replayed] == [(e, ev) for e, ev, _ in first[1:]]


async def test_a_slow_client_is_told_what_it_lost(served: Running) -> None:
    bus = served.daemon.events
    bus.queue_size = 10
    resp = await _sse(served, "?target=burst")
    stream = SSE(resp)
    ids = [bus.publish("result", {"n": i}, target="burst") for i in range(50)]
    with anyio.fail_after(5):
        eid, lost, _ = await stream.next()
        assert eid is None and lost == {"type": "dropped", "count": 40}
        got = [await stream.next() for _ in range(10)]
    assert [eid for eid, _, _ in got] == ids[-10:]
    assert [event["n"] for _, event, _ in got] == list(range(40, 50))
    resp.close()


async def test_bad_filters_are_problems(served: Running) -> None:
    problem = await served.get("/events", status=400, types="result,bogus")
    assert "bogus" in problem["detail"]
    problem = await served.get("/events/ws", status=400, types="bogus")
    assert problem["status"] == 400
    problem = await served.get("/events", status=400, last_event_id="x")
    assert "Last-Event-ID" in problem["detail"]


async def test_streams_end_when_the_daemon_stops(tmp_path: Path, migrated: Path) -> None:
    async with running(tmp_path, migrated, CONFIG) as run:
        resp = await _sse(run)
        ws = await run.http.ws_connect(f"{run.base}/events/ws", headers=run.headers)
        assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
        started = time.monotonic()
        run.daemon.stop()
        with anyio.fail_after(8):
            while await resp.content.readline():
                pass
            while True:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1001
        resp.close()
        await ws.close()
    assert time.monotonic() - started < 8, "no stream held the stop up"


async def test_acknowledgements_and_expiry_are_alert_events(served: Running) -> None:
    daemon = served.daemon
    assert daemon.alerting is not None
    resp = await _sse(served, "?types=alert&target=api")
    stream = SSE(resp)
    labels = {"alertname": "Slow", "instance": "api"}
    await daemon.alerting.post([PostableAlert(labels=labels, ends_at=time.time() + 0.5)])
    with anyio.fail_after(5):
        _, fired, _ = await stream.next()
    assert fired["state"] == "firing" and fired["target"] == "api"
    await daemon.alerting.act(fired["fingerprint"], Action("acknowledge", "alice"))
    with anyio.fail_after(5):
        _, acked, _ = await stream.next()
        assert acked["state"] == "acknowledged" and acked["fingerprint"] == fired["fingerprint"]
        _, ended, _ = await stream.next()  # its endsAt passes
    assert ended["state"] == "resolved"
    assert _seconds(ended["at"]) >= _seconds(fired["at"]) + 0.4
    resp.close()
