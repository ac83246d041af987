"""On-call: the ``oncall:`` section's users, teams and schedules, and who is on call when::

    oncall:
      users:
        - {name: alice, email: alice@example.com, receiver: alice-pager}
        - {name: bob}
      teams:
        - {name: dba, members: [alice, bob]}
      schedules:
        - name: primary
          time_zone: Europe/Lisbon
          layers:
            - name: weekly
              start: "2026-01-05T09:00"
              rotation: 1w
              users: [alice, bob]
          overrides:
            - {user: bob, start: "2026-12-24T00:00", end: "2026-12-26T00:00"}

A schedule is PagerDuty's: a stack of layers and a list of overrides.

- A **layer** hands the shift from one user to the next every ``rotation``, starting with
  its first user at ``start`` (the first handoff), and wrapping around its list.  Before
  ``start``, from ``end`` on, and outside its ``restrictions`` (Alertmanager time intervals:
  the layer covers only the moments inside one of them) it has nobody on call.
- A later layer beats an earlier one whenever it has someone on call; an **override** beats
  every layer.  Overrides must not overlap, and a layer that a later one hides entirely
  (no restrictions, started no later, ending no sooner) is refused as a mistake.  So a
  schedule has one user on call, none where no layer covers the moment.

Times in a schedule (``start``, ``end``, override bounds) are local times, without a UTC
offset, in its ``time_zone``.  Restrictions are read in that zone too unless they set their
own ``location``.

Handoffs and DST: a rotation of whole days (``1d``, ``1w``, ``14d``) hands off on the wall
clock: a daily 09:00 handoff stays at 09:00 across DST changes (that day's shift is an hour
shorter or longer), a weekly one happens on the same weekday at the same local time.  A
handoff time that does not exist that day (in the spring-forward gap) happens an hour later;
one that happens twice (fall back) happens the first time.  Any other rotation (``12h``,
``8h``, ``36h``) runs on absolute time: every shift lasts exactly ``rotation``, so after a
DST change its handoffs are an hour off on the wall clock.  Sub-day rotations cannot follow
the wall clock without shifts an hour short or long, none at all or two handoffs at one
instant when a handoff falls in the changing hour; for fixed day/night shifts at given local
times use daily layers with ``times`` restrictions instead (``09:00``-``21:00`` and the rest).

:meth:`Schedule.on_call` costs O(layers): the rotation index is arithmetic on the time since
``start``; overrides are merged into a sorted timeline once, and looked up by bisection.
"""

from __future__ import annotations

import bisect
import difflib
import itertools
import re
from collections.abc import Collection, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pudimd.alerting.escalation import EscalationPolicy
from pudimd.alerting.timeintervals import DEFAULT_HORIZON, TimeInterval, next_change
from pudimd.durations import Duration, format_duration
from pudimd.settings import StrictModel

__all__ = [
    "MIN_ROTATION",
    "OVERRIDE",
    "OncallConfig",
    "OncallDirectory",
    "OncallTarget",
    "OncallTeam",
    "OncallUser",
    "Override",
    "Schedule",
    "ScheduleLayer",
    "Shift",
    "oncall_problems",
]

MIN_ROTATION = timedelta(hours=1)
"""The shortest rotation a layer may have."""
OVERRIDE = "override"
"""The ``layer`` of a :class:`Shift` that comes from an override (no layer may be named so)."""

_DAY = timedelta(days=1)


# -- field types -------------------------------------------------------------------------


_NAME = re.compile(r"[a-z0-9_.-]+")


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid name {value!r}: use lowercase letters, digits, '_', '.' and '-'")
    return value


_Name = Annotated[
    str,
    AfterValidator(_check_name),
    WithJsonSchema({"type": "string", "pattern": "^[a-z0-9_.-]+$"}),
]

_KNOWN_USERS: ContextVar[frozenset[str] | None] = ContextVar("_KNOWN_USERS", default=None)
"""The user names of the :class:`OncallConfig` being validated (None outside one), so a
reference to an unknown user is an error at the reference's own location."""


def _unknown_user(name: str, known: Collection[str]) -> str:
    reason = f"unknown user {name!r} (not in oncall.users)"
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"{reason}: did you mean {close[0]!r}?" if close else reason


def _known_user(value: str) -> str:
    known = _KNOWN_USERS.get()
    if known is not None and value not in known:
        raise ValueError(_unknown_user(value, known))
    return value


