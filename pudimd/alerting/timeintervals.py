"""Time intervals: Alertmanager's ``time_intervals`` (and the deprecated top-level
``mute_time_intervals``, same shape), named periods routes refer to in
``mute_time_intervals`` / ``active_time_intervals``::

    time_intervals:
      - name: business-hours
        time_intervals:
          - times: [{start_time: "09:00", end_time: "17:00"}]
            weekdays: ["monday:friday"]
            location: Europe/Berlin
      - name: month-end
        time_intervals:
          - days_of_month: ["-3:-1"]

Semantics (Alertmanager's ``timeinterval`` package):

- A :class:`TimeInterval` contains a moment when *every* field it sets matches; a field
  matches when *any* of its ranges does.  A field left out (or given as an empty list)
  matches anything, so an interval with no fields contains every moment.
- ``times``: ``HH:MM`` ranges of the day, the start included and the end excluded
  (``24:00`` is the end of the day); a range cannot cross midnight.
- ``weekdays`` (``sunday`` .. ``saturday``), ``days_of_month`` (``1`` .. ``31``, or ``-1`` for
  the last day, ``-3:-1`` for the last three), ``months`` (names or ``1`` .. ``12``) and
  ``years``: single values or inclusive ``start:end`` ranges, names case-insensitive.  Weeks
  run from sunday to saturday, so ``saturday:sunday`` is written as two entries.
- ``location``: the IANA time zone the fields are read in (default ``UTC``; ``Local`` is
  this machine's zone, read when the config is loaded).  The moment is converted to the
  zone's wall clock first, so around a DST change an hour may happen twice or not at all.
- A :class:`NamedTimeInterval` is active when any of its intervals contains the moment
  (a name with no intervals is never active).

:meth:`NamedTimeInterval.next_change` tells the dispatcher when to look again: it walks
forward a day at a time, testing only the instants where the answer can change (local
midnights, the ``times`` boundaries and UTC-offset changes), so a year ahead costs a few
milliseconds.
"""

from __future__ import annotations

import calendar
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pudimd.settings import StrictModel

__all__ = [
    "DEFAULT_HORIZON",
    "NamedTimeInterval",
    "TimeInterval",
    "TimeRange",
    "active_intervals",
    "by_name",
    "next_change",
]

DEFAULT_HORIZON = timedelta(days=366)
"""How far :func:`next_change` looks ahead before answering None."""

_WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_WEEKDAY_NUMBERS = {name: number for number, name in enumerate(_WEEKDAYS)}
_MONTH_NUMBERS = {name: number for number, name in enumerate(_MONTHS, start=1)}
_DAY = 1440
"""Minutes in a day."""


# -- times of day ------------------------------------------------------------------------


def _parse_clock(value: Any) -> int:
    """``"HH:MM"`` (``00:00`` .. ``23:59``, or ``24:00``) as minutes since midnight."""
    if not isinstance(value, str):
        raise ValueError(f'invalid time {value!r}: expected a string HH:MM such as "09:00"')
    hours, sep, minutes = value.partition(":")
    if (
        sep
        and len(hours) == 2
        and len(minutes) == 2
        and hours.isdigit()
        and minutes.isdigit()
        and hours.isascii()
        and minutes.isascii()
    ):
        total = int(hours) * 60 + int(minutes)
        if int(minutes) < 60 and total <= _DAY:
            return total
        raise ValueError(f"invalid time {value!r}: out of range (00:00 to 24:00)")
    raise ValueError(
        f"invalid time {value!r}: expected HH:MM with two-digit hours and minutes, "
        "from 00:00 to 24:00"
    )


def _format_clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


_Clock = Annotated[
    int,
    BeforeValidator(_parse_clock),
    PlainSerializer(_format_clock, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
            "description": "A time of day, HH:MM (24:00 is the end of the day)",
        }
    ),
]


class TimeRange(StrictModel):
    """A range of the day, ``start_time`` included, ``end_time`` excluded.  Both are held
    as minutes since midnight and written ``HH:MM``."""

    start_time: _Clock
    end_time: _Clock

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start_time >= self.end_time:
            raise ValueError(
                f"start_time {_format_clock(self.start_time)} must be before end_time "
                f"{_format_clock(self.end_time)} (a range cannot cross midnight: split it "
                "in two, ending the first at 24:00)"
            )
        return self


# -- ranges ------------------------------------------------------------------------------


_EXAMPLES = {
    "weekday": "'monday:friday' or 'saturday'",
    "day of the month": "'1:5', '-3:-1' or '15'",
    "month": "'january:march', '1:3' or 'may'",
    "year": "'2020:2022' or '2024'",
}


