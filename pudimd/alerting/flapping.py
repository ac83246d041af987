"""Flap detection for the rule engine: too many state changes within a window.

A (rule, target) pair whose condition changes more than ``max_changes`` times within
``window`` seconds is flapping; it settles once the changes within the window drop back to
``max_changes`` or fewer.  Only the latest ``max_changes + 1`` changes matter for that
question, so that is all :class:`FlapDetector` keeps.
"""

from __future__ import annotations

from collections import deque

__all__ = ["FlapDetector"]


class FlapDetector:
    """The recent state changes of one (rule, target) pair."""

    __slots__ = ("_changes", "flapping", "max_changes", "window")

    def __init__(self, window: float, max_changes: int) -> None:
        if window <= 0 or max_changes < 1:
            raise ValueError(
                f"expected window > 0 and max_changes >= 1, got {window!r}, {max_changes!r}"
            )
        self.window = window
        self.max_changes = max_changes
        self.flapping = False
        self._changes: deque[float] = deque(maxlen=max_changes + 1)

    def __repr__(self) -> str:
        return (
            f"FlapDetector(window={self.window!r}, max_changes={self.max_changes!r}, "
            f"flapping={self.flapping!r}, changes={list(self._changes)!r})"
        )

    def _trim(self, now: float) -> int:
        changes, cutoff = self._changes, now - self.window
        while changes and changes[0] < cutoff:
            changes.popleft()
        return len(changes)

    def changes(self, now: float) -> int:
        """How many of the kept changes fall within the window ending at ``now`` (at most
        ``max_changes + 1``)."""
        return self._trim(now)

    def change(self, now: float) -> bool:
        """Record a state change at ``now``; return True when it starts a flapping period."""
        self._changes.append(now)
        if not self.flapping and self._trim(now) > self.max_changes:
            self.flapping = True
            return True
        return False

    def settle(self, now: float) -> bool:
        """Return True when a flapping pair has settled at ``now`` (it then no longer
        flaps)."""
        if self.flapping and self._trim(now) <= self.max_changes:
            self.flapping = False
            return True
        return False
