"""The route tree, in Alertmanager's syntax and with its semantics.

Each route has matchers (``matchers:``, or the deprecated ``match:``/``match_re:``), a
``receiver``, ``group_by`` (``['...']`` groups by every label, i.e. not at all),
``group_wait``, ``group_interval``, ``repeat_interval``, ``continue``,
``mute_time_intervals`` and ``active_time_intervals``; children inherit what they leave
unset.  An alert goes down the tree depth first: the first matching child wins unless it
has ``continue: true``; a route none of whose children match takes the alert itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Self

from pydantic import Field, model_validator

from pudimd.alerting.matchers import Matcher, MatcherList, format_matchers, from_legacy
from pudimd.durations import Duration, PositiveDuration
from pudimd.settings import StrictModel

__all__ = ["Route", "RouteConfig", "build_routes", "format_labels", "route_problems"]

DEFAULT_GROUP_WAIT = timedelta(seconds=30)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)
DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)


class RouteConfig(StrictModel):
    """One node of the route tree (the top one is ``route:``)."""

    model_config = StrictModel.model_config | {"populate_by_name": True}

    receiver: str | None = Field(None, description="Receiver of the alerts this route takes")
    group_by: list[str] | None = Field(
        None, description="Labels to group by; ['...'] groups by every label"
    )
    continue_: bool = Field(
        False, alias="continue", description="Keep matching siblings after this route"
    )
    matchers: MatcherList = Field(default_factory=list, description="e.g. ['severity=\"page\"']")
    match: dict[str, str] | None = Field(None, description="Deprecated: use matchers")
    match_re: dict[str, str] | None = Field(None, description="Deprecated: use matchers")
    group_wait: Duration | None = Field(
        None, description="Wait before a new group's first notification (30s)"
    )
    group_interval: PositiveDuration | None = Field(
        None, description="Wait between notifications of a changed group (5m)"
    )
    repeat_interval: PositiveDuration | None = Field(
        None, description="Resend an unchanged firing group after (4h)"
    )
    mute_time_intervals: list[str] = Field(
        default_factory=list, description="Named time intervals when this route sends nothing"
    )
    active_time_intervals: list[str] = Field(
        default_factory=list, description="Named time intervals outside which it sends nothing"
    )
    escalation_policy: str | None = Field(
        None,
        description="pudimd: an escalation policy (oncall.escalation_policies) that pages "
        "further until the group's alerts are acknowledged or resolved; inherited",
    )
    routes: list[RouteConfig] = Field(default_factory=list, description="Child routes")

    @model_validator(mode="after")
    def _matchers(self) -> Self:
        legacy = from_legacy(self.match, self.match_re)
        if legacy:
            object.__setattr__(self, "matchers", [*self.matchers, *legacy])
        if self.group_by is not None and "..." in self.group_by and len(self.group_by) > 1:
            raise ValueError("group_by: '...' must be alone (it means every label)")
        return self


@dataclass(eq=False, slots=True)
class Route:
    """A route of the compiled tree, with inherited values filled in."""

    key: str
    receiver: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...] | None
    """None: every label (``...``)."""
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool
    mute_time_intervals: tuple[str, ...]
    active_time_intervals: tuple[str, ...]
    children: list[Route] = field(default_factory=list)
    index: int = 0
    escalation_policy: str | None = None
    """Position in a depth-first walk (a stable id within one config)."""

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes taking an alert with ``labels`` (this one must match already)."""
        found: list[Route] = []
        for child in self.children:
            if all(m.matches(labels) for m in child.matchers):
                found.extend(child.match(labels))
                if not child.continue_:
                    break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if self.group_by is None:
            return dict(labels)
        return {name: labels[name] for name in self.group_by if labels.get(name)}

    def walk(self) -> list[Route]:
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


def format_labels(labels: Mapping[str, str]) -> str:
    """``{a="b", c="d"}`` sorted by name, as Alertmanager writes label sets in group keys."""
    inner = ", ".join(f'{name}="{_escape(labels[name])}"' for name in sorted(labels))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def build_routes(config: RouteConfig) -> Route:
    """Compile the tree (``config`` is the root: it needs a receiver and no matchers, which
    the config validation checks)."""
    counter = [0]

    def build(node: RouteConfig, parent: Route | None, inherited: dict[str, Any]) -> Route:
        values = dict(inherited)
        for name in (
            "receiver",
            "group_wait",
            "group_interval",
            "repeat_interval",
            "escalation_policy",
        ):
            value = getattr(node, name)
            if value is not None:
                values[name] = value
        if node.group_by is not None:
            values["group_by"] = None if node.group_by == ["..."] else tuple(node.group_by)
        matchers = tuple(node.matchers)
        key = format_matchers(matchers) if matchers else "{}"
        if parent is not None:
            key = f"{parent.key}/{key}"
        route = Route(
            key=key,
            receiver=values["receiver"],
            matchers=matchers,
            group_by=values["group_by"],
            group_wait=values["group_wait"].total_seconds(),
            group_interval=values["group_interval"].total_seconds(),
            repeat_interval=values["repeat_interval"].total_seconds(),
            continue_=node.continue_,
            mute_time_intervals=tuple(node.mute_time_intervals)
            or (inherited["mute"] if parent is not None else ()),
            active_time_intervals=tuple(node.active_time_intervals)
            or (inherited["active"] if parent is not None else ()),
            index=counter[0],
            escalation_policy=values["escalation_policy"],
        )
        counter[0] += 1
        values["mute"] = route.mute_time_intervals
        values["active"] = route.active_time_intervals
        for child in node.routes:
            route.children.append(build(child, route, values))
        return route

    return build(
        config,
        None,
        {
            "receiver": config.receiver or "",
            "group_by": (),
            "group_wait": DEFAULT_GROUP_WAIT,
            "group_interval": DEFAULT_GROUP_INTERVAL,
            "repeat_interval": DEFAULT_REPEAT_INTERVAL,
            "escalation_policy": None,
            "mute": (),
            "active": (),
        },
    )


def route_problems(
    config: RouteConfig, receivers: Sequence[str], intervals: Sequence[str]
) -> list[tuple[list[str | int], str]]:
    """(path under ``route``, reason) for each unknown receiver or time interval, and a
    root with matchers or without a receiver."""
    problems: list[tuple[list[str | int], str]] = []
    if config.receiver is None:
        problems.append(([], "the root route needs a receiver"))
    if config.matchers:
        problems.append(
            (["matchers"], "the root route must not have matchers (it takes every alert)")
        )

    def visit(node: RouteConfig, path: list[str | int]) -> None:
        if node.receiver is not None and node.receiver not in receivers:
            problems.append(
                (
                    [*path, "receiver"],
                    f"unknown receiver {node.receiver!r} "
                    f"(receivers: {', '.join(receivers) or 'none'})",
                )
            )
        for name in ("mute_time_intervals", "active_time_intervals"):
            for i, interval in enumerate(getattr(node, name)):
                if interval not in intervals:
                    problems.append(([*path, name, i], f"unknown time interval {interval!r}"))
        for i, child in enumerate(node.routes):
            visit(child, [*path, "routes", i])

    visit(config, [])
    return problems
