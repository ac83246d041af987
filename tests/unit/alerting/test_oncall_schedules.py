"""On-call schedules: rotation math across DST, layers, restrictions, overrides, the shift
timeline, next_handoff, the directory, and every config error with its location."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from pudimd.alerting.oncall import (
    OVERRIDE,
    OncallConfig,
    OncallDirectory,
    OncallTarget,
    Schedule,
    ScheduleLayer,
    Shift,
    oncall_problems,
)
from pudimd.alerting.timeintervals import TimeInterval

LISBON = ZoneInfo("Europe/Lisbon")
NEW_YORK = ZoneInfo("America/New_York")
USERS = ["alice", "bob", "carol", "dave", "erin"]
BUSINESS_HOURS = {
    "times": [{"start_time": "09:00", "end_time": "17:00"}],
    "weekdays": ["monday:friday"],
}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def layer(
    users: list[str], start: str, rotation: str, name: str = "main", **extra: Any
) -> dict[str, Any]:
    return {"name": name, "users": users, "start": start, "rotation": rotation, **extra}


def schedule(
    *layers: dict[str, Any], time_zone: str = "UTC", overrides: list[dict[str, Any]] | None = None
) -> Schedule:
    data = {"name": "primary", "time_zone": time_zone, "layers": list(layers)}
    if overrides is not None:
        data["overrides"] = overrides
    return Schedule.model_validate(data)


def config(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"users": [{"name": name} for name in USERS]}
    data.update(sections)
    return data


def primary(*layers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "primary", "layers": list(layers), **fields}


def rejection(data: dict[str, Any]) -> tuple[tuple[int | str, ...], str]:
    """Where and why validating ``data`` as an OncallConfig fails (exactly one error)."""
    with pytest.raises(ValidationError) as caught:
        OncallConfig.model_validate(data)
    [error] = caught.value.errors()
    return error["loc"], error["msg"]


def handoffs(sched: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Where the timeline hands over inside (start, end)."""
    return [shift.start for shift in sched.shifts(start, end) if shift.start > start]


def local_clock(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%a %H:%M")


# -- rotation math and DST ---------------------------------------------------------------


def test_daily_handoff_stays_at_local_nine_across_spring_forward_in_lisbon() -> None:
    sched = schedule(layer(["alice", "bob"], "2026-03-27T09:00", "1d"), time_zone="Europe/Lisbon")
    # clocks go forward on 2026-03-29 at 01:00 UTC: 09:00 is 09:00Z before, 08:00Z after
    assert handoffs(sched, utc(2026, 3, 27), utc(2026, 3, 31)) == [
        utc(2026, 3, 27, 9),
        utc(2026, 3, 28, 9),
        utc(2026, 3, 29, 8),
        utc(2026, 3, 30, 8),
    ]
    assert sched.on_call(utc(2026, 3, 29, 7, 59)) == ["bob"]
    assert sched.on_call(utc(2026, 3, 29, 8)) == ["alice"]
    [short] = [
        s
        for s in sched.shifts(utc(2026, 3, 27), utc(2026, 3, 31))
        if s.start == utc(2026, 3, 28, 9)
    ]
    assert short.end - short.start == timedelta(hours=23)


def test_daily_handoff_stays_at_local_nine_across_fall_back_in_lisbon() -> None:
    sched = schedule(layer(["alice", "bob"], "2026-10-23T09:00", "1d"), time_zone="Europe/Lisbon")
    # clocks go back on 2026-10-25 at 01:00 UTC: 09:00 is 08:00Z before, 09:00Z after
    assert handoffs(sched, utc(2026, 10, 23, 12), utc(2026, 10, 27)) == [
        utc(2026, 10, 24, 8),
        utc(2026, 10, 25, 9),
        utc(2026, 10, 26, 9),
    ]
    long = sched.shifts(utc(2026, 10, 24, 8), utc(2026, 10, 25, 9))
    assert long == [Shift("bob", utc(2026, 10, 24, 8), utc(2026, 10, 25, 9), "main")]


def test_daily_handoff_stays_at_local_nine_across_both_changes_in_new_york() -> None:
    sched = schedule(
        layer(["alice", "bob", "carol"], "2026-03-01T09:00", "1d"), time_zone="America/New_York"
    )
    # spring forward 2026-03-08 (EST -5 -> EDT -4), fall back 2026-11-01 (EDT -> EST)
    assert handoffs(sched, utc(2026, 3, 7), utc(2026, 3, 10)) == [
        utc(2026, 3, 7, 14),
        utc(2026, 3, 8, 13),
        utc(2026, 3, 9, 13),
    ]
    assert handoffs(sched, utc(2026, 10, 31), utc(2026, 11, 3)) == [
        utc(2026, 10, 31, 13),
        utc(2026, 11, 1, 14),
        utc(2026, 11, 2, 14),
    ]
    for moment in handoffs(sched, utc(2026, 3, 1, 12), utc(2026, 12, 31)):
        assert moment.astimezone(NEW_YORK).strftime("%H:%M") == "09:00"


def test_weekly_rotation_hands_off_on_the_same_weekday_and_local_time() -> None:
    sched = schedule(
        layer(["alice", "bob", "carol"], "2026-01-05T09:00", "1w"), time_zone="America/New_York"
    )
    moments = handoffs(sched, utc(2026, 1, 5, 15), utc(2026, 12, 31))
    assert len(moments) == 51
    assert {local_clock(m, NEW_YORK) for m in moments} == {"Mon 09:00"}
    assert sched.next_handoff(utc(2026, 3, 3)) == utc(2026, 3, 9, 13)  # EDT since Mar 8
    # Mar 9 is 9 weeks after Jan 5: the turn of users[9 % 3]
    assert sched.on_call(utc(2026, 3, 9, 12, 59)) == ["carol"]
    assert sched.on_call(utc(2026, 3, 9, 13)) == ["alice"]


def test_handoff_in_the_spring_forward_gap_happens_an_hour_later() -> None:
    # 01:30 does not exist in Lisbon on 2026-03-29 (01:00 -> 02:00): handed off at 02:30 WEST
    sched = schedule(layer(["alice", "bob"], "2026-03-27T01:30", "1d"), time_zone="Europe/Lisbon")
    assert handoffs(sched, utc(2026, 3, 28), utc(2026, 3, 31)) == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]
    assert sched.on_call(utc(2026, 3, 29, 1, 0)) == ["bob"]  # 02:00 WEST: past 01:30, not yet
    assert sched.on_call(utc(2026, 3, 29, 1, 30)) == ["alice"]


