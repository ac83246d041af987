"""The durable notification outbox and its delivery loop.

Every notification is written to the database (with its idempotency key, in the same
transaction as the notification log entry that says it was sent) before any attempt to
deliver it.  The delivery loop then sends each with per-receiver concurrency, retries
retryable failures with exponential backoff and full jitter, gives up on a notification
older than ``max_age`` (recorded as ``expired`` and counted: never dropped silently), and
records every attempt with its outcome.  After a restart, pending notifications are loaded
and resumed with the same idempotency key.

A pending notification for the same integration and group as a newer one is
``superseded``: each notification carries the group's whole state, so the newer one says
everything the older one would have (recorded and counted too).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from pudimd.alerting.notification import DeliveryError, Notification
from pudimd.store.alerting import AlertingDB, NflogRow, OutboxRow

if TYPE_CHECKING:
    from pudimd.alerting.metrics import AlertingMetrics
    from pudimd.contracts import Notifier

__all__ = ["Outbox", "OutboxSettings"]

log = structlog.get_logger("pudimd.alerting.outbox")


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    max_age: float = 24 * 3600.0
    """Seconds after which an undelivered notification is given up (``expired``)."""
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    attempt_timeout: float = 30.0
    concurrency: int = 4
    """Deliveries running at once per receiver."""


Lookup = Callable[[str, str], "Notifier | None"]
"""(receiver, integration) -> the notifier instance, or None when not configured."""


class Outbox:
    """See the module docstring.  ``lookup`` finds the notifier for a receiver's integration
    (``webhook/0``)."""

    def __init__(
        self,
        db: AlertingDB,
        lookup: Lookup,
        metrics: AlertingMetrics,
        *,
        settings: OutboxSettings | None = None,
        clock: Callable[[], float] = time.time,
        plugin_of: Callable[[str], str] = lambda integration: integration.split("/")[0],
        on_plugin_error: Callable[[str, str, BaseException], None] | None = None,
    ) -> None:
        self.db = db
        self.lookup = lookup
        self.metrics = metrics
        self.settings = settings or OutboxSettings()
        self._clock = clock
        self._plugin_of = plugin_of
        self._on_plugin_error = on_plugin_error
        self._pending: dict[int, OutboxRow] = {}
        self._in_flight: set[int] = set()
        self._running: dict[str, int] = {}
        self._latest: dict[tuple[str, str, str], int] = {}
        self._wake = anyio.Event()

    # -- state --------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return len(self._pending)

    def oldest_age(self) -> float:
        if not self._pending:
            return 0.0
        return max(0.0, self._clock() - min(row.created_at for row in self._pending.values()))

    def resume(self, rows: Sequence[OutboxRow]) -> None:
        """Put back the notifications still pending at the last stop."""
        for row in rows:
            self._pending[row.id] = row
            self._latest[(row.receiver, row.integration, row.group_key)] = row.id
        self._wake.set()

    # -- enqueue ------------------------------------------------------------------------

    async def enqueue(
        self, notifications: Sequence[Notification], nflog: Sequence[NflogRow]
    ) -> None:
        """Write ``notifications`` and the ``nflog`` entries in one transaction; once it
        returns they will be delivered (or recorded as failed or expired)."""
        now = self._clock()
        rows = [
            OutboxRow(
                id=0,
                idempotency_key=n.idempotency_key,
                receiver=n.receiver,
                integration=n.integration,
                group_key=n.group_key,
                payload=n.to_json(),
                state="pending",
                created_at=now,
                next_attempt_at=now,
                attempts=0,
            )
            for n in notifications
        ]
        superseded = []
        for row in rows:
            older = self._latest.get((row.receiver, row.integration, row.group_key))
            if older is not None and older in self._pending and older not in self._in_flight:
                superseded.append(older)
        ids = await self.db.enqueue(rows, nflog, superseded)
        for older in superseded:
            old = self._pending.pop(older, None)
            if old is not None:
                self._count(old, "superseded")
        for row, notification, row_id in zip(rows, notifications, ids, strict=True):
            row.id = row_id
            row.payload = {}  # in the database; the live notification is delivered
            # the dispatcher made it for the outbox alone: give it its row id in place
            object.__setattr__(notification, "id", row_id)
            row.live = notification
            self._pending[row_id] = row
            self._latest[(row.receiver, row.integration, row.group_key)] = row_id
        self._wake.set()

    # -- delivery -----------------------------------------------------------------------

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled."""
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                self._wake = anyio.Event()
                now = self._clock()
                wait = 60.0
                for row in sorted(self._pending.values(), key=lambda r: r.id):
                    if row.id in self._in_flight:
                        continue
                    if row.next_attempt_at > now:
                        wait = min(wait, row.next_attempt_at - now)
                        continue
                    if self._running.get(row.receiver, 0) >= self.settings.concurrency:
                        continue
                    self._in_flight.add(row.id)
                    self._running[row.receiver] = self._running.get(row.receiver, 0) + 1
                    tg.start_soon(self._deliver, row)
                with anyio.move_on_after(max(wait, 0.001)):
                    await self._wake.wait()

    async def _deliver(self, row: OutboxRow) -> None:
        try:
            await self._attempt(row)
        finally:
            self._in_flight.discard(row.id)
            self._running[row.receiver] -= 1
            self._wake.set()

    async def _attempt(self, row: OutboxRow) -> None:
        now = self._clock()
        if now - row.created_at > self.settings.max_age:
            await self._finish(row, "expired", f"not delivered within {self.settings.max_age:g}s")
            return
        notifier = self.lookup(row.receiver, row.integration)
        if notifier is None:
            await self._finish(
                row, "failed", f"receiver {row.receiver!r} has no integration {row.integration!r}"
            )
            return
        if row.live is not None:
            notification = row.live
            notification.template_errors.clear()  # from an earlier attempt
        else:
            notification = Notification.from_json({**row.payload, "id": row.id})
        started = time.perf_counter()
        outcome, detail = "delivered", None
        retry_after: float | None = None
        timeout = self.settings.attempt_timeout
        try:
            with anyio.fail_after(timeout):
                detail = await notifier.send(notification, timeout)
        except DeliveryError as exc:
            outcome = "retry" if exc.retryable else "failed"
            detail, retry_after = exc.message, exc.retry_after
        except TimeoutError:
            outcome, detail = "retry", f"timeout after {timeout:g}s"
        except Exception as exc:
            outcome, detail = "retry", f"{type(exc).__name__}: {exc}"
            if self._on_plugin_error is not None:
                self._on_plugin_error(self._plugin_of(row.integration), "send", exc)
        duration = time.perf_counter() - started
        for error in notification.template_errors:
            self.metrics.template_errors.labels(row.receiver, row.integration).inc()
            log.warning(
                "template failed; the notifier's default was used",
                receiver=row.receiver,
                integration=row.integration,
                error=error,
            )
        row.attempts += 1
        end = self._clock()
        if outcome == "delivered":
            row.state, row.finished_at, row.last_error = "delivered", end, None
        elif outcome == "failed":
            row.state, row.finished_at, row.last_error = "failed", end, detail
        else:
            row.last_error = detail
            delay = self._backoff(row.attempts)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.settings.backoff_max))
            row.next_attempt_at = end + delay
            if row.next_attempt_at - row.created_at > self.settings.max_age:
                row.state, row.finished_at = "expired", end
                outcome = "expired"
        level = log.info if outcome == "delivered" else log.warning
        level(
            "notification " + outcome,
            receiver=row.receiver,
            integration=row.integration,
            group=row.group_key,
            attempt=row.attempts,
            seconds=round(duration, 3),
            detail=detail,
        )
        self.metrics.notification_latency_sum.labels(row.receiver, row.integration).inc(duration)
        with anyio.CancelScope(shield=True):
            await self._persist_attempt(row, now, duration, outcome, detail)
        self._count(row, outcome)
        if row.state != "pending":
            self._pending.pop(row.id, None)

    async def _persist_attempt(
        self, row: OutboxRow, ts: float, duration: float, outcome: str, detail: str | None
    ) -> None:
        for attempt in range(5):
            try:
                await self.db.record_attempt(
                    row, ts=ts, duration=duration, outcome=outcome, detail=detail
                )
                return
            except Exception as exc:
                log.error("cannot record a delivery attempt", error=str(exc), attempt=attempt + 1)
                await anyio.sleep(0.5 * 2**attempt)

    async def _finish(self, row: OutboxRow, state: str, reason: str) -> None:
        log.error(
            "notification " + state,
            receiver=row.receiver,
            integration=row.integration,
            group=row.group_key,
            reason=reason,
        )
        row.state, row.finished_at, row.last_error = state, self._clock(), reason
        with anyio.CancelScope(shield=True):
            await self.db.finish([row.id], state, row.finished_at, reason)
        self._pending.pop(row.id, None)
        self._count(row, state)

    def _backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter (AWS's recommendation): uniform in
        [initial, min(max, initial * 2**(attempts-1))]."""
        ceiling = min(
            self.settings.backoff_max, self.settings.backoff_initial * 2 ** (attempts - 1)
        )
        return random.uniform(
            self.settings.backoff_initial, max(ceiling, self.settings.backoff_initial)
        )

    def _count(self, row: OutboxRow, outcome: str) -> None:
        self.metrics.notifications.labels(row.receiver, row.integration, outcome).inc()