def _split_range(value: Any, what: str, allow_int: bool) -> tuple[str, str, str]:
    """``value`` as (text, first, last): ``"a:b"`` or a single ``"a"`` (then first = last)."""
    if isinstance(value, int) and not isinstance(value, bool) and allow_int:
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid {what} {value!r}: expected a string such as {_EXAMPLES[what]}")
    parts = value.split(":")
    if len(parts) > 2:
        raise ValueError(
            f"invalid {what} range {value!r}: expected one value or start:end, "
            f"such as {_EXAMPLES[what]}"
        )
    first = parts[0].strip().lower()
    last = parts[-1].strip().lower()
    return value, first, last


def _number(text: str, original: str, what: str) -> int:
    token = text[1:] if text.startswith("-") else text
    if not token.isdigit() or not token.isascii():
        raise ValueError(f"invalid {what} {original!r}: {text!r} is not a number")
    return int(text)


def _parse_weekdays(value: Any) -> tuple[int, int]:
    original, first, last = _split_range(value, "weekday", allow_int=False)
    bounds: list[int] = []
    for name in (first, last):
        number = _WEEKDAY_NUMBERS.get(name)
        if number is None:
            raise ValueError(
                f"invalid weekday {original!r}: {name!r} is not a day of the week "
                "(sunday, monday, ... saturday)"
            )
        bounds.append(number)
    if bounds[0] > bounds[1]:
        raise ValueError(
            f"invalid weekday range {original!r}: {first} comes after {last} "
            "(weeks run sunday to saturday: list the days on each side separately)"
        )
    return bounds[0], bounds[1]


def _format_weekdays(value: tuple[int, int]) -> str:
    first, last = _WEEKDAYS[value[0]], _WEEKDAYS[value[1]]
    return first if first == last else f"{first}:{last}"


def _parse_days_of_month(value: Any) -> tuple[int, int]:
    original, first_text, last_text = _split_range(value, "day of the month", allow_int=True)
    first = _number(first_text, original, "day of the month")
    last = _number(last_text, original, "day of the month")
    for day in (first, last):
        if day == 0 or not -31 <= day <= 31:
            raise ValueError(
                f"invalid day of the month {original!r}: {day} is out of range "
                "(1 to 31, or -1 to -31 counting back from the month's last day)"
            )
    if first < 0 < last:
        raise ValueError(
            f"invalid day of the month range {original!r}: when the start counts from the "
            "month's end, the end must too"
        )
    # An error only when the range is empty in every month (with a positive start and a
    # negative end, the longest month, 31 days, gives the widest range).
    if (first > last) if (first < 0) == (last < 0) else (first > 31 + last + 1):
        raise ValueError(
            f"invalid day of the month range {original!r}: the end comes before the start"
        )
    return first, last


def _format_numbers(value: tuple[int, int]) -> str:
    return str(value[0]) if value[0] == value[1] else f"{value[0]}:{value[1]}"


def _parse_months(value: Any) -> tuple[int, int]:
    original, first_text, last_text = _split_range(value, "month", allow_int=True)
    bounds: list[int] = []
    for text in (first_text, last_text):
        number = _MONTH_NUMBERS.get(text)
        if number is None:
            if not (text.isdigit() and text.isascii()) or not 1 <= int(text) <= 12:
                raise ValueError(
                    f"invalid month {original!r}: {text!r} is not a month "
                    "(january .. december, or 1 .. 12)"
                )
            number = int(text)
        bounds.append(number)
    if bounds[0] > bounds[1]:
        raise ValueError(
            f"invalid month range {original!r}: {_MONTHS[bounds[1] - 1]} comes before "
            f"{_MONTHS[bounds[0] - 1]} (a range cannot cross the new year: list both parts)"
        )
    return bounds[0], bounds[1]


def _format_months(value: tuple[int, int]) -> str:
    first, last = _MONTHS[value[0] - 1], _MONTHS[value[1] - 1]
    return first if first == last else f"{first}:{last}"


def _parse_years(value: Any) -> tuple[int, int]:
    original, first_text, last_text = _split_range(value, "year", allow_int=True)
    first = _number(first_text, original, "year")
    last = _number(last_text, original, "year")
    for year in (first, last):
        if not 1 <= year <= 9999:
            raise ValueError(f"invalid year {original!r}: {year} is out of range (1 to 9999)")
    if first > last:
        raise ValueError(f"invalid year range {original!r}: {last} is before {first}")
    return first, last


def _schema(description: str, *types: str) -> WithJsonSchema:
    kinds: str | list[str] = list(types) if len(types) > 1 else types[0]
    return WithJsonSchema({"type": kinds, "description": description})


