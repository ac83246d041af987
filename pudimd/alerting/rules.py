"""Rules on probe results: when a target's checks become an alert.

A rule (:class:`RuleConfig`) covers targets (listed by name, chosen by a label selector, or
all of them) and says when an alert fires for one of them::

    rules:
      - name: TargetDown
        failure_threshold: 3          # consecutive failed checks
        labels: {severity: critical}
      - name: SlowAPI
        selector: ['team="api"']
        thresholds:
          - {metric: latency_p95, window: 5m, above: 0.5}
          - {metric: failure_ratio, window: 10m, above: 0.2}
        when: any
        for: 2m
        annotations:
          summary: "{{ target }} is slow: p95 {{ value | round(3) }}s"

Each (rule, target) pair runs Prometheus' alert state machine: *inactive* while the rule's
condition does not hold; *pending* from when it starts to hold until it has held for ``for``;
*firing* after that; back to *inactive* (the alert resolves) as soon as it stops holding.
The condition combines, with ``when: any`` (default) or ``all``:

- the consecutive-failure count: it starts to hold after ``failure_threshold`` failed checks
  in a row and stops after ``success_threshold`` good checks in a row (``degraded: true``
  counts a degraded check as failed).  A rule without thresholds has ``failure_threshold: 3``;
- each of ``thresholds``: a statistic over a window of history (``failure_ratio``,
  ``latency_p50/p90/p95/p99/avg``, ``metrics.<name>``; see :mod:`pudimd.alerting.window`)
  or of the last check (``cert_days_left``, ``metrics.<name>`` without a window), above or
  below a limit, once the window holds ``min_samples`` samples.

``flapping: {window, max_changes}``: when the condition changes more than ``max_changes``
times within ``window``, the pair is *flapping*: its notifications are held (a firing alert
keeps being sent, with the annotation ``flapping: "true"``; nothing new fires or resolves)
until the changes within the window drop back to ``max_changes`` or fewer; then the real
state is sent.

Target dependencies (``depends_on`` on a target): a target is *down* while an alert of a
rule covering it fires or while its last check failed.  While any target a target depends
on, directly or through others, is down, its firing alerts are sent with ``blocked_by``
naming those targets: the alert store keeps and shows them but does not notify.  When they
recover and the target still fails, the alert is sent again unblocked at once.  A child
that starts firing before its ancestors were checked since it began to fail (it is checked
more often, or its threshold is lower) does not page at once: its alert is held, blocked
by those ancestors, and their checks are run at once (``recheck``), as Nagios checks a
host's parents before it calls a host down; their results decide (a failed one blocks,
good ones release the alert).  The hold lasts at most :data:`RECHECK_WAIT` seconds, so a
parent whose check cannot run never silences its children for long.

Alerts go to a sink as :class:`~pudimd.alerting.alert.PostableAlert` with Prometheus'
semantics: labels are the target's labels, then the rule's ``labels``, then ``alertname``
(the rule's name), ``target`` and ``probe``; a firing alert is sent with
``ends_at = now + 3 * resend_interval`` and sent again every ``resend_interval`` (an alert
whose engine stops resolves by itself); a resolved one is sent once with ``ends_at = now``.
``starts_at`` is when the condition started to hold.  Annotations are rendered (Jinja2, in
the sandbox of :mod:`pudimd.alerting.templates`) when an alert starts firing or its state
changes, from: ``target``, ``probe``, ``labels`` (the alert's), ``rule``, ``value`` (the
value of the threshold that tripped, if any), ``reason`` (what tripped, in words) and
``result`` (the last check: ``message``, ``status``, ``success``, ``degraded``,
``duration``, ``values`` without ``BODY``, ``metrics``, ``phases``, ``condition``).
Without ``annotations``, ``summary`` and ``description`` are made from ``reason`` and the
check's message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, Literal, Self
from urllib.parse import quote

import anyio
import structlog
from anyio.abc import TaskStatus
from pydantic import ConfigDict, Field, field_validator, model_validator

from pudimd.alerting.alert import PostableAlert
from pudimd.alerting.flapping import FlapDetector
from pudimd.alerting.matchers import Matcher, MatcherList, matches_all
from pudimd.alerting.templates import Template, render
from pudimd.alerting.window import (
    INSTANT_METRICS,
    WINDOW_METRICS,
    ResultWindow,
    instant_value,
)
from pudimd.durations import Duration, PositiveDuration, format_duration
from pudimd.results import ProbeResult
from pudimd.settings import StrictModel

__all__ = [
    "FIRING",
    "FLAPPING",
    "INACTIVE",
    "PENDING",
    "RECHECK_WAIT",
    "Flapping",
    "RuleConfig",
    "RuleEngine",
    "RuleState",
    "Sink",
    "Threshold",
    "check_dependencies",
    "check_rules",
]

log = structlog.get_logger("pudimd.alerting.rules")

INACTIVE, PENDING, FIRING, FLAPPING = "inactive", "pending", "firing", "flapping"
_SEVERITY = {INACTIVE: 0, PENDING: 1, FLAPPING: 2, FIRING: 3}

_ALERT_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_RESERVED = ("alertname", "target", "probe")
_DEFAULT_FAILURE_THRESHOLD = 3
RECHECK_WAIT = 30.0
"""How long a dependent's firing alert waits, held, for its ancestors' checks."""

Sink = Callable[[list[PostableAlert]], None]
"""Where the engine sends alerts (the alert store's ``post``)."""


# -- config ------------------------------------------------------------------------------


class Threshold(StrictModel):
    """A statistic of a target's checks compared with a limit."""

    metric: str = Field(
        description="failure_ratio, latency_p50, latency_p90, latency_p95, latency_p99, "
        "latency_avg (seconds, successful checks), cert_days_left (last check), or "
        "metrics.<name> (a probe metric: its average over `window`, or without a window "
        "its last value)"
    )
    window: PositiveDuration | None = Field(
        None,
        description="History the statistic covers (required for failure_ratio and latency_*, "
        "refused for cert_days_left)",
    )
    above: float | None = Field(None, description="Holds when the statistic is above this")
    below: float | None = Field(None, description="Holds when the statistic is below this")
    min_samples: int = Field(
        1, ge=1, description="Checks the window must hold before the threshold can hold"
    )

    @field_validator("metric")
    @classmethod
    def _metric_ok(cls, value: str) -> str:
        if value in WINDOW_METRICS or value in INSTANT_METRICS:
            return value
        if value.startswith("metrics.") and _METRIC_NAME.match(value[len("metrics.") :]):
            return value
        known = ", ".join(sorted(WINDOW_METRICS | INSTANT_METRICS))
        raise ValueError(f"unknown metric {value!r}: expected one of {known} or metrics.<name>")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.above is None) == (self.below is None):
            raise ValueError("set exactly one of above or below")
        if self.metric in WINDOW_METRICS and self.window is None:
            raise ValueError(f"{self.metric} is computed over a window: set window (e.g. 5m)")
        if self.metric in INSTANT_METRICS and self.window is not None:
            raise ValueError(f"{self.metric} is the last check's value: it takes no window")
        if self.window is None and "min_samples" in self.model_fields_set:
            raise ValueError("min_samples applies to thresholds with a window")
        limit = self.above if self.above is not None else self.below
        if self.metric == "failure_ratio" and limit is not None and not 0 <= limit <= 1:
            raise ValueError(f"failure_ratio is between 0 and 1, got a limit of {limit:g}")
        return self

    def describe(self, value: float | None) -> str:
        """``latency_p95 0.812 above 0.5 over 5m``."""
        shown = "no value" if value is None else f"{value:.4g}"
        side = f"above {self.above:g}" if self.above is not None else f"below {self.below:g}"
        over = f" over {format_duration(self.window)}" if self.window is not None else ""
        return f"{self.metric} {shown} {side}{over}"


