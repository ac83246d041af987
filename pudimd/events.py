"""The in-process event bus behind ``/api/v1/events``: check results, alert state changes
and config reloads, fanned out to the live streams (Server-Sent Events and WebSocket).

Publishing is synchronous and cheap, called on the event loop for every result: while
nobody subscribes (and for :data:`LINGER` seconds after the last subscriber left, so a
client that reconnects can replay what it missed) it only counts the event's id.  With
subscribers, an event is encoded to JSON once, kept in a small ring buffer for replay
(``Last-Event-ID``), and appended to the bounded queue of each subscriber whose filter it
passes.  A queue that is full drops its oldest event and counts it; the stream then tells
its client with a ``dropped`` event.

Event ids increase monotonically, across restarts too: they start at the daemon's start
time in microseconds, and a process publishes far fewer than a million events a second.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import orjson

if TYPE_CHECKING:
    from pudimd.alerting.alert import Alert
    from pudimd.results import ProbeResult

__all__ = [
    "EVENT_TYPES",
    "LINGER",
    "Event",
    "EventBus",
    "Filter",
    "LastReload",
    "Subscription",
    "event_time",
]

EVENT_TYPES = frozenset({"result", "alert", "reload"})
"""The event types a filter may name."""
LINGER = 300.0
"""Seconds the bus keeps buffering events for replay after its last subscriber left."""
REPLAY_SIZE = 4096
"""Events the ring buffer keeps for ``Last-Event-ID`` replay."""
QUEUE_SIZE = 4096
"""Events a subscriber's queue holds before it drops the oldest."""


def event_time(seconds: float) -> str:
    """Unix seconds as events write a time: RFC 3339, UTC, milliseconds."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


class Event(NamedTuple):
    """One published event: its id, type and target (None: not about a target) for the
    filters, and its JSON (with ``id`` and ``type``), encoded once for every stream."""

    id: int
    type: str
    target: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Filter:
    """Which events a subscriber gets: ``types`` (None: all) and ``targets`` (None: all;
    events not about a target, such as reloads, pass it)."""

    types: frozenset[str] | None = None
    targets: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.types is not None and not self.types <= EVENT_TYPES:
            unknown = sorted(self.types - EVENT_TYPES)
            raise ValueError(
                f"unknown event type {unknown[0]!r}: expected {', '.join(sorted(EVENT_TYPES))}"
            )

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes this filter."""
        if self.types is not None and event.type not in self.types:
            return False
        return self.targets is None or event.target is None or event.target in self.targets

    def as_json(self) -> dict[str, Any]:
        return {
            "types": None if self.types is None else sorted(self.types),
            "targets": None if self.targets is None else sorted(self.targets),
        }


@dataclass(frozen=True, slots=True)
class LastReload:
    """The outcome of the last config load (the start counts as one)."""

    at: float
    ok: bool
    source: str
    error: str | None = None
    version: int | None = None


class Subscription:
    """One stream's queue.  Run the stream's loop inside :attr:`scope`: the bus cancels it
    when it closes (the daemon stops), so no stream holds up the stop."""

    def __init__(self, bus: EventBus, filter: Filter, size: int) -> None:
        self.bus = bus
        self.filter = filter
        self.size = size
        self.scope = anyio.CancelScope()
        self.dropped = 0
        """Events dropped from this queue since it was made."""
        self._unreported = 0
        self._queue: deque[Event] = deque()
        self._waiter: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"Subscription({self.filter!r}, queued={len(self._queue)}, dropped={self.dropped})"

    def put(self, event: Event) -> None:
        """Queue ``event``, dropping the oldest queued one when full."""
        queue = self._queue
        if len(queue) >= self.size:
            queue.popleft()
            self.dropped += 1
            self._unreported += 1
        queue.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def note_missed(self, count: int) -> None:
        """Count ``count`` events the stream missed before it started (not replayable)."""
        self._unreported += count
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def next(self, timeout: float) -> tuple[list[Event], int]:
        """The events queued (waiting up to ``timeout`` seconds for one) and how many were
        dropped since the last call; ``([], 0)`` when the wait timed out."""
        if not self._queue and not self._unreported:
            waiter = self._waiter = anyio.Event()
            try:
                with anyio.move_on_after(timeout):
                    await waiter.wait()
            finally:
                self._waiter = None
        events = list(self._queue)
        self._queue.clear()
        dropped, self._unreported = self._unreported, 0
        return events, dropped

    def close(self) -> None:
        """Unsubscribe and cancel :attr:`scope`."""
        self.bus.unsubscribe(self)
        self.scope.cancel()