def test_handoff_in_the_repeated_hour_happens_the_first_time() -> None:
    # 01:30 happens twice in Lisbon on 2026-10-25 (00:30Z WEST, 01:30Z WET): the first one
    sched = schedule(layer(["alice", "bob"], "2026-10-23T01:30", "1d"), time_zone="Europe/Lisbon")
    assert handoffs(sched, utc(2026, 10, 24), utc(2026, 10, 27)) == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]
    assert sched.on_call(utc(2026, 10, 25, 1, 15)) == ["alice"]  # the second 01:15, after it


def test_sub_day_rotation_runs_on_absolute_time() -> None:
    sched = schedule(
        layer(["alice", "bob"], "2026-03-07T09:00", "12h"), time_zone="America/New_York"
    )
    shifts = sched.shifts(utc(2026, 3, 7, 14), utc(2026, 3, 9, 14))
    assert [s.end - s.start for s in shifts] == [timedelta(hours=12)] * 4
    # after the spring-forward the handoffs are at 10:00 and 22:00 on the wall clock
    assert [local_clock(s.start, NEW_YORK) for s in shifts] == [
        "Sat 09:00",
        "Sat 21:00",
        "Sun 10:00",
        "Sun 22:00",
    ]


def test_rotation_index_is_arithmetic_far_from_the_start() -> None:
    users = ["alice", "bob", "carol"]
    sched = schedule(layer(users, "2026-01-01T00:00", "1h"), time_zone="Europe/Lisbon")
    far = utc(2076, 1, 1, 0, 30)
    hours = int((far - utc(2026, 1, 1)).total_seconds() // 3600)
    assert sched.on_call(far) == [users[hours % 3]]
    weekly = schedule(layer(users, "2026-01-05T09:00", "1w"), time_zone="Europe/Lisbon")
    began = time.perf_counter()
    for day in range(1000):
        weekly.on_call(far + timedelta(days=day))
        sched.on_call(far + timedelta(hours=day))
    # 50 years of hourly shifts walked one by one would take seconds per call
    assert time.perf_counter() - began < 0.5


def test_a_user_listed_twice_takes_two_turns_merged_into_one_shift() -> None:
    sched = schedule(layer(["alice", "alice", "bob"], "2026-01-01T00:00", "1d"))
    assert sched.shifts(utc(2026, 1, 1), utc(2026, 1, 7)) == [
        Shift("alice", utc(2026, 1, 1), utc(2026, 1, 3), "main"),
        Shift("bob", utc(2026, 1, 3), utc(2026, 1, 4), "main"),
        Shift("alice", utc(2026, 1, 4), utc(2026, 1, 6), "main"),
        Shift("bob", utc(2026, 1, 6), utc(2026, 1, 7), "main"),
    ]


def test_nobody_is_on_call_before_the_start_or_from_the_end() -> None:
    sched = schedule(
        layer(["alice", "bob"], "2026-01-05T09:00", "1d", end="2026-01-08T12:00"),
        time_zone="Europe/Lisbon",
    )
    assert sched.on_call(utc(2026, 1, 5, 8, 59)) == []
    assert sched.on_call(utc(2026, 1, 5, 9)) == ["alice"]
    assert sched.on_call(utc(2026, 1, 8, 11, 59)) == ["bob"]
    assert sched.on_call(utc(2026, 1, 8, 12)) == []
    assert sched.shifts(utc(2026, 1, 1), utc(2026, 1, 5, 9)) == []
    assert sched.shifts(utc(2026, 1, 8, 12), utc(2026, 2, 1)) == []
    assert sched.shifts(utc(2026, 1, 1), utc(2026, 2, 1))[-1] == Shift(
        "bob", utc(2026, 1, 8, 9), utc(2026, 1, 8, 12), "main"
    )


# -- layers, restrictions, overrides -----------------------------------------------------


def business_over_always() -> Schedule:
    return schedule(
        layer(["alice", "bob"], "2026-01-05T00:00", "1w", name="always"),
        layer(
            ["carol", "dave"],
            "2026-01-05T00:00",
            "1d",
            name="office",
            restrictions=[BUSINESS_HOURS],
        ),
        time_zone="Europe/Lisbon",
    )


def test_later_layer_wins_only_while_it_has_someone_on_call() -> None:
    sched = business_over_always()
    monday, tuesday, saturday = utc(2026, 1, 12, 10), utc(2026, 1, 13, 10), utc(2026, 1, 17, 10)
    # office hours: the office layer, whose daily turns began on Monday the 5th
    assert sched.on_call(monday) == ["dave"]
    assert sched.on_call(tuesday) == ["carol"]
    assert sched.on_call(utc(2026, 1, 12, 8, 59)) == ["bob"]  # before office hours
    assert sched.on_call(utc(2026, 1, 12, 17)) == ["bob"]  # the end of 09:00-17:00 excluded
    assert sched.on_call(saturday) == ["bob"]  # weekend: the 24/7 layer shows through


def test_restrictions_are_read_in_the_schedule_zone_unless_they_set_a_location() -> None:
    # 2026-07-06 is a Monday; New York is UTC-4 in July
    local = schedule(
        layer(["alice"], "2026-01-01T00:00", "1d", restrictions=[BUSINESS_HOURS]),
        time_zone="America/New_York",
    )
    assert local.on_call(utc(2026, 7, 6, 13)) == ["alice"]  # 09:00 EDT
    assert local.on_call(utc(2026, 7, 6, 12, 59)) == []
    explicit = schedule(
        layer(
            ["alice"],
            "2026-01-01T00:00",
            "1d",
            restrictions=[{**BUSINESS_HOURS, "location": "UTC"}],
        ),
        time_zone="America/New_York",
    )
    assert explicit.on_call(utc(2026, 7, 6, 9)) == ["alice"]
    assert explicit.on_call(utc(2026, 7, 6, 17)) == []


def test_restrictions_of_models_built_beforehand_also_default_to_the_schedule_zone() -> None:
    built = ScheduleLayer(
        name="office",
        users=["alice"],
        start=datetime(2026, 1, 1),
        rotation=timedelta(days=1),
        restrictions=[TimeInterval.model_validate(BUSINESS_HOURS)],
    )
    sched = Schedule(name="primary", time_zone="America/New_York", layers=[built])
    assert sched.layers[0].restrictions is not None
    assert sched.layers[0].restrictions[0].location == "America/New_York"
    assert sched.on_call(utc(2026, 7, 6, 13)) == ["alice"]


def test_restricted_layer_shifts_follow_the_restriction_boundaries() -> None:
    sched = business_over_always()
    # Friday 2026-01-16 to Monday 2026-01-19 (Lisbon is UTC+0 in winter)
    assert sched.shifts(utc(2026, 1, 16, 12), utc(2026, 1, 19, 12)) == [
        Shift("dave", utc(2026, 1, 16, 12), utc(2026, 1, 16, 17), "office"),
        Shift("bob", utc(2026, 1, 16, 17), utc(2026, 1, 19, 0), "always"),
        Shift("alice", utc(2026, 1, 19, 0), utc(2026, 1, 19, 9), "always"),
        Shift("carol", utc(2026, 1, 19, 9), utc(2026, 1, 19, 12), "office"),
    ]


def test_override_beats_every_layer_in_local_time() -> None:
    sched = schedule(
        layer(["alice", "bob"], "2026-01-05T00:00", "1w", name="always"),
        layer(["carol"], "2026-01-05T00:00", "1d", name="office", restrictions=[BUSINESS_HOURS]),
        time_zone="America/New_York",
        overrides=[{"user": "erin", "start": "2026-12-24T00:00", "end": "2026-12-26T00:00"}],
    )
    assert sched.on_call(utc(2026, 12, 24, 4, 59)) == ["alice"]  # 23:59 EST on the 23rd
    assert sched.on_call(utc(2026, 12, 24, 5)) == ["erin"]
    assert sched.on_call(utc(2026, 12, 24, 15)) == ["erin"]  # Thursday, office hours
    assert sched.on_call(utc(2026, 12, 26, 5)) == ["alice"]
    assert Shift("erin", utc(2026, 12, 24, 5), utc(2026, 12, 26, 5), OVERRIDE) in sched.shifts(
        utc(2026, 12, 20), utc(2026, 12, 31)
    )


def test_overlapping_overrides_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"overrides 0 \(bob\) and 1 \(carol\) overlap"):
        schedule(
            layer(["alice"], "2026-01-01T00:00", "1w"),
            overrides=[
                {"user": "bob", "start": "2026-02-01T00:00", "end": "2026-02-08T00:00"},
                {"user": "carol", "start": "2026-02-03T18:00", "end": "2026-02-04T06:00"},
            ],
        )
    back_to_back = schedule(
        layer(["alice"], "2026-01-01T00:00", "1w"),
        overrides=[
            {"user": "carol", "start": "2026-02-08T00:00", "end": "2026-02-09T00:00"},
            {"user": "bob", "start": "2026-02-01T00:00", "end": "2026-02-08T00:00"},
        ],
    )
    assert back_to_back.on_call(utc(2026, 2, 8)) == ["carol"]