_UserRef = Annotated[
    str,
    AfterValidator(_known_user),
    WithJsonSchema({"type": "string", "description": "The name of a user in oncall.users"}),
]


def _rotation(value: timedelta) -> timedelta:
    if value < MIN_ROTATION:
        raise ValueError(
            f"rotation must be at least {format_duration(MIN_ROTATION)}, "
            f"got {format_duration(value)}"
        )
    return value


_RotationLength = Annotated[Duration, AfterValidator(_rotation)]


def _local_time(value: Any) -> datetime:
    """A local date and time (no UTC offset): ``2026-01-05T09:00``, or a date (midnight)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"invalid local time {value!r}: expected YYYY-MM-DDTHH:MM such as "
                "'2026-01-05T09:00'"
            ) from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ValueError(
            f"invalid local time {value!r}: expected a string YYYY-MM-DDTHH:MM such as "
            "'2026-01-05T09:00'"
        )
    if value.tzinfo is not None:
        raise ValueError(
            f"local time {value.isoformat()} must not have a UTC offset: it is read in the "
            "schedule's time_zone (write e.g. '2026-01-05T09:00')"
        )
    return value


_LocalTime = Annotated[
    datetime,
    BeforeValidator(_local_time),
    WithJsonSchema(
        {
            "type": "string",
            "description": "A local time YYYY-MM-DDTHH:MM, in the schedule's time_zone",
        }
    ),
]


def _load_zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(
            f"unknown time zone {name!r}: expected an IANA zone name such as "
            "'Europe/Lisbon' or 'UTC'"
        ) from None


def _duplicates(names: Iterable[str], what: str) -> None:
    """Raise ValueError naming the first name given twice, with both positions."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise ValueError(
                f"{what} {name!r} is defined more than once (entries {seen[name]} and {index})"
            )
        seen[name] = index


def _format_local(value: datetime) -> str:
    return value.isoformat(timespec="minutes")


def _after_start(value: datetime | None, info: ValidationInfo) -> datetime | None:
    start = info.data.get("start")
    if value is not None and start is not None and value <= start:
        raise ValueError(f"end {_format_local(value)} must be after start {_format_local(start)}")
    return value


# -- the config --------------------------------------------------------------------------


