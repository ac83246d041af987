"""Unit tests of alerting rules (``pudimd rules test FILE``), in the spirit of
``promtool test rules``.

A test file (YAML; the format is documented in docs/rule-tests.md) names the rules and
targets to test (``config:``, a pudimd config file, or inline ``rules:`` and ``targets:``)
and lists tests.  Each test feeds made-up check results to a :class:`RuleEngine` on a
virtual clock and compares the alerts firing at given times with the ones expected::

    config: pudimd.yaml
    tests:
      - name: db pages after three failed checks
        interval: 30s
        results:
          - {target: db, series: "ok fail x3 ok"}
        alerts:
          - at: 1m30s
            alertname: TargetDown
            expected:
              - labels: {target: db, probe: tcp, severity: page}

Time runs as in the daemon: the engine evaluates every ``evaluation_interval`` (1 s, as
the daemon's rule loop does) and at every checked time; results due at a time are observed
before that time's evaluation and checks.  A check asked for on a dependent's behalf
(``depends_on``) is answered at once with the parent's latest result in its series.

:func:`load_tests` reads a file into a :class:`Suite` (raising
:class:`~pudimd.config.ConfigError` with ``file:line:column`` problems);
:meth:`Suite.run` runs its tests into :class:`Outcome` s, whose ``failures`` say what
differed, ready to print.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml_rs
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from pudimd.alerting.alert import PostableAlert
from pudimd.alerting.amfields import unknown_field
from pudimd.alerting.rules import RuleConfig, RuleEngine, check_dependencies, check_rules
from pudimd.config.errors import ConfigError, Problem
from pudimd.config.loader import expand_env, format_path, model_in, read_config_text
from pudimd.config.locate import Locator, yaml_syntax_error
from pudimd.config.models import DefaultsConfig
from pudimd.durations import Duration, PositiveDuration, format_duration, parse_duration
from pudimd.results import ProbeResult
from pudimd.settings import StrictModel

__all__ = [
    "START",
    "CheckSpec",
    "ExpectedAlert",
    "Failure",
    "FileProblems",
    "InlineTarget",
    "Outcome",
    "ResultSeries",
    "RuleTest",
    "RuleTestFile",
    "Suite",
    "load_tests",
    "load_tests_text",
    "parse_series",
    "parse_yaml",
    "read_file",
    "scheduled_results",
    "series_checks",
    "to_ms",
    "unknown_target",
]

START = 1_704_067_200.0
"""The virtual time a test starts at (2024-01-01T00:00:00Z), for ``cert_expiry_timestamp``."""

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TOKEN = re.compile(r"(?P<state>ok|fail|degraded|_)(?::(?P<duration>[^x\s]+))?(?:x(?P<times>\d+))?")
_REPEAT = re.compile(r"x(?P<times>\d+)")
_TOKEN_HELP = "expected ok, fail, degraded or _, each with an optional :DURATION and xN"


# -- the file ----------------------------------------------------------------------------


class CheckSpec(StrictModel):
    """One made-up check result (the list form of a series)."""

    success: bool = Field(True, description="The target is up")
    degraded: bool = Field(False, description="Up but unhealthy (with success: true)")
    duration: Duration = Field(timedelta(0), description="How long the check took")
    status: int | str | None = Field(None, description="The protocol's status (HTTP code...)")
    message: str = Field("", description="The check's message")
    metrics: dict[str, float] = Field(default_factory=dict, description="Probe metrics")
    values: dict[str, Any] = Field(default_factory=dict, description="Condition values")
    phases: dict[str, float] = Field(default_factory=dict, description="Seconds per phase")
    condition: str | None = Field(None, description="The condition that failed")
    repeat: int = Field(1, ge=1, description="How many checks in a row give this result")

    @model_validator(mode="after")
    def _consistent(self) -> CheckSpec:
        if self.degraded and not self.success:
            raise ValueError("degraded applies to a successful check (success: true)")
        return self

    def result(self) -> ProbeResult:
        return ProbeResult(
            success=self.success,
            degraded=self.degraded,
            duration=self.duration.total_seconds(),
            status=self.status,
            message=self.message,
            metrics=dict(self.metrics),
            values=dict(self.values),
            phases=dict(self.phases),
            condition=self.condition,
        )


class ResultSeries(StrictModel):
    """The checks of one target in a test."""

    target: str = Field(description="The target's name")
    series: str | list[Any] = Field(
        description="Compact text ('ok ok fail x3 ok:250ms degraded _') or a list of "
        "compact texts and check mappings"
    )
    interval: PositiveDuration | None = Field(
        None, description="Spacing of the checks (default: the test's, else the target's)"
    )
    start: Duration = Field(timedelta(0), description="When the first check comes")


class ExpectedAlert(StrictModel):
    """An alert expected to fire."""

    labels: dict[str, str] = Field(
        default_factory=dict, description="Every label of the alert but alertname"
    )
    annotations: dict[str, str] | None = Field(
        None, description="Every annotation of the alert; unchecked when not given"
    )
    blocked_by: list[str] = Field(
        default_factory=list, description="The targets holding the alert back (depends_on)"
    )
    flapping: bool | None = Field(None, description="Whether it is sent as flapping")


class AlertCheck(StrictModel):
    """The alerts of one name expected to fire at one time."""

    at: Duration = Field(description="Time from the start of the test")
    alertname: str = Field(description="The rule name checked")
    expected: list[ExpectedAlert] = Field(
        default_factory=list, description="Exactly the alerts firing; empty: none"
    )


class RuleTest(StrictModel):
    """One test: results in, alerts expected."""

    name: str | None = Field(None, description="Shown in PASS/FAIL lines (default: test N)")
    interval: PositiveDuration | None = Field(None, description="Default spacing of checks")
    evaluation_interval: PositiveDuration | None = Field(
        None, description="How often the rules are evaluated (default: the file's)"
    )
    recheck: bool = Field(
        True, description="Answer the checks depends_on asks for with the parent's last result"
    )
    results: list[ResultSeries] = Field(default_factory=list)
    alerts: list[AlertCheck] = Field(default_factory=list)


class InlineTarget(StrictModel):
    """A target as the rules see it (the scheduling and probe settings do not matter)."""

    name: str = Field(min_length=1, description="Unique name of the target")
    probe: str = Field(min_length=1, description="Probe type: the alert's probe label")
    target: str = Field("", description="What is checked (not used by rules)")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of this target")
    depends_on: list[str] = Field(default_factory=list, description="Targets this one needs")
    enabled: bool = Field(True, description="false: no rule covers it")
    interval: PositiveDuration | None = Field(None, description="Default spacing of its checks")

    @field_validator("labels")
    @classmethod
    def _labels_ok(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"invalid label name {key!r}")
        return value


class RuleTestFile(StrictModel):
    """A rule test file."""

    config: str | None = Field(
        None, description="A pudimd config file (relative to this file): its rules and targets"
    )
    rules: list[RuleConfig] | None = Field(None, description="Inline rules (instead of config)")
    targets: list[InlineTarget] | None = Field(
        None, description="Inline targets (instead of config)"
    )
    evaluation_interval: PositiveDuration = Field(
        timedelta(seconds=1), description="How often the rules are evaluated"
    )
    tests: list[RuleTest] = Field(description="The tests")


# -- loaded tests ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Check:
    at: int
    """Milliseconds from the start."""
    alertname: str
    expected: tuple[tuple[dict[str, str], ExpectedAlert], ...]
    """Each expected alert with its label set (alertname and empty values dropped)."""
    path: tuple[str | int, ...]


@dataclass(slots=True)
class _Case:
    name: str
    events: list[tuple[int, int, str, ProbeResult]]
    """(ms, order, target, result), sorted."""
    checks: list[_Check]
    evaluation: int
    recheck: bool


@dataclass(frozen=True, slots=True)
class Failure:
    """A check whose alerts differ from the expected ones."""

    where: str
    """``file:line``."""
    at: float
    alertname: str
    lines: tuple[str, ...]
    """What differs, ready to print."""

    def __str__(self) -> str:
        head = f"{self.where}: {self.alertname} at {format_duration(timedelta(seconds=self.at))}:"
        return "\n".join([head, *self.lines])


@dataclass(slots=True)
class Outcome:
    """The result of one test."""

    name: str
    file: str
    failures: list[Failure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class Suite:
    """A loaded test file: the rules, targets and tests, ready to run."""

    file: str
    rules: list[RuleConfig]
    targets: list[InlineTarget]
    cases: list[_Case]
    locator: Locator

    @property
    def names(self) -> list[str]:
        return [case.name for case in self.cases]

    def run(self, select: re.Pattern[str] | None = None) -> Iterator[Outcome]:
        """Run the tests (those whose name ``select`` finds, when given), one by one."""
        for case in self.cases:
            if select is None or select.search(case.name):
                yield self._run(case)

    def _where(self, path: Sequence[str | int]) -> str:
        found = self.locator.locate(path)
        return f"{self.file}:{found[0]}" if found else self.file

    def _run(self, case: _Case) -> Outcome:
        run = _Run(self.rules, self.targets, case)
        outcome = Outcome(case.name, self.file)
        silent = frozenset(t.name for t in self.targets) - {e[2] for e in case.events}
        for check, got in run.checks():
            lines = _compare(check, got, silent)
            if lines:
                where = self._where(check.path)
                outcome.failures.append(Failure(where, check.at / 1000, check.alertname, lines))
        return outcome


# -- running -----------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class _Run:
    """One test on a fresh engine and a virtual clock."""

    def __init__(self, rules: list[RuleConfig], targets: list[InlineTarget], case: _Case) -> None:
        self.case = case
        self.clock = _Clock()
        self.sent: dict[tuple[tuple[str, str], ...], tuple[PostableAlert, float]] = {}
        """The last alert sent per label set, with when it was sent."""
        self.asked: list[str] = []
        self.history: dict[str, list[tuple[int, ProbeResult]]] = {}
        """Each target's results in order, with when they are due."""
        self.due: dict[str, int] = {}
        """How many of each target's results were observed."""
        for at, _, name, result in case.events:
            self.history.setdefault(name, []).append((at, result))
        self.engine = RuleEngine(
            self._sink, clock=self.clock, recheck=self.asked.append if case.recheck else None
        )
        self.engine.configure(rules, targets)

    def _sink(self, alerts: list[PostableAlert]) -> None:
        for alert in alerts:
            self.sent[tuple(sorted(alert.labels.items()))] = (alert, self.clock.now)

    def _observe(self, name: str, result: ProbeResult) -> None:
        self.engine.observe(name, dataclasses.replace(result, timestamp=self.clock.now))

    def _answer(self, at: int) -> None:
        """Answer the checks the engine asked for with each target's latest result (none
        when a result of it is due now anyway: it is the answer)."""
        while self.asked:
            name = self.asked.pop(0)
            history, done = self.history.get(name, []), self.due.get(name, 0)
            if done < len(history) and history[done][0] == at:
                continue
            if done:
                self._observe(name, history[done - 1][1])

    def checks(self) -> Iterator[tuple[_Check, list[PostableAlert]]]:
        """Run the timeline; yield each check with the alerts of its name firing then."""
        case = self.case
        checks = sorted(case.checks, key=lambda c: c.at)
        end = checks[-1].at if checks else 0
        events = [event for event in case.events if event[0] <= end]
        step = case.evaluation
        grid = ei = ci = 0
        while ci < len(checks):
            at = min(grid, checks[ci].at, events[ei][0] if ei < len(events) else end)
            self.clock.now = START + at / 1000
            while ei < len(events) and events[ei][0] == at:
                _, _, name, result = events[ei]
                self.due[name] = self.due.get(name, 0) + 1
                self._observe(name, result)
                self._answer(at)
                ei += 1
            if at == grid or at == checks[ci].at:
                self.engine.evaluate(self.clock.now)
                self._answer(at)
            if at == grid:
                grid += step
            while ci < len(checks) and checks[ci].at == at:
                yield checks[ci], self._firing(checks[ci].alertname)
                ci += 1

    def _firing(self, alertname: str) -> list[PostableAlert]:
        return [
            alert
            for alert, sent in self.sent.values()
            if alert.labels.get("alertname") == alertname
            and alert.ends_at is not None
            and alert.ends_at > sent
        ]