class Flapping(StrictModel):
    """Flap detection: more than ``max_changes`` state changes within ``window``."""

    window: PositiveDuration = Field(description="Period the state changes are counted over")
    max_changes: int = Field(
        ge=1,
        description="More changes than this within window = flapping; it settles at "
        "this many or fewer",
    )


class RuleConfig(StrictModel):
    """An alerting rule on probe results (see :mod:`pudimd.alerting.rules`)."""

    model_config = StrictModel.model_config | ConfigDict(populate_by_name=True)

    name: str = Field(description="The alert's name (its alertname label), e.g. TargetDown")
    targets: list[str] = Field(
        default_factory=list, description="Names of the targets the rule covers"
    )
    selector: MatcherList = Field(
        default_factory=list,
        description="Matchers over a target's labels plus `target` (its name) and `probe` "
        "(its probe type) choosing the targets the rule covers. Neither targets nor "
        "selector: every target",
    )
    failure_threshold: int | None = Field(
        None,
        ge=1,
        description="Consecutive failed checks that make the condition hold (default 3 when "
        "the rule has no thresholds; unset with thresholds: not part of the condition)",
    )
    success_threshold: int = Field(
        1, ge=1, description="Consecutive good checks that end a failure_threshold condition"
    )
    degraded: bool = Field(False, description="Count a degraded check as a failed one")
    for_: Duration = Field(
        timedelta(0),
        alias="for",
        description="How long the condition must hold before the alert fires (pending until then)",
    )
    thresholds: list[Threshold] = Field(
        default_factory=list, description="Statistics of the checks compared with limits"
    )
    when: Literal["any", "all"] = Field(
        "any", description="Whether any or all of failure_threshold and thresholds must hold"
    )
    flapping: Flapping | None = Field(
        None, description="Hold notifications while the state changes too often"
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels added to the alert (severity...); they win over the target's",
    )
    annotations: dict[str, Template] = Field(
        default_factory=dict,
        description="Annotation templates (Jinja2) rendered from the check result; default: "
        "summary and description",
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _ALERT_NAME.match(value):
            raise ValueError(
                f"invalid rule name {value!r}: use letters, digits, _ and : (not starting "
                "with a digit), e.g. TargetDown"
            )
        return value

    @field_validator("selector", mode="before")
    @classmethod
    def _selector_text(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("labels")
    @classmethod
    def _labels_ok(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"invalid label name {key!r}")
            if key in _RESERVED:
                raise ValueError(f"label {key!r} is set by pudimd: {', '.join(_RESERVED)}")
        return value

    @field_validator("annotations")
    @classmethod
    def _annotations_ok(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.match(key):
                raise ValueError(f"invalid annotation name {key!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.targets and self.selector:
            raise ValueError(
                "set targets or selector, not both (a selector can name targets: 'target=~\"a|b\"')"
            )
        if self.failure_threshold is None:
            if not self.thresholds:
                object.__setattr__(self, "failure_threshold", _DEFAULT_FAILURE_THRESHOLD)
            elif "success_threshold" in self.model_fields_set:
                raise ValueError(
                    "success_threshold ends a failure_threshold condition: set "
                    "failure_threshold too"
                )
        return self

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """What tells rules apart: their alerts' name and labels."""
        return self.name, tuple(sorted(self.labels.items()))


def check_rules(rules: Sequence[RuleConfig], targets: Sequence[Any]) -> list[tuple[int, str]]:
    """Problems the rule models cannot see alone, as (rule index, reason): names in
    ``targets`` that no target has, and two rules with the same name and labels (their
    alerts would be the same alerts)."""
    names = {target.name for target in targets}
    errors: list[tuple[int, str]] = []
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for index, rule in enumerate(rules):
        errors.extend(
            (index, f"targets: unknown target {name!r}")
            for name in rule.targets
            if name not in names
        )
        first = seen.setdefault(rule.key, index)
        if first != index:
            errors.append(
                (
                    index,
                    f"rule {rule.name!r} has the same name and labels as rule number "
                    f"{first + 1} in the list: give one of them another name or a label "
                    "(severity...)",
                )
            )
    return errors


def check_dependencies(targets: Sequence[Any]) -> list[tuple[int, str]]:
    """Problems in the targets' ``depends_on``, as (target index, reason): unknown names, a
    target depending on itself, and cycles (reported once, at the first target of the
    cycle in the list)."""
    index = {target.name: i for i, target in enumerate(targets)}
    errors: list[tuple[int, str]] = []
    graph: dict[str, list[str]] = {}
    for i, target in enumerate(targets):
        edges: list[str] = []
        for parent in getattr(target, "depends_on", None) or ():
            if parent == target.name:
                errors.append((i, f"depends_on: {parent!r} is this target itself"))
            elif parent not in index:
                errors.append((i, f"depends_on: unknown target {parent!r}"))
            else:
                edges.append(parent)
        graph[target.name] = edges
    seen_cycles: set[frozenset[str]] = set()
    for cycle in _cycles(graph):
        members = frozenset(cycle)
        if members in seen_cycles:
            continue
        seen_cycles.add(members)
        first = min(range(len(cycle)), key=lambda k: index[cycle[k]])
        ordered = cycle[first:] + cycle[:first]
        path = " -> ".join([*ordered, ordered[0]])
        errors.append((index[ordered[0]], f"depends_on: dependency cycle {path}"))
    errors.sort(key=lambda error: error[0])
    return errors


def _cycles(graph: dict[str, list[str]]) -> Iterator[list[str]]:
    """Cycles found by a depth-first walk (at least one per strongly connected group)."""
    color: dict[str, int] = {}  # absent: unseen, 1: on the current path, 2: done
    for root in graph:
        if root in color:
            continue
        color[root] = 1
        path, position = [root], {root: 0}
        stack = [(root, iter(graph[root]))]
        while stack:
            node, edges = stack[-1]
            child = next(edges, None)
            if child is None:
                stack.pop()
                path.pop()
                del position[node]
                color[node] = 2
                continue
            state = color.get(child)
            if state is None:
                color[child] = 1
                position[child] = len(path)
                path.append(child)
                stack.append((child, iter(graph[child])))
            elif state == 1:
                yield path[position[child] :]


# -- engine internals --------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Threshold:
    config: Threshold
    metric: str
    window: float | None
    above: float | None
    below: float | None
    min_samples: int

    def holds(self, value: float | None, samples: int) -> bool:
        if value is None or samples < self.min_samples:
            return False
        if self.above is not None:
            return value > self.above
        return self.below is not None and value < self.below


@dataclass(slots=True, eq=False)
class _Rule:
    config: RuleConfig
    failure_threshold: int | None
    success_threshold: int
    degraded: bool
    for_: float
    thresholds: tuple[_Threshold, ...]
    instant: tuple[int, ...]
    """Indexes of the thresholds on the last check."""
    windowed: tuple[int, ...]
    """Indexes of the thresholds over a window."""
    all_: bool
    span: float
    keep_metrics: bool
    names: frozenset[str] | None
    selector: list[Matcher]

    @classmethod
    def build(cls, config: RuleConfig) -> _Rule:
        thresholds = tuple(
            _Threshold(
                config=t,
                metric=t.metric,
                window=t.window.total_seconds() if t.window is not None else None,
                above=t.above,
                below=t.below,
                min_samples=t.min_samples,
            )
            for t in config.thresholds
        )
        windowed = tuple(i for i, t in enumerate(thresholds) if t.window is not None)
        return cls(
            config=config,
            failure_threshold=config.failure_threshold,
            success_threshold=config.success_threshold,
            degraded=config.degraded,
            for_=config.for_.total_seconds(),
            thresholds=thresholds,
            instant=tuple(i for i, t in enumerate(thresholds) if t.window is None),
            windowed=windowed,
            all_=config.when == "all",
            span=max((thresholds[i].window or 0.0 for i in windowed), default=0.0),
            keep_metrics=any(thresholds[i].metric.startswith("metrics.") for i in windowed),
            names=frozenset(config.targets) if config.targets else None,
            selector=list(config.selector),
        )

    def covers(self, target: _Target) -> bool:
        if self.names is not None:
            return target.name in self.names
        return matches_all(self.selector, target.match_labels)


@dataclass(slots=True, eq=False)
class _Target:
    name: str
    probe: str
    labels: dict[str, str]
    subject: tuple[Any, ...]
    """What is checked: a target keeps its history across reloads while this is equal."""
    match_labels: dict[str, str]
    depends_on: tuple[str, ...]
    pairs: list[_Pair] = field(default_factory=list)
    window: ResultWindow | None = None
    last: ProbeResult | None = None
    last_ok: bool | None = None
    last_at: float = 0.0
    """When the last result came (engine clock; 0 before the first)."""
    recheck_at: float = 0.0
    """When a check of this target was last asked for on a dependent's behalf."""
    ancestors: tuple[str, ...] = ()
    descendants: tuple[str, ...] = ()
    depth: int = 0
    model: Any = None
    """The target's config object this entry was built from."""

    @classmethod
    def build(cls, target: Any) -> _Target:
        name, probe = str(target.name), str(target.probe)
        labels = dict(getattr(target, "labels", None) or {})
        return cls(
            name=name,
            probe=probe,
            labels=labels,
            subject=(name, probe, getattr(target, "target", None)),
            match_labels={**labels, "target": name, "probe": probe},
            depends_on=tuple(getattr(target, "depends_on", None) or ()),
            model=target,
        )


@dataclass(slots=True, eq=False)
class _Pair:
    rule: _Rule
    target: _Target
    labels: dict[str, str]
    parts: list[tuple[bool, float | None]]
    """Per threshold of the rule: whether it holds, and its value."""
    flap: FlapDetector | None
    failing: int = 0
    """Consecutive failed checks."""
    passing: int = 0
    """Consecutive good checks."""
    fail_active: bool = False
    cond: bool = False
    state: str = INACTIVE
    since: float = 0.0
    flap_since: float = 0.0
    active_since: float = 0.0
    value: float | None = None
    # what was sent last
    sent_firing: bool = False
    sent_labels: dict[str, str] = field(default_factory=dict)
    sent_at: float = 0.0
    sent_starts: float = 0.0
    sent_blocked: tuple[str, ...] = ()
    sent_flapping: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    force: bool = False
    """Send the alert again with fresh annotations (its rule changed)."""

    @property
    def flapping(self) -> bool:
        return self.flap is not None and self.flap.flapping

    @property
    def key(self) -> tuple[tuple[str, tuple[tuple[str, str], ...]], str]:
        return self.rule.config.key, self.target.name


def _alert_labels(rule: _Rule, target: _Target) -> dict[str, str]:
    merged = {**target.labels, **rule.config.labels}
    merged.update(alertname=rule.config.name, target=target.name, probe=target.probe)
    return {name: value for name, value in merged.items() if value}


def _flap_detector(rule: _Rule) -> FlapDetector | None:
    flapping = rule.config.flapping
    if flapping is None:
        return None
    return FlapDetector(flapping.window.total_seconds(), flapping.max_changes)


def _result_data(result: ProbeResult | None) -> SimpleNamespace:
    """The check as templates see it: a namespace, so that ``result.values.IP`` reads the
    ``values`` field (on a dict it would be the dict's ``values`` method)."""
    if result is None:
        return SimpleNamespace()
    return SimpleNamespace(
        message=result.message,
        status=result.status,
        success=result.success,
        degraded=result.degraded,
        duration=result.duration,
        values={key: value for key, value in result.values.items() if key != "BODY"},
        metrics=dict(result.metrics),
        phases=dict(result.phases),
        condition=result.condition,
        timestamp=result.timestamp,
    )


@dataclass(frozen=True, slots=True)
class RuleState:
    """Where one (rule, target) pair stands, for the API and the metrics."""

    rule: str
    target: str
    state: str
    """inactive, pending, firing or flapping."""
    since: float
    """When the pair entered that state (Unix seconds; 0 before anything happened)."""
    labels: dict[str, str]
    """The labels of the pair's alert."""
    blocked_by: tuple[str, ...] = ()
    value: float | None = None


# -- engine ------------------------------------------------------------------------------


class RuleEngine:
    """Turns probe results into alerts (see the module docstring).

    ``configure`` at start and on every reload, ``observe`` for every check, ``evaluate``
    (or ``run``) every second for what depends on time.  Everything runs on the event
    loop's thread; the sink is called synchronously with the alerts each call produced.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        external_url: str = "",
        resend_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        recheck: Callable[[str], object] | None = None,
    ) -> None:
        if resend_interval <= 0:
            raise ValueError(f"resend_interval must be > 0, got {resend_interval!r}")
        self._sink = sink
        self._external_url = external_url.rstrip("/")
        self._resend = resend_interval
        self._clock = clock
        self._recheck = recheck
        self._rules: list[_Rule] = []
        self._targets: dict[str, _Target] = {}
        self._pairs: dict[tuple[tuple[str, tuple[tuple[str, str], ...]], str], _Pair] = {}
        self._windowed: list[_Pair] = []
        self._active: set[_Pair] = set()
        """Pairs evaluate() must look at: pending, firing, flapping or sent as firing."""
        self._has_dependencies = False
        self._out: list[PostableAlert] = []

    def set_external_url(self, external_url: str) -> None:
        """Where generator URLs point (``alerting.external_url``; changes on reload)."""
        self._external_url = external_url.rstrip("/")

    def __repr__(self) -> str:
        return (
            f"RuleEngine(rules={len(self._rules)}, targets={len(self._targets)}, "
            f"pairs={len(self._pairs)}, active={len(self._active)})"
        )

    # -- configuration -------------------------------------------------------------------

    def configure(self, rules: Sequence[RuleConfig], targets: Sequence[Any]) -> None:
        """Apply rules and targets (at start and on every reload).

        A (rule, target) pair keeps its state when the rule's name and labels are the same
        and the target checks the same thing (name, probe and ``target``); a changed rule
        is re-evaluated with the kept state, and an alert whose labels changed is resolved
        and sent again under its new labels.  Pairs that disappear resolve their alert.
        Disabled targets are not covered.  Raises ValueError when two rules have the same
        name and labels (:func:`check_rules` reports it first)."""
        now = self._clock()
        # The same rules, and a target given as the very object seen last time (the
        # daemon passes unchanged targets so): its entry and pairs are kept as they are.
        same_rules = len(rules) == len(self._rules) and all(
            new is old.config or new == old.config
            for new, old in zip(rules, self._rules, strict=False)
        )
        compiled: list[_Rule] = []
        keys: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        if same_rules:
            compiled = self._rules
        else:
            for config in rules:
                if config.key in keys:
                    raise ValueError(f"two rules named {config.name!r} have the same labels")
                keys.add(config.key)
                compiled.append(_Rule.build(config))

        new_targets: dict[str, _Target] = {}
        kept: set[str] = set()
        for model in targets:
            if not getattr(model, "enabled", True):
                continue
            old = self._targets.get(str(model.name))
            if same_rules and old is not None and old.model is model:
                new_targets[old.name] = old
                kept.add(old.name)
                continue
            entry = _Target.build(model)
            old = self._targets.get(entry.name)
            if old is not None and old.subject == entry.subject:
                entry.last, entry.last_ok, entry.window = old.last, old.last_ok, old.window
                entry.last_at = old.last_at
            new_targets[entry.name] = entry
        self._link(new_targets)

        new_pairs: dict[tuple[tuple[str, tuple[tuple[str, str], ...]], str], _Pair] = {}
        changed: set[_Pair] = set()
        for name in kept:
            for pair in new_targets[name].pairs:
                new_pairs[pair.key] = pair
        for rule in compiled:
            for entry in new_targets.values():
                if entry.name in kept:
                    continue
                if rule.covers(entry):
                    pair = self._carry(rule, entry, now, changed)
                    new_pairs[pair.key] = pair
                    entry.pairs.append(pair)

        for key, pair in self._pairs.items():
            if new_pairs.get(key) is not pair and pair.sent_firing:
                self._send_resolved(pair, now)
        self._rules, self._targets, self._pairs = compiled, new_targets, new_pairs
        self._windows()
        self._windowed = self._by_depth(p for p in new_pairs.values() if p.rule.windowed)
        self._active = {p for p in new_pairs.values() if p in self._active or p in changed}
        for pair in self._by_depth(self._active):
            self._refresh(pair, now)
        self._flush()

    def _carry(self, rule: _Rule, entry: _Target, now: float, changed: set[_Pair]) -> _Pair:
        """The pair of ``rule`` and ``entry``: the old one, updated, when it can be kept."""
        key = (rule.config.key, entry.name)
        old = self._pairs.get(key)
        labels = _alert_labels(rule, entry)
        if old is None or old.target.subject != entry.subject:
            return _Pair(
                rule=rule,
                target=entry,
                labels=labels,
                parts=[(False, None)] * len(rule.thresholds),
                flap=_flap_detector(rule),
            )
        pair = old
        if pair.rule.config != rule.config:
            if pair.rule.config.flapping != rule.config.flapping:
                pair.flap = _flap_detector(rule)
            pair.parts = [(False, None)] * len(rule.thresholds)
            pair.rule = rule
            if entry.last is not None:
                self._instant(pair, entry.last, now)
            pair.force = pair.sent_firing
            changed.add(pair)
        pair.rule, pair.target, pair.labels = rule, entry, labels
        if pair.sent_firing and pair.sent_labels != labels:
            self._send_resolved(pair, now)
            changed.add(pair)
        return pair

    def _link(self, targets: dict[str, _Target]) -> None:
        """Fill each target's ancestors (what it depends on, transitively, nearest first),
        descendants and depth (parents come before their children)."""
        children: dict[str, list[str]] = {name: [] for name in targets}
        for entry in targets.values():
            for parent in entry.depends_on:
                if parent in children and parent != entry.name:
                    children[parent].append(entry.name)
        self._has_dependencies = any(children.values())
        for entry in targets.values():
            entry.ancestors = _walk(entry.name, lambda n: targets[n].depends_on, targets)
            entry.descendants = _walk(entry.name, lambda n: children[n], targets)
            # an ancestor's ancestors are a strict subset of its descendant's: sorting by
            # their number puts parents before children
            entry.depth = len(entry.ancestors)

    def _windows(self) -> None:
        """Give each target covered by a window threshold a window long enough for all."""
        for entry in self._targets.values():
            span = max((p.rule.span for p in entry.pairs), default=0.0)
            if span <= 0:
                entry.window = None
                continue
            keep = any(p.rule.keep_metrics for p in entry.pairs)
            window = entry.window
            if window is None or (keep and not window.keep_metrics):
                window = ResultWindow(span, keep_metrics=keep)
            window.span, window.keep_metrics = span, keep
            entry.window = window

    def _by_depth(self, pairs: Iterable[_Pair]) -> list[_Pair]:
        ordered = list(pairs)
        if self._has_dependencies:
            ordered.sort(key=lambda p: p.target.depth)
        return ordered

    # -- per check -----------------------------------------------------------------------

    def observe(self, target_name: str, result: ProbeResult) -> None:
        """Fold one check result of ``target_name`` in; send what changes."""
        entry = self._targets.get(target_name)
        if entry is None:
            return
        now = self._clock()
        watched = bool(entry.descendants)
        was_down = self._is_down(entry) if watched else False
        entry.last = result
        entry.last_ok = result.success
        entry.last_at = now
        if entry.window is not None:
            entry.window.add(now, result)
        for pair in entry.pairs:
            rule = pair.rule
            if not result.success or (rule.degraded and result.degraded):
                pair.failing += 1
                pair.passing = 0
            else:
                pair.passing += 1
                pair.failing = 0
            threshold = rule.failure_threshold
            if threshold is not None:
                if pair.fail_active:
                    if pair.passing >= rule.success_threshold:
                        pair.fail_active = False
                elif pair.failing >= threshold:
                    pair.fail_active = True
            if rule.instant:
                self._instant(pair, result, now)
            if self._condition(pair) != pair.cond or pair.state == PENDING:
                self._advance(pair, now)
                self._sync(pair, now)
        if watched:
            # a dependent may change: this target went down or up, or a dependent waited
            # for this result to know whether it is blocked
            down = self._is_down(entry) != was_down
            for name in entry.descendants:
                for pair in self._targets[name].pairs:
                    if down or pair.sent_blocked:
                        self._sync(pair, now)
        if self._out:
            self._flush()

    def _instant(self, pair: _Pair, result: ProbeResult, now: float) -> None:
        thresholds = pair.rule.thresholds
        for index in pair.rule.instant:
            threshold = thresholds[index]
            value = instant_value(threshold.metric, result, now)
            pair.parts[index] = (threshold.holds(value, 1), value)

    def _condition(self, pair: _Pair) -> bool:
        rule = pair.rule
        if not rule.thresholds:
            return pair.fail_active
        held = [holds for holds, _ in pair.parts]
        if rule.failure_threshold is not None:
            held.append(pair.fail_active)
        return all(held) if rule.all_ else any(held)

    def _reason(self, pair: _Pair) -> tuple[str, float | None]:
        """What makes the condition hold, in words, and the value of the first threshold
        that holds."""
        rule = pair.rule
        reasons: list[str] = []
        value: float | None = None
        if rule.failure_threshold is not None and pair.fail_active:
            count = pair.failing or rule.failure_threshold
            reasons.append(f"{count} failed check{'s' if count != 1 else ''} in a row")
        for threshold, (holds, found) in zip(rule.thresholds, pair.parts, strict=True):
            if holds:
                reasons.append(threshold.config.describe(found))
                if value is None:
                    value = found
        return " and ".join(reasons) or "condition holds", value

    # -- state machine -------------------------------------------------------------------

    def _advance(self, pair: _Pair, now: float) -> None:
        """Move the pair's state machine to its current condition."""
        cond = self._condition(pair)
        if cond != pair.cond:
            pair.cond = cond
            if pair.flap is not None and pair.flap.change(now):
                pair.flap_since = now
                log.info("alert flapping", rule=pair.rule.config.name, target=pair.target.name)
            pair.since = now
            if cond:
                pair.state, pair.active_since = PENDING, now
            else:
                pair.state = INACTIVE
        if pair.state == PENDING and now - pair.active_since >= pair.rule.for_:
            pair.state, pair.since = FIRING, now

    def _refresh(self, pair: _Pair, now: float) -> None:
        """Re-evaluate ``pair`` at ``now``: windows, ``for``, flapping, dependencies and
        the resend of a firing alert."""
        rule, window = pair.rule, pair.target.window
        if rule.windowed and window is not None:
            for index in rule.windowed:
                threshold = rule.thresholds[index]
                assert threshold.window is not None
                value, samples = window.value(
                    threshold.metric, threshold.window, now, degraded=rule.degraded
                )
                pair.parts[index] = (threshold.holds(value, samples), value)
        self._advance(pair, now)
        if pair.flap is not None and pair.flap.settle(now):
            pair.since = now
            log.info("alert settled", rule=rule.config.name, target=pair.target.name)
        self._sync(pair, now)
        if pair.sent_firing and now - pair.sent_at >= self._resend:
            self._send_firing(pair, now)

    def _sync(self, pair: _Pair, now: float) -> None:
        """Send what the outside must know about ``pair``, if anything changed."""
        flapping = pair.flapping
        firing = pair.sent_firing if flapping else pair.state == FIRING
        if not firing:
            if pair.sent_firing:
                self._send_resolved(pair, now)
        else:
            blocked = self._blocked_by(pair, now)
            fresh = not pair.sent_firing or pair.force or (pair.sent_flapping and not flapping)
            if fresh or blocked != pair.sent_blocked or flapping != pair.sent_flapping:
                if not pair.sent_firing:
                    pair.sent_starts, pair.sent_labels = pair.active_since, pair.labels
                if fresh and not flapping:
                    pair.annotations = self._render(pair)
                pair.sent_blocked, pair.sent_flapping, pair.force = blocked, flapping, False
                self._send_firing(pair, now)
        if pair.state != INACTIVE or pair.sent_firing or flapping:
            self._active.add(pair)
        else:
            self._active.discard(pair)

    def _send_firing(self, pair: _Pair, now: float) -> None:
        annotations = dict(pair.annotations)
        if pair.sent_flapping:
            annotations["flapping"] = "true"
        pair.sent_firing, pair.sent_at = True, now
        self._out.append(
            PostableAlert(
                labels=dict(pair.sent_labels),
                annotations=annotations,
                starts_at=pair.sent_starts,
                ends_at=now + 3 * self._resend,
                generator_url=self._generator_url(pair.target.name),
                blocked_by=pair.sent_blocked,
            )
        )

    def _send_resolved(self, pair: _Pair, now: float) -> None:
        pair.sent_firing, pair.sent_at = False, now
        pair.sent_blocked, pair.sent_flapping = (), False
        self._out.append(
            PostableAlert(
                labels=dict(pair.sent_labels),
                annotations=dict(pair.annotations),
                starts_at=pair.sent_starts,
                ends_at=now,
                generator_url=self._generator_url(pair.target.name),
            )
        )

    def _generator_url(self, name: str) -> str:
        if not self._external_url:
            return ""
        return f"{self._external_url}/targets/{quote(name, safe='')}"

    def _render(self, pair: _Pair) -> dict[str, str]:
        rule, entry = pair.rule, pair.target
        reason, value = self._reason(pair)
        pair.value = value
        templates = rule.config.annotations
        if not templates:
            message = entry.last.message if entry.last is not None else ""
            return {
                "summary": f"{rule.config.name} on {entry.name}: {reason}",
                "description": message or reason,
            }
        data = {
            "target": entry.name,
            "probe": entry.probe,
            "labels": dict(pair.labels),
            "rule": rule.config.name,
            "value": value,
            "reason": reason,
            "result": _result_data(entry.last),
        }
        rendered: dict[str, str] = {}
        for name, source in templates.items():
            try:
                rendered[name] = render(source, data)
            except Exception as exc:
                log.warning(
                    "annotation template failed",
                    rule=rule.config.name,
                    target=entry.name,
                    annotation=name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                rendered[name] = f"(error in the {name} template: {type(exc).__name__}: {exc})"
        return rendered

    # -- dependencies --------------------------------------------------------------------

    def _is_down(self, entry: _Target) -> bool:
        return entry.last_ok is False or any(pair.sent_firing for pair in entry.pairs)

    def _blocked_by(self, pair: _Pair, now: float) -> tuple[str, ...]:
        """The ancestors of ``pair``'s target that hold its firing alert back: those down,
        and, for at most :data:`RECHECK_WAIT` after the alert's condition began, those not
        checked since (their check is asked for, once)."""
        entry = pair.target
        if not entry.ancestors:
            return ()
        targets = self._targets
        began = pair.active_since
        waiting = now - began < RECHECK_WAIT
        blocked: list[str] = []
        for name in entry.ancestors:
            ancestor = targets[name]
            if self._is_down(ancestor):
                blocked.append(name)
            elif waiting and ancestor.last_at < began:
                blocked.append(name)
                if ancestor.recheck_at < began and self._recheck is not None:
                    ancestor.recheck_at = now
                    try:
                        self._recheck(name)
                    except Exception:
                        log.exception("asking for a check failed", target=name)
        return tuple(blocked)

    # -- time ----------------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> None:
        """Do what depends on time: window thresholds, ``for`` durations, flapping that
        settles, dependency blocking and re-sending firing alerts."""
        if now is None:
            now = self._clock()
        for entry in self._targets.values():
            if entry.window is not None:
                entry.window.trim(now)
        todo = self._windowed + [pair for pair in self._active if not pair.rule.windowed]
        for pair in self._by_depth(todo) if self._has_dependencies else todo:
            self._refresh(pair, now)
        self._flush()

    async def run(
        self, *, interval: float = 1.0, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Call :meth:`evaluate` every ``interval`` seconds until cancelled."""
        task_status.started()
        while True:
            await anyio.sleep(interval)
            try:
                self.evaluate()
            except Exception:
                log.exception("rule evaluation failed")

    def _flush(self) -> None:
        if not self._out:
            return
        alerts, self._out = self._out, []
        try:
            self._sink(alerts)
        except Exception:
            log.exception("alert sink failed", alerts=len(alerts))

    # -- inspection ----------------------------------------------------------------------

    def states(self) -> Iterator[RuleState]:
        """Every (rule, target) pair's state."""
        for pair in self._pairs.values():
            flapping = pair.flapping
            yield RuleState(
                rule=pair.rule.config.name,
                target=pair.target.name,
                state=FLAPPING if flapping else pair.state,
                since=pair.flap_since if flapping else pair.since,
                labels=dict(pair.labels),
                blocked_by=pair.sent_blocked if pair.sent_firing else (),
                value=pair.value,
            )

    def state(self, rule: str, target: str) -> str | None:
        """The state of rule ``rule`` (by name) for target ``target``: inactive, pending,
        firing or flapping; the most severe when several rules have that name; None when no
        such rule covers the target."""
        entry = self._targets.get(target)
        if entry is None:
            return None
        found: str | None = None
        for pair in entry.pairs:
            if pair.rule.config.name != rule:
                continue
            state = FLAPPING if pair.flapping else pair.state
            if found is None or _SEVERITY[state] > _SEVERITY[found]:
                found = state
        return found


def _walk(
    start: str, edges: Callable[[str], Sequence[str]], known: dict[str, Any]
) -> tuple[str, ...]:
    """Every name reachable from ``start`` along ``edges`` (breadth first, without
    ``start``; names not in ``known`` are skipped)."""
    seen = {start}
    order: list[str] = []
    queue = [start]
    while queue:
        following: list[str] = []
        for name in queue:
            for nxt in edges(name):
                if nxt in known and nxt not in seen:
                    seen.add(nxt)
                    order.append(nxt)
                    following.append(nxt)
        queue = following
    return tuple(order)
