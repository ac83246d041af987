"""What the alerting of a config would have sent for given check results, on a virtual
clock (``pudimd simulate``): nothing is sent.

A results file (YAML; format in docs/simulate.md) holds made-up or recorded check results
in the format of rule tests (:mod:`pudimd.alerting.ruletest`'s ``results:`` entries), plus
``silences:`` and ``acknowledgements:`` at given times::

    config: pudimd.yaml
    results:
      - {target: db, series: "ok fail x20 ok"}
    silences:
      - {matchers: ['target="db"'], start: 2m, end: 5m, comment: maintenance}
    acknowledgements:
      - {at: 4m, alertname: TargetDown, target: db, by: alice}

:func:`load_scenario` reads it with the whole config (validated like ``pudimd
check-config``, with the real plugin host); :func:`simulate` replays it through the real
engine: :class:`~pudimd.alerting.rules.RuleEngine` and
:class:`~pudimd.alerting.engine.Alerting` (alert store, silences, inhibition, time
intervals, ``depends_on``, dispatcher, escalations) on an in-memory SQLite database, every
part reading a virtual clock.  The engine's timed loops are not started: the simulation
steps them itself (:meth:`Alerting.housekeep`, :meth:`Dispatcher.flush_due`,
:meth:`Escalator.fire_due`).  Notifications are recorded where the outbox would store them;
no notifier is even built, so nothing can be sent.

Each step of the virtual clock goes to the earliest of: the next result, the next
acknowledgement, the next rule evaluation (every ``evaluation_interval``, 1 s as in the
daemon), the next group due in the dispatcher, the next escalation level due, and the next
thing housekeeping waits for (an alert's expiry, an acknowledgement running out, a silence
starting or ending).  At one time, in this order: the results due (in file order) with the checks
``depends_on`` asks for answered at once; the rule evaluation; the alerts the rules sent
are posted to the store; the acknowledgements due; housekeeping; the dispatcher's due
groups flush; the escalator's due levels fire.  The run stops after the last result or
acknowledgement plus ``tail`` (default 1 h), or earlier once nothing can change any more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import anyio
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from pudimd.alerting.alert import PostableAlert
from pudimd.alerting.config import config_key
from pudimd.alerting.engine import Alerting
from pudimd.alerting.escalation import escalation_id
from pudimd.alerting.matchers import MatcherList
from pudimd.alerting.metrics import AlertingMetrics
from pudimd.alerting.oncall import OncallDirectory
from pudimd.alerting.outbox import Outbox
from pudimd.alerting.routing import format_labels
from pudimd.alerting.rules import RECHECK_WAIT, RuleEngine
from pudimd.alerting.ruletest import (
    START,
    FileProblems,
    ResultSeries,
    parse_yaml,
    read_file,
    scheduled_results,
    unknown_target,
)
from pudimd.alerting.silences import Silence, SilenceError
from pudimd.alerting.workflow import Action, ActionError
from pudimd.config.errors import ConfigError, Problem
from pudimd.durations import Duration, PositiveDuration, format_duration
from pudimd.results import ProbeResult
from pudimd.settings import StrictModel

if TYPE_CHECKING:
    from pudimd.alerting.notification import Notification
    from pudimd.config import ConfigBase, ConfigSchema
    from pudimd.store.alerting import AlertingDB, NflogRow

__all__ = [
    "DEFAULT_TAIL",
    "SECRET_PLACEHOLDER",
    "START",
    "AckSpec",
    "Escalated",
    "Scenario",
    "Sent",
    "SentAlert",
    "SilenceSpec",
    "Simulation",
    "SimulationFile",
    "format_at",
    "load_scenario",
    "simulate",
]

DEFAULT_TAIL = 3600.0
"""Seconds simulated after the last result or acknowledgement."""
SECRET_PLACEHOLDER = "https://secret-file-not-read.invalid/"
"""What a ``*_file`` secret that cannot be read stands for (nothing is sent, so its value
does not matter; it is an https URL so that URL fields still validate)."""
MAX_STEPS_AT_ONE_TIME = 1000


# -- the file ----------------------------------------------------------------------------


class SilenceSpec(StrictModel):
    """A silence in force from ``start`` to ``end``."""

    matchers: MatcherList = Field(min_length=1, description="The alerts it mutes")
    start: Duration = Field(timedelta(0), description="When it starts")
    end: Duration = Field(description="When it ends")
    comment: str = Field("simulated silence", min_length=1, description="Why")
    created_by: str = Field("simulate", min_length=1, description="Who made it")
    expire_on_resolve: bool = Field(
        False, description="It ends once every alert it muted has resolved"
    )

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class AckSpec(StrictModel):
    """An acknowledgement, at ``at``, of every unresolved alert it selects."""

    at: Duration = Field(description="When it happens")
    alertname: str | None = Field(None, description="The alerts of this rule")
    target: str | None = Field(None, description="The alerts of this target")
    labels: dict[str, str] = Field(
        default_factory=dict, description="The alerts with these labels (all of them)"
    )
    by: str = Field("simulate", min_length=1, description="Who acknowledges")
    until: Duration | None = Field(
        None, description="When the acknowledgement ends by itself (default: on resolve)"
    )
    comment: str | None = Field(None, description="A comment recorded with it")

    @model_validator(mode="after")
    def _selects(self) -> Self:
        if self.alertname is None and self.target is None and not self.labels:
            raise ValueError("say which alerts: set alertname, target or labels")
        if self.until is not None and self.until <= self.at:
            raise ValueError("until must be after at")
        return self

    def selects(self, labels: Mapping[str, str]) -> bool:
        if self.alertname is not None and labels.get("alertname") != self.alertname:
            return False
        if self.target is not None and labels.get("target") != self.target:
            return False
        return all(labels.get(name) == value for name, value in self.labels.items())


class SimulationFile(StrictModel):
    """A results file."""

    config: str | None = Field(
        None, description="The pudimd config (relative to this file); -c overrides it"
    )
    interval: PositiveDuration | None = Field(
        None, description="Default spacing of the checks of every series"
    )
    evaluation_interval: PositiveDuration = Field(
        timedelta(seconds=1), description="How often the rules are evaluated"
    )
    recheck: bool = Field(
        True, description="Answer the checks depends_on asks for with the parent's last result"
    )
    results: list[ResultSeries] = Field(default_factory=list, description="Made-up checks")
    recorded: str | list[str] = Field(
        default_factory=list,
        description="JSON files of results exported from the database (sqlite3 -json)",
    )
    silences: list[SilenceSpec] = Field(default_factory=list)
    acknowledgements: list[AckSpec] = Field(default_factory=list)


class _RecordedRow(BaseModel):
    """A row of the ``results`` table, as ``sqlite3 -json`` writes it."""

    model_config = ConfigDict(extra="ignore")

    target: str
    ts: float
    success: bool
    duration: float = 0.0
    status: int | str | None = None
    message: str | None = ""
    phases: dict[str, float] | str | None = None
    metrics: dict[str, float] | str | None = None

    def result(self) -> ProbeResult:
        return ProbeResult(
            success=self.success,
            duration=self.duration,
            status=self.status,
            message=self.message or "",
            phases=_json_object(self.phases),
            metrics=_json_object(self.metrics),
        )


def _json_object(value: dict[str, float] | str | None) -> dict[str, float]:
    if isinstance(value, str):
        loaded = json.loads(value) if value.strip() else {}
        if not isinstance(loaded, dict):
            raise ValueError("expected a JSON object")
        return {str(k): float(v) for k, v in loaded.items()}
    return dict(value or {})


# -- a loaded scenario -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Check:
    at: float
    """Seconds from the start (``results:``) or Unix seconds (``recorded:``)."""
    order: int
    target: str
    result: ProbeResult


@dataclass(slots=True)
class Scenario:
    """A results file and the config it runs against, ready to :func:`simulate`."""

    file: str
    config_file: str
    config: ConfigBase
    notifier_types: dict[str, type[Any]]
    checks: list[_Check]
    """Checks at offsets from the start, sorted."""
    recorded: list[_Check]
    """Checks at Unix times (recorded rows), sorted."""
    silences: list[SilenceSpec]
    acknowledgements: list[AckSpec]
    """In the file's order."""
    evaluation: float
    recheck: bool
    notes: list[str] = field(default_factory=list)
    """What the caller should tell (secret files not read...)."""

    @property
    def start(self) -> float:
        """The default start: the second of the first recorded check, else :data:`START`."""
        if self.recorded:
            return float(math.floor(self.recorded[0].at))
        return START