def test_a_layer_hidden_by_a_later_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="layer 'first' is never on call"):
        schedule(
            layer(["alice"], "2026-01-05T09:00", "1w", name="first"),
            layer(["bob"], "2026-01-01T00:00", "1d", name="second"),
        )
    # restricted, or starting later, the later layer leaves the first its moments
    schedule(
        layer(["alice"], "2026-01-05T09:00", "1w", name="first"),
        layer(["bob"], "2026-01-01T00:00", "1d", name="second", restrictions=[BUSINESS_HOURS]),
    )
    schedule(
        layer(["alice"], "2026-01-05T09:00", "1w", name="first"),
        layer(["bob"], "2026-02-01T00:00", "1d", name="second"),
    )


def test_override_by_the_user_already_on_call_is_a_shift_of_its_own() -> None:
    sched = schedule(
        layer(["alice"], "2026-01-01T00:00", "1w"),
        overrides=[{"user": "alice", "start": "2026-01-10T00:00", "end": "2026-01-11T00:00"}],
    )
    assert [(s.user, s.layer) for s in sched.shifts(utc(2026, 1, 9), utc(2026, 1, 12))] == [
        ("alice", "main"),
        ("alice", OVERRIDE),
        ("alice", "main"),
    ]


# -- shifts and next_handoff -------------------------------------------------------------


