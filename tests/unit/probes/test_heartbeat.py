"""The ``heartbeat`` probe: its state logic under a controlled clock, and its ping routes
served by a real aiohttp server on loopback."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pudimd_plugins.probes.heartbeat import (
    MAX_BODY,
    HeartbeatProbe,
    HeartbeatSettings,
    Registry,
    key_id,
    pudimd_probe_types,
    routes,
)
from pydantic import ValidationError

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, 2, 0, tzinfo=UTC).timestamp()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_key() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(clock: Clock) -> Registry:
    reg = Registry(clock)
    reg.serving = True
    return reg


def probe(registry: Registry, key: str | None = None, **settings: Any) -> HeartbeatProbe:
    settings.setdefault("period", "5m")
    return HeartbeatProbe(HeartbeatSettings(key=key or new_key(), **settings), registry)


async def state(p: HeartbeatProbe) -> Any:
    return await p.check("nightly backup", 1.0)


def test_plugin_provides_the_heartbeat_type() -> None:
    assert [cls.type for cls in pudimd_probe_types()] == ["heartbeat"]


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"period": "5m"}, r"key \(or key_file\) is required"),
        ({"key": "short", "period": "5m"}, "16-128 characters"),
        ({"key": "a" * 15 + "/", "period": "5m"}, "16-128 characters"),
        ({"key": "a" * 16}, "set period"),
        ({"key": "a" * 16, "period": "5m", "cron": "0 3 * * *"}, "set period"),
        ({"key": "a" * 16, "period": "5m", "timezone": "UTC"}, "timezone applies to cron"),
        ({"key": "a" * 16, "cron": "61 * * * *"}, "invalid cron expression"),
        ({"key": "a" * 16, "cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_invalid_settings_are_refused_with_reason(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        HeartbeatSettings(**settings)


def test_key_can_come_from_a_file(tmp_path: Path, registry: Registry, clock: Clock) -> None:
    key = new_key()
    (tmp_path / "key").write_text(key + "\n")
    p = HeartbeatProbe(HeartbeatSettings(key_file=tmp_path / "key", period="5m"), registry)
    assert p.key_id == key_id(key)
    assert registry.ping(key, "success")
    assert p.beat.pings == 1


# -- state logic ----------------------------------------------------------------------------


async def test_new_target_waits_for_first_ping_until_period_plus_grace(
    registry: Registry, clock: Clock
) -> None:
    p = probe(registry, period="5m", grace="1m")
    result = await state(p)
    assert result.success and result.status == "new" and result.message == "waiting for first ping"
    assert result.values == {"BODY": ""}
    clock.advance(5 * 60 + 30)
    result = await state(p)
    assert result.success and result.degraded and result.status == "late"
    clock.advance(31)
    result = await state(p)
    assert not result.success and result.status == "down"
    assert result.message == (
        "no ping in the 6m1s since monitoring began (expected every 5m + 1m grace)"
    )


async def test_success_ping_keeps_target_up_for_period_plus_grace(
    registry: Registry, clock: Clock
) -> None:
    key = new_key()
    p = probe(registry, key, period="5m", grace="1m")
    clock.advance(60)
    assert registry.ping(key, "success")
    clock.advance(5 * 60)
    result = await state(p)
    assert result.success and not result.degraded and result.status == "up"
    assert result.metrics["last_ping_age_seconds"] == result.values["LAST_PING_AGE"] == 300
    assert result.metrics["pings_total"] == 1
    clock.advance(30)
    assert (await state(p)).status == "late"
    clock.advance(6 * 60)
    result = await state(p)
    assert not result.success
    assert result.message == "no ping for 11m30s (expected every 5m + 1m grace)"
    assert registry.ping(key, "success")
    assert (await state(p)).success


async def test_start_then_success_records_the_run_duration(
    registry: Registry, clock: Clock
) -> None:
    key = new_key()
    p = probe(registry, key, grace="10m")
    registry.ping(key, "start")
    clock.advance(42)
    result = await state(p)
    assert result.success and result.status == "started" and result.message == "started 42s ago"
    clock.advance(3)
    registry.ping(key, "success")
    result = await state(p)
    assert result.success and result.metrics["run_duration_seconds"] == 45
    assert result.metrics["pings_total"] == 2
    registry.ping(key, "success")  # a success without a start is not a timed run
    assert "run_duration_seconds" not in (await state(p)).metrics


async def test_start_without_completion_goes_down_after_grace(
    registry: Registry, clock: Clock
) -> None:
    key = new_key()
    p = probe(registry, key, period="1d", grace="1m")
    registry.ping(key, "success")
    clock.advance(3600)
    registry.ping(key, "start")
    clock.advance(59)
    assert (await state(p)).success
    clock.advance(3600)
    result = await state(p)
    assert not result.success
    assert result.message == "started 1h59s ago, no completion ping within 1m grace"


async def test_fail_ping_is_down_until_the_next_success(registry: Registry, clock: Clock) -> None:
    key = new_key()
    p = probe(registry, key)
    registry.ping(key, "success")
    registry.ping(key, "fail", body="rsync: connection reset\nmore detail\n")
    result = await state(p)
    assert not result.success and result.status == "down"
    assert result.message == "last ping reported failure: rsync: connection reset"
    assert "EXIT_CODE" not in result.values and "last_exit_code" not in result.metrics
    registry.ping(key, "start")  # a new run starting does not clear the failure
    assert not (await state(p)).success
    registry.ping(key, "success")
    assert (await state(p)).success


async def test_exit_codes_report_success_or_failure(registry: Registry, clock: Clock) -> None:
    key = new_key()
    p = probe(registry, key)
    registry.ping(key, "fail", exit_code=3)
    result = await state(p)
    assert not result.success and result.message == "last ping reported failure (exit code 3)"
    assert result.values["EXIT_CODE"] == 3 and result.metrics["last_exit_code"] == 3
    registry.ping(key, "success", exit_code=0)
    result = await state(p)
    assert result.success and result.values["EXIT_CODE"] == 0


async def test_cron_schedule_is_down_when_expected_run_is_overdue_by_grace(
    registry: Registry, clock: Clock
) -> None:
    key = new_key()
    p = probe(registry, key, period=None, cron="0 3 * * *", grace="10m")
    clock.advance(3600 + 9 * 60)  # 03:09 UTC: the 03:00 run is late, within grace
    result = await state(p)
    assert result.success and result.status == "late"
    clock.advance(2 * 60)  # 03:11
    result = await state(p)
    assert not result.success
    assert "expected at 2026-01-01 03:00 UTC by cron '0 3 * * *' + 10m grace" in result.message
    registry.ping(key, "success")
    clock.advance(23 * 3600)  # 02:11 next day: the next run is at 03:00
    assert (await state(p)).status == "up"


async def test_cron_schedule_follows_its_time_zone(registry: Registry, clock: Clock) -> None:
    clock.now = T0 - 3600  # 01:00 UTC, 02:00 in Berlin (UTC+1 in January)
    p = probe(registry, period=None, cron="0 3 * * *", timezone="Europe/Berlin", grace="1m")
    clock.advance(59 * 60)  # 02:59 in Berlin
    assert (await state(p)).status == "new"
    clock.advance(3 * 60)  # 03:02 in Berlin, 02:02 UTC
    result = await state(p)
    assert not result.success
    assert "expected at 2026-01-01 03:00 CET" in result.message


async def test_reload_keeping_the_key_keeps_the_history(registry: Registry, clock: Clock) -> None:
    key = new_key()
    old = probe(registry, key, period="5m")
    registry.ping(key, "success")
    new = probe(registry, key, period="10m")  # the scheduler makes the new instance first
    await old.aclose()
    assert new.beat.pings == 1
    assert registry.ping(key, "success") and new.beat.pings == 2
    await new.aclose()
    assert not registry.ping(key, "success"), "a key no target uses is not accepted"


async def test_one_off_probe_without_the_daemon_fails_clearly(clock: Clock) -> None:
    p = probe(Registry(clock))
    result = await state(p)
    assert not result.success and "received by the running daemon" in result.message


async def test_saved_history_survives_a_restart_and_downtime_is_not_counted(
    clock: Clock,
) -> None:
    key = new_key()
    before = Registry(clock)
    p = probe(before, key, period="5m", grace="1m")
    before.ping(key, "fail", exit_code=2)
    before.ping(key, "success")
    clock.advance(4 * 60)
    saved = before.dump({p.key_id})
    await p.aclose()

    clock.advance(3600)  # the daemon was down for an hour
    after = Registry(clock)
    after.serving = True
    q = probe(after, key, period="5m", grace="1m")
    assert after.restore(saved, {q.key_id}) == 1
    result = await state(q)
    assert result.success and result.metrics["pings_total"] == 2
    assert result.metrics["last_ping_age_seconds"] == 3600 + 4 * 60
    clock.advance(2 * 60 + 1)  # 4m + 2m1s of running time since the last ping
    result = await state(q)
    assert not result.success and result.message.startswith("no ping for 1h6m1s")


async def test_restore_ignores_foreign_or_malformed_data(registry: Registry) -> None:
    p = probe(registry)
    assert registry.restore(None, {p.key_id}) == 0
    assert registry.restore({"version": 2}, {p.key_id}) == 0
    assert registry.restore({"version": 1, "saved_at": 0, "beats": {p.key_id: 3}}, {p.key_id}) == 0
    assert registry.restore({"version": 1, "saved_at": 0, "beats": {}}, {p.key_id}) == 0


# -- the ping routes over real HTTP ---------------------------------------------------------


@asynccontextmanager
async def serving(registry: Registry) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_routes(routes(registry))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_ping_urls_record_pings_over_http(registry: Registry, clock: Clock) -> None:
    key = new_key()
    p = probe(registry, key)
    async with serving(registry) as base, aiohttp.ClientSession() as http:
        for method, path in (
            ("GET", ""),
            ("HEAD", ""),
            ("POST", "/start"),
            ("GET", "/0"),
            ("GET", "/fail"),
            ("POST", "/7"),
        ):
            async with http.request(method, f"{base}/ping/{key}{path}") as resp:
                assert resp.status == 200, (method, path)
                if method != "HEAD":
                    assert await resp.text() == "OK\n"
    assert p.beat.pings == 6
    result = await state(p)
    assert not result.success and result.message == "last ping reported failure (exit code 7)"


async def test_unknown_key_and_bad_exit_code_are_refused(registry: Registry) -> None:
    key = new_key()
    p = probe(registry, key)
    async with serving(registry) as base, aiohttp.ClientSession() as http:
        for url, status in (
            (f"{base}/ping/{new_key()}", 404),
            (f"{base}/ping/{new_key()}/start", 404),
            (f"{base}/ping/{key}/256", 400),
            (f"{base}/ping/{key}/99999999999999999999", 400),
            (f"{base}/ping/{key}/log", 404),
        ):
            async with http.get(url) as resp:
                assert resp.status == status, url
        async with http.put(f"{base}/ping/{key}") as resp:
            assert resp.status == 405
    assert p.beat.pings == 0


async def test_post_body_is_kept_and_truncated(registry: Registry) -> None:
    key = new_key()
    p = probe(registry, key)
    async with serving(registry) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/ping/{key}/1", data="disk full\n") as resp:
            assert resp.status == 200
        result = await state(p)
        assert result.values["BODY"] == "disk full\n"
        assert result.message == "last ping reported failure (exit code 1): disk full"
        big = "é" + "x" * (3 * MAX_BODY)
        async with http.post(f"{base}/ping/{key}", data=big.encode()) as resp:
            assert resp.status == 200
        body = (await state(p)).values["BODY"]
        assert body.startswith("éx") and len(body.encode()) == MAX_BODY
        async with http.get(f"{base}/ping/{key}") as resp:
            assert resp.status == 200
        assert (await state(p)).values["BODY"] == ""
