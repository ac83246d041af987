"""The ``alerting:`` section of the config file, in Alertmanager's syntax where the concept
is the same: ``global``, ``route``, ``receivers``, ``inhibit_rules``, ``time_intervals``
(and the deprecated ``mute_time_intervals``), plus pudimd's own ``rules``, ``outbox``,
``action_links`` and retention settings.

Receivers are assembled from the installed notifier types: each type contributes the list
field named by its ``config_key`` (``webhook_configs``, ``email_configs``...), holding its
``Settings``.  An Alertmanager field pudimd does not support is an error at its location.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import ConfigDict, Field, SecretStr, create_model, model_validator

from pudimd.alerting.amfields import extra_field_reason
from pudimd.alerting.inhibit import InhibitRuleConfig
from pudimd.alerting.routing import RouteConfig, route_problems
from pudimd.alerting.timeintervals import NamedTimeInterval
from pudimd.durations import PositiveDuration
from pudimd.settings import PluginSettings, SecretFile, StrictModel

__all__ = [
    "ActionLinksConfig",
    "AlertingConfig",
    "OutboxConfig",
    "ReceiverBase",
    "alerting_problems",
    "build_alerting_model",
    "config_key",
    "merge_globals",
]


def config_key(notifier_type: type[Any]) -> str:
    """The receiver field holding entries of ``notifier_type``."""
    return str(getattr(notifier_type, "config_key", f"{notifier_type.type}_configs"))


class OutboxConfig(StrictModel):
    """Delivery of notifications."""

    max_age: PositiveDuration = Field(
        timedelta(hours=24),
        description="A notification not delivered within this is given up, recorded as "
        "expired and counted",
    )
    backoff_initial: PositiveDuration = Field(
        timedelta(seconds=1), description="First retry delay (exponential, with jitter)"
    )
    backoff_max: PositiveDuration = Field(timedelta(minutes=5), description="Longest retry delay")
    attempt_timeout: PositiveDuration = Field(
        timedelta(seconds=30), description="Time limit of one delivery attempt"
    )
    concurrency: int = Field(4, gt=0, description="Deliveries at once per receiver")


class ActionLinksConfig(PluginSettings):
    """Signed links in notifications to acknowledge, resolve or snooze an alert from an
    email or a chat message (they need ``external_url``; see docs/operations.md, "Acting
    from a notification")."""

    # The secret must not be echoed in config errors.
    model_config = ConfigDict(hide_input_in_errors=True)

    enabled: bool = Field(True, description="Put links in notifications (when external_url is set)")
    secret: SecretStr | None = Field(
        None,
        description="Key signing the links, at least 32 characters; default: a random key "
        "made once and kept in the state directory (action-links.key)",
    )
    secret_file: SecretFile | None = Field(None, description="File holding secret")
    ttl: PositiveDuration = Field(timedelta(hours=24), description="How long a link works")
    snooze: PositiveDuration = Field(
        timedelta(hours=1), description="How long the snooze link snoozes an alert"
    )

    @model_validator(mode="after")
    def _secret_length(self) -> ActionLinksConfig:
        from pudimd.alerting.links import MIN_SECRET

        secret = self.secret if self.secret is not None else self.secret_file
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET:
            raise ValueError(f"the action link secret must be at least {MIN_SECRET} characters")
        return self


class GlobalConfig(StrictModel):
    """Alertmanager's ``global`` block: defaults for every receiver of a kind.  The keys
    besides ``resolve_timeout`` come from the installed notifier types (``smtp_from`` for
    email, ``slack_api_url`` for slack...)."""

    model_config = StrictModel.model_config | {"extra": "allow"}

    resolve_timeout: PositiveDuration = Field(
        timedelta(minutes=5),
        description="An alert posted without endsAt resolves when not re-posted for this long",
    )
    http_config: dict[str, Any] | None = Field(
        None, description="Default http_config of every HTTP-based receiver entry"
    )


class ReceiverBase(StrictModel):
    """A named receiver: the integrations notified for the alerts routed to it."""

    name: str = Field(description="Unique name, referred to by routes")


class AlertingBase(StrictModel):
    """Alerts, silences, routing and notifications (Alertmanager's configuration, plus
    pudimd's rules on probe results)."""

    model_config = StrictModel.model_config | {"populate_by_name": True}

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    external_url: str = Field("", description="URL pudimd is reached at (links in notifications)")
    route: RouteConfig | None = Field(
        None, description="The routing tree (required when receivers are configured)"
    )
    receivers: list[Any] = Field(default_factory=list)
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    time_intervals: list[NamedTimeInterval] = Field(default_factory=list)
    mute_time_intervals: list[NamedTimeInterval] = Field(
        default_factory=list, description="Deprecated name of time_intervals"
    )
    templates: list[str] = Field(
        default_factory=list,
        description="Alertmanager's Go template files: not supported (receivers take "
        "Jinja2 templates); must stay empty",
    )
    rules: list[Any] = Field(default_factory=list, description="Rules on probe results")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    action_links: ActionLinksConfig = Field(default_factory=ActionLinksConfig)
    silence_retention: PositiveDuration = Field(
        timedelta(days=5), description="How long expired silences are kept"
    )
    history_retention: PositiveDuration = Field(
        timedelta(days=365),
        description="How long alerts' timelines (fired, acknowledged, escalated...) are kept",
    )
    resolved_retention: PositiveDuration = Field(
        timedelta(hours=1), description="How long resolved alerts stay in the store"
    )

    @property
    def intervals(self) -> dict[str, NamedTimeInterval]:
        return {i.name: i for i in [*self.mute_time_intervals, *self.time_intervals]}


AlertingConfig = AlertingBase
"""The type of ``config.alerting`` (its ``receivers`` items are built per install)."""


def build_alerting_model(notifier_types: dict[str, type[Any]]) -> type[AlertingBase]:
    """The ``alerting`` model for the installed notifier types."""
    from pudimd.alerting.rules import RuleConfig

    fields: dict[str, Any] = {
        config_key(cls): (
            list[cls.Settings],  # type: ignore[name-defined]
            Field(default_factory=list, description=f"{name} notifier entries"),
        )
        for name, cls in notifier_types.items()
    }
    receiver: Any = create_model(
        "Receiver", __base__=ReceiverBase, __doc__=ReceiverBase.__doc__, **fields
    )
    model: type[AlertingBase] = create_model(
        "Alerting",
        __base__=AlertingBase,
        __doc__=AlertingBase.__doc__,
        receivers=(list[receiver], Field(default_factory=list, description="Receivers")),
        rules=(list[RuleConfig], Field(default_factory=list, description="Rules on probe results")),
    )
    return model


def merge_globals(
    section: dict[str, Any], notifier_types: dict[str, type[Any]]
) -> list[tuple[list[str | int], str]]:
    """Fill receiver entries from ``global`` (in place, before validation), as
    Alertmanager does; returns (path, reason) for global keys pudimd does not take:
    Alertmanager's it does not support yet, and typos."""
    problems: list[tuple[list[str | int], str]] = []
    glob = section.get("global")
    if glob is None:
        return problems
    if not isinstance(glob, dict):
        return problems  # the model reports it
    known = {"resolve_timeout", "http_config"}
    for cls in notifier_types.values():
        known.update(getattr(cls, "global_defaults", {}))
    for key in glob:
        if key not in known:
            problems.append((["global", key], extra_field_reason(str(key), ["global"], known)))
    receivers = section.get("receivers")
    if not isinstance(receivers, list):
        return problems
    for receiver in receivers:
        if not isinstance(receiver, dict):
            continue
        for cls in notifier_types.values():
            entries = receiver.get(config_key(cls))
            if not isinstance(entries, list):
                continue
            defaults: dict[str, str] = dict(getattr(cls, "global_defaults", {}))
            takes_http = "http_config" in cls.Settings.model_fields
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                for global_key, field_name in defaults.items():
                    base = field_name.removesuffix("_file")
                    given = base in entry or f"{base}_file" in entry
                    if global_key in glob and not given:
                        entry[field_name] = glob[global_key]
                if takes_http and "http_config" not in entry and glob.get("http_config"):
                    entry["http_config"] = glob["http_config"]
    return problems


def alerting_problems(alerting: AlertingBase) -> list[tuple[list[str | int], str]]:
    """What validation of each part alone cannot see: unknown receivers and time intervals
    in routes, duplicate names, receivers without a route."""
    problems: list[tuple[list[str | int], str]] = []
    names: dict[str, int] = {}
    for i, receiver in enumerate(alerting.receivers):
        if receiver.name in names:
            problems.append(
                (["receivers", i, "name"], f"duplicate receiver name {receiver.name!r}")
            )
        names.setdefault(receiver.name, i)
    intervals: dict[str, tuple[str, int]] = {}
    for kind in ("time_intervals", "mute_time_intervals"):
        for i, interval in enumerate(getattr(alerting, kind)):
            if interval.name in intervals:
                problems.append(([kind, i, "name"], f"duplicate time interval {interval.name!r}"))
            intervals.setdefault(interval.name, (kind, i))
    if alerting.templates:
        problems.append(
            (
                ["templates"],
                "Go template files are not supported: write Jinja2 templates in the receiver "
                "entries (see docs/migration-from-alertmanager.md)",
            )
        )
    if alerting.route is None:
        if alerting.receivers:
            problems.append((["route"], "receivers are configured but there is no route"))
        return problems
    for path, reason in route_problems(alerting.route, list(names), list(intervals)):
        problems.append((["route", *path], reason))
    return problems