class EventBus:
    """See the module docstring.  ``replay``: events kept for ``Last-Event-ID``;
    ``queue_size``: each subscriber's queue; ``linger``: seconds buffering goes on after
    the last subscriber left."""

    def __init__(
        self,
        *,
        replay: int = REPLAY_SIZE,
        queue_size: int = QUEUE_SIZE,
        linger: float = LINGER,
    ) -> None:
        self.first_id = int(time.time() * 1_000_000)
        self.last_id = self.first_id
        """The id of the last event published (counted even while nobody listens)."""
        self.published = 0
        """Events encoded and delivered (published while someone listened)."""
        self.last_reload: LastReload | None = None
        self.queue_size = queue_size
        self.linger = linger
        self._ring: deque[Event] = deque(maxlen=replay)
        self._subs: set[Subscription] = set()
        self._linger_until = 0.0
        self._closed = False

    def __repr__(self) -> str:
        return f"EventBus(subscribers={len(self._subs)}, last_id={self.last_id})"

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def dropped(self) -> int:
        """Events dropped by the current subscribers' queues."""
        return sum(sub.dropped for sub in self._subs)

    # -- publishing ------------------------------------------------------------------

    def _listening(self) -> bool:
        if self._subs:
            return True
        if self._linger_until:
            if time.monotonic() < self._linger_until:
                return True
            self._linger_until = 0.0
            self._ring.clear()  # what the ring holds stays contiguous
        return False

    def publish(self, type: str, payload: dict[str, Any], target: str | None = None) -> int:
        """Publish an event of ``type`` (``payload`` gets ``id`` and ``type``); returns
        its id.  Only counts the id while nobody listens."""
        self.last_id += 1
        if not self._listening():
            return self.last_id
        return self._deliver(type, payload, target)

    def _deliver(self, type: str, payload: dict[str, Any], target: str | None) -> int:
        eid = self.last_id
        data = orjson.dumps({"id": eid, "type": type, **payload})
        event = Event(eid, type, target, data)
        self._ring.append(event)
        self.published += 1
        for sub in self._subs:  # Filter.matches and Subscription.put, inlined: the hot path
            types, targets = sub.filter.types, sub.filter.targets
            if types is not None and type not in types:
                continue
            if targets is not None and target is not None and target not in targets:
                continue
            queue = sub._queue
            if len(queue) >= sub.size:
                queue.popleft()
                sub.dropped += 1
                sub._unreported += 1
            queue.append(event)
            waiter = sub._waiter
            if waiter is not None:
                sub._waiter = None
                waiter.set()
        return eid

    def publish_result(self, target: str, probe: str, result: ProbeResult) -> None:
        """A check of ``target`` completed.  ``at`` is when (the check's start plus its
        duration), ``started`` when it started."""
        self.last_id += 1
        if not self._listening():
            return
        started = result.timestamp or time.time()
        duration = result.duration if math.isfinite(result.duration) else 0.0
        payload = {
            "target": target,
            "probe": probe,
            "success": result.success,
            "degraded": result.degraded,
            "message": result.message,
            "status": result.status,
            "duration": duration,
            "started": event_time(started),
            "at": event_time(started + max(duration, 0.0)),
        }
        self._deliver("result", payload, target)

    def publish_alert(self, alert: Alert, state: str, at: float) -> None:
        """The alert engine's ``on_change``: ``alert`` changed to ``state`` (``firing``,
        ``resolved``, ``acknowledged``, ``escalated``...) at ``at``."""
        self.last_id += 1
        if not self._listening():
            return
        target = alert.labels.get("target") or alert.labels.get("instance") or None
        payload = {
            "fingerprint": alert.fingerprint,
            "alertname": alert.labels.get("alertname", ""),
            "state": state,
            "target": target,
            "labels": alert.labels,
            "at": event_time(at),
        }
        self._deliver("alert", payload, target)

    def reloaded(
        self,
        ok: bool,
        *,
        source: str,
        error: str | None = None,
        version: int | None = None,
    ) -> None:
        """Record the outcome of a config load (``/api/v1/status`` shows it) and publish
        a ``reload`` event."""
        now = time.time()
        self.last_reload = LastReload(now, ok, source, error, version)
        payload: dict[str, Any] = {
            "ok": ok,
            "source": source,
            "version": version,
            "at": event_time(now),
        }
        if error is not None:
            payload["error"] = error
        self.publish("reload", payload)

    # -- subscribing -----------------------------------------------------------------

    def subscribe(self, filter: Filter, last_event_id: int | None = None) -> Subscription:
        """A new subscription.  With ``last_event_id``, the events after it that the ring
        still holds are queued first; those it no longer holds are reported as dropped.
        Raises RuntimeError once the bus is closed."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        self._listening()  # clears a ring left from before a quiet spell
        sub = Subscription(self, filter, self.queue_size)
        if last_event_id is not None and last_event_id < self.last_id:
            oldest = self._ring[0].id if self._ring else self.last_id + 1
            if last_event_id + 1 < oldest:
                # missed ids are known within this process; across a restart, not counted
                since = max(last_event_id, self.first_id)
                sub.note_missed(max(oldest - since - 1, 1))
            for event in self._ring:
                if event.id > last_event_id and filter.matches(event):
                    sub.put(event)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub`` (a no-op when it is gone already)."""
        if sub in self._subs:
            self._subs.discard(sub)
            if not self._subs:
                self._linger_until = time.monotonic() + self.linger

    def close(self) -> None:
        """End every subscription (the daemon is stopping); no new one is accepted."""
        self._closed = True
        for sub in list(self._subs):
            sub.close()


def parse_filter(types: Iterable[str] | None, targets: Iterable[str] | None) -> Filter:
    """A filter from type and target names (empty names ignored; nothing given: all).
    Raises ValueError for an unknown type."""
    kinds = None if types is None else frozenset(t.strip() for t in types if t.strip())
    names = None if targets is None else frozenset(t.strip() for t in targets if t.strip())
    return Filter(kinds or None, names or None)