def test_shifts_are_cut_at_the_range_and_empty_for_an_empty_range() -> None:
    sched = schedule(layer(["alice", "bob"], "2026-01-01T09:00", "1w"))
    assert sched.shifts(utc(2026, 1, 3), utc(2026, 1, 10)) == [
        Shift("alice", utc(2026, 1, 3), utc(2026, 1, 8, 9), "main"),
        Shift("bob", utc(2026, 1, 8, 9), utc(2026, 1, 10), "main"),
    ]
    assert sched.shifts(utc(2026, 1, 10), utc(2026, 1, 10)) == []
    assert sched.shifts(utc(2026, 1, 10), utc(2026, 1, 3)) == []


def test_shifts_take_any_timezone_and_answer_in_utc() -> None:
    sched = schedule(layer(["alice", "bob"], "2026-01-01T09:00", "1d"), time_zone="Europe/Lisbon")
    start = datetime(2026, 7, 1, 12, tzinfo=NEW_YORK)
    [first, *_] = sched.shifts(start, start + timedelta(days=2))
    assert first.start == start and first.start.tzinfo is UTC


def test_next_handoff_is_the_next_change_of_who_is_on_call() -> None:
    sched = schedule(layer(["alice", "alice", "bob"], "2026-01-01T00:00", "1d"))
    assert sched.next_handoff(utc(2026, 1, 1, 12)) == utc(2026, 1, 3)  # alice -> alice is not one
    assert sched.next_handoff(utc(2026, 1, 3)) == utc(2026, 1, 4)  # strictly after
    assert sched.next_handoff(utc(2025, 6, 1)) == utc(2026, 1, 1)  # the layer starting


