"""How fast alerts are answered: mean and median time to acknowledge (MTTA) and to resolve
(MTTR), per receiver and per team, computed from the alerts' timelines (``alert_events``).

Pure functions over timeline events (``fingerprint``, ``at``, ``kind``, ``detail``, and
``id`` for those read from the database), as :meth:`Alerting.timeline
<pudimd.alerting.engine.Alerting.timeline>` returns them: the events written, and the
fired and resolved events of the episodes the engine still holds.  Also: which events
concern the alerts routed to a receiver (:func:`routed_events`).

An **episode** is one firing of an alert: from its ``fired`` event to the next ``resolved``
one.  Within an episode:

- time to acknowledge is from ``fired`` to the first ``acknowledged`` or ``snoozed`` (a
  snooze is an acknowledgement that ends); an episode never acknowledged counts in
  ``unacknowledged`` and not in MTTA;
- time to resolve is from ``fired`` to ``resolved`` (however it resolved: the source, the
  resolve timeout, or by hand); an episode not resolved yet counts in ``open`` and not in
  MTTR;
- its assignee is the last ``assigned`` event's; its teams are that team (``team:NAME``) or
  the teams the assigned user is a member of (``user:NAME``).

``fired`` is recorded at the alert's ``startsAt``: for an alert posted by Prometheus after
its ``for:`` elapsed, or posted late, the times include that lead.  A time below zero
(clocks of different sources) counts as zero.  A ``fired`` event while an episode is still
open (its ``resolved`` was never recorded, as after a crash) closes that one as open and
starts another.  Events are taken in time order (an episode's fired and resolved events
are written when it is over, after the actions taken during it); at the same instant a
fired event comes first and a resolved one last.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACK_KINDS",
    "Episode",
    "ResponseReport",
    "ResponseStats",
    "RoutedEvents",
    "episodes",
    "labels_in",
    "response_report",
    "response_stats",
    "routed_events",
    "teams_of_assignee",
]

ACK_KINDS = frozenset({"acknowledged", "snoozed"})
"""Events that acknowledge an episode."""
_RANK = {"fired": 0, "resolved": 2}  # at the same instant: fired first, resolved last


@dataclass(slots=True)
class Episode:
    """One firing of an alert, as its timeline tells it."""

    fingerprint: str
    labels: dict[str, str]
    fired_at: float
    acked_at: float | None = None
    resolved_at: float | None = None
    assignee: str | None = None
    """The last ``assigned`` event's assignee (``user:NAME`` or ``team:NAME``)."""

    @property
    def time_to_ack(self) -> float | None:
        """Seconds from firing to the first acknowledgement; None if never acknowledged."""
        return None if self.acked_at is None else max(0.0, self.acked_at - self.fired_at)

    @property
    def time_to_resolve(self) -> float | None:
        """Seconds from firing to resolution; None while open."""
        return None if self.resolved_at is None else max(0.0, self.resolved_at - self.fired_at)


def episodes(
    events: Iterable[Mapping[str, Any]],
    labels_of: Callable[[str], Mapping[str, str] | None] | None = None,
) -> list[Episode]:
    """The episodes told by ``events``, ordered by when they fired.

    Events are taken in time order (ties: fired first, resolved last, then by ``id``).
    Events of an alert before its first ``fired`` (an episode that began before the
    events read) are skipped, and so is a ``resolved`` with no open episode (the plain
    resolution of an episode resolved by hand).  The episode's labels are its ``fired``
    event's ``detail["labels"]``, else ``labels_of(fingerprint)``, else empty.  Other
    kinds (comments, unacknowledgements, escalations...) do not change an episode.
    """
    rows = sorted(events, key=_order)
    open_: dict[str, Episode] = {}
    done: list[Episode] = []
    for row in rows:
        fp = row["fingerprint"]
        kind = row["kind"]
        at = float(row["at"])
        current = open_.get(fp)
        if kind == "fired":
            if current is not None:
                done.append(current)  # never resolved: stays open
            open_[fp] = Episode(fp, _labels(row, fp, labels_of), at)
        elif current is None:
            continue
        elif kind in ACK_KINDS:
            if current.acked_at is None:
                current.acked_at = at
        elif kind == "assigned":
            assignee = _detail(row).get("assignee")
            if isinstance(assignee, str):
                current.assignee = assignee
        elif kind == "resolved":
            current.resolved_at = at
            done.append(current)
            del open_[fp]
    done.extend(open_.values())
    done.sort(key=lambda e: (e.fired_at, e.fingerprint))
    return done


