"""The daemon's backups: one on every tick of ``backups.schedule`` (cron) and one whenever
``POST /api/v1/backups`` asks, one at a time.  A failing backup is logged and counted
(``pudimd_backup_failures_total``); it never stops the daemon."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import anyio
import structlog
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry, Counter, Gauge

from pudimd.backups.archive import ArchiveInfo, list_archives
from pudimd.backups.backup import BackupPlan, BackupResult, make_backup, plan_for

if TYPE_CHECKING:
    from pudimd.config import ConfigBase
    from pudimd.daemon import Daemon

__all__ = ["BackupMetrics", "BackupService"]

log = structlog.get_logger("pudimd.backups")


class BackupMetrics:
    """The backup series, on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.last_success = Gauge(
            "pudimd_backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup (at start: of the newest archive; 0: none)",
            registry=r,
        )
        self.failures = Counter(
            "pudimd_backup_failures", "Backups that failed (scheduled or asked for)", registry=r
        )
        self.duration = Gauge(
            "pudimd_backup_duration_seconds",
            "How long the last successful backup took",
            registry=r,
        )
        self.size = Gauge(
            "pudimd_backup_size_bytes", "Size of the last successful backup's archive", registry=r
        )


class BackupService:
    """Scheduled backups of the running daemon.  ``state_dir`` and ``store_url`` map a
    config to its state directory and database URL (the daemon's methods of those names)."""

    def __init__(
        self,
        config: ConfigBase,
        *,
        config_path: Path,
        state_dir: Callable[[ConfigBase], Path],
        store_url: Callable[[ConfigBase], str],
        registry: CollectorRegistry | None = None,
        on_done: Callable[[BackupResult | Exception], None] | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self._state_dir = state_dir
        self._store_url = store_url
        self.metrics = BackupMetrics(registry)
        self.on_done = on_done
        self._lock = anyio.Lock()
        self._changed = anyio.Event()
        self.config = config
        self.plan = self._plan(config)

    @classmethod
    def for_daemon(cls, daemon: Daemon) -> BackupService:
        """The service of ``daemon`` (its config loaded), its series on the daemon's
        registry."""
        assert daemon.config is not None, "the daemon has no config yet"
        return cls(
            daemon.config,
            config_path=daemon.config_path,
            state_dir=daemon.state_dir,
            store_url=daemon.store_url,
            registry=daemon.metrics.registry,
        )

    def _plan(self, config: ConfigBase) -> BackupPlan:
        return plan_for(
            config,
            self.config_path,
            state_dir=self._state_dir(config),
            store_url=self._store_url(config),
        )

    def configure(self, config: ConfigBase) -> None:
        """Use ``config`` (a reload): its schedule from now on, its directory, retention
        and files from the next backup."""
        self.config = config
        self.plan = self._plan(config)
        self._changed.set()

    def list(self) -> list[ArchiveInfo]:
        """The archives in the backup directory, newest first (blocking: a directory
        scan)."""
        return list_archives(self.plan.directory)

    async def backup_now(self) -> BackupResult:
        """Make a backup now (after the one in progress, if any) and apply retention.
        Counted and logged either way; raises what made it fail."""
        async with self._lock:
            plan = self.plan
            try:
                # a stop does not wait for a backup in progress: the thread finishes it
                # (the interpreter waits for it at exit) while the daemon stops
                result = await anyio.to_thread.run_sync(make_backup, plan, abandon_on_cancel=True)
            except Exception as exc:
                self.metrics.failures.inc()
                log.error("backup failed", directory=str(plan.directory), error=str(exc))
                if self.on_done is not None:
                    self.on_done(exc)
                raise
        self.metrics.last_success.set(time.time())
        self.metrics.duration.set(result.seconds)
        self.metrics.size.set(result.archive.size)
        log.info(
            "backup written",
            archive=str(result.archive.path),
            bytes=result.archive.size,
            seconds=round(result.seconds, 3),
            deleted=[p.name for p in result.deleted],
        )
        if self.on_done is not None:
            self.on_done(result)
        return result

    def next_run(self, now: float) -> float | None:
        """Unix time of the schedule's next tick after ``now`` (None: no schedule)."""
        settings = self.config.backups
        if settings.schedule is None:
            return None
        from croniter import croniter

        tz = ZoneInfo(settings.timezone) if settings.timezone else UTC
        following: float = croniter(settings.schedule, datetime.fromtimestamp(now, tz)).get_next(
            float
        )
        return following

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Back up on the schedule until cancelled; a reload's new schedule applies at
        once."""
        newest = await anyio.to_thread.run_sync(self.list)
        if newest:  # an alert on the last success's age must not fire at every restart
            self.metrics.last_success.set(newest[0].created.timestamp())
        task_status.started()
        last = 0.0
        while True:
            self._changed = anyio.Event()
            due = self.next_run(max(time.time(), last))
            if due is None:
                await self._changed.wait()
                continue
            with anyio.move_on_after(max(0.0, due - time.time())):
                await self._changed.wait()
            if self._changed.is_set():
                continue
            last = due  # a timer firing a little early must not run the same tick twice
            with contextlib.suppress(Exception):  # logged and counted by backup_now
                await self.backup_now()
