"""The daemon: wires config, plugins, storage, scheduler and the HTTP listener under one
anyio task group, and handles signals, reloads and a graceful stop."""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog
import yaml_rs
from anyio.abc import TaskGroup, TaskStatus

from pudimd import heap
from pudimd.alerting.engine import Alerting
from pudimd.alerting.metrics import AlertingMetrics
from pudimd.alerting.oncall import OncallDirectory
from pudimd.alerting.rules import RuleEngine
from pudimd.api.app import make_app, serve
from pudimd.backups.service import BackupService
from pudimd.config import ConfigBase, ConfigError, ConfigSchema, load_config_text, schema_for
from pudimd.config.models import parse_host_port
from pudimd.events import EventBus
from pudimd.log import configure_logging
from pudimd.metrics import Metrics
from pudimd.paths import default_state_dir
from pudimd.plugins import PluginHost
from pudimd.scheduler import Job, Scheduler
from pudimd.sdnotify import Notifier, watchdog_interval
from pudimd.store import Store
from pudimd.store.alerting import AlertingDB
from pudimd.store.errors import mask_url
from pudimd.store.versions import (
    FILE_CHANGE,
    Change,
    ConfigVersion,
    read_config_file,
    record_applied,
    write_config_file,
)

if TYPE_CHECKING:
    from pudimd.alerting.alert import PostableAlert
    from pudimd.contracts import Probe
    from pudimd.results import ProbeResult

__all__ = ["STOP_TIMEOUT", "Daemon", "read_disabled_plugins"]

log = structlog.get_logger("pudimd.daemon")

STOP_TIMEOUT = 10.0
"""Seconds a graceful stop may take (systemd's TimeoutStopSec is set above it)."""


def _peek(path: str | Path, section: str, key: str) -> Any:
    """``section.key`` of the config file read without validation (None when the file or
    the value is not there); the full load reports any problem."""
    try:
        data: Any = yaml_rs.loads(Path(path).read_text(encoding="utf-8"), parse_datetime=False)
        return data.get(section, {}).get(key)
    except Exception:
        return None


def read_disabled_plugins(path: str | Path) -> list[str]:
    """``plugins.disabled``, read before plugins are loaded: disabled plugins are never
    imported."""
    disabled = _peek(path, "plugins", "disabled")
    return [str(name) for name in disabled] if isinstance(disabled, list) else []


def read_listen(path: str | Path) -> str | None:
    """``server.listen``, for ``pudimd reload`` and the CLI's API calls (``${VAR}`` and
    ``${VAR:-default}`` expanded as the loader does)."""
    import os

    from pudimd.config.loader import expand_env

    listen = _peek(path, "server", "listen")
    return expand_env(str(listen), os.environ) if listen else None


def _reads_files(raw: Any) -> bool:
    """Whether a target as written names a file read while validating (``*_file``: a
    secret, a CA...): its model may differ while its text does not."""
    if isinstance(raw, dict):
        return any(
            (isinstance(k, str) and k.endswith(("_file", "_files"))) or _reads_files(v)
            for k, v in raw.items()
        )
    if isinstance(raw, list):
        return any(_reads_files(v) for v in raw)
    return False


def reuse_unchanged_targets(
    old: ConfigBase | None, new: ConfigBase, *, reads_files: bool = True
) -> int:
    """Put ``old``'s target objects in ``new`` wherever a target is written exactly as
    before (same text after templates and ``${ENV}``, same ``defaults``, no file read):
    the scheduler and the rule engine then see the same object and skip it cheaply,
    instead of comparing 10,000 models field by field on every edit.  ``reads_files``:
    whether any target may name a file (False when the text has no ``_file``: nothing to
    look for).  Returns how many."""
    if old is None or old.defaults != new.defaults:
        return 0
    old_raw, new_raw = old.expanded_targets, new.expanded_targets
    if len(old_raw) != len(old.targets) or len(new_raw) != len(new.targets):
        return 0
    by_name = {t.name: (t, raw) for t, raw in zip(old.targets, old_raw, strict=True)}
    reused = 0
    for i, (target, raw) in enumerate(zip(new.targets, new_raw, strict=True)):
        found = by_name.get(target.name)
        if found is not None and found[1] == raw and not (reads_files and _reads_files(raw)):
            new.targets[i] = found[0]
            reused += 1
    return reused


