"""MTTA and MTTR from synthetic timelines: episodes, acknowledgements, assignments, and the
report per receiver and per team."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from pudimd.alerting.reports import (
    Episode,
    episodes,
    labels_in,
    response_report,
    response_stats,
    routed_events,
    teams_of_assignee,
)

T0 = 1_800_000_000.0
DISK = {"alertname": "DiskFull", "team": "db", "severity": "critical"}
PING = {"alertname": "PingDown", "severity": "warning"}


class Timeline:
    """Events as the store returns them, ids in recording order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, fp: str, at: float, kind: str, **detail: Any) -> Timeline:
        self.rows.append(
            {
                "id": len(self.rows) + 1,
                "fingerprint": fp,
                "at": T0 + at,
                "kind": kind,
                "detail": detail,
            }
        )
        return self


def test_an_episode_runs_from_fired_to_resolved_and_is_acknowledged_at_the_first_ack() -> None:
    t = Timeline()
    t.add("a", 0, "fired", labels=DISK).add("a", 30, "commented", comment="looking")
    t.add("a", 60, "acknowledged").add("a", 90, "unacknowledged").add("a", 120, "acknowledged")
    t.add("a", 600, "resolved")
    [episode] = episodes(t.rows)
    assert episode == Episode("a", DISK, T0, acked_at=T0 + 60, resolved_at=T0 + 600)
    assert episode.time_to_ack == 60 and episode.time_to_resolve == 600


def test_a_snooze_acknowledges() -> None:
    t = Timeline().add("a", 0, "fired", labels=PING).add("a", 45, "snoozed", until=T0 + 3600)
    [episode] = episodes(t.rows)
    assert episode.time_to_ack == 45 and episode.resolved_at is None


def test_the_episode_is_assigned_to_its_last_assignee_and_a_new_episode_starts_clean() -> None:
    t = Timeline()
    t.add("a", 0, "fired", labels=DISK).add("a", 10, "assigned", assignee="user:alice")
    t.add("a", 20, "assigned", assignee="team:dba", previous="user:alice").add("a", 100, "resolved")
    t.add("a", 200, "commented", comment="after the end: not part of an episode")
    t.add("a", 300, "fired", labels=DISK).add("a", 400, "resolved")
    first, second = episodes(t.rows)
    assert first.assignee == "team:dba" and first.time_to_resolve == 100
    assert second.fired_at == T0 + 300 and second.assignee is None and second.acked_at is None
    assert second.time_to_resolve == 100


def test_events_before_the_first_fired_are_skipped() -> None:
    # the episode began before the range read: its ack and resolution do not make one
    t = Timeline().add("a", 0, "acknowledged").add("a", 10, "resolved")
    t.add("a", 20, "fired", labels=PING)
    [episode] = episodes(t.rows)
    assert episode.fired_at == T0 + 20 and episode.acked_at is None and episode.resolved_at is None


def test_a_fired_event_in_an_open_episode_leaves_that_one_open_and_starts_another() -> None:
    t = Timeline().add("a", 0, "fired", labels=PING).add("a", 50, "fired", labels=PING)
    t.add("a", 80, "resolved")
    first, second = episodes(t.rows)
    assert first.resolved_at is None
    assert second.fired_at == T0 + 50 and second.time_to_resolve == 30


