"""The config file's models.

The core sections are static; the ``targets`` list is a union assembled at load time from
the installed probe types (:func:`build_config_model`): ``probe: http`` selects the http
probe's ``Settings`` for the block under the ``http:`` key of that target.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, Union

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from pudimd.alerting.config import AlertingBase, build_alerting_model
from pudimd.alerting.oncall import OncallConfig
from pudimd.auth.config import AuthConfig
from pudimd.backups.config import BackupsConfig
from pudimd.conditions import Condition
from pudimd.config.templates import Catalog, TemplateSpec
from pudimd.durations import PositiveDuration
from pudimd.settings import CronExpression, PluginSettings, SecretFile, StrictModel, TimeZoneName

__all__ = [
    "ConfigBase",
    "DefaultsConfig",
    "LoggingConfig",
    "PluginsConfig",
    "SchedulerConfig",
    "ServerConfig",
    "StorageConfig",
    "TargetBase",
    "build_config_model",
]

DEFAULT_LISTEN = "127.0.0.1:9797"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` / ``:port``; raise ValueError when malformed."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9797, [::1]:9797)")
    if host.startswith("[") and host.endswith("]"):
        ipaddress.IPv6Address(host[1:-1])
        host = host[1:-1]
    return host or "0.0.0.0", int(port_text)


def _check_host_port(value: str) -> str:
    parse_host_port(value)
    return value


class ServerConfig(StrictModel):
    """The one HTTP listener: /metrics, /-/healthy, /-/ready, /-/reload (later the APIs)."""

    listen: str = Field(DEFAULT_LISTEN, description="HOST:PORT to listen on")

    @field_validator("listen")
    @classmethod
    def _listen_ok(cls, value: str) -> str:
        return _check_host_port(value)


class StorageConfig(StrictModel):
    """Where results and rollups are kept."""

    url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql://user@host/db. "
        "Default: SQLite (WAL) at <state_dir>/pudimd.db",
    )
    url_file: SecretFile | None = Field(None, description="File holding `url` (it has a password)")
    raw_retention: PositiveDuration = Field(
        timedelta(days=7), description="How long raw results are kept"
    )
    rollup_retention: PositiveDuration = Field(
        timedelta(days=90), description="How long per-hour rollups are kept"
    )
    minute_rollup_retention: PositiveDuration = Field(
        timedelta(days=7),
        description="How long per-minute rollups are kept (at most rollup_retention): a "
        "year of hour rollups is small, a year of minute rollups is not",
    )
    batch_interval: PositiveDuration = Field(
        timedelta(seconds=1),
        description="Results are written at most this often, in one transaction",
    )
    batch_size: int = Field(5000, gt=0, description="Write sooner when this many results wait")

    @model_validator(mode="after")
    def _url_from_file(self) -> Self:
        if self.url_file is not None:
            if self.url is not None:
                raise ValueError("set url or url_file, not both")
            object.__setattr__(self, "url", self.url_file)
        return self


class LoggingConfig(StrictModel):
    """Log output (to stderr; journald keeps it under systemd)."""

    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class SchedulerConfig(StrictModel):
    """How checks are run."""

    max_concurrency: int = Field(512, gt=0, description="Checks running at once, all targets")
    missed_runs: Literal["run_once", "skip"] = Field(
        "run_once",
        description="When the daemon falls behind (event loop stalled, machine suspended): "
        "run_once runs a late target once as soon as possible and drops the other missed "
        "slots; skip drops a run that is more than one interval late and waits for the next "
        "slot. Dropped runs are counted in pudimd_scheduler_missed_runs_total",
    )


class PluginsConfig(StrictModel):
    """Plugin switches."""

    disabled: list[str] = Field(default_factory=list, description="Plugin names not to load")
    concurrency: dict[str, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Checks running at once per probe type, e.g. {http: 200}",
    )
    hook_timeout: PositiveDuration = Field(
        timedelta(seconds=10), description="Time limit of each event-hook call"
    )
    trace: bool = Field(False, description="Log every event-hook call with its duration")


class DefaultsConfig(StrictModel):
    """Values every target gets unless it sets its own.  Per-probe-type blocks (``http:``
    etc.) are merged key by key into each target of that type."""

    model_config = StrictModel.model_config | {"extra": "allow"}

    interval: PositiveDuration = Field(timedelta(seconds=30), description="Check interval")
    timeout: PositiveDuration = Field(timedelta(seconds=10), description="Per-check time limit")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels added to every target")


class TargetBase(StrictModel):
    """Fields common to every target, whatever its probe."""

    name: str = Field(description="Unique name of the target")
    probe: str = Field(description="Probe type (see `pudimd plugins`)")
    target: str = Field(description="What to probe: a URL, host:port, path... (per probe)")
    interval: PositiveDuration | None = Field(
        None, description="Check interval (default from defaults)"
    )
    cron: CronExpression | None = Field(None, description="Cron schedule instead of an interval")
    timezone: TimeZoneName | None = Field(
        None, description="Time zone of the cron schedule (default UTC)"
    )
    timeout: PositiveDuration | None = Field(None, description="Per-check time limit")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of this target")
    enabled: bool = Field(True, description="false keeps the target in the file but unscheduled")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Gatus-style conditions every successful check must also meet, e.g. "
        "'[STATUS] == 200', '[BODY].data.status == UP', '[RESPONSE_TIME] < 300' "
        "(milliseconds); the first that fails makes the check a failure naming it and the "
        "value seen. Quote them in YAML. See docs/conditions.md",
    )
    degraded_if: list[Condition] = Field(
        default_factory=list,
        description="Conditions that make a successful check degraded (working but "
        "unhealthy: its own state, pudimd_target_degraded 1), e.g. '[RESPONSE_TIME] > 800'",
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="Names of the targets this one needs (a switch, a database): while one "
        "of them is down, this target's alerts are held back and marked as blocked by it",
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"invalid name {value!r}: use letters, digits and _ . : / @ - (no spaces)"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _labels_ok(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL.match(key) or key.startswith("__"):
                raise ValueError(f"invalid label name {key!r}")
        return value

    @model_validator(mode="after")
    def _schedule_ok(self) -> Self:
        if self.cron is not None and self.interval is not None:
            raise ValueError("set interval or cron, not both")
        if self.timezone is not None and self.cron is None:
            raise ValueError("timezone applies to cron schedules only")
        if self.interval is not None and self.timeout is not None and self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout.total_seconds():g}s) must not exceed "
                f"interval ({self.interval.total_seconds():g}s)"
            )
        return self

    @property
    def settings(self) -> PluginSettings:
        """The probe's own settings (the block under the probe type's name)."""
        value: PluginSettings = getattr(self, self.probe)
        return value

    @property
    def schedule_key(self) -> tuple[Any, ...]:
        """What decides when the target runs: equal keys keep the running schedule."""
        return (self.interval, self.cron, self.timezone)


class ConfigBase(StrictModel):
    """The top of the config file."""

    state_dir: Path | None = Field(
        None, description="Where the SQLite database lives (default: a per-user state dir)"
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    targets: list[Any] = Field(default_factory=list)
    alerting: AlertingBase = Field(
        default_factory=AlertingBase,
        description="Alert rules, routing, receivers, silences and notification delivery, "
        "in Alertmanager's syntax where the concept is the same",
    )
    oncall: OncallConfig = Field(
        default_factory=OncallConfig,
        description="Who is on call: users, teams and their rotation schedules; alerts are "
        "assigned to users and teams",
    )
    auth: AuthConfig = Field(
        default_factory=AuthConfig,
        description="Who may use the HTTP API: tokens, web users, roles, rate limits",
    )
    backups: BackupsConfig = Field(
        default_factory=BackupsConfig,
        description="Scheduled, compressed backups of the config file and the state "
        "database, kept by count and age",
    )
    alertmanager_config_file: Path | None = Field(
        None,
        description="An alertmanager.yml used as it is for global, route, receivers, "
        "inhibit_rules and time_intervals (relative to this file); the alerting section "
        "then holds only pudimd's own settings (rules, outbox...)",
    )
    templates: list[TemplateSpec] = Field(
        default_factory=list,
        description="Target templates of this file (see docs/templates.md); a target with "
        "`use: NAME` (or NAME@VERSION) and `params:` expands to the template's targets",
    )
    template_files: list[str] = Field(
        default_factory=list,
        description="Files (globs, relative to this file) each holding a template or a "
        "list of templates",
    )
    templates_dir: Path = Field(
        Path("templates"),
        description="Directory (relative to this file) whose *.yaml files are template "
        "files too; templates imported through the API are written there",
    )
    probe_modules_file: Path | None = Field(
        None,
        description="A blackbox_exporter config file (blackbox.yml) whose modules /probe "
        "serves besides the stock ones (http_2xx, tcp_connect, icmp...); relative to this file",
    )
    probe_modules: dict[str, Any] = Field(
        default_factory=dict,
        description="blackbox_exporter modules written here, as under `modules:` of a "
        "blackbox.yml; they override the file's and the stock ones of the same name",
    )
    _blackbox_modules: dict[str, Any] = PrivateAttr(default_factory=dict)
    _template_catalog: Catalog | None = PrivateAttr(default=None)
    _expanded_targets: list[Any] = PrivateAttr(default_factory=list)

    _target_templates: dict[str, tuple[int, str]] = PrivateAttr(default_factory=dict)

    def set_templates(
        self,
        catalog: Catalog,
        expanded_targets: list[Any],
        target_templates: dict[str, tuple[int, str]] | None = None,
    ) -> None:
        """Record the templates this config could use, its targets as they were after
        template expansion, and which targets a template made (the loader calls this)."""
        self._template_catalog = catalog
        self._expanded_targets = expanded_targets
        self._target_templates = target_templates or {}

    @property
    def target_templates(self) -> dict[str, tuple[int, str]]:
        """Target name -> (index of the using target in the file's ``targets``, template
        as ``name@version``), for the targets a template made; an editor of the file must
        change the using target, not these."""
        return self._target_templates

    @property
    def template_catalog(self) -> Catalog:
        """Every template this config may use: built-ins and its own."""
        if self._template_catalog is None:
            from pudimd.config.template_files import builtin_templates

            self._template_catalog = Catalog(builtin_templates())
        return self._template_catalog

    @property
    def expanded_targets(self) -> list[Any]:
        """The targets as written after template expansion (before defaults)."""
        return self._expanded_targets

    @field_validator("probe_modules_file")
    @classmethod
    def _modules_file_ok(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        from pudimd.blackbox.modules import load_modules

        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        if base is not None and not value.is_absolute():
            value = Path(base) / value
        load_modules(value)  # a bad file is an error here, at this field
        return value

    @field_validator("probe_modules")
    @classmethod
    def _modules_ok(cls, value: dict[str, Any]) -> dict[str, Any]:
        from pudimd.blackbox.modules import parse_modules

        parse_modules(value, "probe_modules")
        return value

    @model_validator(mode="after")
    def _load_probe_modules(self) -> Self:
        from pudimd.blackbox.modules import load_modules

        self._blackbox_modules = load_modules(self.probe_modules_file, self.probe_modules)
        return self

    @property
    def blackbox_modules(self) -> dict[str, Any]:
        """The modules ``/probe`` serves, by name (:class:`pudimd.blackbox.modules.Module`)."""
        return self._blackbox_modules

    @model_validator(mode="after")
    def _apply_defaults(self) -> Self:
        """Targets without interval/timeout get the defaults; a defaulted timeout never
        exceeds the target's interval."""
        for target in self.targets:
            if target.cron is None and target.interval is None:
                object.__setattr__(target, "interval", self.defaults.interval)
            if target.timeout is None:
                timeout = self.defaults.timeout
                if target.interval is not None:
                    timeout = min(timeout, target.interval)
                object.__setattr__(target, "timeout", timeout)
        return self


