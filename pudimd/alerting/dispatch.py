"""Aggregation groups and when they notify (Alertmanager's dispatcher, notification log and
dedup stage, event-driven).

A group is (route, values of the route's ``group_by`` labels).  A new group notifies after
``group_wait``; a changed one at most every ``group_interval``; an unchanged firing one again
after ``repeat_interval``.  Nothing runs for a group with nothing to do: each group has a
due time in one heap, set when its alerts change, so holding many alerts costs no CPU.

What each integration was last told (firing and resolved fingerprints) is the notification
log; it is written in the same transaction as the notifications it explains.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
import structlog

from pudimd.alerting.notification import AlertInfo, Notification
from pudimd.alerting.routing import Route, format_labels

if TYPE_CHECKING:
    from pudimd.alerting.alert import Alert
    from pudimd.store.alerting import NflogRow

__all__ = ["Dispatcher", "Group", "Integration"]

log = structlog.get_logger("pudimd.alerting.dispatch")


@dataclass(frozen=True, slots=True)
class Integration:
    """One entry of a receiver (``webhook_configs[0]``)."""

    receiver: str
    id: str
    """``<type>/<index>``."""
    send_resolved: bool
    max_alerts: int = 0


@dataclass(eq=False, slots=True)
class Group:
    route: Route
    key: str
    labels: dict[str, str]
    alerts: dict[str, Alert] = field(default_factory=dict)
    created_at: float = 0.0
    flushed_at: float = 0.0
    """When it last flushed (0: never)."""
    due: float | None = None

    @property
    def receiver(self) -> str:
        return self.route.receiver


_Told = tuple[frozenset[str], frozenset[str], float, frozenset[str]]
"""What an integration was last told of a group: firing, resolved, when, acknowledged."""

Muted = Callable[["Alert", float], bool]
"""Whether an alert is silenced, inhibited or blocked now."""
TimeMuted = Callable[[Route, float], tuple[bool, float | None]]
"""Whether a route is muted by its time intervals now, and when that next changes."""
Enqueue = Callable[[list[Notification], list["NflogRow"]], Any]
OnFlush = Callable[[Group, list["Alert"], bool, float], None]
"""After a group flushed: its firing (unmuted) alerts, whether all are acknowledged."""


class Dispatcher:
    """Routes alerts into groups and flushes due groups into the outbox."""

    def __init__(
        self,
        root: Route,
        integrations: Callable[[str], Sequence[Integration]],
        *,
        muted: Muted,
        time_muted: TimeMuted,
        enqueue: Enqueue,
        clock: Callable[[], float],
        external_url: str = "",
        on_flush: OnFlush | None = None,
    ) -> None:
        self.root = root
        self.integrations = integrations
        self.muted = muted
        self.time_muted = time_muted
        self.enqueue = enqueue
        self.clock = clock
        self.external_url = external_url
        self.on_flush = on_flush
        self.groups: dict[tuple[int, str], Group] = {}
        self.by_key: dict[str, Group] = {}
        self.nflog: dict[tuple[str, str], _Told] = {}
        self._member_of: dict[str, list[Group]] = {}
        self._heap: list[tuple[float, int, Group]] = []
        self._seq = itertools.count()
        self._wake = anyio.Event()

    def reconfigure(self, root: Route, external_url: str) -> None:
        """A new route tree (reload): every group is rebuilt by re-adding the alerts;
        the notification log stays, so nothing already notified is sent again."""
        self.root = root
        self.external_url = external_url
        self.groups.clear()
        self.by_key.clear()
        self._member_of.clear()
        self._heap.clear()
        self._wake.set()

    # -- membership ---------------------------------------------------------------------

    def load_nflog(self, rows: Iterable[NflogRow]) -> None:
        for key, integration, firing, resolved, sent_at, acked in rows:
            self.nflog[(key, integration)] = (
                frozenset(firing),
                frozenset(resolved),
                sent_at,
                frozenset(acked),
            )

    def routes_for(self, labels: dict[str, str]) -> list[Route]:
        return self.root.match(labels)

    def add(self, alert: Alert, now: float) -> None:
        """Put a new alert into its groups (or note that a known one changed)."""
        groups = self._member_of.get(alert.fingerprint)
        if groups is None:
            groups = []
            for route in self.root.match(alert.labels):
                labels = route.group_labels(alert.labels)
                key = f"{route.key}:{format_labels(labels)}"
                group = self.groups.get((route.index, key))
                if group is None:
                    group = Group(route, key, labels, created_at=now)
                    self.groups[(route.index, key)] = group
                    self.by_key[key] = group
                group.alerts[alert.fingerprint] = alert
                groups.append(group)
            self._member_of[alert.fingerprint] = groups
        for group in groups:
            group.alerts[alert.fingerprint] = alert
            self.changed(group, now)

    def touch(self, fingerprints: Iterable[str], now: float) -> None:
        """Alerts changed (resolved, muted, unmuted): their groups are due for a look."""
        for fingerprint in fingerprints:
            for group in self._member_of.get(fingerprint, ()):
                self.changed(group, now)

    def hurry(self, fingerprints: Iterable[str], now: float) -> None:
        """An engineer acted on these alerts (acknowledged, resolved...): their groups
        flush now, without waiting for group_interval, so receivers hear of it at once."""
        for fingerprint in fingerprints:
            for group in self._member_of.get(fingerprint, ()):
                self._schedule(group, now)

    def touch_all(self, now: float) -> None:
        for group in self.groups.values():
            self.changed(group, now)

    def changed(self, group: Group, now: float) -> None:
        if group.flushed_at == 0.0:
            due = group.created_at + group.route.group_wait
        else:
            due = group.flushed_at + group.route.group_interval
        self._schedule(group, max(due, now))

    def _schedule(self, group: Group, due: float) -> None:
        if group.due is not None and group.due <= due:
            return
        group.due = due
        heapq.heappush(self._heap, (due, next(self._seq), group))
        self._wake.set()

    def forget(self, fingerprint: str) -> None:
        """The store dropped an alert (resolved long ago)."""
        for group in self._member_of.pop(fingerprint, ()):
            group.alerts.pop(fingerprint, None)
            if not group.alerts:
                self.groups.pop((group.route.index, group.key), None)
                self.by_key.pop(group.key, None)

    # -- running ------------------------------------------------------------------------

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wake = anyio.Event()
            now = self.clock()
            following = await self.flush_due(now)
            wait = following - now if following is not None else 3600.0
            with anyio.move_on_after(max(wait, 0.0)):
                await self._wake.wait()

    async def flush_due(self, now: float) -> float | None:
        """Flush every group due at ``now``; returns when the next one is due (None: no
        group is).  :meth:`run` calls it as time passes; a simulation on a virtual clock
        calls it itself."""
        while self._heap and self._heap[0][0] <= now:
            due, _, group = heapq.heappop(self._heap)
            if group.due != due:
                continue  # rescheduled earlier, or flushed
            group.due = None
            try:
                await self.flush(group, now)
            except Exception:
                log.exception("flushing a group failed; retrying", group=group.key)
                self._schedule(group, now + 5.0)
        return self._heap[0][0] if self._heap else None

    async def flush(self, group: Group, now: float) -> None:
        """Notify what changed in ``group`` to each integration of its receiver."""
        muted, change_at = self.time_muted(group.route, now)
        if muted:
            if change_at is not None:
                self._schedule(group, change_at)
            return
        firing: list[Alert] = []
        resolved: list[Alert] = []
        next_end: float | None = None
        for alert in group.alerts.values():
            if alert.resolved(now):
                resolved.append(alert)
            elif not self.muted(alert, now):
                firing.append(alert)
                if alert.timeout:
                    next_end = alert.ends_at if next_end is None else min(next_end, alert.ends_at)
        firing_set = frozenset(a.fingerprint for a in firing)
        resolved_set = frozenset(a.fingerprint for a in resolved if not self.muted(a, now))
        acked_set = frozenset(a.fingerprint for a in firing if a.acked(now))
        notifications: list[Notification] = []
        nflog: list[NflogRow] = []
        for integration in self.integrations(group.receiver):
            log_key = (group.key, f"{integration.receiver}/{integration.id}")
            entry = self.nflog.get(log_key)
            if not self._needs_update(
                entry, firing_set, resolved_set, acked_set, integration, group, now
            ):
                continue
            sent_resolved = [a for a in resolved if a.fingerprint in resolved_set]
            shown = firing + (sent_resolved if integration.send_resolved else [])
            if shown:
                acknowledged = bool(firing_set) and acked_set == firing_set
                notifications.append(
                    self.notification(group, integration, shown, now, acknowledged)
                )
            nflog.append(
                (
                    log_key[0],
                    log_key[1],
                    sorted(firing_set),
                    sorted(resolved_set),
                    now,
                    sorted(acked_set),
                )
            )
        if nflog:
            await self.enqueue(notifications, nflog)
            for key, integration_key, fired, gone, sent_at, acked in nflog:
                self.nflog[(key, integration_key)] = (
                    frozenset(fired),
                    frozenset(gone),
                    sent_at,
                    frozenset(acked),
                )
        group.flushed_at = now
        # resolved alerts that were notified (or need not be) leave the group
        for alert in resolved:
            if group.alerts.get(alert.fingerprint) is alert and alert.resolved(now):
                del group.alerts[alert.fingerprint]
                members = self._member_of.get(alert.fingerprint)
                if members is not None and group in members:
                    members.remove(group)
                    if not members:
                        del self._member_of[alert.fingerprint]
        if self.on_flush is not None:
            self.on_flush(group, firing, bool(firing_set) and acked_set == firing_set, now)
        if not group.alerts:
            self.groups.pop((group.route.index, group.key), None)
            self.by_key.pop(group.key, None)
            for integration in self.integrations(group.receiver):
                self.nflog.pop((group.key, f"{integration.receiver}/{integration.id}"), None)
            return
        if firing:
            self._schedule(group, now + group.route.repeat_interval)
        if next_end is not None:
            self._schedule(group, max(next_end, now + group.route.group_interval))

    def _needs_update(
        self,
        entry: _Told | None,
        firing: frozenset[str],
        resolved: frozenset[str],
        acked: frozenset[str],
        integration: Integration,
        group: Group,
        now: float,
    ) -> bool:
        """Alertmanager's dedup rule, and acknowledgements: a change of what is
        acknowledged is news (a follow-up message, PagerDuty's acknowledge event), and a
        group whose firing alerts are all acknowledged is not repeated."""
        if entry is None:
            return bool(firing)
        was_firing, was_resolved, sent_at, was_acked = entry
        if not firing <= was_firing:
            return True
        if not firing:
            return bool(was_firing)
        if integration.send_resolved and not resolved <= was_resolved:
            return True
        if acked != was_acked & firing:
            return True
        if acked == firing:
            return False
        return sent_at <= now - group.route.repeat_interval

    def notification(
        self,
        group: Group,
        integration: Integration,
        alerts: list[Alert],
        now: float,
        acknowledged: bool = False,
    ) -> Notification:
        alerts = sorted(alerts, key=lambda a: (a.starts_at, a.fingerprint))
        truncated = 0
        if integration.max_alerts and len(alerts) > integration.max_alerts:
            truncated = len(alerts) - integration.max_alerts
            alerts = alerts[: integration.max_alerts]
        infos = tuple(
            AlertInfo(
                status="resolved" if a.resolved(now) else "firing",
                labels=a.labels,  # never changed in place: a re-post replaces them
                annotations=a.annotations,
                starts_at=datetime.fromtimestamp(a.starts_at, UTC),
                ends_at=datetime.fromtimestamp(a.ends_at, UTC) if a.resolved(now) else None,
                generator_url=a.generator_url,
                fingerprint=a.fingerprint,
            )
            for a in alerts
        )
        status: Literal["firing", "resolved"] = (
            "firing" if any(i.status == "firing" for i in infos) else "resolved"
        )
        common_labels = _common([i.labels for i in infos])
        common_annotations = _common([i.annotations for i in infos])
        digest = hashlib.sha256()
        for part in (integration.receiver, integration.id, group.key, status):
            digest.update(part.encode() + b"\0")
        for info in infos:
            digest.update(f"{info.fingerprint}:{info.status}:{info.starts_at.timestamp()}".encode())
        if acknowledged:
            digest.update(b"acknowledged")
        digest.update(f"{now:.6f}".encode())  # a repeat of the same content is a new message
        return Notification(
            receiver=integration.receiver,
            integration=integration.id,
            group_key=group.key,
            idempotency_key=digest.hexdigest()[:32],
            status=status,
            group_labels=dict(group.labels),
            common_labels=common_labels,
            common_annotations=common_annotations,
            external_url=self.external_url,
            alerts=infos,
            created_at=datetime.fromtimestamp(now, UTC),
            truncated_alerts=truncated,
            acknowledged=acknowledged,
        )


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    common = dict(maps[0])
    for other in maps[1:]:
        for key in list(common):
            if other.get(key) != common[key]:
                del common[key]
    return common