def test_next_handoff_sees_restrictions_and_overrides() -> None:
    sched = business_over_always()
    assert sched.next_handoff(utc(2026, 1, 16, 12)) == utc(2026, 1, 16, 17)
    assert sched.next_handoff(utc(2026, 1, 16, 17)) == utc(2026, 1, 19, 0)
    with_override = schedule(
        layer(["alice"], "2026-01-01T00:00", "1d"),
        overrides=[{"user": "bob", "start": "2026-05-01T00:00", "end": "2026-05-02T00:00"}],
    )
    assert with_override.next_handoff(utc(2026, 1, 1)) == utc(2026, 5, 1)
    assert with_override.next_handoff(utc(2026, 5, 1)) == utc(2026, 5, 2)


def test_next_handoff_is_none_when_nothing_changes_within_the_horizon() -> None:
    sched = schedule(layer(["alice"], "2026-01-01T00:00", "1d"))
    assert sched.next_handoff(utc(2026, 2, 1)) is None
    ending = schedule(layer(["alice"], "2026-01-01T00:00", "1d", end="2027-06-01T00:00"))
    assert ending.next_handoff(utc(2026, 2, 1)) is None  # 16 months away
    assert ending.next_handoff(utc(2026, 2, 1), horizon=timedelta(days=500)) == utc(2027, 6, 1)


def test_moments_must_be_timezone_aware() -> None:
    sched = schedule(layer(["alice"], "2026-01-01T00:00", "1d"))
    with pytest.raises(ValueError, match=r"at 2026-01-02T00:00:00 must be timezone-aware"):
        sched.on_call(datetime(2026, 1, 2))
    with pytest.raises(ValueError, match=r"start .* must be timezone-aware"):
        sched.shifts(datetime(2026, 1, 2), utc(2026, 1, 3))


def mixed_schedule() -> Schedule:
    """Every feature at once, across both of Lisbon's 2026 DST changes."""
    return schedule(
        layer(["alice", "bob", "carol"], "2026-02-02T09:00", "1w", name="weekly"),
        layer(
            ["dave", "erin"],
            "2026-02-10T21:00",
            "12h",
            name="nights",
            end="2026-09-01T00:00",
            restrictions=[
                {
                    "times": [
                        {"start_time": "00:00", "end_time": "07:00"},
                        {"start_time": "20:00", "end_time": "24:00"},
                    ]
                }
            ],
        ),
        layer(
            ["erin", "erin", "alice"],
            "2026-03-01T09:00",
            "1d",
            name="office",
            restrictions=[BUSINESS_HOURS],
        ),
        time_zone="Europe/Lisbon",
        overrides=[
            {"user": "bob", "start": "2026-03-28T12:00", "end": "2026-03-29T00:00"},
            {"user": "carol", "start": "2026-03-29T00:00", "end": "2026-03-29T06:00"},
            {"user": "dave", "start": "2026-10-24T22:00", "end": "2026-10-25T01:30"},
        ],
    )


def test_on_call_agrees_with_shifts_at_random_moments() -> None:
    sched = mixed_schedule()
    start, end = utc(2026, 1, 15), utc(2026, 11, 15)
    shifts = sched.shifts(start, end)
    rng = random.Random(6)
    span = int((end - start).total_seconds())
    moments = [start + timedelta(seconds=rng.randrange(span)) for _ in range(1500)]
    moments += [s.start for s in shifts] + [s.end - timedelta(microseconds=1) for s in shifts]
    for moment in moments:
        covering = [s for s in shifts if s.start <= moment < s.end]
        on_call = sched.on_call(moment)
        assert sorted(s.user for s in covering) == sorted(on_call), moment
    # merged: a user's shift by one layer never touches the next one
    for one in shifts:
        assert not any(
            o.start == one.end and (o.user, o.layer) == (one.user, one.layer) for o in shifts
        )
    assert shifts == sorted(shifts, key=lambda s: s.start)