def load_scenario(
    path: str | Path,
    config: str | Path | None = None,
    *,
    default_config: str | Path | None = None,
    schema: ConfigSchema | None = None,
    env: Mapping[str, str] | None = None,
) -> Scenario:
    """Read the results file at ``path`` and the config it runs against: ``config``, else
    the file's ``config:``, else ``default_config``.  The config is loaded as ``pudimd
    check-config`` loads it (``schema``: default from the plugins installed), except that a
    ``*_file`` secret that cannot be read is replaced by :data:`SECRET_PLACEHOLDER` (noted in
    :attr:`Scenario.notes`).  Raises ConfigError (``file:line:column: path: reason``)."""
    from pudimd.config import load_config, schema_for

    path = Path(path)
    file = str(path)
    text = read_file(path)
    data = parse_yaml(text, file)
    problems = FileProblems(file, text)
    try:
        model = SimulationFile.model_validate(data)
    except ValidationError as exc:
        problems.validation(exc, [], SimulationFile)
        raise problems.error() from None
    if config is not None:
        config_path = Path(config)
    elif model.config is not None:
        config_path = Path(model.config)
        if not config_path.is_absolute():
            config_path = path.parent / config_path
    elif default_config is not None:
        config_path = Path(default_config)
    else:
        problems.add([], "no config: set config: (a pudimd config file) or give one with -c")
        raise problems.error()
    unread: list[str] = []
    with _lenient_secrets(unread):
        if schema is None:
            from pudimd.daemon import make_host

            schema = schema_for(make_host(config_path))
        loaded = load_config(config_path, schema, env=env)
    notes = [
        f"{config_path}: secret file {name!r} cannot be read; nothing is sent, so it is not needed"
        for name in unread
    ]
    targets = {target.name: target for target in loaded.targets}
    checks = _checks(problems, model, targets)
    recorded, row_problems = _recorded(problems, model, path.parent, targets, notes)
    rules = sorted({rule.name for rule in loaded.alerting.rules})
    for number, ack in enumerate(model.acknowledgements):
        where: list[str | int] = ["acknowledgements", number]
        if ack.alertname is not None and ack.alertname not in rules:
            known = ", ".join(rules) or "none"
            problems.add(
                [*where, "alertname"], f"no rule is named {ack.alertname!r} (rules: {known})"
            )
        if ack.target is not None and ack.target not in targets:
            problems.add([*where, "target"], unknown_target(ack.target, list(targets)))
    for number, spec in enumerate(model.silences):
        try:
            _silence(spec, START).validate(START)
        except SilenceError as exc:
            problems.add(["silences", number], str(exc))
    if problems.found or row_problems:
        raise ConfigError(problems.error().problems + row_problems)
    return Scenario(
        file=file,
        config_file=str(config_path),
        config=loaded,
        notifier_types=dict(schema.notifier_types),
        checks=checks,
        recorded=recorded,
        silences=list(model.silences),
        acknowledgements=list(model.acknowledgements),
        evaluation=model.evaluation_interval.total_seconds(),
        recheck=model.recheck,
        notes=notes,
    )


