"""Escalation policies: who is paged, in what order, until a group of alerts is
acknowledged or resolved (PagerDuty's model).

A policy (``oncall.escalation_policies``) has ordered levels; a route names one with
``escalation_policy`` (inherited by its children).  When a group of that route notifies
firing alerts that are not all acknowledged, its escalation starts: level 1's targets are
notified at once, and each level waits its ``delay`` for an acknowledgement before the next
level is notified.  After the last level the policy starts over ``repeat`` more times.  An
acknowledgement of every firing alert, or their resolution, stops it.  A target is a
receiver, a user (their ``receiver``), a team (each member's) or a schedule (whoever is on
call at that moment).

Escalations are durable: each one's next level and when it is due are written to the
database, so after a restart the next level fires at the time it would have (at once, if
that time passed while the daemon was down).  Holding many escalations costs nothing but
one timer: due times sit in one heap.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

import anyio
import structlog
from pydantic import Field, model_validator

from pudimd.durations import PositiveDuration
from pudimd.settings import StrictModel

if TYPE_CHECKING:
    from pudimd.alerting.oncall import OncallConfig

__all__ = [
    "Escalation",
    "EscalationLevel",
    "EscalationPolicy",
    "EscalationTarget",
    "Escalator",
    "escalation_id",
    "escalation_problems",
]

log = structlog.get_logger("pudimd.alerting.escalation")

_KINDS = ("receiver", "user", "team", "schedule")


class EscalationTarget(StrictModel):
    """Exactly one of a receiver, a user, a team or a schedule."""

    receiver: str | None = Field(None, description="A receiver's name (alerting.receivers)")
    user: str | None = Field(None, description="A user's name: their receiver is notified")
    team: str | None = Field(None, description="A team's name: each member's receiver")
    schedule: str | None = Field(None, description="A schedule's name: whoever is on call")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [kind for kind in _KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                "expected exactly one of receiver, user, team or schedule"
                + (f", got {' and '.join(given)}" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in _KINDS if getattr(self, kind) is not None)

    @property
    def name(self) -> str:
        return str(getattr(self, self.kind))

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class EscalationLevel(StrictModel):
    targets: list[EscalationTarget] = Field(
        min_length=1, description="Who this level notifies (receiver, user, team or schedule)"
    )
    delay: PositiveDuration = Field(
        timedelta(minutes=30),
        description="How long this level waits for an acknowledgement before the next level "
        "(or the repeat) is notified; a duration",
    )


class EscalationPolicy(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Named by routes")
    levels: list[EscalationLevel] = Field(min_length=1, description="In order")
    repeat: int = Field(
        0, ge=0, le=10, description="Start over from the first level this many more times"
    )


def escalation_problems(
    oncall: OncallConfig, receivers: Sequence[str], route_policies: Sequence[tuple[list[Any], str]]
) -> list[tuple[list[str | int], str]]:
    """(path, reason) for each duplicate policy, unknown target, and route naming an
    unknown policy (``route_policies``: (path under ``alerting.route``, policy name)).  Paths
    of the first kind are under ``oncall``, of the last under ``alerting.route``."""
    problems: list[tuple[list[str | int], str]] = []
    known = {
        "receiver": set(receivers),
        "user": {u.name for u in oncall.users},
        "team": {t.name for t in oncall.teams},
        "schedule": {s.name for s in oncall.schedules},
    }
    seen: set[str] = set()
    for p, policy in enumerate(oncall.escalation_policies):
        if policy.name in seen:
            problems.append(
                (["oncall", "escalation_policies", p, "name"], f"duplicate {policy.name!r}")
            )
        seen.add(policy.name)
        for lv, level in enumerate(policy.levels):
            for t, target in enumerate(level.targets):
                if target.name not in known[target.kind]:
                    where: list[str | int] = [
                        "oncall", "escalation_policies", p, "levels", lv, "targets", t,
                        target.kind,
                    ]  # fmt: skip
                    problems.append((where, f"unknown {target.kind} {target.name!r}"))
    for path, name in route_policies:
        if name not in seen:
            problems.append(
                (
                    ["alerting", "route", *path, "escalation_policy"],
                    f"unknown escalation policy {name!r} (oncall.escalation_policies: "
                    f"{', '.join(sorted(seen)) or 'none'})",
                )
            )
    return problems


def escalation_id(group_key: str) -> str:
    """A short stable id of the escalation of a group (its key has quotes and braces)."""
    return hashlib.sha256(group_key.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Escalation:
    id: str
    group_key: str
    policy: str
    started_at: float
    level: int
    """The next level to notify (0-based)."""
    cycle: int
    """How many times the policy started over."""
    next_at: float | None
    """When ``level`` is notified (None: every level and repeat is done)."""

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group_key": self.group_key,
            "policy": self.policy,
            "started_at": self.started_at,
            "level": self.level,
            "cycle": self.cycle,
            "next_at": self.next_at,
        }


Notify = Callable[[Escalation, int, Sequence[EscalationTarget], float], Awaitable[list[str]]]
"""Notify a level's targets for an escalation; returns the receivers reached."""
Persist = Callable[[Sequence[dict[str, Any]], Sequence[str]], Awaitable[None]]
"""Write escalations (rows) and delete the ids given."""