# -- comparing ---------------------------------------------------------------------------


def _labels_text(labels: Mapping[str, str]) -> str:
    """``{probe="http", target="db"}``: sorted, without alertname."""
    inner = ", ".join(
        f"{name}={json.dumps(value, ensure_ascii=False)}"
        for name, value in sorted(labels.items())
        if name != "alertname"
    )
    return "{" + inner + "}"


def _names_text(names: Sequence[str]) -> str:
    return "[" + ", ".join(sorted(names)) + "]"


def _key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "alertname"))


def _is_flapping(alert: PostableAlert) -> bool:
    return alert.annotations.get("flapping") == "true"


def _compare(check: _Check, got: list[PostableAlert], silent: frozenset[str]) -> tuple[str, ...]:
    """What differs between ``check``'s expected alerts and ``got``, as lines to print
    (none when they agree).  ``silent``: the targets without results in the test."""
    expected = {_key(labels): (labels, spec) for labels, spec in check.expected}
    found = {_key(alert.labels): alert for alert in got}
    problems: list[str] = []
    for key, (labels, spec) in expected.items():
        alert = found.get(key)
        if alert is None:
            problems.append(f"missing: {_labels_text(labels)}")
            problems.extend(_closest(labels, [a for k, a in found.items() if k not in expected]))
            continue
        shown = _labels_text(labels)
        if spec.annotations is not None and spec.annotations != alert.annotations:
            problems.append(f"{shown}: annotations differ:")
            for name in sorted({*spec.annotations, *alert.annotations}):
                want, have = spec.annotations.get(name), alert.annotations.get(name)
                if want == have:
                    continue
                want_text = "not expected" if want is None else f"expected {json.dumps(want)}"
                have_text = "missing" if have is None else f"got {json.dumps(have)}"
                problems.append(f"  {name}: {want_text}, {have_text}")
        if sorted(spec.blocked_by) != sorted(alert.blocked_by):
            problems.append(
                f"{shown}: blocked_by: expected {_names_text(spec.blocked_by)}, "
                f"got {_names_text(alert.blocked_by)}"
            )
            unanswered = sorted(silent.intersection(alert.blocked_by))
            if unanswered:
                problems.append(
                    f"  {', '.join(unanswered)}: no results in this test, so the check "
                    "depends_on asked for had no answer (give it a series)"
                )
        if spec.flapping is not None and spec.flapping != _is_flapping(alert):
            problems.append(
                f"{shown}: flapping: expected {str(spec.flapping).lower()}, "
                f"got {str(_is_flapping(alert)).lower()}"
            )
    for key, alert in sorted(found.items()):
        if key not in expected:
            problems.append(f"unexpected: {_labels_text(alert.labels)}")
    if not problems:
        return ()
    lines = ["  expected:"]
    lines += [
        f"    {line}"
        for labels, spec in check.expected
        for line in _render(labels, spec.annotations, spec.blocked_by, spec.flapping)
    ] or ["    (none)"]
    lines.append("  got:")
    for _, alert in sorted(found.items()):
        spec_at = expected.get(_key(alert.labels))
        show = spec_at is None or spec_at[1].annotations is not None
        annotations = alert.annotations if show else None
        lines += [
            f"    {line}" for line in _render(alert.labels, annotations, alert.blocked_by, None)
        ]
    if not found:
        lines.append("    (none)")
    lines.append("  differences:")
    lines += [f"    {line}" for line in problems]
    return tuple(lines)


