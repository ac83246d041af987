"""When checks run: interval and cron schedules, concurrency limits, isolation.

One timer loop keeps every job in a heap ordered by due time and starts each check as a
task in the scheduler's task group, so 10,000 targets cost one sleeping task, not 10,000.

- Interval jobs are phase-shifted by a hash of the target's name (Prometheus' trick): the
  same target fires at the same offset after every restart, and 1,000 targets with one
  interval spread evenly over it instead of firing in the same millisecond.
- Cron jobs follow croniter in their time zone.
- A target never overlaps itself: a slot that comes while its last check still runs is
  skipped and counted.
- ``missed_runs``: when the loop falls behind by more than an interval (a stalled loop, a
  suspended machine) ``run_once`` runs the late check once and drops the other missed slots;
  ``skip`` drops the late run and waits for the next slot.  Both are counted.
- Every check runs under its timeout and in isolation: an exception or an overrun becomes
  a failed result, is logged with the plugin's name and counted; the daemon goes on.
- A successful result then meets the target's ``conditions`` (one that fails makes it a
  failure) and ``degraded_if`` (one that holds makes it degraded); see
  :func:`pudimd.conditions.judge`.  Targets without conditions pay one attribute test.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from pudimd.conditions import judge
from pudimd.results import ProbeResult, TargetState

if TYPE_CHECKING:
    from croniter import croniter

    from pudimd.config.models import SchedulerConfig, TargetBase
    from pudimd.contracts import Probe
    from pudimd.metrics import Metrics
    from pudimd.plugins import PluginHost

__all__ = ["ApplyStats", "Job", "Scheduler"]

log = structlog.get_logger("pudimd.scheduler")

ResultCallback = Callable[["Job", ProbeResult], None]


def spread_offset(name: str, interval: float) -> float:
    """Deterministic offset of ``name`` within ``interval`` seconds."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") / 2**64) * interval


@dataclass(eq=False)
class Job:
    """One scheduled target: its config, its probe instance, its live state."""

    target: TargetBase
    probe: Probe
    plugin: str
    state: TargetState = field(default_factory=TargetState)
    due: float = 0.0
    running: bool = False
    removed: bool = False
    version: int = 0
    cancel_scope: anyio.CancelScope | None = None
    _cron: croniter | None = None

    @property
    def name(self) -> str:
        return self.target.name


