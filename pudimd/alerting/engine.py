"""The alerting engine: one object holding the alert store, silences, inhibition, time
intervals, the dispatcher and the outbox, and what the APIs, the CLI and the rules call.

Alerts live in memory (a dict by fingerprint) and every change is written to the database
in batches before :meth:`Alerting.post` returns: concurrent posts share one transaction
(group commit), so a 200 answer means the alert survives a crash.  On start, alerts,
silences, the notification log and pending notifications are loaded back: a restart keeps
everything Alertmanager would lose.
"""

from __future__ import annotations

import heapq
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
import structlog

from pudimd.alerting.alert import Alert, PostableAlert, fingerprint
from pudimd.alerting.dispatch import Dispatcher, Group, Integration
from pudimd.alerting.escalation import Escalation, EscalationTarget, Escalator, escalation_id
from pudimd.alerting.inhibit import Inhibitor
from pudimd.alerting.matchers import Matcher, matches_all
from pudimd.alerting.metrics import AlertingMetrics
from pudimd.alerting.outbox import Outbox, OutboxSettings
from pudimd.alerting.routing import Route, RouteConfig, build_routes, format_labels
from pudimd.alerting.silences import Silence, Silences
from pudimd.alerting.workflow import Action, ActionError
from pudimd.alerting.workflow import apply as apply_action

if TYPE_CHECKING:
    from pudimd.alerting.config import AlertingBase
    from pudimd.alerting.oncall import OncallDirectory
    from pudimd.alerting.timeintervals import NamedTimeInterval
    from pudimd.contracts import Notifier
    from pudimd.store.alerting import AlertingDB

__all__ = ["AlertView", "Alerting", "GroupView"]

log = structlog.get_logger("pudimd.alerting")

WRITE_RETRY_MAX = 10.0


@dataclass(slots=True)
class AlertView:
    """One alert as the API shows it."""

    alert: Alert
    state: Literal["unprocessed", "active", "suppressed"]
    silenced_by: list[str]
    inhibited_by: list[str]
    muted_by: list[str]
    blocked_by: list[str]
    receivers: list[str]


@dataclass(slots=True)
class GroupView:
    labels: dict[str, str]
    receiver: str
    alerts: list[AlertView]


@dataclass(slots=True)
class _Entry:
    integration: Integration
    notifier: Notifier
    settings: Any