def _render(
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None,
    blocked_by: Sequence[str],
    flapping: bool | None,
) -> list[str]:
    lines = [_labels_text(labels)]
    if annotations is not None:
        lines.append(f"  annotations: {_labels_text(annotations)}")
    if blocked_by:
        lines.append(f"  blocked_by: {_names_text(blocked_by)}")
    if flapping is not None:
        lines.append(f"  flapping: {str(flapping).lower()}")
    return lines


def _closest(labels: Mapping[str, str], candidates: list[PostableAlert]) -> list[str]:
    """How the unexpected alert closest to an expected one differs from it, label by label."""
    if not candidates:
        return []
    want = dict(_key(labels))

    def shared(alert: PostableAlert) -> int:
        return sum(1 for k, v in _key(alert.labels) if want.get(k) == v)

    best = max(candidates, key=shared)
    have = dict(_key(best.labels))
    parts: list[str] = []
    for name in sorted({*want, *have}):
        if want.get(name) == have.get(name):
            continue
        want_text = "not expected" if name not in want else f"expected {json.dumps(want[name])}"
        have_text = "absent" if name not in have else f"got {json.dumps(have[name])}"
        parts.append(f"{name}: {want_text}, {have_text}")
    return [f"  closest got {_labels_text(have)}: " + "; ".join(parts)]