def _target_model(type_name: str, settings: type[PluginSettings]) -> type[TargetBase]:
    try:
        settings()
        default: Any = Field(default_factory=settings)
    except Exception:
        default = ...
    model: type[TargetBase] = create_model(  # type: ignore[call-overload]
        f"{type_name.title().replace('_', '')}Target",
        __base__=TargetBase,
        __doc__=f"A target checked by the {type_name!r} probe.",
        probe=(Literal[type_name], Field(description="Probe type")),
        **{type_name: (settings, default)},
    )
    return model


def build_config_model(
    probe_types: dict[str, type[Any]], notifier_types: dict[str, type[Any]] | None = None
) -> type[ConfigBase]:
    """The full config model for the installed ``probe_types`` and ``notifier_types``
    (type name -> class)."""
    targets = [_target_model(name, cls.Settings) for name, cls in probe_types.items()]
    if targets:
        union: Any = Union[tuple(targets)] if len(targets) > 1 else targets[0]  # noqa: UP007
        item: Any = Annotated[union, Field(discriminator="probe")] if len(targets) > 1 else union
    else:
        item = TargetBase
    alerting = build_alerting_model(notifier_types or {})
    model: type[ConfigBase] = create_model(
        "Config",
        __base__=ConfigBase,
        __doc__=ConfigBase.__doc__,
        targets=(list[item], Field(default_factory=list, description="What to check")),
        alerting=(
            alerting,
            Field(
                default_factory=alerting,
                description=ConfigBase.model_fields["alerting"].description,
            ),
        ),
    )
    return model