def test_events_are_taken_in_time_order_whatever_their_ids() -> None:
    # an episode's fired and resolved events are written when it is over, after the
    # actions taken during it; the engine's own episode has no ids at all
    rows = [
        {"id": 1, "fingerprint": "a", "at": T0 + 60, "kind": "acknowledged", "detail": {}},
        {"id": 2, "fingerprint": "a", "at": T0 + 90, "kind": "resolved", "detail": {}},
        {"id": 3, "fingerprint": "a", "at": T0, "kind": "fired", "detail": {"labels": PING}},
        {"id": 4, "fingerprint": "a", "at": T0 + 90, "kind": "resolved", "detail": {}},
        {"fingerprint": "a", "at": T0 + 500, "kind": "resolved", "detail": {}},
        {"fingerprint": "a", "at": T0 + 500, "kind": "fired", "detail": {"labels": PING}},
        {"fingerprint": "a", "at": T0 + 500, "kind": "acknowledged", "detail": {}},
    ]
    first, second = episodes(reversed(rows))
    assert (first.fired_at, first.acked_at, first.resolved_at) == (T0, T0 + 60, T0 + 90)
    # at one instant: fired, then the rest, then resolved
    assert (second.fired_at, second.acked_at, second.resolved_at) == (T0 + 500,) * 3


def test_times_below_zero_count_as_zero() -> None:
    # a source's startsAt after the moment pudimd records an action (clocks apart)
    episode = Episode("a", PING, T0 + 100, acked_at=T0 + 90, resolved_at=T0 + 95)
    assert episode.time_to_ack == 0.0 and episode.time_to_resolve == 0.0


def test_labels_come_from_the_fired_event_else_from_the_lookup() -> None:
    t = Timeline().add("a", 0, "fired").add("b", 0, "fired").add("c", 0, "fired", labels=PING)
    lookups: list[str] = []

    def labels_of(fp: str) -> Mapping[str, str] | None:
        lookups.append(fp)
        return DISK if fp == "a" else None

    found = {e.fingerprint: e.labels for e in episodes(t.rows, labels_of)}
    assert found == {"a": DISK, "b": {}, "c": PING}
    assert sorted(lookups) == ["a", "b"]


def test_events_of_the_alerts_routed_to_a_receiver() -> None:
    t = Timeline()
    t.add("disk", 0, "fired", labels=DISK).add("ping", 5, "fired", labels=PING)
    t.add("old", 7, "acknowledged")  # fired before: labels from the lookup
    t.add("gone", 8, "commented", comment="?")  # labels unknown
    t.add("disk", 10, "acknowledged").add("old", 20, "resolved")
    routed: list[Mapping[str, str]] = []

    def receivers_of(labels: Mapping[str, str]) -> list[str]:
        routed.append(labels)
        return ["pager", "chat"] if labels.get("severity") == "critical" else ["chat"]

    def labels_of(fp: str) -> Mapping[str, str] | None:
        return DISK if fp == "old" else None

    pager = routed_events(t.rows, "pager", receivers_of, labels_of)
    assert [(e["fingerprint"], e["kind"]) for e in pager.events] == [
        ("disk", "fired"),
        ("old", "acknowledged"),
        ("disk", "acknowledged"),
        ("old", "resolved"),
    ]
    assert (pager.alerts_seen, pager.alerts_routed, pager.alerts_unknown) == (4, 2, 1)
    assert len(routed) == 3  # each alert routed once
    chat = routed_events(t.rows, "chat", receivers_of, labels_of)
    assert len(chat.events) == 5 and chat.alerts_routed == 3
    assert labels_in(t.rows) == {"disk": DISK, "ping": PING}


def test_teams_of_an_assignee() -> None:
    members = {"dba": ["alice", "bob"], "web": ["bob"], "ops": ["carol"]}
    assert teams_of_assignee("team:dba", members) == ["dba"]
    assert teams_of_assignee("team:gone", members) == ["gone"]
    assert teams_of_assignee("user:bob", members) == ["dba", "web"]
    assert teams_of_assignee("user:dave", members) == []
    assert teams_of_assignee(None, members) == []
    assert teams_of_assignee("nonsense", members) == []