def test_next_handoff_agrees_with_on_call_at_random_moments() -> None:
    sched = mixed_schedule()
    rng = random.Random(7)
    start = utc(2026, 1, 15)
    for _ in range(60):
        moment = start + timedelta(minutes=rng.randrange(300 * 24 * 60))
        handoff = sched.next_handoff(moment)
        assert handoff is not None and handoff > moment
        assert sched.on_call(handoff) != sched.on_call(moment)
        for shift in sched.shifts(moment, handoff):  # no change in between
            assert sched.on_call(shift.start) == sched.on_call(moment)


def test_shifts_over_ninety_days_of_a_daily_rotation_take_well_under_10ms() -> None:
    sched = schedule(
        layer(["alice", "bob", "carol"], "2026-01-01T09:00", "1d"), time_zone="Europe/Lisbon"
    )
    timings = []
    for _ in range(5):
        began = time.perf_counter()
        shifts = sched.shifts(utc(2026, 2, 1), utc(2026, 5, 2))
        timings.append(time.perf_counter() - began)
    assert len(shifts) == 91
    assert min(timings) < 0.010


# -- config errors -----------------------------------------------------------------------


LAYER = layer(["alice", "bob"], "2026-01-05T09:00", "1w", name="weekly")


def test_a_full_config_is_accepted() -> None:
    oncall = OncallConfig.model_validate(
        {
            "users": [
                {"name": "alice", "email": "alice@example.com", "receiver": "alice-pager"},
                {"name": "bob"},
                {"name": "carol.b-2_x"},
            ],
            "teams": [{"name": "dba", "members": ["alice", "bob"]}],
            "schedules": [
                primary(
                    LAYER,
                    {
                        **layer(["carol.b-2_x"], "2026-01-05", "12h", name="night"),
                        "end": "2027-01-01T00:00",
                    },
                    time_zone="Europe/Lisbon",
                    overrides=[
                        {"user": "bob", "start": "2026-12-24T00:00", "end": "2026-12-26T00:00"}
                    ],
                )
            ],
        }
    )
    [sched] = oncall.schedules
    assert sched.layers[1].start == datetime(2026, 1, 5)
    assert sched.layers[0].rotation == timedelta(weeks=1)
    assert OncallConfig.model_validate({}).schedules == []


def test_a_config_written_back_reads_the_same() -> None:
    oncall = OncallConfig.model_validate(
        config(
            schedules=[mixed_schedule().model_dump()], teams=[{"name": "dba", "members": ["bob"]}]
        )
    )
    again = OncallConfig.model_validate(oncall.model_dump(mode="json"))
    assert again == oncall
    assert again.schedules[0].shifts(utc(2026, 3, 1), utc(2026, 4, 1)) == oncall.schedules[
        0
    ].shifts(utc(2026, 3, 1), utc(2026, 4, 1))