# -- loading -----------------------------------------------------------------------------


def parse_series(text: str) -> list[ProbeResult | None]:
    """The checks a compact series stands for (None for ``_``, no check).  Raises
    ValueError saying which entry is wrong."""
    out: list[ProbeResult | None] = []
    last: list[ProbeResult | None] = []  # the entry an `xN` after it repeats
    for number, token in enumerate(text.split(), 1):
        repeat = _REPEAT.fullmatch(token)
        if repeat is not None:
            if not last:
                raise ValueError(f"entry {number} {token!r} repeats nothing: write e.g. 'fail x3'")
            times = int(repeat["times"])
            if times < 1:
                raise ValueError(f"entry {number} {token!r}: the count must be at least 1")
            out.extend(last * (times - 1))
            last = []
            continue
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise ValueError(f"entry {number} {token!r}: {_TOKEN_HELP} (e.g. fail x3, ok:250ms)")
        state, duration, times_text = match["state"], match["duration"], match["times"]
        result: ProbeResult | None = None
        if state != "_":
            seconds = 0.0
            if duration is not None:
                try:
                    seconds = parse_duration(duration).total_seconds()
                except ValueError as exc:
                    raise ValueError(f"entry {number} {token!r}: {exc}") from None
            result = ProbeResult(
                success=state != "fail", degraded=state == "degraded", duration=seconds
            )
        elif duration is not None:
            raise ValueError(f"entry {number} {token!r}: _ (no check) takes no duration")
        times = int(times_text) if times_text is not None else 1
        if times < 1:
            raise ValueError(f"entry {number} {token!r}: the count must be at least 1")
        out.extend([result] * times)
        last = [] if times_text is not None else [result]
    return out