_Pair = tuple[int, int]
_WeekdayRange = Annotated[
    _Pair,
    BeforeValidator(_parse_weekdays),
    PlainSerializer(_format_weekdays, return_type=str),
    _schema("A weekday or range of weekdays: monday:friday, saturday", "string"),
]
_DayOfMonthRange = Annotated[
    _Pair,
    BeforeValidator(_parse_days_of_month),
    PlainSerializer(_format_numbers, return_type=str),
    _schema(
        "A day of the month or range: 1:5, 15, -3:-1 (negative counts from the month's end)",
        "string",
        "integer",
    ),
]
_MonthRange = Annotated[
    _Pair,
    BeforeValidator(_parse_months),
    PlainSerializer(_format_months, return_type=str),
    _schema("A month or range of months: january:march, 1:3, may", "string", "integer"),
]
_YearRange = Annotated[
    _Pair,
    BeforeValidator(_parse_years),
    PlainSerializer(_format_numbers, return_type=str),
    _schema("A year or range of years: 2020:2022, 2024", "string", "integer"),
]


# -- zones -------------------------------------------------------------------------------


_FILE_ZONES: dict[tuple[str, float], ZoneInfo] = {}


def _zone_file(path: str) -> ZoneInfo:
    """The zone in a TZif file, loaded once per file version (so configs that name
    ``Local`` twice compare equal)."""
    key = (path, os.stat(path).st_mtime)
    zone = _FILE_ZONES.get(key)
    if zone is None:
        with open(path, "rb") as file:
            zone = _FILE_ZONES[key] = ZoneInfo.from_file(file, key=path)
    return zone


def _local_zone() -> tzinfo:
    """This machine's time zone, with its DST rules when they can be found: ``$TZ`` when it
    names a zone, else ``/etc/localtime``; else (no zone database) the current UTC offset,
    which ignores DST changes."""
    name = os.environ.get("TZ", "").removeprefix(":")
    if name:
        try:
            return _zone_file(name) if os.path.isabs(name) else ZoneInfo(name)
        except (OSError, ValueError, ZoneInfoNotFoundError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            try:
                return ZoneInfo(target.rsplit("zoneinfo/", 1)[1])
            except (ValueError, ZoneInfoNotFoundError):
                pass
        return _zone_file("/etc/localtime")
    except (OSError, ValueError):
        pass
    return datetime.now().astimezone().tzinfo or UTC


def _load_zone(name: str) -> tzinfo:
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return _local_zone()
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(
            f"unknown time zone {name!r}: expected an IANA zone name such as 'Europe/Berlin', "
            "'UTC', or 'Local' for this machine's zone"
        ) from None


def _aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"moment {moment.isoformat()} must be timezone-aware")


# -- intervals ---------------------------------------------------------------------------