def test_stats_count_what_they_leave_out_and_give_mean_and_median() -> None:
    found = [
        Episode("a", {}, T0, acked_at=T0 + 60, resolved_at=T0 + 600),
        Episode("b", {}, T0, acked_at=T0 + 120, resolved_at=T0 + 300),
        Episode("c", {}, T0, acked_at=T0 + 600),
        Episode("d", {}, T0, resolved_at=T0 + 30),
    ]
    stats = response_stats(found)
    assert (stats.episodes, stats.acknowledged, stats.unacknowledged) == (4, 3, 1)
    assert (stats.resolved, stats.open) == (3, 1)
    assert stats.mtta_mean == pytest.approx(260.0) and stats.mtta_median == 120.0
    assert stats.mttr_mean == pytest.approx(310.0) and stats.mttr_median == 300.0
    assert stats.as_json()["mtta"] == {"meanSeconds": stats.mtta_mean, "medianSeconds": 120.0}
    empty = response_stats([])
    assert empty.episodes == 0 and empty.mtta_mean is None and empty.mttr_median is None


def test_the_report_per_receiver_and_per_team() -> None:
    t = Timeline()
    # critical db alert: pager and dba (continue); assigned to the dba team
    t.add("disk", 0, "fired", labels=DISK).add("disk", 120, "acknowledged")
    t.add("disk", 130, "assigned", assignee="team:dba").add("disk", 1200, "resolved")
    # warning: chat only; assigned to bob, in dba and web; acked, never resolved
    t.add("ping", 100, "fired", labels=PING).add("ping", 160, "acknowledged")
    t.add("ping", 170, "assigned", assignee="user:bob")
    # the same warning alert again, earlier episode resolved by itself, unassigned
    t.add("ping2", 0, "fired", labels=PING).add("ping2", 400, "resolved")
    routed: list[Mapping[str, str]] = []

    def receivers_of(labels: Mapping[str, str]) -> list[str]:
        routed.append(labels)
        if labels.get("severity") == "critical":
            return ["pager", "dba", "pager"]  # duplicates count once
        return ["chat"]

    members = {"dba": ["alice", "bob"], "web": ["bob"]}
    report = response_report(
        episodes(t.rows), receivers_of, lambda a: teams_of_assignee(a, members)
    )
    assert len(routed) == 2  # once per label set
    assert list(report.receivers) == ["chat", "dba", "pager"]
    pager = report.receivers["pager"]
    assert pager == report.receivers["dba"]
    assert (pager.episodes, pager.mtta_mean, pager.mttr_mean) == (1, 120.0, 1200.0)
    chat = report.receivers["chat"]
    assert (chat.episodes, chat.acknowledged, chat.unacknowledged) == (2, 1, 1)
    assert (chat.resolved, chat.open, chat.mtta_median, chat.mttr_median) == (1, 1, 60.0, 400.0)
    assert list(report.teams) == ["dba", "web"]
    assert report.teams["dba"].episodes == 2 and report.teams["web"].episodes == 1
    assert report.no_team.episodes == 1 and report.no_team.mttr_mean == 400.0
    assert report.total.episodes == 3 and report.total.mtta_median == 90.0


def test_an_episode_whose_labels_are_unknown_is_routed_nowhere() -> None:
    t = Timeline().add("a", 0, "fired").add("a", 10, "resolved")
    report = response_report(episodes(t.rows), lambda labels: ["default"], lambda a: [])
    assert report.total.episodes == 1 and report.receivers == {}
    assert report.no_team.episodes == 1


def test_the_report_takes_the_episodes_that_fired_in_the_range() -> None:
    found = [
        Episode("early", PING, T0 - 10, resolved_at=T0 + 5),
        Episode("in", PING, T0, resolved_at=T0 + 50),
        Episode("edge", PING, T0 + 100, resolved_at=T0 + 150),
        Episode("late", PING, T0 + 101, resolved_at=T0 + 102),
    ]
    report = response_report(found, lambda labels: ["r"], lambda a: [], since=T0, until=T0 + 100)
    assert report.total.episodes == 2 and report.total.mttr_mean == 50.0
    assert report.receivers["r"].episodes == 2 and report.teams == {}