@contextlib.contextmanager
def _lenient_secrets(unread: list[str]) -> Iterator[None]:
    """While loading a config: a ``*_file`` secret that cannot be read stands for
    :data:`SECRET_PLACEHOLDER` and its path is added to ``unread``.  (Receivers' secrets
    are not needed to know what would be sent; the rest of the config is validated as
    ``check-config`` does.)"""
    from pudimd import settings

    real = settings.read_secret_file

    def lenient(value: Any, info: Any = None) -> SecretStr:
        try:
            return real(value, info)
        except ValueError:
            if not isinstance(value, str | Path):
                raise
            unread.append(str(value))
            return SecretStr(SECRET_PLACEHOLDER)

    settings.read_secret_file = lenient
    try:
        yield
    finally:
        settings.read_secret_file = real


def _checks(
    problems: FileProblems, model: SimulationFile, targets: Mapping[str, Any]
) -> list[_Check]:
    """The checks of ``results:`` at their offsets (as a rule test's ``results``)."""
    scheduled = scheduled_results(
        problems, model.results, ["results"], targets, model.interval, "at the top of the file"
    )
    return [_Check(ms / 1000, number, target, result) for ms, number, target, result in scheduled]


def _recorded(
    problems: FileProblems,
    model: SimulationFile,
    base: Path,
    targets: Mapping[str, Any],
    notes: list[str],
) -> tuple[list[_Check], list[Problem]]:
    """The rows of the ``recorded:`` files: a JSON array (``sqlite3 -json``) or JSON Lines
    of rows of the ``results`` table, and the problems of those files (at most 20 each).
    Rows of targets the config does not have (or has disabled) are left out, with a
    note."""
    files = [model.recorded] if isinstance(model.recorded, str) else model.recorded
    out: list[_Check] = []
    skipped: dict[str, int] = {}
    bad: list[Problem] = []
    for number, name in enumerate(files):
        where: list[str | int] = ["recorded"] + (
            [number] if isinstance(model.recorded, list) else []
        )
        path = Path(name) if Path(name).is_absolute() else base / name
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            problems.add(where, f"cannot read {str(path)!r}: {reason}")
            continue
        found: list[Problem] = []
        for index, (line, row, error) in enumerate(_json_rows(text)):
            if error is None:
                try:
                    parsed = _RecordedRow.model_validate(row)
                    result = parsed.result()
                except ValidationError as exc:
                    error = "; ".join(
                        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                        for e in exc.errors(include_url=False)
                    )
                except (ValueError, TypeError) as exc:
                    error = str(exc)
            if error is not None:
                place = "" if line is not None else f"[{index}]"
                found.append(Problem(str(path), line, None, place, f"invalid row: {error}"))
                continue
            target = targets.get(parsed.target)
            if target is None or not target.enabled:
                skipped[parsed.target] = skipped.get(parsed.target, 0) + 1
                continue
            out.append(_Check(parsed.ts, len(out), parsed.target, result))
        bad.extend(found[:20])
    for name, count in sorted(skipped.items()):
        notes.append(
            f"recorded: {count} result(s) of {name!r} left out: no enabled target of that name"
        )
    out.sort(key=lambda check: (check.at, check.order))
    return out, bad