class TimeInterval(StrictModel):
    """One period: every field it sets must match (see the module docs)."""

    times: list[TimeRange] | None = None
    """Ranges of the day, ``HH:MM``, the end excluded."""
    weekdays: list[_WeekdayRange] | None = None
    """``monday:friday``, ``saturday``; weeks run sunday to saturday."""
    days_of_month: list[_DayOfMonthRange] | None = None
    """``1:5``, ``15``, ``-3:-1`` (the last three days of the month)."""
    months: list[_MonthRange] | None = None
    """``january:march``, ``1:3``, ``may``."""
    years: list[_YearRange] | None = None
    """``2020:2022``, ``2024``."""
    location: str = "UTC"
    """IANA time zone the fields are read in; ``Local`` is this machine's zone."""

    _zone: tzinfo = PrivateAttr(default=UTC)
    _clocks: tuple[time, ...] = PrivateAttr(default=())

    @field_validator("location")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _load_zone(value)
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._zone = _load_zone(self.location)
        # wall-clock times of day where `contains` may change: midnight, `times` bounds;
        # each in both readings (fold) of a wall time that happens twice
        minutes = {0}
        for time_range in self.times or ():
            minutes.add(time_range.start_time)
            if time_range.end_time < _DAY:
                minutes.add(time_range.end_time)
        self._clocks = tuple(
            time(m // 60, m % 60, fold=fold) for m in sorted(minutes) for fold in (0, 1)
        )

    @property
    def zone(self) -> tzinfo:
        """The time zone of ``location``."""
        return self._zone

    def contains(self, moment: datetime) -> bool:
        """Whether the (timezone-aware) ``moment`` falls in this interval."""
        _aware(moment)
        local = moment.astimezone(self._zone)
        if self.times:
            minute = local.hour * 60 + local.minute
            for time_range in self.times:
                if time_range.start_time <= minute < time_range.end_time:
                    break
            else:
                return False
        if self.days_of_month:
            length = calendar.monthrange(local.year, local.month)[1]
            day = local.day
            for first, last in self.days_of_month:
                start = length + first + 1 if first < 0 else first
                end = length + last + 1 if last < 0 else last
                if start <= day <= end and start <= length:
                    break
            else:
                return False
        if self.months and not any(a <= local.month <= b for a, b in self.months):
            return False
        if self.weekdays:
            weekday = (local.weekday() + 1) % 7  # sunday = 0, as in Go
            if not any(a <= weekday <= b for a, b in self.weekdays):
                return False
        return not self.years or any(a <= local.year <= b for a, b in self.years)

    def _candidates(self, start: datetime, end: datetime) -> Iterable[datetime]:
        """Instants in ``[start, end)`` (UTC, less than a day apart) where :meth:`contains`
        may change: the zone's midnights and ``times`` boundaries, and UTC-offset changes
        (where the wall clock jumps).  A wall time that happens twice, or not at all,
        yields both readings; the extra instants are harmless."""
        zone = self._zone
        first_day = start.astimezone(zone).date()
        last_day = (end - timedelta(microseconds=1)).astimezone(zone).date()
        days = [first_day] if first_day == last_day else [first_day, last_day]
        found: list[datetime] = []
        for day in days:
            for clock in self._clocks:
                instant = datetime.combine(day, clock, zone).astimezone(UTC)
                if start <= instant < end:
                    found.append(instant)
        transition = _offset_change(zone, start, end)
        if transition is not None:
            found.append(transition)
        return found


def _offset_change(zone: tzinfo, start: datetime, end: datetime) -> datetime | None:
    """The first minute in ``[start, end)`` whose UTC offset in ``zone`` differs from the
    offset at ``start``, or None.  Assumes at most one change in the span (a day: DST
    changes are months apart) and changes on minute boundaries (all since 1970)."""

    def offset(minute: int) -> timedelta | None:
        return datetime.fromtimestamp(minute * 60, UTC).astimezone(zone).utcoffset()

    low = int(start.timestamp() // 60)
    high = int((end - timedelta(microseconds=1)).timestamp() // 60)
    before = offset(low)
    if high <= low or offset(high) == before:
        return None
    while high - low > 1:  # offset(low) == before != offset(high)
        middle = (low + high) // 2
        if offset(middle) == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high * 60, UTC)


class NamedTimeInterval(StrictModel):
    """A named list of intervals, referred to by routes' ``mute_time_intervals`` and
    ``active_time_intervals``."""

    name: str = Field(min_length=1)
    time_intervals: list[TimeInterval] = Field(default_factory=list)

    def active(self, moment: datetime) -> bool:
        """Whether any of the intervals contains ``moment`` (timezone-aware)."""
        return any(interval.contains(moment) for interval in self.time_intervals)

    def next_change(
        self, moment: datetime, *, horizon: timedelta = DEFAULT_HORIZON
    ) -> datetime | None:
        """The first minute boundary after ``moment`` at which :meth:`active` changes (UTC),
        or None if it does not change within ``horizon``."""
        return next_change(self.time_intervals, moment, horizon=horizon)


def next_change(
    intervals: Sequence[TimeInterval], moment: datetime, *, horizon: timedelta = DEFAULT_HORIZON
) -> datetime | None:
    """The first instant after ``moment`` (timezone-aware) at which "any of ``intervals``
    contains it" changes, as an aware UTC datetime on a minute boundary, or None if that
    does not happen within ``horizon``.  Intervals may have different locations.

    Exact for every zone whose UTC offset changes at most once a day (all real ones).
    The cost is a few instants per interval per day searched; a change years ahead (an
    interval limited to ``years: [2030]``) is reported as None, and the caller asks again
    later."""
    _aware(moment)
    if not intervals:
        return None
    now = moment.astimezone(UTC)
    state = any(interval.contains(now) for interval in intervals)
    limit = now + horizon
    window = now
    while window < limit:
        window_end = min(window + timedelta(days=1), limit)
        found: set[datetime] = set()
        for interval in intervals:
            found.update(interval._candidates(window, window_end))
        for instant in sorted(found):
            if instant > now and any(i.contains(instant) for i in intervals) != state:
                return instant
        window = window_end
    return None


def by_name(named: Iterable[NamedTimeInterval]) -> dict[str, NamedTimeInterval]:
    """The intervals keyed by name; a name given twice raises ValueError."""
    index: dict[str, NamedTimeInterval] = {}
    for interval in named:
        if interval.name in index:
            raise ValueError(f"time interval {interval.name!r} is defined more than once")
        index[interval.name] = interval
    return index


def active_intervals(
    named: Mapping[str, NamedTimeInterval], names: Sequence[str], moment: datetime
) -> list[str]:
    """Which of ``names`` are active at ``moment`` (in the order given).  An unknown name
    raises KeyError: the config check makes sure routes only name defined intervals."""
    active: list[str] = []
    for name in names:
        interval = named.get(name)
        if interval is None:
            raise KeyError(f"unknown time interval {name!r}")
        if interval.active(moment):
            active.append(name)
    return active