class Alerting:
    """See the module docstring.  Call :meth:`start` (loads the stored state and applies
    ``config``), then run :meth:`run` in a task group; :meth:`configure` on reload."""

    def __init__(
        self,
        db: AlertingDB,
        notifier_types: dict[str, type[Any]],
        metrics: AlertingMetrics,
        *,
        clock: Callable[[], float] = time.time,
        on_plugin_error: Callable[[str, str, BaseException], None] | None = None,
    ) -> None:
        self.db = db
        self.notifier_types = notifier_types
        self.metrics = metrics
        self.clock = clock
        self.started_at = clock()
        self.config_text = ""
        self.resolve_timeout = 300.0
        self.resolved_retention = 3600.0
        self.history_retention = 365 * 86400.0
        self._alerts: dict[str, Alert] = {}
        self.silences = Silences(clock=clock, on_change=self._silence_changed)
        self.inhibitor = Inhibitor([])
        self._intervals: dict[str, NamedTimeInterval] = {}
        self._receivers: dict[str, list[_Entry]] = {}
        self.dispatcher = Dispatcher(
            build_routes(RouteConfig(receiver="")),
            self._integrations,
            muted=self._muted,
            time_muted=self._time_muted,
            enqueue=self._enqueue,
            clock=clock,
            on_flush=self._on_flush,
        )
        self.outbox = Outbox(
            db, self._lookup, metrics, clock=clock, on_plugin_error=on_plugin_error
        )
        self._dirty: dict[str, Alert] = {}
        self._deleted: set[str] = set()
        self._dirty_silences: dict[str, Silence] = {}
        self._dirty_acks: dict[str, Alert] = {}
        self._events: list[dict[str, Any]] = []
        self._ack_expiry: list[tuple[float, str]] = []
        self._people: set[str] | None = None
        self._silence_change: float | None = None
        self._directory: OncallDirectory | None = None
        self.escalator = Escalator(
            self._escalate,
            db.write_escalations,
            clock=clock,
            on_fire=lambda _e, late: metrics.escalation_lateness.observe(max(late, 0.0)),
        )
        self._batch = anyio.Event()
        self._batch_failed: BaseException | None = None
        self._wake_writer = anyio.Event()
        self._expiry: list[tuple[float, str]] = []
        self._wake_expiry = anyio.Event()
        self.on_change: Callable[[Alert, str, float], None] | None = None
        """Called with an alert, its new state (``firing``, ``resolved``, or what an action
        or a timer recorded: ``acknowledged``, ``escalated``...) and when (the live events)."""
        metrics.watch(self._gauges)

    # -- life cycle ---------------------------------------------------------------------

    async def start(self, config: AlertingBase, config_text: str = "") -> list[Notifier]:
        """Load what the database holds, then apply ``config``."""
        loaded = await self.db.load()
        for row in loaded.alerts:
            alert = Alert(**row)
            self._alerts[alert.fingerprint] = alert
            heapq.heappush(self._expiry, (alert.ends_at, alert.fingerprint))
        self.silences.load(
            Silence(
                matchers=tuple(Matcher.from_api(m) for m in row["matchers"]),
                starts_at=row["starts_at"],
                ends_at=row["ends_at"],
                created_by=row["created_by"],
                comment=row["comment"],
                id=row["id"],
                updated_at=row["updated_at"],
                expire_on_resolve=row["expire_on_resolve"],
                muted=row["muted"],
            )
            for row in loaded.silences
        )
        for row in loaded.acks:
            acked = self._alerts.get(row["fingerprint"])
            if acked is None:
                continue
            acked.acked_by, acked.acked_at = row["acked_by"], row["acked_at"]
            acked.ack_until, acked.assignee = row["ack_until"], row["assignee"]
            if acked.ack_until is not None:
                heapq.heappush(self._ack_expiry, (acked.ack_until, acked.fingerprint))
        self.dispatcher.load_nflog(loaded.nflog)
        self.escalator.load(loaded.escalations)
        self.outbox.resume(loaded.pending)
        retired = self.configure(config, config_text)
        log.info(
            "alerting state loaded",
            alerts=len(self._alerts),
            silences=len(self.silences),
            pending_notifications=len(loaded.pending),
        )
        return retired

    def configure(self, config: AlertingBase, config_text: str = "") -> list[Notifier]:
        """Apply a (re)loaded config; returns the notifier instances no longer used (the
        caller closes them)."""
        self.config_text = config_text
        self.resolve_timeout = config.global_.resolve_timeout.total_seconds()
        self.resolved_retention = config.resolved_retention.total_seconds()
        self.history_retention = config.history_retention.total_seconds()
        self.silences.retention = config.silence_retention.total_seconds()
        out = config.outbox
        self.outbox.settings = OutboxSettings(
            max_age=out.max_age.total_seconds(),
            backoff_initial=out.backoff_initial.total_seconds(),
            backoff_max=out.backoff_max.total_seconds(),
            attempt_timeout=out.attempt_timeout.total_seconds(),
            concurrency=out.concurrency,
        )
        self.inhibitor = Inhibitor(config.inhibit_rules)
        self._intervals = config.intervals
        retired = self._configure_receivers(config)
        root = build_routes(config.route or RouteConfig(receiver=""))
        self.dispatcher.reconfigure(root, config.external_url)
        now = self.clock()
        self._update_inhibitor()
        for alert in self._alerts.values():
            self.dispatcher.add(alert, now)
        return retired

    def _configure_receivers(self, config: AlertingBase) -> list[Notifier]:
        from pudimd.alerting.config import config_key

        previous = {
            (entry.integration.receiver, entry.integration.id): entry
            for entries in self._receivers.values()
            for entry in entries
        }
        kept: set[int] = set()
        receivers: dict[str, list[_Entry]] = {}
        for receiver in config.receivers:
            entries: list[_Entry] = []
            for type_name, cls in self.notifier_types.items():
                for index, settings in enumerate(getattr(receiver, config_key(cls), [])):
                    integration = Integration(
                        receiver=receiver.name,
                        id=f"{type_name}/{index}",
                        send_resolved=bool(getattr(settings, "send_resolved", True)),
                        max_alerts=int(getattr(settings, "max_alerts", 0) or 0),
                    )
                    old = previous.get((receiver.name, integration.id))
                    if old is not None and old.settings == settings:
                        kept.add(id(old))
                        entries.append(_Entry(integration, old.notifier, settings))
                    else:
                        entries.append(_Entry(integration, cls(settings), settings))
            receivers[receiver.name] = entries
        retired = [entry.notifier for entry in previous.values() if id(entry) not in kept]
        self._receivers = receivers
        return retired

    def notifiers(self) -> list[Notifier]:
        return [entry.notifier for entries in self._receivers.values() for entry in entries]

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._writer)
            tg.start_soon(self.dispatcher.run)
            tg.start_soon(self.outbox.run)
            tg.start_soon(self._housekeeping)
            tg.start_soon(self.escalator.run)
            tg.start_soon(self._prune_history)
            task_status.started()

    # -- posting ------------------------------------------------------------------------

    async def post(self, alerts: Sequence[PostableAlert]) -> None:
        """Store ``alerts`` (new ones, or re-posts merged into the stored ones) and hand
        changes to the dispatcher.  Returns once the change is in the database."""
        now = self.clock()
        dispatcher = self.dispatcher
        inhibit_sources = bool(self.inhibitor)
        resolving = 0
        for posted in alerts:
            fp = fingerprint(posted.labels)
            alert = self._alerts.get(fp)
            resolved = posted.ends_at is not None and posted.ends_at <= now
            resolving += resolved
            if alert is None:
                if resolved:
                    continue  # resolving an alert nobody knows: nothing to do
                alert = Alert.new(posted, now, self.resolve_timeout, fp)
                self._alerts[fp] = alert
                dispatcher.add(alert, now)
                self._changed(alert, "firing", now)
            else:
                starts_before, ends_before = alert.starts_at, alert.ends_at
                was_resolved = ends_before <= now
                if alert.merge(posted, now, self.resolve_timeout):
                    dispatcher.add(alert, now)
                elif alert.ends_at < ends_before:
                    dispatcher.touch((fp,), now)
                if was_resolved and not resolved:
                    self._new_episode(alert, starts_before, ends_before)
                if was_resolved != alert.resolved(now):
                    self._changed(alert, "firing" if was_resolved else "resolved", now)
            if alert.ends_at > now:
                heapq.heappush(self._expiry, (alert.ends_at, fp))
                self._wake_expiry.set()
            self._dirty[fp] = alert
            self._deleted.discard(fp)
        if resolving:
            self.metrics.received.labels("resolved").inc(resolving)
        if len(alerts) > resolving:
            self.metrics.received.labels("firing").inc(len(alerts) - resolving)
        if inhibit_sources:
            self._update_inhibitor()
        self._wake_expiry.set()  # resolutions may end expire_on_resolve silences
        await self._persisted()

    async def _persisted(self) -> None:
        batch = self._batch
        self._wake_writer.set()
        await batch.wait()
        if self._batch_failed is not None:
            raise self._batch_failed

    async def run_writer(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Only the writer (what :meth:`post` waits for), without the timed loops: for a
        simulation that drives :meth:`housekeep`, ``dispatcher.flush_due`` and
        ``escalator.fire_due`` on a virtual clock."""
        task_status.started()
        await self._writer()

    async def _writer(self) -> None:
        failures = 0
        while True:
            await self._wake_writer.wait()
            self._wake_writer = anyio.Event()
            batch, self._batch = self._batch, anyio.Event()
            dirty, self._dirty = self._dirty, {}
            deleted, self._deleted = self._deleted, set()
            silences, self._dirty_silences = self._dirty_silences, {}
            acks, self._dirty_acks = self._dirty_acks, {}
            events, self._events = self._events, []
            while True:
                try:
                    if dirty or deleted or events or acks:
                        await self.db.write_alerts(
                            [_row(a) for a in dirty.values()],
                            deleted,
                            events=events,
                            acks=[_ack_row(a) for a in acks.values()],
                        )
                    if silences:
                        live = self.silences.ids()
                        await self.db.write_silences(
                            [_silence_row(s) for s in silences.values() if s.id in live],
                            [sid for sid in silences if sid not in live],
                        )
                    break
                except Exception as exc:
                    failures += 1
                    delay = min(0.1 * 2**failures, WRITE_RETRY_MAX)
                    log.error(
                        "cannot write alerting state; retrying", error=str(exc), retry_in=delay
                    )
                    await anyio.sleep(delay)
            failures = 0
            batch.set()

    # -- suppression --------------------------------------------------------------------

    def _update_inhibitor(self) -> None:
        if not self.inhibitor:
            return
        now = self.clock()
        self.inhibitor.update(a for a in self._alerts.values() if not a.resolved(now))
        self.dispatcher.touch_all(now)

    def _muted(self, alert: Alert, now: float) -> bool:
        if alert.blocked_by:
            return True
        silenced = self.silences.muting(alert.labels, now)
        if silenced:
            for sid in silenced:
                silence = self.silences.get(sid)
                if silence.expire_on_resolve and alert.fingerprint not in silence.muted:
                    silence.muted.add(alert.fingerprint)
                    self._dirty_silences[sid] = silence
                    self._wake_writer.set()
            return True
        return bool(self.inhibitor and self.inhibitor.inhibited_by(alert.fingerprint, alert.labels))

    def _time_muted(self, route: Route, now: float) -> tuple[bool, float | None]:
        if not route.mute_time_intervals and not route.active_time_intervals:
            return False, None
        moment = datetime.fromtimestamp(now, UTC)
        names = [*route.mute_time_intervals, *route.active_time_intervals]
        changes = [self._intervals[n].next_change(moment) for n in names if n in self._intervals]
        change = min((c.timestamp() for c in changes if c is not None), default=None)
        if any(
            self._intervals[n].active(moment)
            for n in route.mute_time_intervals
            if n in self._intervals
        ):
            return True, change
        if route.active_time_intervals and not any(
            self._intervals[n].active(moment)
            for n in route.active_time_intervals
            if n in self._intervals
        ):
            return True, change
        return False, None

    def _silence_changed(self, silence: Silence) -> None:
        self._dirty_silences[silence.id] = silence
        self._wake_writer.set()
        self.dispatcher.touch_all(self.clock())
        self._wake_expiry.set()

    # -- housekeeping: resolve timeouts, garbage collection, expire_on_resolve ----------

    async def _housekeeping(self) -> None:
        while True:
            now = self.clock()
            wait, _ = self.housekeep(now)
            self._wake_expiry = anyio.Event()
            with anyio.move_on_after(max(wait, 0.01)):
                await self._wake_expiry.wait()

    async def _prune_history(self, first: float = 60.0, every: float = 3600.0) -> None:
        """Delete timeline events older than ``history_retention``, a minute after start
        and then every hour (in short transactions: the first run after an upgrade may
        have much to delete)."""
        from pudimd.store.history import prune_events

        await anyio.sleep(first)
        while True:
            try:
                deleted = await prune_events(
                    self.db.engine, self.clock() - self.history_retention
                )
                if deleted:
                    log.info("old timeline events deleted", events=deleted)
            except Exception as exc:
                log.error("cannot delete old timeline events", error=str(exc))
            await anyio.sleep(every)

    def housekeep(self, now: float) -> tuple[float, float | None]:
        """One pass of what time does at ``now``: alerts past their end resolve,
        acknowledgements run out, old state is collected, expire_on_resolve silences
        end, and every group is looked at again once a silence started or ended.
        Returns how long until the next pass is needed, and when a silence next starts or
        ends (None: none will)."""
        if self._silence_change is not None and now >= self._silence_change:
            self.dispatcher.touch_all(now)  # what a silence mutes changed
        resolved: list[str] = []
        while self._expiry and self._expiry[0][0] <= now:
            ends_at, fp = heapq.heappop(self._expiry)
            alert = self._alerts.get(fp)
            if alert is not None and alert.ends_at == ends_at and fp not in resolved:
                resolved.append(fp)
                self._changed(alert, "resolved", ends_at)
        self._expire_acks(now)
        if resolved:
            self.dispatcher.touch(resolved, now)
            if self.inhibitor:
                self._update_inhibitor()
        self._collect(now)
        self._expire_resolved_silences(now)
        silence_change = self.silences.next_change(now)
        wait = 60.0
        if self._expiry:
            wait = min(wait, self._expiry[0][0] - now)
        if self._ack_expiry:
            wait = min(wait, self._ack_expiry[0][0] - now)
        if silence_change is not None:
            wait = min(wait, silence_change - now)
        self._silence_change = silence_change
        return wait, silence_change

    def _expire_acks(self, now: float) -> None:
        ended: list[str] = []
        while self._ack_expiry and self._ack_expiry[0][0] <= now:
            until, fp = heapq.heappop(self._ack_expiry)
            alert = self._alerts.get(fp)
            if alert is None or alert.ack_until != until or alert.acked_by is None:
                continue
            alert.clear_ack()
            self._dirty_acks[fp] = alert
            if not alert.resolved(now):
                self._record(alert, "ack_expired", until)
                ended.append(fp)
        if ended:
            self.dispatcher.hurry(ended, now)
            self._wake_writer.set()

    def _collect(self, now: float) -> None:
        horizon = now - self.resolved_retention
        gone = (
            [fp for fp, a in self._alerts.items() if a.ends_at < horizon]
            if self._gc_due(now)
            else []
        )
        for fp in gone:
            self._archive(self._alerts.pop(fp))
            self.dispatcher.forget(fp)
            self._deleted.add(fp)
            self._dirty.pop(fp, None)
        removed = self.silences.collect(now)
        for sid in removed:
            self._dirty_silences[sid] = Silence((), 0, 0, "", "", id=sid)
        if gone or removed:
            self._wake_writer.set()

    _last_gc = 0.0

    def _gc_due(self, now: float) -> bool:
        if now - self._last_gc < 60.0:
            return False
        self._last_gc = now
        return True

    def _expire_resolved_silences(self, now: float) -> None:
        for silence in self.silences.active(now):
            if not silence.expire_on_resolve or not silence.muted:
                continue
            if all(
                fp not in self._alerts or self._alerts[fp].resolved(now) for fp in silence.muted
            ):
                log.info("silence expired: every alert it muted has resolved", silence=silence.id)
                self.silences.expire(silence.id)

    # -- on-call actions -----------------------------------------------------------------

    def set_oncall(self, directory: OncallDirectory) -> None:
        """The ``oncall`` section: who alerts can be assigned to, escalation policies and
        whom their targets reach (at start and on every reload)."""
        self._directory = directory
        self.set_people(directory.users, directory.teams)
        self.escalator.configure(directory.config.escalation_policies)

    def set_people(self, users: Iterable[str], teams: Iterable[str]) -> None:
        """Who alerts can be assigned to (``oncall.users`` and ``oncall.teams``)."""
        self._people = {f"user:{name}" for name in users} | {f"team:{name}" for name in teams}

    def _assignable(self, assignee: str) -> str | None:
        if self._people is None or not self._people:
            return f"cannot assign to {assignee}: no users or teams are configured (oncall)"
        if assignee not in self._people:
            kind = assignee.partition(":")[0]
            return f"unknown {kind} {assignee.partition(':')[2]!r}"
        return None

    async def act(self, fingerprint: str, action: Action) -> AlertView:
        """Do ``action`` to the alert ``fingerprint`` (see :mod:`pudimd.alerting.workflow`),
        record it in the alert's timeline and tell its receivers now; returns the alert's
        view once the change is in the database.  Raises ActionError (nothing changed)."""
        now = self.clock()
        alert = self._alerts.get(fingerprint)
        if alert is None:
            raise ActionError(f"no alert with fingerprint {fingerprint!r}", status=404)
        kind, detail = apply_action(alert, action, now, self._assignable)
        self._record(alert, kind, now, action.actor, action.interface, detail)
        self._dirty_acks[fingerprint] = alert
        if kind == "resolved":
            self._dirty[fingerprint] = alert
            if self.inhibitor:
                self._update_inhibitor()
        if alert.ack_until is not None and kind in ("acknowledged", "snoozed"):
            heapq.heappush(self._ack_expiry, (alert.ack_until, fingerprint))
            self._wake_expiry.set()
        self.dispatcher.hurry((fingerprint,), now)
        log.info(
            "alert " + kind,
            alert=fingerprint,
            actor=action.actor,
            interface=action.interface,
            **{k: v for k, v in detail.items() if k != "comment"},
        )
        await self._persisted()
        return self.status(alert, now)

    def alert(self, fingerprint: str) -> Alert | None:
        return self._alerts.get(fingerprint)

    def _new_episode(self, alert: Alert, starts_at: float, ends_at: float) -> None:
        """A resolved alert fires again: the episode that ended goes to the timeline, and
        the new one starts unacknowledged and unassigned."""
        self._archive(alert, starts_at, ends_at)
        if alert.acked_by is not None or alert.assignee is not None:
            alert.clear_ack()
            alert.assignee = None
            self._dirty_acks[alert.fingerprint] = alert

    # -- the timeline -------------------------------------------------------------------
    #
    # An alert the store holds is its current episode: when it fired and, once it did,
    # when it resolved are its starts_at and ends_at, shown as timeline events without
    # being written one by one (that would double the cost of taking an alert).  They are
    # written when the episode is over for the store: the alert is collected, or fires
    # again as a new episode.  Engineers' actions and escalations are written as they
    # happen.

    def _archive(
        self, alert: Alert, starts_at: float | None = None, ends_at: float | None = None
    ) -> None:
        """Write an episode that is over: ``alert``'s own, or the one it had from
        ``starts_at`` to ``ends_at``."""
        episode = _episode(
            alert,
            alert.starts_at if starts_at is None else starts_at,
            alert.ends_at if ends_at is None else ends_at,
        )
        for kind, at, detail in episode:
            self._record(alert, kind, at, detail=detail)

    async def timeline(
        self,
        *,
        fingerprint: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Timeline events, oldest first: those written, and the fired and resolved events
        of the episodes the store holds."""
        stored = await self.db.events(
            fingerprint=fingerprint, target=target, since=since, until=until, limit=limit
        )
        if fingerprint is not None:
            alive = [self._alerts[fingerprint]] if fingerprint in self._alerts else []
        else:
            alive = [a for a in self._alerts.values() if target is None or _target_of(a) == target]
        low = since if since is not None else -math.inf
        high = until if until is not None else math.inf
        now = self.clock()
        live = [
            _event(alert, kind, at, detail)
            for alert in alive
            for kind, at, detail in _episode(
                alert, alert.starts_at, alert.ends_at if alert.resolved(now) else None
            )
            if low <= at <= high
        ]
        merged = [*stored, *live]
        if fingerprint is not None:
            merged.extend(self._context_events(merged, now))
        merged.sort(key=lambda e: (e["at"], e["kind"] != "fired"))
        return _without_echoes(merged)[:limit]

    def _context_events(self, events: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """For one alert's timeline: each "fired" event says where the route tree sends
        the alert (``routed``: the receivers of the current routes), and the silences
        that muted it during each episode are "silenced" events (from the silences still
        kept)."""
        out: list[dict[str, Any]] = []
        fired = [e for e in events if e["kind"] == "fired"]
        ends = sorted(e["at"] for e in events if e["kind"] == "resolved")
        for event in fired:
            labels = event["detail"].get("labels")
            if not isinstance(labels, dict):
                continue
            receivers = list(dict.fromkeys(r.receiver for r in self.routes_for(labels)))
            event["detail"] = {**event["detail"], "routed": receivers}
            end = next((at for at in ends if at >= event["at"]), now)
            for silence in self.silences.query():
                if silence.matches(labels) and silence.starts_at < end and (
                    silence.ends_at > event["at"]
                ):
                    detail = {
                        "silence": silence.id,
                        "by": silence.created_by,
                        "comment": silence.comment,
                        "until": silence.ends_at,
                    }
                    at = max(silence.starts_at, event["at"])
                    out.append({**event, "kind": "silenced", "at": at, "detail": detail})
        return out

    # -- escalation ---------------------------------------------------------------------

    def _on_flush(self, group: Group, firing: list[Alert], all_acked: bool, now: float) -> None:
        policy = group.route.escalation_policy
        if policy is None and escalation_id(group.key) not in self.escalator.active:
            return
        self.escalator.update(group.key, policy, bool(firing) and not all_acked, now)

    async def escalate_to(self, eid: str, targets: Sequence[EscalationTarget]) -> list[str]:
        """A manual override: notify ``targets`` about escalation ``eid``'s alerts now,
        whatever its policy says (its own levels go on as they were).  KeyError when no
        such escalation is in progress."""
        escalation = self.escalator.active[eid]
        level = max(escalation.level - 1, 0)
        return await self._escalate(escalation, level, targets, self.clock(), override=True)

    async def _escalate(
        self,
        escalation: Escalation,
        level: int,
        targets: Sequence[EscalationTarget],
        now: float,
        *,
        override: bool = False,
    ) -> list[str]:
        """Notify one level of ``escalation``: the group's firing alerts to every integration
        of the receivers its targets reach."""
        group = self.dispatcher.by_key.get(escalation.group_key)
        firing = [
            a
            for a in (group.alerts.values() if group is not None else ())
            if not a.resolved(now) and not self._muted(a, now)
        ]
        if group is None or not firing or all(a.acked(now) for a in firing):
            self.escalator.stop(escalation.id)
            return []
        receivers = self._receivers_of(targets, now)
        notifications = [
            self.dispatcher.notification(group, integration, firing, now)
            for receiver in receivers
            for integration in self._integrations(receiver)
        ]
        if notifications:
            await self.outbox.enqueue(notifications, [])
        self.metrics.escalation_levels.labels(escalation.policy).inc()
        detail = {
            "policy": escalation.policy,
            "level": level + 1,
            "cycle": escalation.cycle,
            "targets": [str(t) for t in targets],
            "receivers": receivers,
        }
        if override:
            detail["override"] = True
        for alert in firing:
            self._record(alert, "escalated", now, detail=detail)
        self._wake_writer.set()
        return receivers

    def _receivers_of(self, targets: Sequence[EscalationTarget], now: float) -> list[str]:
        found: list[str] = []
        directory = self._directory
        for target in targets:
            names: list[str | None]
            if target.receiver is not None:
                names = [target.receiver]
            elif directory is None:
                names = []
            else:
                try:
                    moment = datetime.fromtimestamp(now, UTC)
                    users = directory.users_of(target.model_dump(exclude_none=True), moment)
                except (KeyError, ValueError) as exc:
                    log.warning("escalation target unknown", target=str(target), error=str(exc))
                    continue
                names = [user.receiver for user in users]
                if not users:
                    log.warning("escalation target reaches nobody", target=str(target))
            for name in names:
                if name is None:
                    log.warning("a user the escalation reaches has no receiver", target=str(target))
                elif name not in found:
                    found.append(name)
        return found

    def escalations(self) -> list[Escalation]:
        return list(self.escalator.active.values())

    def group_keys(self, labels: dict[str, str]) -> list[str]:
        """The keys of the groups an alert with ``labels`` belongs to (its notifications
        carry them)."""
        return [
            f"{route.key}:{format_labels(route.group_labels(labels))}"
            for route in self.dispatcher.routes_for(labels)
        ]

    def _record(
        self,
        alert: Alert,
        kind: str,
        at: float,
        actor: str | None = None,
        interface: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._events.append(_event(alert, kind, at, detail, actor, interface))
        if kind not in ("fired", "resolved") or actor is not None:  # not an _archive
            self._changed(alert, kind, at)

    def _changed(self, alert: Alert, state: str, at: float) -> None:
        if self.on_change is not None:
            try:
                self.on_change(alert, state, at)
            except Exception:
                log.exception("alert change callback failed", alert=alert.fingerprint)

    # -- dispatcher and outbox glue ------------------------------------------------------

    def _integrations(self, receiver: str) -> list[Integration]:
        return [entry.integration for entry in self._receivers.get(receiver, ())]

    def _lookup(self, receiver: str, integration: str) -> Notifier | None:
        for entry in self._receivers.get(receiver, ()):
            if entry.integration.id == integration:
                return entry.notifier
        return None

    async def _enqueue(self, notifications: list[Any], nflog: list[Any]) -> None:
        await self.outbox.enqueue(notifications, nflog)

    # -- queries (APIs, CLI) ------------------------------------------------------------

    def status(self, alert: Alert, now: float) -> AlertView:
        routes = self.dispatcher.routes_for(alert.labels)
        silenced = self.silences.muting(alert.labels, now)
        inhibited = (
            self.inhibitor.inhibited_by(alert.fingerprint, alert.labels) if self.inhibitor else []
        )
        muted_by: list[str] = []
        for route in routes:
            muted, _ = self._time_muted(route, now)
            if muted:
                muted_by.extend(n for n in route.mute_time_intervals if n not in muted_by)
                muted_by.extend(n for n in route.active_time_intervals if n not in muted_by)
        blocked = list(alert.blocked_by)
        state: Literal["active", "suppressed"] = (
            "suppressed" if silenced or inhibited or muted_by or blocked else "active"
        )
        receivers: list[str] = []
        for route in routes:
            if route.receiver not in receivers:
                receivers.append(route.receiver)
        return AlertView(alert, state, silenced, inhibited, muted_by, blocked, receivers)

    def alerts(
        self,
        *,
        matchers: Sequence[Matcher] = (),
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        unprocessed: bool = True,
        receiver: re.Pattern[str] | None = None,
    ) -> list[AlertView]:
        """Unresolved alerts matching every filter, oldest first."""
        now = self.clock()
        out: list[AlertView] = []
        for alert in self._alerts.values():
            if alert.resolved(now) or not matches_all(matchers, alert.labels):
                continue
            view = self.status(alert, now)
            if receiver is not None and not any(receiver.fullmatch(r) for r in view.receivers):
                continue
            if view.state == "active" and not active:
                continue
            if view.silenced_by and not silenced:
                continue
            if view.inhibited_by and not inhibited:
                continue
            out.append(view)
        out.sort(key=lambda v: (v.alert.starts_at, v.alert.fingerprint))
        return out

    def groups(
        self,
        *,
        matchers: Sequence[Matcher] = (),
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        receiver: re.Pattern[str] | None = None,
    ) -> list[GroupView]:
        now = self.clock()
        out: list[GroupView] = []
        for group in self.dispatcher.groups.values():
            if receiver is not None and not receiver.fullmatch(group.receiver):
                continue
            views = []
            for alert in group.alerts.values():
                if alert.resolved(now) or not matches_all(matchers, alert.labels):
                    continue
                view = self.status(alert, now)
                if view.state == "active" and not active:
                    continue
                if view.silenced_by and not silenced:
                    continue
                if view.inhibited_by and not inhibited:
                    continue
                views.append(view)
            if views:
                out.append(GroupView(dict(group.labels), group.receiver, views))
        return out

    def receivers(self) -> list[str]:
        return list(self._receivers)

    def routes_for(self, labels: dict[str, str]) -> list[Route]:
        return self.dispatcher.routes_for(labels)

    async def put_silence(self, silence: Silence) -> str:
        silence_id = self.silences.put(silence)
        await self._persisted()
        return silence_id

    async def expire_silence(self, silence_id: str) -> None:
        self.silences.expire(silence_id)
        await self._persisted()

    async def send_test(
        self, receiver: str, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Send a test notification to every integration of ``receiver`` through the real
        path (outbox, dispatcher, notifier) and wait for each first attempt's outcome.
        Raises KeyError for an unknown receiver."""
        import secrets

        from pudimd.alerting.notification import AlertInfo, Notification

        if receiver not in self._receivers:
            raise KeyError(receiver)
        if not self._receivers[receiver]:
            return []  # nothing to send (the caller says the receiver has no integrations)
        now = self.clock()
        moment = datetime.fromtimestamp(now, UTC)
        labels = {"alertname": "PudimdTest", "receiver": receiver, "severity": "none"}
        info = AlertInfo(
            status="firing",
            labels=labels,
            annotations={
                "summary": "Test notification from pudimd",
                "description": "pudimd notify test",
            },
            starts_at=moment,
            ends_at=None,
            generator_url="",
            fingerprint=fingerprint(labels),
        )
        notifications = [
            Notification(
                receiver=receiver,
                integration=entry.integration.id,
                group_key=f'pudimd-test:{{receiver="{receiver}"}}',
                idempotency_key=secrets.token_hex(16),
                status="firing",
                group_labels={"alertname": "PudimdTest"},
                common_labels=labels,
                common_annotations=dict(info.annotations),
                external_url=self.dispatcher.external_url,
                alerts=(info,),
                created_at=moment,
            )
            for entry in self._receivers[receiver]
        ]
        await self.outbox.enqueue(notifications, [])
        keys = {n.idempotency_key for n in notifications}
        limit = timeout if timeout is not None else self.outbox.settings.attempt_timeout + 5.0
        with anyio.move_on_after(limit):
            while True:
                rows = [
                    r for r in await self.db.notifications(limit=200) if r.idempotency_key in keys
                ]
                if rows and all(r.state != "pending" or r.attempts for r in rows):
                    break
                await anyio.sleep(0.1)
        rows = [r for r in await self.db.notifications(limit=200) if r.idempotency_key in keys]
        return [
            {
                "integration": r.integration,
                "state": r.state,
                "attempts": r.attempts,
                "error": r.last_error,
            }
            for r in sorted(rows, key=lambda r: r.integration)
        ]

    def _gauges(self) -> dict[str, Any]:
        now = self.clock()
        alerts = {"active": 0, "suppressed": 0}
        # the state the API shows (silenced, inhibited, time-muted or blocked is
        # suppressed); a scan of every alert, cheap next to a scrape interval
        for alert in self._alerts.values():
            if not alert.resolved(now):
                alerts[self.status(alert, now).state] += 1
        states = {"active": 0, "pending": 0, "expired": 0}
        for silence in self.silences.query():
            states[silence.state(now)] += 1
        return {
            "alerts": alerts,
            "silences": states,
            "queue_depth": self.outbox.depth,
            "oldest_pending_age": self.outbox.oldest_age(),
            "escalations": len(self.escalator.active),
        }

    def alert_count(self) -> int:
        return len(self._alerts)

    def all_alerts(self) -> Iterable[Alert]:
        return self._alerts.values()


def _row(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "updated_at": alert.updated_at,
        "generator_url": alert.generator_url,
        "timeout": alert.timeout,
        "blocked_by": alert.blocked_by,
    }


def _target_of(alert: Alert) -> str:
    return alert.labels.get("target") or alert.labels.get("instance") or ""


def _event(
    alert: Alert,
    kind: str,
    at: float,
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
    interface: str | None = None,
) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "at": at,
        "kind": kind,
        "alertname": alert.labels.get("alertname", ""),
        "target": _target_of(alert),
        "actor": actor,
        "interface": interface,
        "detail": detail or {},
    }


def _episode(
    alert: Alert, starts_at: float, ends_at: float | None
) -> list[tuple[str, float, dict[str, Any]]]:
    """The fired (and, with ``ends_at``, resolved) events of an episode of ``alert``."""
    out: list[tuple[str, float, dict[str, Any]]] = [
        ("fired", starts_at, {"labels": alert.labels})
    ]
    if ends_at is not None:
        out.append(("resolved", ends_at, {}))
    return out


def _without_echoes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` without the plain "resolved" of an episode an engineer resolved by hand
    (both say the same)."""
    by_hand = {
        (e["fingerprint"], round(e["at"], 3))
        for e in events
        if e["kind"] == "resolved" and e["actor"] is not None
    }
    return [
        e
        for e in events
        if not (
            e["kind"] == "resolved"
            and e["actor"] is None
            and (e["fingerprint"], round(e["at"], 3)) in by_hand
        )
    ]


def _ack_row(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "acked_by": alert.acked_by,
        "acked_at": alert.acked_at,
        "ack_until": alert.ack_until,
        "assignee": alert.assignee,
    }


def _silence_row(silence: Silence) -> dict[str, Any]:
    return {
        "id": silence.id,
        "matchers": [m.to_api() for m in silence.matchers],
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "updated_at": silence.updated_at,
        "created_by": silence.created_by,
        "comment": silence.comment,
        "expire_on_resolve": silence.expire_on_resolve,
        "muted": silence.muted,
    }