@dataclass
class ApplyStats:
    """What :meth:`Scheduler.apply` changed."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0


class Scheduler:
    """Runs every enabled target's checks on its schedule.

    ``on_result(job, result)`` is called (sync, in the event loop) after each check; the
    daemon uses it to update metrics, queue the result for storage and call the
    ``pudimd_result`` hook.
    """

    def __init__(
        self,
        host: PluginHost,
        config: SchedulerConfig,
        *,
        on_result: ResultCallback | None = None,
        metrics: Metrics | None = None,
        concurrency: dict[str, int] | None = None,
    ) -> None:
        self.host = host
        self.config = config
        self.on_result = on_result
        self.metrics = metrics
        self.jobs: dict[str, Job] = {}
        self._heap: list[tuple[float, int, int, Job]] = []
        self._seq = itertools.count()
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None
        # Concurrency is counted here rather than with limiter objects: a check that finds
        # no free slot waits in a queue of its probe type, and starts (late, and measured
        # as such) when one frees.  Cheaper per check than acquiring two limiters.
        self._limits: dict[str, int] = dict(concurrency or {})
        self._active: dict[str, int] = defaultdict(int)
        self._waiting: dict[str, deque[tuple[Job, float]]] = defaultdict(deque)
        self.in_flight = 0

    # -- configuration -----------------------------------------------------------------

    def configure(self, config: SchedulerConfig, concurrency: dict[str, int]) -> None:
        """Apply new limits (reload).  Running checks keep their slots."""
        self.config = config
        self._limits = dict(concurrency)
        self._start_waiting()

    def make_probe(self, target: TargetBase) -> tuple[Probe, str]:
        """A new probe instance for ``target`` and the name of the plugin providing it."""
        cls = self.host.types("probe")[target.probe]
        return cls(target.settings), self.host.owner_of("probe", target.probe)

    def apply(self, targets: Iterable[TargetBase]) -> tuple[ApplyStats, list[Probe]]:
        """Make the scheduled jobs match ``targets``.

        Unchanged targets keep their job (schedule, state, in-flight check).  A changed
        target keeps its state and, when its schedule is the same, its next due time; it
        gets a new probe instance.  Returns what changed and the probe instances that are no
        longer used (the caller closes them with ``aclose``).
        """
        stats = ApplyStats()
        retired: list[Probe] = []
        wanted: dict[str, TargetBase] = {t.name: t for t in targets if t.enabled}
        now, wall = anyio.current_time(), time.time()
        for name, job in list(self.jobs.items()):
            if name not in wanted:
                self._remove(job)
                retired.append(job.probe)
                stats.removed += 1
        for name, target in wanted.items():
            old = self.jobs.get(name)
            if old is not None and (old.target is target or old.target == target):
                stats.unchanged += 1
                continue
            probe, plugin = self.make_probe(target)
            if old is None:
                job = Job(target=target, probe=probe, plugin=plugin)
                self.jobs[name] = job
                self._schedule_first(job, now, wall)
                stats.added += 1
                continue
            retired.append(old.probe)
            same_schedule = old.target.schedule_key == target.schedule_key
            same_subject = (old.target.probe, old.target.target) == (target.probe, target.target)
            job = Job(
                target=target,
                probe=probe,
                plugin=plugin,
                state=old.state if same_subject else TargetState(),
            )
            self._remove(old)  # its in-flight check, if any, would be dropped anyway
            self.jobs[name] = job
            if same_schedule:
                job._cron = old._cron
                self._push(job, old.due)
            else:
                self._schedule_first(job, now, wall)
            stats.changed += 1
        self._wake.set()
        return stats, retired

    def _remove(self, job: Job) -> None:
        job.removed = True
        if job.cancel_scope is not None:
            job.cancel_scope.cancel()
        self.jobs.pop(job.name, None)

    # -- timing -----------------------------------------------------------------------

    def _push(self, job: Job, due: float) -> None:
        job.due = due
        job.version += 1
        heapq.heappush(self._heap, (due, next(self._seq), job.version, job))

    def _schedule_first(self, job: Job, now: float, wall: float) -> None:
        target = job.target
        if target.cron is not None:
            from croniter import croniter

            tz = ZoneInfo(target.timezone) if target.timezone else UTC
            job._cron = croniter(target.cron, datetime.fromtimestamp(wall, tz))
            self._push(job, self._next_cron(job, now))
            return
        assert target.interval is not None, "an interval target without an interval"
        interval = target.interval.total_seconds()
        offset = spread_offset(target.name, interval)
        slot = math.floor((wall - offset) / interval + 1) * interval + offset
        self._push(job, now + (slot - wall))

    def _next_cron(self, job: Job, now: float) -> float:
        assert job._cron is not None
        wall = time.time()
        nxt: float = job._cron.get_next(float)
        while nxt <= wall - 1:  # the clock jumped: catch up without a burst
            nxt = job._cron.get_next(float)
        return now + (nxt - wall)

    def _next_due(self, job: Job, due: float, now: float) -> float:
        if job.target.cron is not None:
            return self._next_cron(job, now)
        assert job.target.interval is not None
        interval = job.target.interval.total_seconds()
        nxt = due + interval
        if nxt <= now:
            missed = math.floor((now - nxt) / interval) + 1
            nxt += missed * interval
            self._count_missed(job, missed)
        return nxt

    def _count_missed(self, job: Job, n: int) -> None:
        if self.metrics is not None and n > 0:
            self.metrics.missed_runs.labels(probe=job.target.probe).inc(n)

    # -- running ----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The timer loop.  Start it with ``await tg.start(scheduler.run)``; cancel the
        surrounding scope to stop it (in-flight checks are cancelled with it)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await self._loop(tg)
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def _loop(self, tg: TaskGroup) -> None:
        heap = self._heap
        while True:
            now = anyio.current_time()
            while heap and heap[0][0] <= now:
                due, _, version, job = heapq.heappop(heap)
                if job.removed or version != job.version:
                    continue
                self._dispatch(tg, job, due, now)
                self._push(job, self._next_due(job, due, now))
            delay = heap[0][0] - now if heap else math.inf
            if self._wake.is_set():
                self._wake = anyio.Event()
                continue
            with anyio.move_on_after(delay):
                await self._wake.wait()

    def _dispatch(self, tg: TaskGroup, job: Job, due: float, now: float) -> None:
        if job.running:
            if self.metrics is not None:
                self.metrics.skipped_runs.labels(probe=job.target.probe, reason="overlap").inc()
            return
        interval = job.target.interval
        if (
            self.config.missed_runs == "skip"
            and interval is not None
            and now - due > interval.total_seconds()
        ):
            self._count_missed(job, 1)
            return
        job.running = True
        probe = job.target.probe
        if self._has_slot(probe):
            self._start(tg, job, due)
        else:
            self._waiting[probe].append((job, due))

    def _has_slot(self, probe: str) -> bool:
        limit = self._limits.get(probe)
        return self.in_flight < self.config.max_concurrency and (
            limit is None or self._active[probe] < limit
        )

    def _start(self, tg: TaskGroup, job: Job, due: float) -> None:
        self.in_flight += 1
        self._active[job.target.probe] += 1
        tg.start_soon(self._run_check, job, due)

    def _start_waiting(self) -> None:
        tg = self._tg
        if tg is None:
            return
        now = anyio.current_time()
        for probe, queue in self._waiting.items():
            while queue and self._has_slot(probe):
                job, due = queue.popleft()
                interval = job.target.interval
                if job.removed:
                    job.running = False
                    continue
                if interval is not None and now - due > interval.total_seconds():
                    # Waited a whole interval for a slot: the next run is due already.
                    job.running = False
                    self._count_missed(job, 1)
                    continue
                self._start(tg, job, due)
            if self.in_flight >= self.config.max_concurrency:
                return

    async def _run_check(self, job: Job, due: float) -> None:
        try:
            result = await self._check(job, due)
        finally:
            self.in_flight -= 1
            self._active[job.target.probe] -= 1
            job.running = False
            job.cancel_scope = None
            self._start_waiting()
        if result is not None:
            self._deliver(job, result)

    async def _check(self, job: Job, due: float) -> ProbeResult | None:
        """Run one check in isolation; None when the job was removed meanwhile."""
        started = anyio.current_time()
        if self.metrics is not None:
            self.metrics.lateness.observe(max(0.0, started - due))
        wall = time.time()
        assert job.target.timeout is not None
        timeout = job.target.timeout.total_seconds()
        # The probe enforces ``timeout`` itself (and says which phase overran); the hard
        # limit a little later catches a probe that hangs.
        scope = anyio.CancelScope(deadline=started + timeout + max(0.1, 0.05 * timeout))
        job.cancel_scope = scope
        result: Any = None
        with scope:
            try:
                result = await job.probe.check(job.target.target, timeout)
            except Exception as exc:
                self.host.record_error(job.plugin, "check", exc)
                result = ProbeResult.failure(
                    f"plugin {job.plugin!r} raised {type(exc).__name__}: {exc}"
                )
        if scope.cancelled_caught:
            if job.removed:
                return None
            self.host.record_error(
                job.plugin, "check", TimeoutError(f"did not return within {timeout:g}s")
            )
            result = ProbeResult.failure(f"timeout after {timeout:g}s")
        elif not isinstance(result, ProbeResult):
            message = f"plugin {job.plugin!r} returned {type(result).__name__}, not a ProbeResult"
            self.host.record_error(job.plugin, "check", TypeError(message))
            result = ProbeResult.failure(message)
        checked: ProbeResult = result
        if not checked.duration:
            checked.duration = anyio.current_time() - started
        checked.timestamp = wall
        target = job.target
        if checked.success and (target.conditions or target.degraded_if):
            try:
                judge(checked, target.conditions, target.degraded_if)
            except Exception as exc:  # a bug in the evaluator must not stop the scheduler
                log.exception("conditions failed to evaluate", target=job.name)
                checked.success = False
                checked.message = f"conditions failed to evaluate: {type(exc).__name__}: {exc}"
        return checked

    def _deliver(self, job: Job, result: ProbeResult) -> None:
        if job.removed:
            return
        job.state.record(result)
        if self.on_result is not None:
            try:
                self.on_result(job, result)
            except Exception:
                log.exception("result handling failed", target=job.name)

    def check_now(self, name: str) -> bool:
        """Start target ``name``'s check now, outside its schedule (whose next runs stay
        where they were), as the rules do to confirm a dependency before a dependent
        pages.  False when there is no such target, it is being checked already (its
        result is coming) or the scheduler is not running."""
        job = self.jobs.get(name)
        if job is None or job.running or job.removed or self._tg is None:
            return False
        now = anyio.current_time()
        self._dispatch(self._tg, job, now, now)
        return True

    async def run_once(self, job: Job) -> ProbeResult:
        """Check ``job`` now, outside the schedule (``pudimd probe``, tests)."""
        result = await self._check(job, anyio.current_time())
        assert result is not None, "a job checked outside the schedule is never removed"
        job.state.record(result)
        return result
