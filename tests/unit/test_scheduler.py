from __future__ import annotations

import bisect
import itertools
import time
from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pudimd.config import ConfigSchema, load_config_text, schema_for
from pudimd.config.models import SchedulerConfig
from pudimd.metrics import Metrics
from pudimd.plugins import PluginHost
from pudimd.results import ProbeResult
from pudimd.scheduler import Job, Scheduler, spread_offset
from tests.testplugins import BrokenPlugin, EchoPlugin, EchoProbe

pytestmark = pytest.mark.anyio


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def host(metrics: Metrics) -> PluginHost:
    host = PluginHost(on_error=metrics.plugin_error)
    host.register(EchoPlugin(), "echo")
    host.register(BrokenPlugin(), "broken")
    return host


@pytest.fixture
def schema(host: PluginHost) -> ConfigSchema:
    return schema_for(host)


def targets(schema: ConfigSchema, text: str) -> list[Any]:
    return list(load_config_text(text, schema, env={}).targets)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_spread_is_deterministic_and_even() -> None:
    offsets = [spread_offset(f"target-{i}", 1.0) for i in range(1000)]
    assert offsets == [spread_offset(f"target-{i}", 1.0) for i in range(1000)]
    per_ms = Counter(int(o * 1000) for o in offsets)
    assert max(per_ms.values()) <= 6, "no millisecond gets a crowd"
    per_tenth = Counter(int(o * 10) for o in offsets)
    assert len(per_tenth) == 10 and min(per_tenth.values()) > 60