class FileProblems:
    """Problems found in one file, each placed at its line and column."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.locator = Locator(text)
        self.found: list[Problem] = []

    def add(self, path: Sequence[str | int], message: str, *, key: bool = False) -> None:
        where = self.locator.locate(path, key=key)
        line, column = where if where else (None, None)
        self.found.append(Problem(self.file, line, column, format_path(path), message))

    def validation(
        self, exc: ValidationError, prefix: Sequence[str | int], model: type[BaseModel]
    ) -> None:
        for error in exc.errors(include_url=False):
            loc = [*prefix, *error["loc"]]
            kind = error["type"]
            if kind == "extra_forbidden":
                known = _field_names(_model_at(model, list(error["loc"])[:-1]))
                self.add(loc, unknown_field(str(loc[-1]), known), key=True)
                continue
            if kind == "missing":
                self.add(loc, f"missing required field {loc[-1]!r}")
                continue
            message = str(error["msg"]).removeprefix("Value error, ")
            value = error.get("input")
            if kind != "value_error" and not isinstance(value, dict | list):
                message += f" (got {value!r})"
            self.add(loc, message)

    def error(self) -> ConfigError:
        """The problems found, in the order of the file."""
        return ConfigError(sorted(self.found, key=lambda p: (p.line or 0, p.column or 0)))

    def raise_if_any(self) -> None:
        if self.found:
            raise self.error()


def _field_names(model: Any) -> list[str]:
    fields = getattr(model, "model_fields", None) or {}
    return [info.alias or name for name, info in fields.items()]


def _model_at(model: Any, loc: Sequence[str | int]) -> Any:
    """The model validating the mapping at ``loc`` under ``model`` (for suggestions)."""
    for part in loc:
        if isinstance(part, int):
            continue
        for name, info in getattr(model, "model_fields", {}).items():
            if part in (name, info.alias):
                model = model_in(info.annotation)
                break
        else:
            return None
    return model


read_file = read_config_text
"""A test file's text (raises ConfigError naming it)."""


