"""Silences: matchers and a time window during which matching alerts are muted.

Alertmanager's rules: a silence needs at least one matcher, and at least one matcher that
does not match the empty string (else it would silence every alert); ``endsAt`` must be after
``startsAt`` and not in the past.  Expiring a silence sets its end to now and keeps it (for
history) until ``retention`` after its end.  pudimd's extra: ``expire_on_resolve``, which
expires the silence as soon as every alert it muted has resolved.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from pudimd.alerting.matchers import Matcher, matches_all

__all__ = ["Silence", "SilenceError", "SilenceNotFound", "Silences"]

State = Literal["pending", "active", "expired"]


class SilenceError(ValueError):
    """A silence is invalid; the message says why."""


class SilenceNotFound(KeyError):
    """No silence has that id."""


@dataclass(slots=True)
class Silence:
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    id: str = ""
    updated_at: float = 0.0
    expire_on_resolve: bool = False
    muted: set[str] = field(default_factory=set, compare=False)
    """Fingerprints of the alerts this silence has muted while active (for
    ``expire_on_resolve``)."""

    def state(self, now: float) -> State:
        if now < self.starts_at:
            return "pending"
        if now < self.ends_at:
            return "active"
        return "expired"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.matchers, labels)

    def validate(self, now: float) -> None:
        """Raise SilenceError unless the silence is acceptable as a new or updated one."""
        if not self.matchers:
            raise SilenceError("a silence needs at least one matcher")
        if all(matcher.matches({}) for matcher in self.matchers):
            raise SilenceError(
                "at least one matcher must not match the empty string "
                "(this silence would mute every alert)"
            )
        if self.ends_at <= self.starts_at:
            raise SilenceError("endsAt must be after startsAt")
        if self.ends_at <= now:
            raise SilenceError("endsAt is in the past")
        if not self.created_by.strip():
            raise SilenceError("createdBy is required")
        if not self.comment.strip():
            raise SilenceError("comment is required")


class Silences:
    """Every silence, by id, with Alertmanager's add/update/expire rules.

    ``on_change(silence)`` is called after every change (the store persists it; the
    dispatcher re-evaluates what is muted)."""

    def __init__(
        self,
        *,
        retention: float = 5 * 24 * 3600,
        clock: Callable[[], float],
        on_change: Callable[[Silence], None] = lambda silence: None,
    ) -> None:
        self.retention = retention
        self._clock = clock
        self._on_change = on_change
        self._by_id: dict[str, Silence] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def load(self, silences: Iterable[Silence]) -> None:
        """Put back stored silences (at start-up), without validation or callbacks."""
        for silence in silences:
            self._by_id[silence.id] = silence

    def ids(self) -> set[str]:
        """Ids of every silence kept (expired ones too, until collected)."""
        return set(self._by_id)

    def get(self, silence_id: str) -> Silence:
        try:
            return self._by_id[silence_id]
        except KeyError:
            raise SilenceNotFound(silence_id) from None

    def query(self, matchers: Sequence[Matcher] = ()) -> list[Silence]:
        """Silences whose matchers include every one of ``matchers`` (as Alertmanager's
        ``filter``: a silence matches a filter matcher when one of its own matchers has
        the same name and the filter accepts its value)."""
        return [silence for silence in self._by_id.values() if _filter_matches(matchers, silence)]

    def put(self, silence: Silence) -> str:
        """Create ``silence`` (no id) or update the one with its id.  Returns the id of the
        silence now in force: an update that cannot be made in place (an active silence
        whose matchers or start change) expires the old one and creates a new one, as
        Alertmanager does.  Raises SilenceError or SilenceNotFound."""
        now = self._clock()
        if silence.starts_at < now and not silence.id:
            silence.starts_at = now
        silence.validate(now)
        if silence.id:
            old = self.get(silence.id)
            if _can_update_in_place(old, silence, now):
                silence.muted = old.muted
                silence.updated_at = now
                self._by_id[silence.id] = silence
                self._on_change(silence)
                return silence.id
            if old.state(now) != "expired":
                self.expire(old.id)
            silence = replace(silence, id="", muted=set())
            silence.starts_at = max(silence.starts_at, now)
        silence.id = str(uuid.uuid4())
        silence.updated_at = now
        self._by_id[silence.id] = silence
        self._on_change(silence)
        return silence.id

    def expire(self, silence_id: str) -> Silence:
        """End a silence now (it is kept, expired).  Expiring an expired one is an error,
        as in Alertmanager."""
        silence = self.get(silence_id)
        now = self._clock()
        if silence.state(now) == "expired":
            raise SilenceError(f"silence {silence_id} is already expired")
        if silence.state(now) == "pending":
            silence.starts_at = now
        silence.ends_at = now
        silence.updated_at = now
        self._on_change(silence)
        return silence

    def muting(self, labels: Mapping[str, str], now: float) -> list[str]:
        """Ids of the active silences matching ``labels``."""
        return [
            silence.id
            for silence in self._by_id.values()
            if silence.starts_at <= now < silence.ends_at and silence.matches(labels)
        ]

    def active(self, now: float) -> list[Silence]:
        return [s for s in self._by_id.values() if s.starts_at <= now < s.ends_at]

    def next_change(self, now: float) -> float | None:
        """The next time a silence starts or ends (for the dispatcher's wake-up)."""
        times = [
            moment
            for silence in self._by_id.values()
            for moment in (silence.starts_at, silence.ends_at)
            if moment > now
        ]
        return min(times, default=None)

    def collect(self, now: float) -> list[str]:
        """Forget silences expired for longer than the retention; returns their ids."""
        gone = [
            sid
            for sid, s in self._by_id.items()
            if s.ends_at <= now and now - s.ends_at > self.retention
        ]
        for sid in gone:
            del self._by_id[sid]
        return gone


def _can_update_in_place(old: Silence, new: Silence, now: float) -> bool:
    state = old.state(now)
    if state == "expired":
        return False
    if state == "pending":
        return True
    return old.matchers == new.matchers and old.starts_at == new.starts_at


def _filter_matches(matchers: Sequence[Matcher], silence: Silence) -> bool:
    """Alertmanager's silence filter: each filter matcher is applied to the silence's
    matchers read as labels (name -> value); an empty-valued filter matcher passes when
    the name is absent (``=``, ``=~``) or present (``!=``, ``!~``)."""
    own = {matcher.name: matcher.value for matcher in silence.matchers}
    for wanted in matchers:
        present = wanted.name in own
        if wanted.value == "" and present == (wanted.type in ("!=", "!~")):
            continue
        if not wanted.matches({wanted.name: own.get(wanted.name, "")}):
            return False
    return True
