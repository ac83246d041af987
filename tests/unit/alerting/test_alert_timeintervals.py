"""Time intervals: Alertmanager's ``time_intervals`` semantics, validation and next_change."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from pudimd.alerting.timeintervals import (
    NamedTimeInterval,
    TimeInterval,
    TimeRange,
    active_intervals,
    by_name,
    next_change,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def interval(**fields: Any) -> TimeInterval:
    return TimeInterval.model_validate(fields)


def named(name: str, *intervals: dict[str, Any]) -> NamedTimeInterval:
    return NamedTimeInterval.model_validate({"name": name, "time_intervals": list(intervals)})


def rejection(fields: dict[str, Any]) -> tuple[tuple[int | str, ...], str]:
    """Where and why validating ``fields`` as a TimeInterval fails (exactly one error)."""
    with pytest.raises(ValidationError) as caught:
        TimeInterval.model_validate(fields)
    [error] = caught.value.errors()
    return error["loc"], error["msg"]


HOURS = [{"start_time": "09:00", "end_time": "17:00"}]


# -- contains ----------------------------------------------------------------------------


def test_empty_interval_contains_every_moment() -> None:
    always = interval()
    for moment in (utc(2026, 1, 1), utc(2026, 7, 4, 13, 37), utc(1999, 12, 31, 23, 59)):
        assert always.contains(moment)


def test_empty_lists_match_anything() -> None:
    assert interval(times=[], weekdays=[], days_of_month=[], months=[], years=[]).contains(
        utc(2026, 5, 5, 5, 5)
    )


def test_time_range_includes_its_start_and_excludes_its_end() -> None:
    hours = interval(times=HOURS)
    assert not hours.contains(utc(2026, 1, 5, 8, 59))
    assert hours.contains(utc(2026, 1, 5, 9, 0))
    assert hours.contains(utc(2026, 1, 5, 16, 59))
    assert hours.contains(datetime(2026, 1, 5, 16, 59, 59, 999999, tzinfo=UTC))
    assert not hours.contains(utc(2026, 1, 5, 17, 0))


def test_time_range_may_end_at_midnight() -> None:
    evening = interval(times=[{"start_time": "18:00", "end_time": "24:00"}])
    assert evening.contains(utc(2026, 1, 5, 23, 59))
    assert not evening.contains(utc(2026, 1, 6, 0, 0))


def test_any_time_range_may_match() -> None:
    split = interval(
        times=[
            {"start_time": "00:00", "end_time": "06:00"},
            {"start_time": "22:00", "end_time": "24:00"},
        ]
    )
    assert split.contains(utc(2026, 1, 5, 5, 59))
    assert split.contains(utc(2026, 1, 5, 22, 0))
    assert not split.contains(utc(2026, 1, 5, 12, 0))


def test_weekday_range_is_inclusive() -> None:
    weekdays = interval(weekdays=["monday:friday"])
    assert weekdays.contains(utc(2026, 1, 5))  # monday
    assert weekdays.contains(utc(2026, 1, 9, 23, 59))  # friday
    assert not weekdays.contains(utc(2026, 1, 10))  # saturday
    assert not weekdays.contains(utc(2026, 1, 4, 12))  # sunday


def test_single_weekdays_and_case_are_accepted() -> None:
    weekend = interval(weekdays=["Saturday", "SUNDAY"])
    assert weekend.contains(utc(2026, 1, 10))
    assert weekend.contains(utc(2026, 1, 11))
    assert not weekend.contains(utc(2026, 1, 12))


def test_negative_days_of_month_count_from_the_month_end() -> None:
    month_end = interval(days_of_month=["-3:-1"])
    # February 2026 has 28 days
    assert [d for d in range(1, 29) if month_end.contains(utc(2026, 2, d))] == [26, 27, 28]
    # February 2024 has 29
    assert [d for d in range(1, 30) if month_end.contains(utc(2024, 2, d))] == [27, 28, 29]
    assert [d for d in range(1, 32) if month_end.contains(utc(2026, 1, d))] == [29, 30, 31]


def test_last_day_of_month_is_minus_one() -> None:
    last = interval(days_of_month=["-1"])
    assert last.contains(utc(2026, 4, 30))
    assert not last.contains(utc(2026, 4, 29))
    assert last.contains(utc(2026, 12, 31, 23, 59))


def test_day_range_from_a_day_to_the_month_end() -> None:
    second_half = interval(days_of_month=["15:-1"])
    assert [d for d in range(1, 31) if second_half.contains(utc(2026, 4, d))] == list(range(15, 31))
    assert interval(days_of_month=["1:-1"]).contains(utc(2026, 2, 28))


def test_days_past_a_short_months_end_never_match() -> None:
    late = interval(days_of_month=["30:31"])
    assert not any(late.contains(utc(2026, 2, d)) for d in range(1, 29))
    assert late.contains(utc(2026, 4, 30))
    assert not interval(days_of_month=["31"]).contains(utc(2026, 4, 30))


def test_negative_days_before_a_short_months_start_clamp_to_its_first_day() -> None:
    whole = interval(days_of_month=["-31:-1"])
    assert all(whole.contains(utc(2026, 2, d)) for d in range(1, 29))


def test_days_of_month_accept_integers() -> None:
    # YAML `days_of_month: [1, 15]`
    some = interval(days_of_month=[1, 15])
    assert some.contains(utc(2026, 3, 15)) and not some.contains(utc(2026, 3, 14))
    assert some.model_dump()["days_of_month"] == ["1", "15"]


@pytest.mark.parametrize(
    "months", [["january:march"], ["1:3"], ["JANUARY:3"], ["january", 2, "march"]]
)
def test_month_ranges_by_name_or_number(months: list[Any]) -> None:
    first_quarter = interval(months=months)
    assert first_quarter.contains(utc(2026, 1, 1))
    assert first_quarter.contains(utc(2026, 3, 31, 23, 59))
    assert not first_quarter.contains(utc(2026, 4, 1))
    assert not first_quarter.contains(utc(2026, 12, 31))


def test_single_month() -> None:
    may = interval(months=["may"])
    assert may.contains(utc(2026, 5, 20)) and not may.contains(utc(2026, 6, 1))


def test_year_ranges_and_single_years() -> None:
    years = interval(years=["2020:2022", 2024])
    assert [y for y in range(2018, 2027) if years.contains(utc(y, 6, 1))] == [
        2020,
        2021,
        2022,
        2024,
    ]


def test_every_field_must_match() -> None:
    office = interval(times=HOURS, weekdays=["monday:friday"], months=["january"], years=["2026"])
    assert office.contains(utc(2026, 1, 5, 10))
    assert not office.contains(utc(2026, 1, 5, 18))  # hour
    assert not office.contains(utc(2026, 1, 10, 10))  # saturday
    assert not office.contains(utc(2026, 2, 2, 10))  # february
    assert not office.contains(utc(2027, 1, 4, 10))  # year


# -- location ----------------------------------------------------------------------------


def test_moment_is_read_in_the_location() -> None:
    sydney = interval(times=HOURS, weekdays=["monday:friday"], location="Australia/Sydney")
    # Monday 2026-01-05 09:30 in Sydney (UTC+11) is Sunday 22:30 UTC
    assert sydney.contains(utc(2026, 1, 4, 22, 30))
    assert not sydney.contains(utc(2026, 1, 5, 9, 30))  # 20:30 in Sydney
    assert sydney.contains(datetime(2026, 1, 5, 9, 30, tzinfo=ZoneInfo("Australia/Sydney")))


def test_location_follows_daylight_saving_time() -> None:
    hours = interval(times=HOURS, location="America/New_York")
    # 13:30 UTC is 08:30 EST in January, 09:30 EDT in July
    assert not hours.contains(utc(2026, 1, 15, 13, 30))
    assert hours.contains(utc(2026, 7, 15, 13, 30))
    # on the change day itself (2026-03-08, 02:00 EST -> 03:00 EDT)
    assert not hours.contains(utc(2026, 3, 7, 13, 30))
    assert hours.contains(utc(2026, 3, 8, 13, 30))


def test_wall_clock_hour_skipped_by_dst_is_never_contained() -> None:
    skipped = interval(
        times=[{"start_time": "02:00", "end_time": "03:00"}], location="Europe/Berlin"
    )
    day = [utc(2026, 3, 28, 22) + timedelta(minutes=m) for m in range(6 * 60)]
    assert not any(skipped.contains(moment) for moment in day)


def test_wall_clock_hour_repeated_by_dst_is_contained_twice() -> None:
    repeated = interval(
        times=[{"start_time": "02:00", "end_time": "03:00"}], location="Europe/Berlin"
    )
    # 2026-10-25: 02:00-03:00 CEST (00:00-01:00 UTC), then 02:00-03:00 CET (01:00-02:00 UTC)
    assert not repeated.contains(utc(2026, 10, 24, 23, 59))
    assert repeated.contains(utc(2026, 10, 25, 0, 0))
    assert repeated.contains(utc(2026, 10, 25, 1, 30))
    assert not repeated.contains(utc(2026, 10, 25, 2, 0))


def test_weekday_and_month_are_read_in_the_location() -> None:
    tokyo = interval(
        weekdays=["monday"], days_of_month=["1"], months=["june"], location="Asia/Tokyo"
    )
    # 2026-05-31 20:00 UTC is Monday 2026-06-01 05:00 in Tokyo
    assert tokyo.contains(utc(2026, 5, 31, 20))
    assert not tokyo.contains(utc(2026, 5, 31, 14))


def test_location_defaults_to_utc() -> None:
    hours = interval(times=HOURS)
    assert hours.location == "UTC"
    assert hours.contains(datetime(2026, 1, 5, 10, 30, tzinfo=BERLIN))  # 09:30 UTC
    assert not hours.contains(datetime(2026, 1, 5, 9, 30, tzinfo=BERLIN))  # 08:30 UTC


def test_local_location_is_this_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    local = interval(times=HOURS, location="Local")
    assert local.zone == NEW_YORK
    assert local.contains(utc(2026, 7, 15, 13, 30))  # 09:30 EDT
    assert not local.contains(utc(2026, 1, 15, 13, 30))  # 08:30 EST
    assert local.model_dump()["location"] == "Local"


def test_unknown_location_is_rejected() -> None:
    loc, msg = rejection({"location": "Mars/Olympus_Mons"})
    assert loc == ("location",)
    assert "unknown time zone 'Mars/Olympus_Mons'" in msg and "IANA" in msg


def test_naive_moments_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be timezone-aware"):
        interval().contains(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="must be timezone-aware"):
        named("n", {}).next_change(datetime(2026, 1, 1))


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        ("17:00", "09:00", "start_time 17:00 must be before end_time 09:00"),
        ("09:00", "09:00", "start_time 09:00 must be before end_time 09:00"),
        ("24:00", "24:00", "must be before"),
    ],
)
def test_time_range_must_start_before_it_ends(start: str, end: str, reason: str) -> None:
    loc, msg = rejection({"times": [{"start_time": start, "end_time": end}]})
    assert loc == ("times", 0)
    assert reason in msg


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("9:00", "expected HH:MM with two-digit hours and minutes"),
        ("09:00:00", "expected HH:MM"),
        ("noon", "expected HH:MM"),
        ("25:00", "out of range (00:00 to 24:00)"),
        ("24:01", "out of range"),
        ("12:60", "out of range"),
        ("-1:00", "expected HH:MM"),
        (540, "expected a string HH:MM"),
    ],
)
def test_bad_times_of_day_are_rejected(text: Any, reason: str) -> None:
    loc, msg = rejection({"times": [{"start_time": text, "end_time": "24:00"}]})
    assert loc == ("times", 0, "start_time")
    assert reason in msg


def test_time_range_needs_both_ends() -> None:
    with pytest.raises(ValidationError, match="end_time"):
        TimeRange.model_validate({"start_time": "09:00"})


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        (
            "weekdays",
            "saturday:sunday",
            "saturday comes after sunday (weeks run sunday to saturday",
        ),
        ("weekdays", "funday", "'funday' is not a day of the week"),
        ("weekdays", "monday:tuesday:friday", "expected one value or start:end"),
        ("weekdays", 1, "expected a string such as 'monday:friday'"),
        ("days_of_month", "0", "0 is out of range"),
        ("days_of_month", "32", "32 is out of range"),
        ("days_of_month", "-32:-1", "-32 is out of range"),
        ("days_of_month", "-3:3", "the end must too"),
        ("days_of_month", "5:1", "the end comes before the start"),
        ("days_of_month", "-1:-3", "the end comes before the start"),
        ("days_of_month", "20:-13", "the end comes before the start"),
        ("days_of_month", "first", "'first' is not a number"),
        ("months", "13", "'13' is not a month"),
        ("months", "0", "'0' is not a month"),
        ("months", "smarch", "'smarch' is not a month"),
        ("months", "december:january", "january comes before december"),
        ("years", "2022:2020", "2020 is before 2022"),
        ("years", "twenty", "'twenty' is not a number"),
        ("years", "0", "0 is out of range"),
        ("years", True, "expected a string such as '2020:2022'"),
    ],
)
def test_bad_ranges_are_rejected_saying_which_and_why(field: str, value: Any, reason: str) -> None:
    loc, msg = rejection({field: [value]})
    assert loc == (field, 0)
    assert reason in msg
    assert repr(str(value)) in msg or repr(value) in msg  # names the value


def test_day_range_ending_late_in_long_months_is_accepted() -> None:
    # in 31-day months 29:-1 is 29..31; in February it is empty
    late = interval(days_of_month=["29:-1"])
    assert late.contains(utc(2026, 1, 31)) and not late.contains(utc(2026, 2, 28))


def test_unknown_fields_are_rejected() -> None:
    loc, msg = rejection({"time_zone": "UTC"})
    assert loc == ("time_zone",)
    assert "Extra inputs are not permitted" in msg


def test_named_interval_needs_a_name() -> None:
    with pytest.raises(ValidationError, match="name"):
        NamedTimeInterval.model_validate({"name": "", "time_intervals": []})


def test_interval_serializes_in_config_form_and_back() -> None:
    source = {
        "times": [{"start_time": "09:00", "end_time": "24:00"}],
        "weekdays": ["monday:friday", "sunday"],
        "days_of_month": ["1:5", "-3:-1", "15"],
        "months": ["january:march", "may"],
        "years": ["2020:2022", "2024"],
        "location": "Europe/Berlin",
    }
    parsed = interval(**source)
    assert parsed.model_dump() == source
    assert TimeInterval.model_validate_json(parsed.model_dump_json()) == parsed
    assert interval(months=["1:3"]).model_dump()["months"] == ["january:march"]


def test_json_schema_describes_the_config_form() -> None:
    schema = TimeInterval.model_json_schema()
    time_range = schema["$defs"]["TimeRange"]["properties"]["start_time"]
    assert time_range["type"] == "string" and "pattern" in time_range
    weekdays = schema["properties"]["weekdays"]["anyOf"][0]
    assert weekdays["items"]["type"] == "string"


# -- named intervals ---------------------------------------------------------------------


def test_named_interval_is_active_when_any_interval_contains_the_moment() -> None:
    off_hours = named(
        "off-hours",
        {"weekdays": ["saturday", "sunday"]},
        {"times": [{"start_time": "00:00", "end_time": "09:00"}]},
    )
    assert off_hours.active(utc(2026, 1, 10, 12))  # saturday
    assert off_hours.active(utc(2026, 1, 5, 8))  # monday early
    assert not off_hours.active(utc(2026, 1, 5, 12))


def test_named_interval_without_intervals_is_never_active() -> None:
    assert not named("never").active(utc(2026, 1, 5, 12))
    assert named("never").next_change(utc(2026, 1, 5, 12)) is None


def test_active_intervals_lists_the_active_names_in_order() -> None:
    index = by_name(
        [
            named("weekend", {"weekdays": ["saturday:saturday", "sunday"]}),
            named("always", {}),
            named("night", {"times": [{"start_time": "00:00", "end_time": "06:00"}]}),
        ]
    )
    names = ["night", "weekend", "always"]
    assert active_intervals(index, names, utc(2026, 1, 10, 3)) == ["night", "weekend", "always"]
    assert active_intervals(index, names, utc(2026, 1, 5, 12)) == ["always"]
    assert active_intervals(index, [], utc(2026, 1, 5, 12)) == []


def test_active_intervals_rejects_unknown_names() -> None:
    with pytest.raises(KeyError, match="unknown time interval 'holidays'"):
        active_intervals({}, ["holidays"], utc(2026, 1, 5))


def test_by_name_rejects_a_name_defined_twice() -> None:
    with pytest.raises(ValueError, match="time interval 'x' is defined more than once"):
        by_name([named("x"), named("x")])


# -- next_change -------------------------------------------------------------------------

BUSINESS = {"times": HOURS, "weekdays": ["monday:friday"], "location": "Europe/Berlin"}


def test_next_change_is_the_end_of_the_active_period() -> None:
    business = named("business", BUSINESS)
    friday_afternoon = utc(2026, 1, 9, 14, 12)  # 15:12 in Berlin
    assert business.active(friday_afternoon)
    assert business.next_change(friday_afternoon) == utc(2026, 1, 9, 16)  # 17:00 in Berlin


def test_next_change_skips_to_the_next_active_day() -> None:
    business = named("business", BUSINESS)
    change = business.next_change(utc(2026, 1, 9, 16))  # friday 17:00 in Berlin
    assert change == utc(2026, 1, 12, 8)  # monday 09:00 in Berlin
    assert change is not None and change.tzinfo is UTC


def test_next_change_is_strictly_after_the_moment() -> None:
    business = named("business", BUSINESS)
    monday_nine = utc(2026, 1, 12, 8)
    assert business.active(monday_nine)
    assert business.next_change(monday_nine) == utc(2026, 1, 12, 16)
    just_before = monday_nine - timedelta(seconds=1)
    assert business.next_change(just_before) == monday_nine


def test_next_change_from_within_a_minute_lands_on_a_minute_boundary() -> None:
    hours = named("hours", {"times": HOURS})
    moment = datetime(2026, 1, 5, 8, 59, 30, 123456, tzinfo=UTC)
    assert hours.next_change(moment) == utc(2026, 1, 5, 9)


def test_next_change_of_a_month_end_interval_is_at_midnight() -> None:
    month_end = named("month-end", {"days_of_month": ["-1"]})
    assert month_end.next_change(utc(2026, 2, 10)) == utc(2026, 2, 28)
    assert month_end.next_change(utc(2026, 2, 28, 12)) == utc(2026, 3, 1)


def test_next_change_across_the_spring_dst_change() -> None:
    # Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 never happens,
    # so the range starts when the clock jumps, and ends at 03:30 CEST
    night = named(
        "night",
        {"times": [{"start_time": "02:30", "end_time": "03:30"}], "location": "Europe/Berlin"},
    )
    start = night.next_change(utc(2026, 3, 28, 12))
    assert start == utc(2026, 3, 29, 1)
    assert night.next_change(start) == utc(2026, 3, 29, 1, 30)


def test_next_change_across_the_autumn_dst_change() -> None:
    # Berlin 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:30 happens twice
    night = named(
        "night",
        {"times": [{"start_time": "02:30", "end_time": "03:30"}], "location": "Europe/Berlin"},
    )
    changes = []
    moment = utc(2026, 10, 24, 12)
    for _ in range(4):
        found = night.next_change(moment)
        assert found is not None
        changes.append(found)
        moment = found
    assert changes == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 1, 0),  # the clock goes back to 02:00 CET
        utc(2026, 10, 25, 1, 30),  # 02:30 CET
        utc(2026, 10, 25, 2, 30),  # 03:30 CET
    ]


def test_next_change_of_intervals_in_different_zones() -> None:
    follow_the_sun = [
        interval(times=HOURS, location="Europe/Berlin"),  # 08:00-16:00 UTC in January
        interval(times=HOURS, location="America/New_York"),  # 14:00-22:00 UTC
    ]
    moment = utc(2026, 1, 5, 10)
    assert next_change(follow_the_sun, moment) == utc(2026, 1, 5, 22)
    assert next_change(follow_the_sun, utc(2026, 1, 5, 22)) == utc(2026, 1, 6, 8)


def test_next_change_is_none_when_nothing_changes_within_the_horizon() -> None:
    assert named("always", {}).next_change(utc(2026, 1, 1)) is None
    future = named("future", {"years": ["2030"]})
    assert future.next_change(utc(2026, 1, 1)) is None
    assert future.next_change(utc(2029, 6, 1)) == utc(2030, 1, 1)
    assert future.next_change(utc(2029, 6, 1), horizon=timedelta(days=30)) is None


def test_next_change_searches_a_year_quickly() -> None:
    leap_day = named("leap-day", {"months": ["february"], "days_of_month": ["29"]})
    started = time.perf_counter()
    assert leap_day.next_change(utc(2026, 3, 1)) is None  # next one is in 2028
    assert time.perf_counter() - started < 1.0
    assert leap_day.next_change(utc(2027, 6, 1)) == utc(2028, 2, 29)


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Europe/Berlin", utc(2026, 10, 23)),  # autumn DST change on the 25th
        ("America/New_York", utc(2026, 3, 6)),  # spring DST change on the 8th
        ("Australia/Lord_Howe", utc(2026, 4, 3)),  # half-hour DST change on the 5th
        ("Asia/Kathmandu", utc(2026, 2, 26)),  # +05:45, across a month end
    ],
)
def test_next_change_agrees_with_a_minute_by_minute_scan(zone: str, start: datetime) -> None:
    schedule = [
        interval(
            times=[
                {"start_time": "01:15", "end_time": "02:45"},
                {"start_time": "09:00", "end_time": "17:30"},
            ],
            weekdays=["monday:friday", "sunday"],
            location=zone,
        ),
        interval(
            days_of_month=["-2"],
            times=[{"start_time": "20:00", "end_time": "24:00"}],
            location=zone,
        ),
        interval(days_of_month=["1"], location="UTC"),
    ]
    expected = []
    state = any(i.contains(start) for i in schedule)
    for minute in range(1, 4 * 1440):
        moment = start + timedelta(minutes=minute)
        now = any(i.contains(moment) for i in schedule)
        if now != state:
            expected.append(moment)
            state = now
    assert len(expected) > 10
    found = []
    moment = start
    while (change := next_change(schedule, moment, horizon=timedelta(days=4))) is not None:
        if change >= start + timedelta(minutes=4 * 1440):
            break
        found.append(change)
        moment = change
    assert found == expected