def _order(row: Mapping[str, Any]) -> tuple[float, int, int]:
    return (float(row["at"]), _RANK.get(row["kind"], 1), int(row.get("id") or 0))


def _detail(row: Mapping[str, Any]) -> Mapping[str, Any]:
    detail = row.get("detail")
    return detail if isinstance(detail, Mapping) else {}


def _labels(
    row: Mapping[str, Any],
    fp: str,
    labels_of: Callable[[str], Mapping[str, str] | None] | None,
) -> dict[str, str]:
    labels = _detail(row).get("labels")
    if isinstance(labels, Mapping) and labels:
        return {str(k): str(v) for k, v in labels.items()}
    found = labels_of(fp) if labels_of is not None else None
    return dict(found) if found else {}


def labels_in(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """The labels of each alert whose ``fired`` event (with labels) is in ``events``."""
    found: dict[str, dict[str, str]] = {}
    for row in events:
        if row["kind"] == "fired" and row["fingerprint"] not in found:
            labels = _detail(row).get("labels")
            if isinstance(labels, Mapping) and labels:
                found[row["fingerprint"]] = {str(k): str(v) for k, v in labels.items()}
    return found


@dataclass(frozen=True, slots=True)
class RoutedEvents:
    """The events of the alerts routed to a receiver, and how many alerts were looked at."""

    events: list[Mapping[str, Any]]
    alerts_seen: int
    """Alerts with events among those given (each routed once)."""
    alerts_routed: int
    """Those routed to the receiver."""
    alerts_unknown: int
    """Those whose labels are unknown (their fired events pruned): not routed."""


def routed_events(
    events: Sequence[Mapping[str, Any]],
    receiver: str,
    receivers_of: Callable[[Mapping[str, str]], Iterable[str]],
    labels_of: Callable[[str], Mapping[str, str] | None],
) -> RoutedEvents:
    """The ``events`` (order kept) of the alerts that ``receivers_of(labels)`` routes to
    ``receiver``.  ``alert_events`` has no receiver: each alert is routed again by its
    labels (from a ``fired`` event among ``events``, else ``labels_of(fingerprint)``) with
    the routing of now, so after a change of the routing tree older events follow the new
    one."""
    labels: dict[str, Mapping[str, str]] = dict(labels_in(events))
    seen: dict[str, bool] = {}
    unknown = 0
    for row in events:
        fp = row["fingerprint"]
        if fp in seen:
            continue
        found = labels.get(fp) or labels_of(fp)
        if not found:
            unknown += 1
            seen[fp] = False
            continue
        seen[fp] = receiver in receivers_of(found)
    return RoutedEvents(
        events=[row for row in events if seen[row["fingerprint"]]],
        alerts_seen=len(seen),
        alerts_routed=sum(seen.values()),
        alerts_unknown=unknown,
    )


def teams_of_assignee(assignee: str | None, members: Mapping[str, Iterable[str]]) -> list[str]:
    """The teams an episode assigned to ``assignee`` counts for: ``team:NAME`` is that team
    (known or not: it was assignable when assigned), ``user:NAME`` every team in
    ``members`` (team name to its users) that has the user; nothing when unassigned."""
    if not assignee:
        return []
    kind, _, name = assignee.partition(":")
    if kind == "team" and name:
        return [name]
    if kind == "user" and name:
        return sorted(team for team, users in members.items() if name in users)
    return []


@dataclass(frozen=True, slots=True)
class ResponseStats:
    """Counts and times (seconds) of a set of episodes."""

    episodes: int
    acknowledged: int
    unacknowledged: int
    resolved: int
    open: int
    mtta_mean: float | None
    mtta_median: float | None
    mttr_mean: float | None
    mttr_median: float | None

    def as_json(self) -> dict[str, Any]:
        """The API's shape (camelCase, seconds)."""
        return {
            "episodes": self.episodes,
            "acknowledged": self.acknowledged,
            "unacknowledged": self.unacknowledged,
            "resolved": self.resolved,
            "open": self.open,
            "mtta": {"meanSeconds": self.mtta_mean, "medianSeconds": self.mtta_median},
            "mttr": {"meanSeconds": self.mttr_mean, "medianSeconds": self.mttr_median},
        }


def response_stats(found: Sequence[Episode]) -> ResponseStats:
    """MTTA and MTTR (mean and median) of ``found``, with the counts behind them."""
    to_ack = [t for t in (e.time_to_ack for e in found) if t is not None]
    to_resolve = [t for t in (e.time_to_resolve for e in found) if t is not None]
    return ResponseStats(
        episodes=len(found),
        acknowledged=len(to_ack),
        unacknowledged=len(found) - len(to_ack),
        resolved=len(to_resolve),
        open=len(found) - len(to_resolve),
        mtta_mean=statistics.fmean(to_ack) if to_ack else None,
        mtta_median=statistics.median(to_ack) if to_ack else None,
        mttr_mean=statistics.fmean(to_resolve) if to_resolve else None,
        mttr_median=statistics.median(to_resolve) if to_resolve else None,
    )


@dataclass(frozen=True, slots=True)
class ResponseReport:
    """MTTA/MTTR over every episode, per receiver and per team.  An episode reaching two
    receivers (``continue: true``) counts for both; one assigned to a user in two teams,
    for both; one whose labels are unknown, for no receiver (only in ``total``).
    ``no_team``: episodes never assigned, or assigned to a user in no team."""

    total: ResponseStats
    receivers: dict[str, ResponseStats] = field(default_factory=dict)
    teams: dict[str, ResponseStats] = field(default_factory=dict)
    no_team: ResponseStats = field(default_factory=lambda: response_stats(()))


def response_report(
    found: Iterable[Episode],
    receivers_of: Callable[[Mapping[str, str]], Iterable[str]],
    teams_of: Callable[[str | None], Iterable[str]],
    *,
    since: float | None = None,
    until: float | None = None,
) -> ResponseReport:
    """The report of the episodes in ``found`` that fired in ``[since, until]``;
    ``receivers_of(labels)`` names the receivers an alert is routed to,
    ``teams_of(assignee)`` the teams an assignee counts for (see
    :func:`teams_of_assignee`)."""
    chosen = [
        e
        for e in found
        if (since is None or e.fired_at >= since) and (until is None or e.fired_at <= until)
    ]
    by_receiver: dict[str, list[Episode]] = {}
    by_team: dict[str, list[Episode]] = {}
    no_team: list[Episode] = []
    routed: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for episode in chosen:
        key = tuple(sorted(episode.labels.items()))
        names = routed.get(key)
        if names is None:
            names = routed[key] = list(dict.fromkeys(receivers_of(episode.labels))) if key else []
        for name in names:
            by_receiver.setdefault(name, []).append(episode)
        teams = list(dict.fromkeys(teams_of(episode.assignee)))
        for team in teams:
            by_team.setdefault(team, []).append(episode)
        if not teams:
            no_team.append(episode)
    return ResponseReport(
        total=response_stats(chosen),
        receivers={name: response_stats(by_receiver[name]) for name in sorted(by_receiver)},
        teams={name: response_stats(by_team[name]) for name in sorted(by_team)},
        no_team=response_stats(no_team),
    )