@pytest.mark.parametrize(
    ("data", "loc", "message"),
    [
        (
            config(schedules=[primary(layer(["alice", "zed"], "2026-01-05T09:00", "1w"))]),
            ("schedules", 0, "layers", 0, "users", 1),
            "Value error, unknown user 'zed' (not in oncall.users)",
        ),
        (
            config(
                schedules=[
                    primary(
                        LAYER,
                        overrides=[{"user": "dvae", "start": "2026-01-01", "end": "2026-01-02"}],
                    )
                ]
            ),
            ("schedules", 0, "overrides", 0, "user"),
            "Value error, unknown user 'dvae' (not in oncall.users): did you mean 'dave'?",
        ),
        (
            config(teams=[{"name": "dba", "members": ["alice", "bobb"]}]),
            ("teams", 0, "members", 1),
            "Value error, unknown user 'bobb' (not in oncall.users): did you mean 'bob'?",
        ),
        (
            {"users": [{"name": "alice"}, {"name": "bob"}, {"name": "alice"}]},
            ("users",),
            "Value error, user 'alice' is defined more than once (entries 0 and 2)",
        ),
        (
            config(
                teams=[{"name": "dba", "members": ["alice"]}, {"name": "dba", "members": ["bob"]}]
            ),
            ("teams",),
            "Value error, team 'dba' is defined more than once (entries 0 and 1)",
        ),
        (
            config(schedules=[primary(LAYER), primary(LAYER)]),
            ("schedules",),
            "Value error, schedule 'primary' is defined more than once (entries 0 and 1)",
        ),
        (
            config(schedules=[primary(LAYER, LAYER)]),
            ("schedules", 0, "layers"),
            "Value error, layer 'weekly' is defined more than once (entries 0 and 1)",
        ),
        (
            config(schedules=[primary(layer([], "2026-01-05T09:00", "1w"))]),
            ("schedules", 0, "layers", 0, "users"),
            "Value error, a layer needs at least one user",
        ),
        (
            config(schedules=[primary(layer(["alice"], "2026-01-05T09:00", "30m"))]),
            ("schedules", 0, "layers", 0, "rotation"),
            "Value error, rotation must be at least 1h, got 30m",
        ),
        (
            config(schedules=[primary(layer(["alice"], "2026-01-05T09:00", "weekly"))]),
            ("schedules", 0, "layers", 0, "rotation"),
            "Value error, invalid duration 'weekly': expected e.g. 500ms, 30s, 5m, 1h",
        ),
        (
            config(
                schedules=[
                    primary(
                        LAYER,
                        overrides=[
                            {"user": "bob", "start": "2026-12-26T00:00", "end": "2026-12-24T00:00"}
                        ],
                    )
                ]
            ),
            ("schedules", 0, "overrides", 0, "end"),
            "Value error, end 2026-12-24T00:00 must be after start 2026-12-26T00:00",
        ),
        (
            config(
                schedules=[
                    primary(
                        LAYER,
                        overrides=[
                            {"user": "bob", "start": "2026-12-24T00:00", "end": "2026-12-24T00:00"}
                        ],
                    )
                ]
            ),
            ("schedules", 0, "overrides", 0, "end"),
            "Value error, end 2026-12-24T00:00 must be after start 2026-12-24T00:00",
        ),
        (
            config(schedules=[primary({**LAYER, "end": "2026-01-01T00:00"})]),
            ("schedules", 0, "layers", 0, "end"),
            "Value error, end 2026-01-01T00:00 must be after start 2026-01-05T09:00",
        ),
        (
            # one error, though the restriction would take the zone as its location
            config(
                schedules=[
                    primary({**LAYER, "restrictions": [BUSINESS_HOURS]}, time_zone="Europe/Lisbo")
                ]
            ),
            ("schedules", 0, "time_zone"),
            "Value error, unknown time zone 'Europe/Lisbo': expected an IANA zone name such as "
            "'Europe/Lisbon' or 'UTC'",
        ),
        (
            config(schedules=[primary({**LAYER, "start": "2026-01-05T09:00+01:00"})]),
            ("schedules", 0, "layers", 0, "start"),
            "Value error, local time 2026-01-05T09:00:00+01:00 must not have a UTC offset: it is "
            "read in the schedule's time_zone (write e.g. '2026-01-05T09:00')",
        ),
        (
            config(schedules=[primary({**LAYER, "start": "next monday"})]),
            ("schedules", 0, "layers", 0, "start"),
            "Value error, invalid local time 'next monday': expected YYYY-MM-DDTHH:MM such as "
            "'2026-01-05T09:00'",
        ),
        (
            config(schedules=[primary({**LAYER, "start": 1767600000})]),
            ("schedules", 0, "layers", 0, "start"),
            "Value error, invalid local time 1767600000: expected a string YYYY-MM-DDTHH:MM such "
            "as '2026-01-05T09:00'",
        ),
        (
            config(schedules=[primary({**LAYER, "name": "override"})]),
            ("schedules", 0, "layers", 0, "name"),
            "Value error, 'override' is reserved for overrides: name the layer otherwise",
        ),
        (
            config(schedules=[primary()]),
            ("schedules", 0, "layers"),
            "Value error, a schedule needs at least one layer",
        ),
        (
            {"users": [{"name": "Alice"}]},
            ("users", 0, "name"),
            "Value error, invalid name 'Alice': use lowercase letters, digits, '_', '.' and '-'",
        ),
        (
            {"users": [{"name": "alice", "email": "alice.example.com"}]},
            ("users", 0, "email"),
            "Value error, invalid email address 'alice.example.com': expected e.g. alice@example.com",
        ),
        (
            config(teams=[{"name": "dba", "members": []}]),
            ("teams", 0, "members"),
            "Value error, a team needs at least one member",
        ),
        (
            config(teams=[{"name": "dba", "members": ["alice", "alice"]}]),
            ("teams", 0, "members"),
            "Value error, member 'alice' is defined more than once (entries 0 and 1)",
        ),
        (
            config(schedules=[primary({**LAYER, "rotaton": "1d"})]),
            ("schedules", 0, "layers", 0, "rotaton"),
            "Extra inputs are not permitted",
        ),
        (
            config(
                schedules=[primary({**LAYER, "restrictions": [{"weekdays": ["friday:monday"]}]})]
            ),
            ("schedules", 0, "layers", 0, "restrictions", 0, "weekdays", 0),
            "Value error, invalid weekday range 'friday:monday': friday comes after monday "
            "(weeks run sunday to saturday: list the days on each side separately)",
        ),
    ],
)
def test_config_errors_say_where_and_why(
    data: dict[str, Any], loc: tuple[int | str, ...], message: str
) -> None:
    assert rejection(data) == (loc, message)