async def test_thousand_targets_do_not_fire_in_the_same_millisecond(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    scheduler = Scheduler(host, SchedulerConfig(), metrics=metrics)
    text = "targets:\n" + "".join(
        f"  - {{name: t{i}, probe: echo, target: x, interval: 1s}}\n" for i in range(1000)
    )
    scheduler.apply(targets(schema, text))
    dues = sorted(job.due for job in scheduler.jobs.values())
    # the most dues in any one-millisecond window (sliding: where whole milliseconds fall
    # depends on the clock at apply time); a uniform spread of 1,000 over 1 s gives 7 here
    crowd = max(bisect.bisect_left(dues, d + 0.001) - i for i, d in enumerate(dues))
    assert crowd <= 7
    assert dues[-1] - dues[0] > 0.9


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        await anyio.sleep(seconds)
        tg.cancel_scope.cancel()


async def test_interval_targets_run_on_schedule_and_record_results(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    seen: list[tuple[str, ProbeResult]] = []
    scheduler = Scheduler(
        host, SchedulerConfig(), metrics=metrics, on_result=lambda j, r: seen.append((j.name, r))
    )
    scheduler.apply(
        targets(schema, "targets:\n  - {name: a, probe: echo, target: x, interval: 200ms}\n")
    )
    await run_for(scheduler, 1.05)
    assert 4 <= len(seen) <= 6
    assert all(r.success and r.timestamp > 0 and r.duration >= 0 for _, r in seen)
    state = scheduler.jobs["a"].state
    assert state.checks == len(seen) and state.consecutive_successes == len(seen)
    assert sample(metrics, "pudimd_scheduler_lateness_seconds_count") == len(seen)
    assert sample(metrics, "pudimd_scheduler_lateness_seconds_bucket", le="0.05") == len(seen)


async def test_a_target_never_overlaps_itself(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    EchoProbe.calls.clear()
    scheduler = Scheduler(host, SchedulerConfig(), metrics=metrics)
    scheduler.apply(
        targets(
            schema,
            "targets:\n  - {name: a, probe: echo, target: slow, interval: 100ms, timeout: 100ms, echo: {delay: 0.35}}\n",
        )
    )
    await run_for(scheduler, 1.0)
    starts = [t for target, t in EchoProbe.calls if target == "slow"]
    assert len(starts) >= 2
    assert all(b - a >= 0.099 for a, b in itertools.pairwise(starts))
    assert (
        sample(metrics, "pudimd_scheduler_skipped_runs_total", probe="echo", reason="overlap") >= 2
    )


async def test_raising_plugin_becomes_a_failed_result_and_is_counted(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    seen: list[ProbeResult] = []
    scheduler = Scheduler(
        host, SchedulerConfig(), metrics=metrics, on_result=lambda j, r: seen.append(r)
    )
    scheduler.apply(
        targets(
            schema,
            "targets:\n"
            "  - {name: boom, probe: broken, target: x, interval: 100ms}\n"
            "  - {name: fine, probe: echo, target: y, interval: 100ms}\n",
        )
    )
    await run_for(scheduler, 0.5)
    failures = [r for r in seen if not r.success]
    assert failures and all(
        r.message == "plugin 'broken' raised RuntimeError: kaboom" for r in failures
    )
    assert any(r.success for r in seen), "the healthy target kept running"
    assert sample(metrics, "pudimd_plugin_errors_total", plugin="broken", hook="check") == len(
        failures
    )


async def test_hanging_plugin_times_out(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    seen: list[ProbeResult] = []
    scheduler = Scheduler(
        host, SchedulerConfig(), metrics=metrics, on_result=lambda j, r: seen.append(r)
    )
    scheduler.apply(
        targets(
            schema,
            "targets:\n  - {name: hang, probe: broken, target: x, interval: 300ms, timeout: 100ms, broken: {mode: hang}}\n",
        )
    )
    await run_for(scheduler, 0.7)
    assert seen and all(r.message == "timeout after 0.1s" and not r.success for r in seen)
    assert all(0.09 <= r.duration < 0.3 for r in seen)
    assert sample(metrics, "pudimd_plugin_errors_total", plugin="broken", hook="check") == len(seen)


async def test_plugin_returning_garbage_is_a_failure(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    scheduler = Scheduler(host, SchedulerConfig(), metrics=metrics)
    (spec,) = targets(
        schema, "targets:\n  - {name: g, probe: broken, target: x, broken: {mode: garbage}}\n"
    )
    probe, plugin = scheduler.make_probe(spec)
    result = await scheduler.run_once(Job(target=spec, probe=probe, plugin=plugin))
    assert not result.success and "returned str, not a ProbeResult" in result.message


async def test_global_concurrency_limit(host: PluginHost, schema: ConfigSchema) -> None:
    EchoProbe.calls.clear()
    peak = 0
    scheduler = Scheduler(host, SchedulerConfig(max_concurrency=2))

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, scheduler.in_flight)
            await anyio.sleep(0.005)

    text = "targets:\n" + "".join(
        f"  - {{name: t{i}, probe: echo, target: x, interval: 200ms, echo: {{delay: 0.1}}}}\n"
        for i in range(6)
    )
    scheduler.apply(targets(schema, text))
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await run_for(scheduler, 0.8)
        tg.cancel_scope.cancel()
    assert peak == 2
    assert len(EchoProbe.calls) >= 6


async def test_per_type_concurrency_limit(host: PluginHost, schema: ConfigSchema) -> None:
    peak = 0
    scheduler = Scheduler(host, SchedulerConfig(), concurrency={"echo": 1})

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, scheduler.in_flight)
            await anyio.sleep(0.005)

    text = "targets:\n" + "".join(
        f"  - {{name: t{i}, probe: echo, target: x, interval: 200ms, echo: {{delay: 0.05}}}}\n"
        for i in range(4)
    )
    scheduler.apply(targets(schema, text))
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await run_for(scheduler, 0.6)
        tg.cancel_scope.cancel()
    assert peak == 1


async def test_apply_keeps_unchanged_targets_schedule_and_state(
    host: PluginHost, schema: ConfigSchema
) -> None:
    scheduler = Scheduler(host, SchedulerConfig())
    base = "targets:\n  - {name: keep, probe: echo, target: x, interval: 10s}\n  - {name: change, probe: echo, target: y, interval: 10s}\n  - {name: gone, probe: echo, target: z}\n"
    scheduler.apply(targets(schema, base))
    keep, change = scheduler.jobs["keep"], scheduler.jobs["change"]
    keep.state.checks = change.state.checks = 7
    new = "targets:\n  - {name: keep, probe: echo, target: x, interval: 10s}\n  - {name: change, probe: echo, target: y, interval: 10s, labels: {a: b}}\n  - {name: new, probe: echo, target: w}\n"
    stats, retired = scheduler.apply(targets(schema, new))
    assert (stats.added, stats.changed, stats.removed, stats.unchanged) == (1, 1, 1, 1)
    assert scheduler.jobs["keep"] is keep, "same job object, same schedule"
    changed = scheduler.jobs["change"]
    assert changed is not change and changed.due == change.due and changed.state.checks == 7
    assert changed.probe is not change.probe and change.probe in retired
    assert "gone" not in scheduler.jobs and len(retired) == 2


async def test_changed_target_address_starts_fresh_state(
    host: PluginHost, schema: ConfigSchema
) -> None:
    scheduler = Scheduler(host, SchedulerConfig())
    scheduler.apply(targets(schema, "targets:\n  - {name: a, probe: echo, target: x}\n"))
    scheduler.jobs["a"].state.checks = 3
    scheduler.apply(targets(schema, "targets:\n  - {name: a, probe: echo, target: other}\n"))
    assert scheduler.jobs["a"].state.checks == 0


async def test_disabled_targets_are_not_scheduled(host: PluginHost, schema: ConfigSchema) -> None:
    scheduler = Scheduler(host, SchedulerConfig())
    scheduler.apply(
        targets(schema, "targets:\n  - {name: a, probe: echo, target: x, enabled: false}\n")
    )
    assert scheduler.jobs == {}


async def test_cron_schedule_fires_on_the_second(host: PluginHost, schema: ConfigSchema) -> None:
    EchoProbe.calls.clear()
    scheduler = Scheduler(host, SchedulerConfig())
    scheduler.apply(
        targets(
            schema,
            "targets:\n  - {name: c, probe: echo, target: cron, cron: '* * * * * *', timezone: Asia/Tokyo}\n",
        )
    )
    await run_for(scheduler, 2.2)
    calls = [t for target, t in EchoProbe.calls if target == "cron"]
    assert 2 <= len(calls) <= 3
    offset = time.time() - anyio.current_time()
    for t in calls:
        assert (t + offset) % 1.0 < 0.05 or (t + offset) % 1.0 > 0.95


async def test_missed_runs_run_once_after_a_stall(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    EchoProbe.calls.clear()
    scheduler = Scheduler(host, SchedulerConfig(missed_runs="run_once"), metrics=metrics)
    scheduler.apply(
        targets(schema, "targets:\n  - {name: m, probe: echo, target: stall, interval: 100ms}\n")
    )
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        await anyio.sleep(0.25)
        before = len(EchoProbe.calls)
        time.sleep(0.65)  # the event loop stalls on purpose
        for _ in range(20):  # let the late run happen, well before the next slot
            await anyio.lowlevel.checkpoint()
        after = len(EchoProbe.calls)
        tg.cancel_scope.cancel()
    assert after - before == 1, "one late run, not a burst of six"
    assert sample(metrics, "pudimd_scheduler_missed_runs_total", probe="echo") >= 5


async def test_missed_runs_skip_drops_the_late_run(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    EchoProbe.calls.clear()
    scheduler = Scheduler(host, SchedulerConfig(missed_runs="skip"), metrics=metrics)
    scheduler.apply(
        targets(schema, "targets:\n  - {name: m, probe: echo, target: stall, interval: 100ms}\n")
    )
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        await anyio.sleep(0.25)
        before = len(EchoProbe.calls)
        time.sleep(0.65)
        for _ in range(20):  # let the late run happen, well before the next slot
            await anyio.lowlevel.checkpoint()
        after = len(EchoProbe.calls)
        tg.cancel_scope.cancel()
    assert after == before
    assert sample(metrics, "pudimd_scheduler_missed_runs_total", probe="echo") >= 6


async def test_removed_target_in_flight_is_cancelled(
    host: PluginHost, schema: ConfigSchema
) -> None:
    seen: list[str] = []
    scheduler = Scheduler(host, SchedulerConfig(), on_result=lambda j, r: seen.append(j.name))
    scheduler.apply(
        targets(
            schema,
            "targets:\n  - {name: slow, probe: echo, target: x, interval: 1s, echo: {delay: 5}}\n",
        )
    )
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        # the first run is due within one interval (1 s) of its hashed phase; slack for load
        with anyio.fail_after(5):
            while scheduler.in_flight == 0:
                await anyio.sleep(0.01)
        scheduler.apply([])
        with anyio.fail_after(2):
            while scheduler.in_flight:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert seen == []


async def test_a_changed_secret_is_a_changed_target(host: PluginHost, schema: ConfigSchema) -> None:
    scheduler = Scheduler(host, SchedulerConfig())
    scheduler.apply(targets(schema, "targets:\n  - {name: a, probe: echo, target: x, echo: {token: one}}\n"))
    stats, _ = scheduler.apply(targets(schema, "targets:\n  - {name: a, probe: echo, target: x, echo: {token: one}}\n"))
    assert stats.unchanged == 1
    stats, _ = scheduler.apply(targets(schema, "targets:\n  - {name: a, probe: echo, target: x, echo: {token: two}}\n"))
    assert stats.changed == 1, "secrets compare by value even though they print as stars"


async def test_a_run_waiting_a_whole_interval_for_a_slot_is_dropped(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    """Overload: one slot, four targets each needing most of it. Runs queue for the slot,
    but none starts more than an interval late; the ones that would are counted."""
    scheduler = Scheduler(host, SchedulerConfig(max_concurrency=1), metrics=metrics)
    text = "targets:\n" + "".join(
        f"  - {{name: t{i}, probe: echo, target: x, interval: 200ms, timeout: 200ms, echo: {{delay: 0.15}}}}\n"
        for i in range(4)
    )
    scheduler.apply(targets(schema, text))
    await run_for(scheduler, 1.5)
    assert sample(metrics, "pudimd_scheduler_missed_runs_total", probe="echo") >= 3
    count = sample(metrics, "pudimd_scheduler_lateness_seconds_count")
    assert count >= 5
    assert sample(metrics, "pudimd_scheduler_lateness_seconds_bucket", le="0.25") == count


async def test_check_now_runs_a_check_outside_the_schedule_once(
    host: PluginHost, schema: ConfigSchema, metrics: Metrics
) -> None:
    seen: list[float] = []
    scheduler = Scheduler(
        host, SchedulerConfig(), metrics=metrics, on_result=lambda j, r: seen.append(time.time())
    )
    scheduler.apply(
        targets(
            schema,
            "targets:\n  - {name: a, probe: echo, target: x, interval: 1h, echo: {delay: 0.2}}\n",
        )
    )
    assert not scheduler.check_now("a")  # not running yet
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        started, due = time.time(), scheduler.jobs["a"].due
        assert scheduler.check_now("a")
        assert not scheduler.check_now("a")  # being checked: its result is coming
        assert not scheduler.check_now("nope")
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.01)
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    assert len(seen) == 1 and seen[0] - started < 1.0
    assert scheduler.jobs["a"].due == due  # the scheduled run stays where it was
