from __future__ import annotations

import weakref

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pudimd.config import ConfigSchema, load_config_text, schema_for
from pudimd.config.models import SchedulerConfig
from pudimd.metrics import Metrics
from pudimd.plugins import PluginHost
from pudimd.results import ProbeResult
from pudimd.scheduler import Job, Scheduler
from tests.testplugins import EchoPlugin

pytestmark = pytest.mark.anyio


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def scheduler(metrics: Metrics) -> Scheduler:
    host = PluginHost(on_error=metrics.plugin_error)
    host.register(EchoPlugin(), "echo")
    scheduler = Scheduler(host, SchedulerConfig(), metrics=metrics)
    metrics.scheduler = scheduler
    return scheduler


_SCHEMAS: weakref.WeakKeyDictionary[Scheduler, ConfigSchema] = weakref.WeakKeyDictionary()


def job_for(scheduler: Scheduler, target: str) -> Job:
    """The job of ``target`` (a YAML flow mapping), applied alone; one schema per scheduler,
    as in the daemon (models built twice are different classes, never equal)."""
    schema = _SCHEMAS.get(scheduler)
    if schema is None:
        schema = _SCHEMAS[scheduler] = schema_for(scheduler.host)
    (spec,) = load_config_text(f"targets:\n  - {target}\n", schema, env={}).targets
    scheduler.apply([spec])
    return scheduler.jobs[spec.name]


def gauges(metrics: Metrics, family: str) -> dict[str, float]:
    text = metrics.render().decode()
    for found in text_string_to_metric_families(text):
        if found.name == family:
            return {s.labels["target"]: s.value for s in found.samples}
    raise AssertionError(f"{family} not exported")


async def test_a_failed_condition_makes_the_check_a_failure_naming_it(
    scheduler: Scheduler, metrics: Metrics
) -> None:
    job = job_for(
        scheduler,
        "{name: api, probe: echo, target: x, conditions: ['[STATUS] < 300', '[STATUS] == 404']}",
    )
    result = await scheduler.run_once(job)
    assert result.success is False
    assert result.message == "condition [STATUS] (200) == 404 failed"
    assert result.condition == "[STATUS] == 404"
    assert job.state.health == "down" and job.state.failures == 1
    assert gauges(metrics, "pudimd_target_up") == {"api": 0.0}
    assert gauges(metrics, "pudimd_target_degraded") == {"api": 0.0}


async def test_degraded_if_makes_a_working_target_degraded(
    scheduler: Scheduler, metrics: Metrics
) -> None:
    job = job_for(
        scheduler,
        "{name: slow, probe: echo, target: hello, conditions: ['[STATUS] == 200'], "
        "degraded_if: ['[RESPONSE_TIME] > 800', '[RESPONSE_TIME] >= 0']}",
    )
    result = await scheduler.run_once(job)
    assert result.success is True and result.degraded is True
    assert result.condition == "[RESPONSE_TIME] >= 0"
    assert result.message.startswith("degraded: [RESPONSE_TIME] (")
    assert result.message.endswith(") >= 0; hello"), "the probe's own message is kept"
    assert job.state.health == "degraded"
    assert (job.state.degraded, job.state.consecutive_degraded) == (1, 1)
    assert job.state.consecutive_successes == 1 and job.state.failures == 0
    assert gauges(metrics, "pudimd_target_up") == {"slow": 1.0}
    assert gauges(metrics, "pudimd_target_degraded") == {"slow": 1.0}


async def test_a_healthy_target_is_up_and_not_degraded(
    scheduler: Scheduler, metrics: Metrics
) -> None:
    job = job_for(
        scheduler,
        "{name: ok, probe: echo, target: x, conditions: ['[STATUS] == 200'], "
        "degraded_if: ['[RESPONSE_TIME] > 60s']}",
    )
    result = await scheduler.run_once(job)
    assert (result.success, result.degraded, result.condition) == (True, False, None)
    assert job.state.health == "up"
    assert gauges(metrics, "pudimd_target_degraded") == {"ok": 0.0}


async def test_conditions_do_not_touch_a_probe_failure(scheduler: Scheduler) -> None:
    job = job_for(
        scheduler,
        "{name: bad, probe: echo, target: refused, echo: {succeed: false}, "
        "conditions: ['[STATUS] == 404'], degraded_if: ['[STATUS] == 200']}",
    )
    result = await scheduler.run_once(job)
    assert (result.success, result.degraded, result.message) == (False, False, "refused")
    assert result.condition is None


async def test_degraded_then_up_resets_the_consecutive_count(scheduler: Scheduler) -> None:
    job = job_for(
        scheduler,
        "{name: flap, probe: echo, target: x, degraded_if: ['[STATUS] == 200']}",
    )
    await scheduler.run_once(job)
    await scheduler.run_once(job)
    assert job.state.consecutive_degraded == 2
    job.state.record(ProbeResult(True, 0.1))
    assert (job.state.degraded, job.state.consecutive_degraded, job.state.health) == (2, 0, "up")
    job.state.record(ProbeResult.failure("gone"))
    assert job.state.health == "down"


async def test_scheduled_checks_apply_conditions_too(
    scheduler: Scheduler, metrics: Metrics
) -> None:
    seen: list[ProbeResult] = []
    scheduler.on_result = lambda job, result: seen.append(result)
    job_for(
        scheduler,
        "{name: fast, probe: echo, target: x, interval: 100ms, conditions: ['[STATUS] == 500']}",
    )
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert seen[0].success is False
    assert seen[0].message == "condition [STATUS] (200) == 500 failed"


async def test_reapplying_the_same_conditions_keeps_the_job(scheduler: Scheduler) -> None:
    line = "{name: a, probe: echo, target: x, conditions: ['[STATUS] == 200']}"
    job = job_for(scheduler, line)
    assert job_for(scheduler, line) is job
    changed = job_for(scheduler, line.replace("200", "201"))
    assert changed is not job and changed.state is job.state