def test_references_in_models_built_beforehand_are_checked_too() -> None:
    built = Schedule.model_validate(primary(layer(["alice", "zed"], "2026-01-05T09:00", "1w")))
    with pytest.raises(ValidationError) as caught:
        OncallConfig(users=[], schedules=[built])
    [error] = caught.value.errors()
    assert error["msg"] == (
        "Value error, schedules.0.layers.0.users.0: unknown user 'alice' (not in oncall.users); "
        "schedules.0.layers.0.users.1: unknown user 'zed' (not in oncall.users)"
    )


def test_a_target_names_exactly_one_user_team_or_schedule() -> None:
    assert OncallTarget.model_validate({"team": "dba"}).kind == "team"
    with pytest.raises(
        ValidationError, match="expected exactly one of user, team or schedule, got user and team"
    ):
        OncallTarget.model_validate({"user": "alice", "team": "dba"})
    with pytest.raises(ValidationError, match="expected exactly one of user, team or schedule"):
        OncallTarget.model_validate({})


# -- directory ---------------------------------------------------------------------------


def directory() -> OncallDirectory:
    return OncallDirectory(
        OncallConfig.model_validate(
            config(
                teams=[{"name": "dba", "members": ["carol", "alice"]}],
                schedules=[
                    primary(
                        layer(["alice", "bob"], "2026-01-05T09:00", "1w"), time_zone="Europe/Lisbon"
                    ),
                    {"name": "later", "layers": [layer(["dave"], "2027-01-01T00:00", "1d")]},
                ],
            )
        )
    )


def test_directory_resolves_names_and_targets() -> None:
    found = directory()
    assert found.user("bob").name == "bob"
    assert found.team("dba").members == ["carol", "alice"]
    assert found.schedule("later").name == "later"
    at = utc(2026, 1, 13)
    assert [u.name for u in found.users_of({"user": "erin"})] == ["erin"]
    assert [u.name for u in found.users_of({"team": "dba"})] == ["carol", "alice"]
    assert [u.name for u in found.users_of(OncallTarget(schedule="primary"), at)] == ["bob"]
    assert found.users_of({"schedule": "later"}, at) == []
    assert found.who_is_on_call(at) == {"primary": ["bob"], "later": []}


def test_directory_refuses_unknown_names_and_a_schedule_without_a_moment() -> None:
    found = directory()
    with pytest.raises(KeyError, match="unknown team 'ops'"):
        found.users_of({"team": "ops"})
    with pytest.raises(KeyError, match="unknown user 'zed'"):
        found.user("zed")
    with pytest.raises(KeyError, match="unknown schedule 'nope'"):
        found.users_of({"schedule": "nope"}, utc(2026, 1, 1))
    with pytest.raises(ValueError, match="users_of schedule 'primary' needs the moment `at`"):
        found.users_of({"schedule": "primary"})


def test_receivers_of_users_must_exist_in_alerting() -> None:
    oncall = OncallConfig.model_validate(
        {
            "users": [
                {"name": "alice", "receiver": "alice-pagr"},
                {"name": "bob", "receiver": "ops"},
                {"name": "carol"},
            ]
        }
    )
    assert oncall_problems(oncall, ["alice-pager", "ops"]) == [
        (
            ["users", 0, "receiver"],
            "unknown receiver 'alice-pagr' (not in alerting.receivers): did you mean 'alice-pager'?",
        )
    ]
    assert oncall_problems(oncall, ["alice-pagr", "ops"]) == []