class Escalator:
    """Runs escalations: :meth:`update` after every flush of a group says whether it
    should escalate; :meth:`run` fires the levels when due."""

    def __init__(
        self,
        notify: Notify,
        persist: Persist,
        *,
        clock: Callable[[], float] = time.time,
        on_fire: Callable[[Escalation, float], None] | None = None,
    ) -> None:
        self._notify = notify
        self._persist = persist
        self._clock = clock
        self._on_fire = on_fire
        self.policies: dict[str, EscalationPolicy] = {}
        self.active: dict[str, Escalation] = {}
        self._heap: list[tuple[float, str]] = []
        self._wake = anyio.Event()
        self._dirty: dict[str, Escalation] = {}
        self._gone: set[str] = set()

    def configure(self, policies: Sequence[EscalationPolicy]) -> None:
        self.policies = {policy.name: policy for policy in policies}

    def load(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            escalation = Escalation(**row)
            self.active[escalation.id] = escalation
            if escalation.next_at is not None:
                heapq.heappush(self._heap, (escalation.next_at, escalation.id))
        self._wake.set()

    def update(self, group_key: str, policy: str | None, escalate: bool, now: float) -> str | None:
        """After a group flushed: ``escalate`` is whether it has firing alerts not all
        acknowledged.  Starts or stops its escalation; returns "started", "stopped" or
        None."""
        eid = escalation_id(group_key)
        current = self.active.get(eid)
        if escalate and current is None and policy is not None and policy in self.policies:
            escalation = Escalation(eid, group_key, policy, now, 0, 0, now)
            self.active[eid] = escalation
            self._dirty[eid] = escalation
            self._gone.discard(eid)
            heapq.heappush(self._heap, (now, eid))
            self._wake.set()
            return "started"
        if not escalate and current is not None:
            self.stop(eid)
            return "stopped"
        return None

    def stop(self, eid: str) -> Escalation | None:
        escalation = self.active.pop(eid, None)
        if escalation is not None:
            self._dirty.pop(eid, None)
            self._gone.add(eid)
            self._wake.set()
        return escalation

    def escalate_now(self, eid: str) -> Escalation:
        """Notify the next level now (``pudimd``'s "escalate now")."""
        escalation = self.active[eid]
        now = self._clock()
        if escalation.next_at is None:  # exhausted: start the policy over
            escalation.level, escalation.cycle = 0, escalation.cycle + 1
        escalation.next_at = now
        heapq.heappush(self._heap, (now, eid))
        self._wake.set()
        return escalation

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await self._loop()
        finally:
            with anyio.CancelScope(shield=True):  # a stop keeps where each one is
                await self._flush()

    async def _loop(self) -> None:
        while True:
            self._wake = anyio.Event()
            now = self._clock()
            following = await self.fire_due(now)
            await self._flush()
            wait = following - now if following is not None else 3600.0
            with anyio.move_on_after(max(wait, 0.0)):
                await self._wake.wait()

    async def fire_due(self, now: float) -> float | None:
        """Notify every level due at ``now``; returns when the next one is due (None:
        none is).  :meth:`run` calls it as time passes; a simulation calls it itself."""
        while self._heap and self._heap[0][0] <= now:
            due, eid = heapq.heappop(self._heap)
            escalation = self.active.get(eid)
            if escalation is None or escalation.next_at != due:
                continue
            try:
                await self._fire(escalation, now)
            except Exception:
                log.exception("escalation failed", escalation=eid, policy=escalation.policy)
        return self._heap[0][0] if self._heap else None

    async def _fire(self, escalation: Escalation, now: float) -> None:
        policy = self.policies.get(escalation.policy)
        if policy is None:  # the policy was removed by a reload
            self.stop(escalation.id)
            return
        level = min(escalation.level, len(policy.levels) - 1)
        if self._on_fire is not None and escalation.next_at is not None:
            self._on_fire(escalation, now - escalation.next_at)
        reached = await self._notify(escalation, level, policy.levels[level].targets, now)
        log.info(
            "escalated",
            escalation=escalation.id,
            policy=policy.name,
            level=level + 1,
            cycle=escalation.cycle,
            receivers=reached,
        )
        if escalation.id not in self.active:
            return  # notify found the group gone and stopped it
        delay = policy.levels[level].delay.total_seconds()
        if level + 1 < len(policy.levels):
            escalation.level = level + 1
        elif escalation.cycle < policy.repeat:
            escalation.level, escalation.cycle = 0, escalation.cycle + 1
        else:
            escalation.level, escalation.next_at = level + 1, None
            self._dirty[escalation.id] = escalation
            return
        escalation.next_at = now + delay
        heapq.heappush(self._heap, (escalation.next_at, escalation.id))
        self._dirty[escalation.id] = escalation

    async def _flush(self) -> None:
        if not self._dirty and not self._gone:
            return
        dirty, self._dirty = self._dirty, {}
        gone, self._gone = self._gone, set()
        try:
            await self._persist([e.row() for e in dirty.values()], sorted(gone))
        except BaseException as exc:  # cancelled too: what was not written stays to write
            self._dirty = {**dirty, **self._dirty}
            self._gone |= gone - set(self._dirty)
            if not isinstance(exc, Exception):
                raise
            log.exception("cannot write escalations; retrying")
            await anyio.sleep(1.0)
            self._wake.set()