class OncallUser(StrictModel):
    """Someone who can be on call."""

    name: _Name = Field(description="Unique name: lowercase letters, digits, '_', '.', '-'")
    email: str | None = Field(None, description="Email address")
    receiver: str | None = Field(
        None, description="Name of an alerting receiver that reaches this user"
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and "@" not in value.strip("@"):
            raise ValueError(f"invalid email address {value!r}: expected e.g. alice@example.com")
        return value


class OncallTeam(StrictModel):
    """A named group of users."""

    name: _Name = Field(description="Unique name: lowercase letters, digits, '_', '.', '-'")
    members: list[_UserRef] = Field(description="Users in the team")

    @field_validator("members")
    @classmethod
    def _members(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a team needs at least one member")
        _duplicates(value, "member")
        return value


class ScheduleLayer(StrictModel):
    """A rotation: its users take turns, each on call for ``rotation``."""

    name: _Name = Field(description="Name, unique in the schedule (shown in shifts)")
    start: _LocalTime = Field(
        description="The first handoff, local time in the schedule's time_zone: the first "
        "user is on call from then"
    )
    rotation: _RotationLength = Field(
        description="Shift length, a duration of at least 1h (1d, 1w, 12h).  Whole days hand "
        "off at the same local time across DST changes; others run on absolute time"
    )
    users: list[_UserRef] = Field(
        description="Who takes turns, in order (a user may appear more than once)"
    )
    restrictions: list[TimeInterval] | None = Field(
        None,
        description="Alertmanager time_intervals entries: the layer only covers moments "
        "inside one of them (read in the schedule's time_zone unless they set location)",
    )
    end: _LocalTime | None = Field(
        None, description="When the layer stops, local time (unset: never)"
    )

    @field_validator("name")
    @classmethod
    def _not_override(cls, value: str) -> str:
        if value == OVERRIDE:
            raise ValueError(f"{OVERRIDE!r} is reserved for overrides: name the layer otherwise")
        return value

    @field_validator("users")
    @classmethod
    def _some_users(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a layer needs at least one user")
        return value

    _end_after_start = field_validator("end")(_after_start)


class Override(StrictModel):
    """Someone on call instead of the layers, from ``start`` to ``end``."""

    user: _UserRef = Field(description="Who is on call")
    start: _LocalTime = Field(description="From (local time in the schedule's time_zone)")
    end: _LocalTime = Field(description="Until, excluded (local time)")

    _end_after_start = field_validator("end")(_after_start)


@dataclass(frozen=True, slots=True)
class Shift:
    """Someone on call from ``start`` to ``end`` (excluded), aware UTC datetimes, by
    ``layer`` (a layer's name, or :data:`OVERRIDE`)."""

    user: str
    start: datetime
    end: datetime
    layer: str


def _hides(later: ScheduleLayer, earlier: ScheduleLayer) -> bool:
    """Whether ``later`` has someone on call at every moment ``earlier`` could (so
    ``earlier`` never shows): no restrictions, started no later, ends no sooner."""
    if later.restrictions or later.start > earlier.start:
        return False
    if later.end is None:
        return True
    return earlier.end is not None and later.end >= earlier.end


def _instant(local: datetime, zone: tzinfo) -> datetime:
    """The instant (UTC) of the naive ``local`` wall time in ``zone``: a wall time that
    happens twice is its first; one that does not exist is read with the offset before the
    jump (an hour later on the new wall clock)."""
    return local.replace(tzinfo=zone).astimezone(UTC)


def _utc(moment: datetime, what: str = "moment") -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} {moment.isoformat()} must be timezone-aware")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Rotation:
    """A layer compiled in its schedule's zone."""

    name: str
    users: tuple[str, ...]
    rotation: timedelta
    zone: tzinfo
    start_local: datetime
    start: datetime
    end: datetime | None
    restrictions: tuple[TimeInterval, ...]
    wall: bool
    """Handoffs on the wall clock (whole-day rotations), else on absolute time."""

    def handoff(self, index: int) -> datetime:
        """The instant (UTC) the ``index``-th shift begins (0: ``start``)."""
        if self.wall:
            return _instant(self.start_local + index * self.rotation, self.zone)
        return self.start + index * self.rotation

    def index(self, moment: datetime) -> int:
        """The shift ``moment`` (UTC) falls in: the greatest index whose handoff is at or
        before it.  On the wall clock, the guess from the local time is off by one at most
        (offset changes are hours, rotations whole days)."""
        if not self.wall:
            return (moment - self.start) // self.rotation
        local = moment.astimezone(self.zone).replace(tzinfo=None)
        index = (local - self.start_local) // self.rotation
        while self.handoff(index + 1) <= moment:
            index += 1
        while self.handoff(index) > moment:
            index -= 1
        return index

    def active(self, moment: datetime) -> bool:
        """Whether the layer covers ``moment`` (UTC) at all."""
        if moment < self.start or (self.end is not None and moment >= self.end):
            return False
        return not self.restrictions or any(r.contains(moment) for r in self.restrictions)

    def user_at(self, moment: datetime) -> str | None:
        if not self.active(moment):
            return None
        return self.users[self.index(moment) % len(self.users)]

    def changes(self, start: datetime, end: datetime, found: set[datetime]) -> None:
        """Add to ``found`` the instants in ``(start, end)`` where :meth:`user_at` may
        change: handoffs, the layer's start and end, restriction boundaries."""
        low = max(start, self.start)
        high = end if self.end is None else min(end, self.end)
        if low >= high:
            return
        for edge in (self.start, self.end):
            if edge is not None and start < edge < end:
                found.add(edge)
        index = self.index(low) + 1
        while (handoff := self.handoff(index)) < high:
            found.add(handoff)
            index += 1
        if self.restrictions:
            moment = low
            while (change := next_change(self.restrictions, moment, horizon=high - moment)) and (
                change < high
            ):
                found.add(change)
                moment = change


def _restrictions_in(layer: Any, zone_name: str) -> Any:
    """``layer`` (raw input) with its restrictions' location defaulting to ``zone_name``."""
    if isinstance(layer, ScheduleLayer):
        layer = layer.model_dump(exclude_unset=True)
    if not isinstance(layer, Mapping) or not isinstance(layer.get("restrictions"), list):
        return layer
    restrictions = []
    for item in layer["restrictions"]:
        if isinstance(item, TimeInterval):
            item = item.model_dump(exclude_unset=True)
        if isinstance(item, Mapping) and "location" not in item:
            item = {**item, "location": zone_name}
        restrictions.append(item)
    return {**layer, "restrictions": restrictions}


class Schedule(StrictModel):
    """Who is on call when: layers of rotations, and overrides on top (see the module
    docs for the precedence and DST rules)."""

    name: _Name = Field(description="Unique name: lowercase letters, digits, '_', '.', '-'")
    time_zone: str = Field(
        "UTC", description="IANA time zone of the schedule's times (Europe/Lisbon)"
    )
    layers: list[ScheduleLayer] = Field(
        description="Rotations; a later layer beats an earlier one when it has someone on call"
    )
    overrides: list[Override] = Field(
        default_factory=list, description="Someone on call instead of every layer, for a while"
    )

    _zone: tzinfo = PrivateAttr(default=UTC)
    _rotations: tuple[_Rotation, ...] = PrivateAttr(default=())
    _override_points: list[datetime] = PrivateAttr(default_factory=list)
    _override_users: list[tuple[str, ...]] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _localize_restrictions(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("layers"), list):
            return data
        zone_name = data.get("time_zone", "UTC")
        try:
            _load_zone(zone_name)
        except (TypeError, ValueError):
            return data  # reported at time_zone
        return {**data, "layers": [_restrictions_in(layer, zone_name) for layer in data["layers"]]}

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _load_zone(value)
        return value

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[ScheduleLayer]) -> list[ScheduleLayer]:
        if not value:
            raise ValueError("a schedule needs at least one layer")
        _duplicates((layer.name for layer in value), "layer")
        for index, layer in enumerate(value):
            for later in value[index + 1 :]:
                if _hides(later, layer):
                    raise ValueError(
                        f"layer {layer.name!r} is never on call: layer {later.name!r} after "
                        "it covers every moment it does (give one of them restrictions, an "
                        "end or a later start)"
                    )
        return value

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: list[Override]) -> list[Override]:
        ordered = sorted(enumerate(value), key=lambda pair: pair[1].start)
        for (i, one), (j, other) in itertools.pairwise(ordered):
            if other.start < one.end:
                raise ValueError(
                    f"overrides {min(i, j)} ({value[min(i, j)].user}) and {max(i, j)} "
                    f"({value[max(i, j)].user}) overlap: one person per moment (end one "
                    "where the other starts)"
                )
        return value

    def model_post_init(self, context: Any, /) -> None:
        zone = self._zone = _load_zone(self.time_zone)
        self._rotations = tuple(
            _Rotation(
                name=layer.name,
                users=tuple(layer.users),
                rotation=layer.rotation,
                zone=zone,
                start_local=layer.start,
                start=_instant(layer.start, zone),
                end=None if layer.end is None else _instant(layer.end, zone),
                restrictions=tuple(layer.restrictions or ()),
                wall=layer.rotation % _DAY == timedelta(0),
            )
            for layer in self.layers
        )
        spans = [(_instant(o.start, zone), _instant(o.end, zone), o.user) for o in self.overrides]
        spans = [span for span in spans if span[0] < span[1]]
        points = sorted({edge for start, end, _ in spans for edge in (start, end)})
        self._override_points = points
        self._override_users = [
            tuple(dict.fromkeys(user for start, end, user in reversed(spans) if start <= p < end))
            for p in points
        ]

    @property
    def zone(self) -> tzinfo:
        """The time zone of ``time_zone``."""
        return self._zone

    def _assignments(self, moment: datetime) -> list[tuple[str, str]]:
        """(user, layer or OVERRIDE) on call at ``moment`` (UTC), in precedence order."""
        slot = bisect.bisect_right(self._override_points, moment) - 1
        if slot >= 0 and self._override_users[slot]:
            return [(user, OVERRIDE) for user in self._override_users[slot]]
        for rotation in reversed(self._rotations):
            user = rotation.user_at(moment)
            if user is not None:
                return [(user, rotation.name)]
        return []

    def on_call(self, at: datetime) -> list[str]:
        """The users on call at ``at`` (timezone-aware): the overrides' if any apply (the
        one listed last first), else the user of the last layer that has one; usually one
        name, none when no layer covers ``at``.  O(layers + log overrides)."""
        return [user for user, _ in self._assignments(_utc(at, "at"))]

    def _changes(self, start: datetime, end: datetime) -> list[datetime]:
        """``start`` and every instant in ``(start, end)`` where :meth:`on_call` may change,
        sorted."""
        found = {start}
        for rotation in self._rotations:
            rotation.changes(start, end, found)
        low = bisect.bisect_right(self._override_points, start)
        high = bisect.bisect_left(self._override_points, end)
        found.update(self._override_points[low:high])
        return sorted(found)

    def shifts(self, start: datetime, end: datetime) -> list[Shift]:
        """The timeline from ``start`` to ``end`` (timezone-aware): who is on call, from
        when to when, by which layer, sorted by start.  Shifts are cut at the range's
        bounds; consecutive shifts of one user by the same layer are one.  Only
        overlapping overrides make shifts overlap."""
        start, end = _utc(start, "start"), _utc(end, "end")
        if start >= end:
            return []
        shifts: list[Shift] = []
        opened: dict[tuple[str, str], datetime] = {}
        for moment in self._changes(start, end):
            current = self._assignments(moment)
            for key in [key for key in opened if key not in current]:
                shifts.append(Shift(key[0], opened.pop(key), moment, key[1]))
            for key in current:
                opened.setdefault(key, moment)
        shifts.extend(Shift(user, since, end, layer) for (user, layer), since in opened.items())
        shifts.sort(key=lambda shift: shift.start)
        return shifts

    def next_handoff(
        self, after: datetime, *, horizon: timedelta = DEFAULT_HORIZON
    ) -> datetime | None:
        """The first instant after ``after`` (timezone-aware) at which :meth:`on_call`
        answers differently (a handoff to another user, a restriction or layer starting or
        ending, an override), as an aware UTC datetime; None if that does not happen within
        ``horizon``."""
        now = _utc(after, "after")
        current = self._assignments(now)
        users = [user for user, _ in current]
        limit = now + horizon
        window, size = now, _DAY
        while window < limit:
            window_end = min(window + size, limit)
            for moment in self._changes(window, window_end):
                if moment > now and [u for u, _ in self._assignments(moment)] != users:
                    return moment
            window, size = window_end, size * 2
        return None