def _json_rows(text: str) -> Iterator[tuple[int | None, Any, str | None]]:
    """(line, row, error) of a JSON array (line None) or of JSON Lines; the error says why
    a line or the array is not JSON."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            rows = json.loads(stripped)
        except ValueError as exc:
            yield 1, None, f"not JSON: {exc}"
            return
        for row in rows:
            yield None, row, None
        return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield number, json.loads(line), None
            except ValueError as exc:
                yield number, None, f"not JSON: {exc}"


def _silence(spec: SilenceSpec, start: float) -> Silence:
    return Silence(
        matchers=tuple(spec.matchers),
        starts_at=start + spec.start.total_seconds(),
        ends_at=start + spec.end.total_seconds(),
        created_by=spec.created_by,
        comment=spec.comment,
        expire_on_resolve=spec.expire_on_resolve,
    )


# -- the outcome -------------------------------------------------------------------------


def format_at(seconds: float) -> str:
    """``+1m30s``: a time of the simulation, from its start."""
    return "+" + format_duration(timedelta(seconds=seconds))


def _rfc3339(moment: float) -> str:
    when = datetime.fromtimestamp(moment, UTC)
    spec = "seconds" if round(moment * 1000) % 1000 == 0 else "milliseconds"
    return when.isoformat(timespec=spec).removesuffix("+00:00") + "Z"


@dataclass(frozen=True, slots=True)
class SentAlert:
    alertname: str
    target: str
    status: str
    """firing or resolved."""
    labels: dict[str, str]

    def __str__(self) -> str:
        text = f"{self.alertname}:{self.target}" if self.target else self.alertname
        return text if self.status == "firing" else f"{text}(resolved)"


@dataclass(frozen=True, slots=True)
class Escalated:
    """The escalation level a notification is (1-based), of which policy, in which cycle
    (0: the first pass through its levels)."""

    policy: str
    level: int
    cycle: int


@dataclass(frozen=True, slots=True)
class Sent:
    """A notification the simulation would have sent."""

    at: float
    """Seconds from the start."""
    moment: float
    """Unix seconds."""
    receiver: str
    integration: str
    status: str
    """firing or resolved (the group's status)."""
    acknowledged: bool
    """Every firing alert of the group is acknowledged."""
    group: dict[str, str]
    group_key: str
    alerts: tuple[SentAlert, ...]
    escalation: Escalated | None = None

    @property
    def state(self) -> str:
        """firing, resolved or acknowledged."""
        return "acknowledged" if self.acknowledged else self.status

    def columns(self) -> list[str]:
        """offset, time, receiver/integration, state, group, alerts (and the escalation)."""
        alerts = ", ".join(str(alert) for alert in self.alerts)
        if self.escalation is not None:
            e = self.escalation
            cycle = f" (repeat {e.cycle})" if e.cycle else ""
            alerts += f"  [escalation {e.policy} level {e.level}{cycle}]"
        return [
            format_at(self.at),
            _rfc3339(self.moment),
            f"{self.receiver}/{self.integration}",
            self.state,
            format_labels(self.group),
            alerts,
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 3),
            "offset": format_at(self.at),
            "time": _rfc3339(self.moment),
            "receiver": self.receiver,
            "integration": self.integration,
            "status": self.status,
            "acknowledged": self.acknowledged,
            "group": self.group,
            "group_key": self.group_key,
            "alerts": [
                {
                    "alertname": a.alertname,
                    "target": a.target,
                    "status": a.status,
                    "labels": a.labels,
                }
                for a in self.alerts
            ],
            "escalation": dataclasses.asdict(self.escalation) if self.escalation else None,
        }