KEPT_BODY_BYTES = 1024
"""How much of a result's ``BODY`` the live state keeps once every consumer had it whole."""


def _trim_body(result: ProbeResult) -> None:
    """The live state keeps every target's last result until its next check: keep the start
    of its body (what an operator wants to see), not up to ``max_body_bytes`` of it."""
    body = result.values.get("BODY")
    if body is not None and len(body) > KEPT_BODY_BYTES:
        result.values["BODY"] = body[:KEPT_BODY_BYTES]


def make_host(config_path: str | Path | None, metrics: Metrics | None = None) -> PluginHost:
    """A plugin host with every entry-point plugin loaded but those the config disables."""
    disabled = read_disabled_plugins(config_path) if config_path else []
    host = PluginHost(disabled=disabled, on_error=metrics.plugin_error if metrics else None)
    host.load_entry_points()
    return host


class _Service:
    """A subsystem running in its own cancel scope, so the stop sequence can end the
    subsystems one by one (scheduler, then hooks, then storage, then the listener)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()

    async def run(
        self,
        fn: Callable[..., Awaitable[Any]],
        *,
        task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with self.scope:
                await fn(task_status=task_status)
        finally:
            self.done.set()

    async def stop(self) -> None:
        self.scope.cancel()
        await self.done.wait()


class Daemon:
    """``pudimd run``.  ``listen`` and ``state_dir`` override the config file's."""

    def __init__(
        self,
        config_path: str | Path,
        *,
        listen: str | None = None,
        state_dir: str | Path | None = None,
        host: PluginHost | None = None,
        notifier: Notifier | None = None,
        alertmanager_config: str | Path | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.alertmanager_config = alertmanager_config
        self.listen_override = listen
        self.state_dir_override = Path(state_dir) if state_dir else None
        self.metrics = Metrics()
        self.host = host or make_host(self.config_path, self.metrics)
        if self.host.on_error is None:
            self.host.on_error = self.metrics.plugin_error
        self.notifier = notifier or Notifier()
        self.schema: ConfigSchema = schema_for(self.host)
        self.config: ConfigBase | None = None
        self.config_version: ConfigVersion | None = None
        self.scheduler: Scheduler | None = None
        self.store: Store | None = None
        self.alerting: Alerting | None = None
        self.rules: RuleEngine | None = None
        self.oncall: OncallDirectory | None = None
        self.backups: BackupService | None = None
        self.ready = False
        self.port: int | None = None
        self._stop = anyio.Event()
        self._reload_lock = anyio.Lock()
        self._tg: TaskGroup | None = None
        self._result_hook = self.host.has_impls("pudimd_result")
        self.events = EventBus()
        self.started_at = time.time()

    # -- config -----------------------------------------------------------------------

    def load(self) -> ConfigBase:
        """Load and validate the config file (blocking).  Raises ConfigError."""
        return self.load_text()[0]

    def load_text(self, text: str | None = None) -> tuple[ConfigBase, str]:
        """Validate ``text`` (default: the config file's, read now) as the config file
        (blocking): the config and its text.  Raises ConfigError."""
        if text is None:
            text = read_config_file(self.config_path)
        config = load_config_text(
            text,
            self.schema,
            file=str(self.config_path),
            alertmanager_config=self.alertmanager_config,
        )
        return config, text

    def state_dir(self, config: ConfigBase) -> Path:
        if self.state_dir_override is not None:
            return self.state_dir_override.resolve()
        if config.state_dir is not None:
            return (self.config_path.resolve().parent / config.state_dir).resolve()
        return default_state_dir()

    def listen_address(self, config: ConfigBase) -> tuple[str, int]:
        return parse_host_port(self.listen_override or config.server.listen)

    def store_url(self, config: ConfigBase) -> str:
        if config.storage.url is not None:
            return config.storage.url.get_secret_value()
        return f"sqlite:///{self.state_dir(config) / 'pudimd.db'}"

    def _configure_host(self, config: ConfigBase) -> None:
        self.host.hook_timeout = config.plugins.hook_timeout.total_seconds()
        self.host.trace = config.plugins.trace

    # -- running ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to stop gracefully (what SIGTERM does)."""
        self._stop.set()

    async def run(self) -> None:
        """Run until stopped.  Raises ConfigError, StoreError or ListenError when it cannot
        start."""
        config, text = await anyio.to_thread.run_sync(self.load_text)
        configure_logging(config.logging.format, config.logging.level)
        self.config = config
        self.metrics.reload_success.set(1)
        self.metrics.reload_timestamp.set(time.time())
        storage = config.storage
        self.store = await Store.open(
            self.store_url(config),
            raw_retention=storage.raw_retention,
            rollup_retention=storage.rollup_retention,
            minute_rollup_retention=storage.minute_rollup_retention,
            batch_interval=storage.batch_interval.total_seconds(),
            batch_size=storage.batch_size,
            on_written=self.metrics.results_written.inc,
            on_error=lambda exc: self.metrics.store_errors.inc(),
        )
        self.scheduler = Scheduler(
            self.host,
            config.scheduler,
            on_result=self._on_result,
            metrics=self.metrics,
            concurrency=config.plugins.concurrency,
        )
        self._configure_host(config)
        self.metrics.scheduler = self.scheduler
        try:
            self.alerting = Alerting(
                AlertingDB(self.store.engine),
                self.host.types("notifier"),
                AlertingMetrics(self.metrics.registry),
                on_plugin_error=self.host.record_error,
            )
            self.alerting.on_change = self.events.publish_alert
            await self.alerting.start(config.alerting, self._alerting_text(config))
            self._configure_oncall(config)
            self.rules = RuleEngine(
                self._post_rule_alerts,
                external_url=config.alerting.external_url,
                recheck=self.scheduler.check_now,
            )
            self.rules.configure(config.alerting.rules, config.targets)
            await self._serve(config, text)
        finally:
            with anyio.CancelScope(shield=True):
                await self.close_probes(job.probe for job in self.scheduler.jobs.values())
                if self.alerting is not None:
                    await self.close_notifiers(self.alerting.notifiers())
                    self.alerting.db.close()
                await self.store.close()

    def _configure_oncall(self, config: ConfigBase) -> None:
        """Users, teams and schedules (``oncall``): who alerts can be assigned to."""
        self.oncall = OncallDirectory(config.oncall)
        if self.alerting is not None:
            self.alerting.set_oncall(self.oncall)

    async def _serve(self, config: ConfigBase, text: str) -> None:
        assert self.store is not None and self.scheduler is not None
        store_svc, api_svc, sched_svc = _Service("store"), _Service("api"), _Service("scheduler")
        alert_svc, rules_svc = _Service("alerting"), _Service("rules")
        backup_svc = _Service("backups")
        self.backups = BackupService.for_daemon(self)
        backups = self.backups
        assert self.alerting is not None and self.rules is not None
        rules = self.rules
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._signals)
            await tg.start(store_svc.run, self.store.run)
            # the app first: what it installs (action links in notifications) is there
            # before the outbox resumes the notifications a restart left pending
            app = make_app(self)
            await tg.start(alert_svc.run, self.alerting.run)
            await tg.start(rules_svc.run, lambda task_status: rules.run(task_status=task_status))
            host, port = self.listen_address(config)
            self.port = await tg.start(
                api_svc.run,
                lambda task_status: serve(app, host, port, task_status=task_status),
            )
            await tg.start(sched_svc.run, self.scheduler.run)
            await tg.start(backup_svc.run, backups.run)
            self.scheduler.apply(config.targets)
            self.config_version = await record_applied(self.store.engine, text, Change("start"))
            self.events.reloaded(
                True, source="start", version=getattr(self.config_version, "id", None)
            )
            await self.host.call_event("pudimd_startup", daemon=self)
            heap.settle()
            self.ready = True
            self.notifier.ready(f"{len(self.scheduler.jobs)} targets")
            log.info(
                "pudimd started",
                listen=f"{host}:{self.port}",
                targets=len(self.scheduler.jobs),
                config=str(self.config_path),
                store=mask_url(self.store_url(config)),
            )
            interval = watchdog_interval()
            if interval is not None:
                tg.start_soon(self._watchdog, interval)
            await self._stop.wait()

            self.ready = False
            self.notifier.stopping()
            log.info("pudimd stopping")
            with anyio.move_on_after(STOP_TIMEOUT, shield=True) as budget:
                await backup_svc.stop()
                await sched_svc.stop()
                await rules_svc.stop()
                await self.host.call_event("pudimd_shutdown", daemon=self)
                await alert_svc.stop()
                await store_svc.stop()
                await api_svc.stop()
            if budget.cancelled_caught:
                log.error("graceful stop overran its budget", seconds=STOP_TIMEOUT)
            tg.cancel_scope.cancel()
        log.info("pudimd stopped")

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    assert self._tg is not None
                    self._tg.start_soon(self.reload, "sighup")
                else:
                    log.info("signal received", signal=signal.Signals(signum).name)
                    self.stop()

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await anyio.sleep(interval)

    def _on_result(self, job: Job, result: ProbeResult) -> None:
        assert self.store is not None
        self.metrics.count_check(job.target.probe, result.success, result.degraded)
        self.store.enqueue(job.name, job.target.probe, result)
        self.events.publish_result(job.name, job.target.probe, result)
        if self.rules is not None:
            self.rules.observe(job.name, result)
        if self._result_hook and self._tg is not None:
            self._tg.start_soon(self._call_result_hook, job, result)
        else:
            _trim_body(result)

    async def _call_result_hook(self, job: Job, result: ProbeResult) -> None:
        try:
            await self.host.call_event("pudimd_result", job=job, result=result)
        finally:
            _trim_body(result)

    # -- reload -----------------------------------------------------------------------

    async def reload(
        self, source: str = "api", *, text: str | None = None, change: Change = FILE_CHANGE
    ) -> str | None:
        """Validate the config file and apply it, recording it as a version (``change``)
        when its text is new.  Returns None on success or the error text; a bad config
        leaves the running one untouched.  With ``text``: validate it first (ConfigError
        raised, nothing changed), then write it to the config file atomically and reload."""
        async with self._reload_lock:
            if text is not None:
                config, _ = await anyio.to_thread.run_sync(self.load_text, text)
                await anyio.to_thread.run_sync(write_config_file, self.config_path, text)
                await self.apply_locked(config, text, source, change)
                return None
            self.notifier.reloading()
            try:
                return await self._reload(source, change)
            finally:
                self.notifier.ready()

    @property
    def reload_lock(self) -> anyio.Lock:
        """Held while a config is read, validated and applied: an editor holds it from
        reading the file to applying its edit, so edits and reloads never interleave."""
        return self._reload_lock

    async def apply_locked(
        self, config: ConfigBase, text: str, source: str, change: Change = FILE_CHANGE
    ) -> None:
        """Apply ``config`` (validated from ``text``, which the file now holds) to the
        running daemon and record it.  The caller holds :attr:`reload_lock`."""
        self.notifier.reloading()
        try:
            await self._apply(config, text, source, change, time.perf_counter())
        finally:
            self.notifier.ready()

    async def _reload(self, source: str, change: Change = FILE_CHANGE) -> str | None:
        started = time.perf_counter()
        try:
            config, config_text = await anyio.to_thread.run_sync(self.load_text)
        except ConfigError as exc:
            self.metrics.reload_success.set(0)
            self.events.reloaded(False, source=source, error=str(exc))
            for line in str(exc).splitlines():
                log.error(
                    "config reload failed; the running config stays", source=source, error=line
                )
            return str(exc)
        await self._apply(config, config_text, source, change, started)
        return None

    async def _apply(
        self, config: ConfigBase, config_text: str, source: str, change: Change, started: float
    ) -> None:
        assert self.scheduler is not None and self.config is not None
        old = self.config
        for what, before, after in (
            ("server.listen", self.listen_address(old), self.listen_address(config)),
            ("storage", self.store_url(old), self.store_url(config)),
            ("plugins.disabled", sorted(old.plugins.disabled), sorted(config.plugins.disabled)),
        ):
            if before != after:
                log.warning(
                    "this change needs a restart to take effect", setting=what, source=source
                )
        configure_logging(config.logging.format, config.logging.level)
        reuse_unchanged_targets(old, config, reads_files="_file" in config_text)
        self.scheduler.configure(config.scheduler, config.plugins.concurrency)
        self._configure_host(config)
        stats, retired = self.scheduler.apply(config.targets)
        self.config = config
        self.metrics.reload_success.set(1)
        self.metrics.reload_timestamp.set(time.time())
        self.retire_probes(retired)
        if self.backups is not None:
            self.backups.configure(config)
        if self.alerting is not None:
            text = self._alerting_text(config)
            retired_notifiers = self.alerting.configure(config.alerting, text)
            if retired_notifiers and self._tg is not None:
                self._tg.start_soon(self.close_notifiers, retired_notifiers)
            self._configure_oncall(config)
        if self.rules is not None:
            self.rules.set_external_url(config.alerting.external_url)
            self.rules.configure(config.alerting.rules, config.targets)
        if self.store is not None:
            self.config_version = await record_applied(self.store.engine, config_text, change)
        self.events.reloaded(True, source=source, version=getattr(self.config_version, "id", None))
        heap.settle(full=False)
        log.info(
            "config reloaded",
            source=source,
            added=stats.added,
            changed=stats.changed,
            removed=stats.removed,
            unchanged=stats.unchanged,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _alerting_text(self, config: ConfigBase) -> str:
        """The alerting configuration as written (``/api/v2/status`` shows it)."""
        path = config.alertmanager_config_file
        try:
            if path is not None:
                return Path(path).read_text(encoding="utf-8")
            return yaml_rs.dumps(
                config.alerting.model_dump(mode="json", by_alias=True, exclude_defaults=True)
            )
        except Exception:
            return ""

    def _post_rule_alerts(self, alerts: list[PostableAlert]) -> None:
        """The rule engine's sink: post in the background (the engine is synchronous)."""
        if self.alerting is not None and self._tg is not None:
            self._tg.start_soon(self.alerting.post, alerts)

    async def close_notifiers(self, notifiers: Iterable[Any]) -> None:
        """Close notifier instances (``aclose()``), logging and counting what raises."""
        for notifier in list(notifiers):
            aclose = getattr(notifier, "aclose", None)
            if aclose is not None:
                await self.host.isolate(type(notifier).__module__, "aclose", aclose, 5.0)

    def retire_probes(self, probes: Iterable[Probe]) -> None:
        """Close ``probes`` soon, in the daemon's task group (they may still be finishing a
        check); closes nothing when the daemon is not running."""
        retired = list(probes)
        if retired and self._tg is not None:
            self._tg.start_soon(self.close_probes, retired)

    async def close_probes(self, probes: Iterable[Probe]) -> None:
        """Close each of ``probes`` (``aclose()``), logging and counting what raises."""
        for probe in list(probes):
            aclose = getattr(probe, "aclose", None)
            if aclose is not None:
                await self.host.isolate(type(probe).__module__, "aclose", aclose, 5.0)