class OncallTarget(StrictModel):
    """Who to reach: exactly one of a user, a team (every member) or a schedule (whoever
    is on call)."""

    user: str | None = Field(None, description="A user's name")
    team: str | None = Field(None, description="A team's name")
    schedule: str | None = Field(None, description="A schedule's name")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [kind for kind in ("user", "team", "schedule") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                "expected exactly one of user, team or schedule"
                + (f", got {' and '.join(given)}" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        """``user``, ``team`` or ``schedule``."""
        return "user" if self.user is not None else "team" if self.team is not None else "schedule"

    @property
    def name(self) -> str:
        return str(getattr(self, self.kind))


def _user_names(data: Any) -> frozenset[str] | None:
    """The user names in raw ``oncall`` input, or None when they cannot be read."""
    if not isinstance(data, Mapping):
        return None
    users = data.get("users", [])
    if not isinstance(users, list):
        return None
    names: set[str] = set()
    for user in users:
        name = (
            user.name
            if isinstance(user, OncallUser)
            else (user.get("name") if isinstance(user, Mapping) else None)
        )
        if isinstance(name, str):
            names.add(name)
    return frozenset(names)


class OncallConfig(StrictModel):
    """On-call users, teams and schedules."""

    users: list[OncallUser] = Field(default_factory=list, description="Who can be on call")
    teams: list[OncallTeam] = Field(default_factory=list, description="Named groups of users")
    schedules: list[Schedule] = Field(
        default_factory=list, description="Rotations: who is on call when"
    )
    escalation_policies: list[EscalationPolicy] = Field(
        default_factory=list,
        description="Who is paged, in what order, until alerts are acknowledged; a route "
        "names one with escalation_policy",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _check_references(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        token = _KNOWN_USERS.set(_user_names(data))
        try:
            config = handler(data)
        finally:
            _KNOWN_USERS.reset(token)
        # references inside models built beforehand were not checked where they are
        problems = [f"{where}: {reason}" for where, reason in config._reference_problems()]
        if problems:
            raise ValueError("; ".join(problems))
        return config

    @field_validator("users")
    @classmethod
    def _unique_users(cls, value: list[OncallUser]) -> list[OncallUser]:
        _duplicates((user.name for user in value), "user")
        return value

    @field_validator("teams")
    @classmethod
    def _unique_teams(cls, value: list[OncallTeam]) -> list[OncallTeam]:
        _duplicates((team.name for team in value), "team")
        return value

    @field_validator("schedules")
    @classmethod
    def _unique_schedules(cls, value: list[Schedule]) -> list[Schedule]:
        _duplicates((schedule.name for schedule in value), "schedule")
        return value

    def _reference_problems(self) -> list[tuple[str, str]]:
        known = {user.name for user in self.users}
        refs: list[tuple[str, str]] = []
        for t, team in enumerate(self.teams):
            refs += [(f"teams.{t}.members.{i}", name) for i, name in enumerate(team.members)]
        for s, schedule in enumerate(self.schedules):
            for la, layer in enumerate(schedule.layers):
                refs += [
                    (f"schedules.{s}.layers.{la}.users.{i}", name)
                    for i, name in enumerate(layer.users)
                ]
            for o, override in enumerate(schedule.overrides):
                refs.append((f"schedules.{s}.overrides.{o}.user", override.user))
        return [(where, _unknown_user(name, known)) for where, name in refs if name not in known]


def oncall_problems(
    config: OncallConfig, receivers: Collection[str]
) -> list[tuple[list[str | int], str]]:
    """What the ``oncall`` section cannot check alone: users naming a receiver that is not
    in ``alerting.receivers`` (``receivers``: their names).  (path, reason) pairs, paths
    relative to the section."""
    problems: list[tuple[list[str | int], str]] = []
    for index, user in enumerate(config.users):
        if user.receiver is not None and user.receiver not in receivers:
            reason = f"unknown receiver {user.receiver!r} (not in alerting.receivers)"
            close = difflib.get_close_matches(user.receiver, sorted(receivers), n=1)
            problems.append(
                (
                    ["users", index, "receiver"],
                    f"{reason}: did you mean {close[0]!r}?" if close else reason,
                )
            )
    return problems


class OncallDirectory:
    """Users, teams and schedules of an :class:`OncallConfig` by name, and who they reach."""

    def __init__(self, config: OncallConfig) -> None:
        self.config = config
        self.users: Mapping[str, OncallUser] = {user.name: user for user in config.users}
        self.teams: Mapping[str, OncallTeam] = {team.name: team for team in config.teams}
        self.schedules: Mapping[str, Schedule] = {s.name: s for s in config.schedules}

    def __repr__(self) -> str:
        return (
            f"OncallDirectory(users={list(self.users)!r}, teams={list(self.teams)!r}, "
            f"schedules={list(self.schedules)!r})"
        )

    @staticmethod
    def _get(index: Mapping[str, Any], kind: str, name: str) -> Any:
        try:
            return index[name]
        except KeyError:
            raise KeyError(f"unknown {kind} {name!r}") from None

    def user(self, name: str) -> OncallUser:
        """The user called ``name``; KeyError if there is none."""
        user: OncallUser = self._get(self.users, "user", name)
        return user

    def team(self, name: str) -> OncallTeam:
        """The team called ``name``; KeyError if there is none."""
        team: OncallTeam = self._get(self.teams, "team", name)
        return team

    def schedule(self, name: str) -> Schedule:
        """The schedule called ``name``; KeyError if there is none."""
        schedule: Schedule = self._get(self.schedules, "schedule", name)
        return schedule

    def users_of(
        self, target: OncallTarget | Mapping[str, str], at: datetime | None = None
    ) -> list[OncallUser]:
        """The users ``target`` reaches (``{user: x}``, ``{team: y}`` or ``{schedule: z}``):
        the user, the team's members, or whoever the schedule has on call at ``at``
        (timezone-aware, required for a schedule).  KeyError for an unknown name."""
        if not isinstance(target, OncallTarget):
            target = OncallTarget.model_validate(target)
        if target.user is not None:
            return [self.user(target.user)]
        if target.team is not None:
            return [self.user(name) for name in self.team(target.team).members]
        schedule = self.schedule(target.name)
        if at is None:
            raise ValueError(f"users_of schedule {target.name!r} needs the moment `at`")
        return [self.user(name) for name in schedule.on_call(at)]

    def who_is_on_call(self, at: datetime) -> dict[str, list[str]]:
        """Every schedule's on-call users at ``at`` (timezone-aware), by schedule name."""
        moment = _utc(at, "at")
        return {name: schedule.on_call(moment) for name, schedule in self.schedules.items()}