@dataclass(slots=True)
class Simulation:
    """What :func:`simulate` found."""

    start: float
    """Unix seconds of time 0."""
    end: float
    """Seconds from the start to the last step simulated."""
    notifications: list[Sent]
    receivers: dict[str, int]
    """Every receiver of the config with its number of integrations."""
    unreachable: dict[str, list[str]]
    """Receivers without integrations that alerts were routed to, with those alerts."""
    notes: list[str]
    """Acknowledgements that selected no alert, secret files not read..."""

    def counts(self) -> dict[str, int]:
        """Notifications per receiver (every receiver, in the config's order)."""
        counts = dict.fromkeys(self.receivers, 0)
        for sent in self.notifications:
            counts[sent.receiver] = counts.get(sent.receiver, 0) + 1
        return counts

    def lines(self) -> list[str]:
        """One line per notification, columns aligned, then the summary."""
        rows = [sent.columns() for sent in self.notifications]
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(5)]
        out = [
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
            for row in rows
        ]
        if out:
            out.append("")
        out.extend(self.summary())
        return out

    def summary(self) -> list[str]:
        total = len(self.notifications)
        until = _rfc3339(self.start + self.end)
        length = format_duration(timedelta(seconds=self.end))
        head = (
            f"{total} notification{'s' if total != 1 else ''} in {length} of virtual time "
            f"({_rfc3339(self.start)} to {until}); nothing was sent"
        )
        lines = [head]
        escalations: dict[str, int] = {}
        for sent in self.notifications:
            if sent.escalation is not None:
                escalations[sent.receiver] = escalations.get(sent.receiver, 0) + 1
        for receiver, count in self.counts().items():
            line = f"  {receiver}: {count}"
            if escalations.get(receiver):
                line += f" ({escalations[receiver]} by escalation)"
            if self.receivers.get(receiver) == 0:
                line += " (no integrations"
                routed = self.unreachable.get(receiver)
                line += f"; alerts routed here: {', '.join(routed)})" if routed else ")"
            lines.append(line)
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "start": _rfc3339(self.start),
            "end": round(self.end, 3),
            "notifications": [sent.to_json() for sent in self.notifications],
            "receivers": {
                name: {
                    "notifications": count,
                    "integrations": self.receivers.get(name, 0),
                    "unreachable_alerts": self.unreachable.get(name, []),
                }
                for name, count in self.counts().items()
            },
            "notes": self.notes,
        }


