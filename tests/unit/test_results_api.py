"""``GET /api/v1/results`` and ``/api/v1/history`` against the daemon running in this
process, its echo targets checked every 50 ms and written every 100 ms."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from pudimd.api.problems import Problem
from pudimd.api.results import decode_cursor, encode_cursor
from tests.unit.events_helpers import Running, running

pytestmark = pytest.mark.anyio

CONFIG = (
    "storage: {batch_interval: 100ms}\n"
    "targets:\n"
    "  - {name: web, probe: echo, target: a.example, interval: 50ms}\n"
    "  - {name: api, probe: echo, target: b.example, interval: 50ms}\n"
)


@pytest.fixture
async def served(tmp_path: Path, migrated: Path) -> AsyncIterator[Running]:
    async with running(tmp_path, migrated, CONFIG) as run:
        yield run


def test_cursors_round_trip_and_garbage_is_refused() -> None:
    assert decode_cursor(encode_cursor(1764660000.123456, 42)) == (1764660000.123456, 42)
    for bad in ("", "!!!", encode_cursor(1.0, 2)[:-2], "WzEsMl0", "WyJ4IiwgMl0"):
        if bad == "WzEsMl0":  # [1,2]: a valid cursor
            assert decode_cursor(bad) == (1.0, 2)
            continue
        with pytest.raises(Problem):
            decode_cursor(bad)


async def test_pages_have_no_duplicate_and_no_gap_while_results_arrive(served: Running) -> None:
    with anyio.fail_after(15):
        while len((await served.get("/results", target="web", limit="40"))["results"]) < 40:
            await anyio.sleep(0.1)
    pages: list[list[dict[str, object]]] = []
    cursor: str | None = None
    while True:
        params = {"target": "web", "limit": "7"} | ({"cursor": cursor} if cursor else {})
        page = await served.get("/results", params=params)
        pages.append(page["results"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        await anyio.sleep(0.02)  # new results are written meanwhile
    rows = [row for page in pages for row in page]
    assert all(len(page) == 7 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 7
    assert len(pages) >= 6
    keys = [(row["ts"], row["id"]) for row in rows]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    assert {row["target"] for row in rows} == {"web"}
    first = rows[0]
    assert first["probe"] == "echo" and first["success"] is True
    assert first["message"] == "a.example" and str(first["started"]).endswith("Z")
    # every stored row up to the first page's newest, exactly once
    assert served.daemon.store is not None
    stored = await served.daemon.store.results("web", limit=100_000)
    expected = [r.id for r in stored if (r.ts, r.id) <= (first["ts"], first["id"])]
    assert [row["id"] for row in rows] == expected


async def test_results_in_a_time_range_and_of_every_target(served: Running) -> None:
    with anyio.fail_after(15):
        while len((await served.get("/results", limit="30"))["results"]) < 30:
            await anyio.sleep(0.1)
    every = (await served.get("/results", limit="30"))["results"]
    assert {row["target"] for row in every} == {"web", "api"}
    newest, oldest = every[0]["ts"], every[-1]["ts"]
    inside = (await served.get("/results", params={"from": str(oldest), "to": str(newest)}))[
        "results"
    ]
    assert inside and all(oldest <= row["ts"] < newest for row in inside)
    assert not (await served.get("/results", target="gone"))["results"], "no 404: nothing stored"


async def test_history_rollups(served: Running) -> None:
    daemon = served.daemon
    assert daemon.store is not None
    with anyio.fail_after(10):
        while daemon.scheduler is None or daemon.scheduler.jobs["web"].state.checks < 5:
            await anyio.sleep(0.05)
    await daemon.store.flush()  # the current minute's bucket, partial
    answer = await served.get("/results/history", target="web", step="minute")
    assert answer["target"] == "web" and answer["step"] == "minute" and not answer["truncated"]
    bucket = answer["buckets"][-1]
    assert bucket["checks"] >= 5 and bucket["failures"] == 0 and bucket["uptime"] == 1.0
    assert bucket["start"].endswith(":00.000Z") and bucket["latency_max"] >= 0
    hours = await served.get("/results/history", target="web", step="hour")
    assert sum(b["checks"] for b in hours["buckets"]) >= bucket["checks"]
    assert (await served.get("/results/history", target="nobody"))["buckets"] == []


async def test_bad_requests_are_problems(served: Running) -> None:
    bad = await served.get("/results", status=400, cursor="not-a-cursor")
    assert bad["errors"] == [{"field": "cursor", "message": "malformed cursor"}]
    bad = await served.get("/results", 400, {"from": "yesterday"})
    assert bad["errors"][0]["field"] == "from"
    assert (await served.get("/results", status=400, to="-5"))["errors"][0]["field"] == "to"
    bad = await served.get("/results", 400, {"from": "200", "to": "100"})
    assert bad["detail"] == "from must be before to"
    assert "limit" in (await served.get("/results", status=400, limit="0"))["detail"]
    assert "'nope'" in (await served.get("/results", status=400, nope="1"))["detail"]
    assert (await served.get("/results/history", status=400))["detail"] == "target is required"
    bad = await served.get("/results/history", status=400, target="web", step="day")
    assert bad["errors"][0]["field"] == "step"
    ok = await served.get("/results", params={"target": "web", "from": "2026-01-01T00:00:00Z"})
    assert isinstance(ok["results"], list)