def parse_yaml(text: str, file: str) -> dict[str, Any]:
    try:
        data = yaml_rs.loads(text, parse_datetime=False) if text.strip() else {}
    except Exception as exc:
        found = yaml_syntax_error(text)
        line, column, reason = found if found else (None, None, str(exc).splitlines()[-1])
        raise ConfigError([Problem(file, line, column, "", f"invalid YAML: {reason}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, 1, "", "the top level must be a mapping")])
    return data


def _expand(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return expand_env(value, env) if "$" in value else value
    if isinstance(value, dict):
        return {key: _expand(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, env) for item in value]
    return value


_TARGET_FIELDS = ("name", "probe", "target", "labels", "depends_on", "enabled", "interval")


def _from_config(path: Path, env: Mapping[str, str]) -> tuple[list[RuleConfig], list[InlineTarget]]:
    """The rules and targets of the pudimd config at ``path``: ``alerting.rules`` and,
    of each target, what rules see (``defaults.labels`` merged in).  The rest of the file
    is not read, so secrets, the Alertmanager file and plugins need not be there; env
    variables are expanded (unset ones are empty).  Raises ConfigError."""
    file = str(path)
    text = read_file(path)
    data = parse_yaml(text, file)
    problems = FileProblems(file, text)
    if "$" in text:
        data = _expand(data, env)
    defaults = data.get("defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    default_labels = defaults.get("labels")
    default_interval: timedelta | None = DefaultsConfig.model_fields["interval"].default
    if "interval" in defaults:
        try:
            default_interval = parse_duration(defaults["interval"])
        except ValueError as exc:
            problems.add(["defaults", "interval"], str(exc))
    raw_targets = data.get("targets") or []
    targets: list[InlineTarget] = []
    if not isinstance(raw_targets, list):
        problems.add(["targets"], "expected a list of targets")
        raw_targets = []
    for index, raw in enumerate(raw_targets):
        if not isinstance(raw, dict):
            problems.add(["targets", index], "expected a mapping (a target)")
            continue
        picked = {key: raw[key] for key in _TARGET_FIELDS if key in raw}
        own = picked.get("labels", {})
        if isinstance(default_labels, dict) and isinstance(own, dict):
            picked["labels"] = {**default_labels, **own}
        if "interval" not in picked and "cron" not in raw and default_interval is not None:
            picked["interval"] = default_interval
        try:
            targets.append(InlineTarget.model_validate(picked))
        except ValidationError as exc:
            problems.validation(exc, ["targets", index], InlineTarget)
    alerting = data.get("alerting")
    raw_rules = alerting.get("rules") if isinstance(alerting, dict) else None
    rules: list[RuleConfig] = []
    if raw_rules is not None and not isinstance(raw_rules, list):
        problems.add(["alerting", "rules"], "expected a list of rules")
    for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
        try:
            rules.append(RuleConfig.model_validate(raw))
        except ValidationError as exc:
            problems.validation(exc, ["alerting", "rules", index], RuleConfig)
    problems.raise_if_any()
    _check_sources(problems, rules, targets, ["alerting", "rules"])
    problems.raise_if_any()
    return rules, targets


def _check_sources(
    problems: FileProblems,
    rules: list[RuleConfig],
    targets: list[InlineTarget],
    rules_path: list[str | int],
) -> None:
    seen: dict[str, int] = {}
    for index, target in enumerate(targets):
        first = seen.setdefault(target.name, index)
        if first != index:
            problems.add(
                ["targets", index, "name"],
                f"duplicate target name {target.name!r} (first at targets[{first}])",
            )
    for index, message in check_rules(rules, targets):
        problems.add([*rules_path, index], message)
    for index, message in check_dependencies(targets):
        problems.add(["targets", index, "depends_on"], message)


def load_tests(path: str | Path, env: Mapping[str, str] | None = None) -> Suite:
    """Read the rule test file at ``path``.  Raises ConfigError (``file:line:column``)."""
    path = Path(path)
    return load_tests_text(read_file(path), file=str(path), env=env)


def load_tests_text(
    text: str, *, file: str = "<tests>", env: Mapping[str, str] | None = None
) -> Suite:
    """Read rule test ``text`` (named ``file``; ``config:`` is relative to its folder).
    Raises ConfigError."""
    env = os.environ if env is None else env
    data = parse_yaml(text, file)
    problems = FileProblems(file, text)
    try:
        model = RuleTestFile.model_validate(data)
    except ValidationError as exc:
        problems.validation(exc, [], RuleTestFile)
        raise problems.error() from None
    if model.config is not None:
        if model.rules is not None or model.targets is not None:
            problems.add(["config"], "set config or inline rules and targets, not both")
            problems.raise_if_any()
        config = Path(model.config)
        if not config.is_absolute():
            config = Path(file).parent / config
        rules, targets = _from_config(config, env)
    else:
        if model.rules is None or model.targets is None:
            missing = "rules" if model.rules is None else "targets"
            problems.add(
                [],
                f"missing {missing!r}: set config (a pudimd config file) or both rules and targets",
            )
            problems.raise_if_any()
        assert model.rules is not None and model.targets is not None
        rules, targets = model.rules, model.targets
        _check_sources(problems, rules, targets, ["rules"])
    if not model.tests:
        problems.add(["tests"], "no tests: add at least one")
    cases = [
        _case(problems, test, index, rules, targets, model.evaluation_interval)
        for index, test in enumerate(model.tests)
    ]
    problems.raise_if_any()
    return Suite(file, rules, targets, cases, problems.locator)


def to_ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)


def scheduled_results(
    problems: FileProblems,
    entries: Sequence[ResultSeries],
    base: list[str | int],
    targets: Mapping[str, Any],
    interval: timedelta | None,
    interval_hint: str,
) -> list[tuple[int, int, str, ProbeResult]]:
    """The checks of ``results:`` entries as (milliseconds from the start, entry number,
    target, result), in time order; unknown or disabled targets and missing intervals are
    ``problems`` (``interval``: the file's or test's default; ``interval_hint`` says where
    else it can be set)."""
    events: list[tuple[int, int, str, ProbeResult]] = []
    for number, entry in enumerate(entries):
        where = [*base, number]
        results = series_checks(problems, entry.series, [*where, "series"])
        target = targets.get(entry.target)
        if target is None:
            problems.add([*where, "target"], unknown_target(entry.target, list(targets)))
            continue
        if not target.enabled:
            problems.add(
                [*where, "target"],
                f"target {entry.target!r} is disabled (enabled: false): no rule covers it",
            )
            continue
        step_every = entry.interval or interval or target.interval
        if step_every is None:
            problems.add(
                where,
                f"no interval for {entry.target!r}: set interval here, {interval_hint} or "
                "on the target (a target with a cron schedule has none)",
            )
            continue
        start, step = to_ms(entry.start), to_ms(step_every)
        for position, result in enumerate(results):
            if result is not None:
                events.append((start + position * step, number, entry.target, result))
    events.sort(key=lambda event: (event[0], event[1]))
    return events


def _case(
    problems: FileProblems,
    test: RuleTest,
    index: int,
    rules: list[RuleConfig],
    targets: list[InlineTarget],
    evaluation: timedelta,
) -> _Case:
    base: list[str | int] = ["tests", index]
    by_name = {target.name: target for target in targets}
    events = scheduled_results(
        problems, test.results, [*base, "results"], by_name, test.interval, "in the test"
    )
    if not test.alerts:
        problems.add(base, "no alerts to check: a test without them cannot fail")
    names = sorted({rule.name for rule in rules})
    checks: list[_Check] = []
    for number, check in enumerate(test.alerts):
        where = [*base, "alerts", number]
        if check.alertname not in names:
            known = ", ".join(names) or "none"
            problems.add(
                [*where, "alertname"], f"no rule is named {check.alertname!r} (rules: {known})"
            )
        expected: list[tuple[dict[str, str], ExpectedAlert]] = []
        seen: dict[tuple[tuple[str, str], ...], int] = {}
        for position, spec in enumerate(check.expected):
            at = [*where, "expected", position]
            labels = {name: value for name, value in spec.labels.items() if value}
            for name in labels:
                if not _LABEL_NAME.match(name):
                    problems.add([*at, "labels", name], f"invalid label name {name!r}", key=True)
            named = labels.pop("alertname", check.alertname)
            if named != check.alertname:
                problems.add(
                    [*at, "labels", "alertname"],
                    f"alertname {named!r} is not the checked {check.alertname!r}",
                )
            first = seen.setdefault(_key(labels), position)
            if first != position:
                problems.add(
                    [*at, "labels"],
                    f"the same labels as expected[{first}]: an alert is its label set",
                )
            for name in spec.blocked_by:
                if name not in by_name:
                    problems.add([*at, "blocked_by"], unknown_target(name, list(by_name)))
            expected.append(({**labels, "alertname": check.alertname}, spec))
        checks.append(_Check(to_ms(check.at), check.alertname, tuple(expected), tuple(where)))
    every = max(1, to_ms(test.evaluation_interval or evaluation))
    return _Case(test.name or f"test {index + 1}", events, checks, every, test.recheck)


def unknown_target(name: str, known: list[str]) -> str:
    """``unknown target 'x'`` with the closest known name as a suggestion."""
    return unknown_field(name, known).replace("unknown field", "unknown target", 1)


def series_checks(
    problems: FileProblems, series: str | list[Any], where: list[str | int]
) -> list[ProbeResult | None]:
    """The checks of a series, in order (None: ``_``, no check at that step)."""
    if isinstance(series, str):
        try:
            return parse_series(series)
        except ValueError as exc:
            problems.add(where, str(exc))
            return []
    out: list[ProbeResult | None] = []
    for position, item in enumerate(series):
        if isinstance(item, str):
            try:
                out.extend(parse_series(item))
            except ValueError as exc:
                problems.add([*where, position], str(exc))
        elif isinstance(item, dict):
            try:
                spec = CheckSpec.model_validate(item)
            except ValidationError as exc:
                problems.validation(exc, [*where, position], CheckSpec)
                continue
            out.extend([spec.result()] * spec.repeat)
        else:
            problems.add(
                [*where, position],
                f"expected compact text (ok, fail x3...) or a check mapping, got {item!r}",
            )
    return out