# -- running -----------------------------------------------------------------------------


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Inert:
    """Stands for a notifier type: the simulation builds no real notifier, so none can
    send (the dispatcher only needs the receivers' integrations and settings)."""

    type = ""
    config_key = ""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def send(self, notification: Notification, timeout: float) -> None:
        raise RuntimeError("a simulation sends nothing")


def _inert_types(types: Mapping[str, type[Any]]) -> dict[str, type[Any]]:
    return {
        name: type(f"Inert_{name}", (_Inert,), {"type": name, "config_key": config_key(cls)})
        for name, cls in types.items()
    }


class _Capture(Outbox):
    """The outbox of a simulation: what is enqueued is recorded, never stored nor
    delivered."""

    def __init__(self, run: _Run, db: AlertingDB, metrics: AlertingMetrics) -> None:
        super().__init__(db, lambda receiver, integration: None, metrics, clock=run.clock)
        self._run = run

    async def enqueue(
        self, notifications: Sequence[Notification], nflog: Sequence[NflogRow]
    ) -> None:
        self._run.record(notifications)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        raise RuntimeError("a simulation delivers nothing")


class _Run:
    def __init__(self, scenario: Scenario, start: float, tail: float) -> None:
        self.scenario = scenario
        self.start = start
        self.tail = tail
        self.clock = _Clock(start)
        self.sent: list[Sent] = []
        self.notes: list[str] = list(scenario.notes)
        self.checks = sorted(
            [dataclasses.replace(c, at=start + c.at) for c in scenario.checks]
            + [c for c in scenario.recorded if c.at >= start],
            key=lambda c: c.at,
        )
        early = sum(1 for c in scenario.recorded if c.at < start)
        if early:
            self.notes.append(f"recorded: {early} result(s) before the start left out")
        self.history: dict[str, list[tuple[float, ProbeResult]]] = {}
        for check in self.checks:
            self.history.setdefault(check.target, []).append((check.at, check.result))
        self.observed: dict[str, int] = {}
        self.asked: list[str] = []
        self.unanswered: set[str] = set()
        self.posts: list[list[PostableAlert]] = []
        self.fired: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        self.escalating: dict[str, Escalated] | None = None

    # -- the pieces ---------------------------------------------------------------------

    def record(self, notifications: Sequence[Notification]) -> None:
        now = self.clock.now
        for n in notifications:
            escalation = None
            if self.escalating is not None:
                escalation = self.escalating.get(escalation_id(n.group_key))
            alerts = tuple(
                SentAlert(
                    alert.labels.get("alertname", ""),
                    alert.labels.get("target") or alert.labels.get("instance") or "",
                    alert.status,
                    dict(sorted(alert.labels.items())),
                )
                for alert in n.alerts
            )
            self.sent.append(
                Sent(
                    at=now - self.start,
                    moment=now,
                    receiver=n.receiver,
                    integration=n.integration,
                    status=n.status,
                    acknowledged=n.acknowledged,
                    group=dict(n.group_labels),
                    group_key=n.group_key,
                    alerts=alerts,
                    escalation=escalation,
                )
            )

    def _sink(self, alerts: list[PostableAlert]) -> None:
        now = self.clock.now
        for alert in alerts:
            if alert.ends_at is None or alert.ends_at > now:
                self.fired.setdefault(tuple(sorted(alert.labels.items())), alert.labels)
        self.posts.append(alerts)

    def _observe(self, rules: RuleEngine, name: str, result: ProbeResult) -> None:
        rules.observe(name, dataclasses.replace(result, timestamp=self.clock.now))

    def _answer(self, rules: RuleEngine) -> None:
        """Answer the checks the rules asked for (``depends_on``) with each target's latest
        result (none when one of its results is due now anyway: that is the answer)."""
        now = self.clock.now
        while self.asked:
            name = self.asked.pop(0)
            history, done = self.history.get(name, []), self.observed.get(name, 0)
            if done < len(history) and history[done][0] <= now:
                continue
            if done:
                self._observe(rules, name, history[done - 1][1])
            elif name not in self.unanswered:
                self.unanswered.add(name)
                self.notes.append(
                    f"{name} had no result yet when a target depending on it asked for its "
                    f"check at {format_at(now - self.start)}: the dependent's alert was held "
                    f"(up to {RECHECK_WAIT:g}s) as if {name}'s check could not run"
                )

    async def _acknowledge(self, alerting: Alerting, number: int, spec: AckSpec) -> None:
        now = self.clock.now
        chosen = [
            alert
            for alert in alerting.all_alerts()
            if not alert.resolved(now) and spec.selects(alert.labels)
        ]
        if not chosen:
            self.notes.append(
                f"acknowledgements[{number}] at {format_at(spec.at.total_seconds())}: no "
                "unresolved alert is selected"
            )
        until = self.start + spec.until.total_seconds() if spec.until is not None else None
        for alert in chosen:
            action = Action("acknowledge", spec.by, "cli", until=until, comment=spec.comment)
            try:
                await alerting.act(alert.fingerprint, action)
            except ActionError as exc:
                self.notes.append(f"acknowledgements[{number}]: {exc.message}")

    def _due_levels(self, alerting: Alerting, now: float) -> dict[str, Escalated]:
        """The level each escalation due now is about to notify."""
        escalator = alerting.escalator
        out: dict[str, Escalated] = {}
        for eid, escalation in escalator.active.items():
            policy = escalator.policies.get(escalation.policy)
            if policy is None or escalation.next_at is None or escalation.next_at > now:
                continue
            level = min(escalation.level, len(policy.levels) - 1)
            out[eid] = Escalated(escalation.policy, level + 1, escalation.cycle)
        return out

    def _quiet(self, alerting: Alerting, rules: RuleEngine, now: float) -> bool:
        """Nothing can change any more: no group, escalation, unresolved alert or rule
        that is not inactive."""
        return (
            not alerting.dispatcher.groups
            and not alerting.escalator.active
            and all(alert.resolved(now) for alert in alerting.all_alerts())
            and all(state.state == "inactive" for state in rules.states())
        )

    # -- the loop -----------------------------------------------------------------------

    async def __call__(self) -> Simulation:
        from pudimd.store import Store
        from pudimd.store.alerting import AlertingDB

        scenario = self.scenario
        config = scenario.config
        store = await Store.open("sqlite:///:memory:")
        db = AlertingDB(store.engine)
        try:
            metrics = AlertingMetrics()
            alerting = Alerting(
                db, _inert_types(scenario.notifier_types), metrics, clock=self.clock
            )
            alerting.outbox = _Capture(self, db, metrics)
            await alerting.start(config.alerting)
            alerting.set_oncall(OncallDirectory(config.oncall))
            rules = RuleEngine(
                self._sink,
                external_url=config.alerting.external_url,
                clock=self.clock,
                recheck=self.asked.append if scenario.recheck else None,
            )
            rules.configure(config.alerting.rules, config.targets)
            async with anyio.create_task_group() as tg:
                tg.start_soon(alerting.run_writer)  # post() returns once its writes are done
                end = await self._loop(alerting, rules)
                tg.cancel_scope.cancel()
            if await db.notifications(limit=1):
                raise RuntimeError("a simulated notification reached the outbox table")
        finally:
            db.close()
            await store.close()
        receivers = {
            name: len(alerting.dispatcher.integrations(name)) for name in alerting.receivers()
        }
        unreachable: dict[str, list[str]] = {}
        for labels in self.fired.values():
            for route in alerting.routes_for(labels):
                if receivers.get(route.receiver, 0) == 0:
                    shown = str(
                        SentAlert(
                            labels.get("alertname", ""), labels.get("target", ""), "firing", labels
                        )
                    )
                    names = unreachable.setdefault(route.receiver, [])
                    if shown not in names:
                        names.append(shown)
        return Simulation(self.start, end, self.sent, receivers, unreachable, self.notes)

    async def _loop(self, alerting: Alerting, rules: RuleEngine) -> float:
        """Run the timeline; returns when it stopped (seconds from the start)."""
        scenario, start = self.scenario, self.start
        checks = self.checks
        acks = sorted(enumerate(scenario.acknowledgements), key=lambda pair: pair[1].at)
        ack_times = [start + ack.at.total_seconds() for _, ack in acks]
        for spec in scenario.silences:
            await alerting.put_silence(_silence(spec, start))
        last = max([c.at for c in checks[-1:]] + ack_times[-1:] + [start])
        horizon = last + self.tail
        windows = [
            t.window.total_seconds()
            for rule in scenario.config.alerting.rules
            for t in rule.thresholds
            if t.window is not None
        ]
        settled = last + max(windows, default=0.0)
        step = scenario.evaluation
        ticks = 0
        ci = ai = 0
        silence_change: float | None = None
        now, previous, same = start, None, 0
        while True:
            same = same + 1 if now == previous else 0
            if same > MAX_STEPS_AT_ONE_TIME:
                raise RuntimeError(f"the simulation does not advance at {format_at(now - start)}")
            previous = now
            self.clock.now = now
            while ci < len(checks) and checks[ci].at <= now:
                check = checks[ci]
                self.observed[check.target] = self.observed.get(check.target, 0) + 1
                self._observe(rules, check.target, check.result)
                self._answer(rules)
                ci += 1
            next_tick = start + ticks * step
            if now >= next_tick:
                rules.evaluate(now)
                self._answer(rules)
                while start + ticks * step <= now:
                    ticks += 1
                next_tick = start + ticks * step
            while self.posts:
                await alerting.post(self.posts.pop(0))
            while ai < len(acks) and ack_times[ai] <= now:
                await self._acknowledge(alerting, *acks[ai])
                ai += 1
            wait, silence_change = alerting.housekeep(now)
            dispatch_at = await alerting.dispatcher.flush_due(now)
            self.escalating = self._due_levels(alerting, now)
            try:
                escalate_at = await alerting.escalator.fire_due(now)
            finally:
                self.escalating = None
            upcoming = [next_tick, now + max(wait, 0.001), silence_change, dispatch_at, escalate_at]
            if ci < len(checks):
                upcoming.append(checks[ci].at)
            if ai < len(acks):
                upcoming.append(ack_times[ai])
            following = max(min(t for t in upcoming if t is not None), now)
            if following > horizon:
                return now - start
            done = ci == len(checks) and ai == len(acks) and now >= settled
            if done and not self.posts and self._quiet(alerting, rules, now):
                return now - start
            now = following


async def simulate(
    scenario: Scenario, *, start: float | None = None, tail: float = DEFAULT_TAIL
) -> Simulation:
    """Replay ``scenario`` from ``start`` (Unix seconds; default :attr:`Scenario.start`)
    until ``tail`` seconds after its last result or acknowledgement (or until nothing can
    change any more) and return what would have been sent."""
    if tail < 0:
        raise ValueError(f"tail must not be negative, got {tail!r}")
    return await _Run(scenario, scenario.start if start is None else start, tail)()
