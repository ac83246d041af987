"""Read a config file into a validated config.

Steps: read the file, parse the YAML (fast, no positions), interpolate ``${ENV}``, merge
``defaults:`` into each target, validate with the model built from the installed plugins.
Every problem found becomes ``file:line:column: path: reason``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml_rs
from pydantic import BaseModel, ValidationError

from pudimd.alerting.amfields import TOP as AM_TOP_LEVEL
from pudimd.alerting.amfields import extra_field_reason, unknown_field
from pudimd.alerting.config import alerting_problems, merge_globals
from pudimd.config.errors import ConfigError, Problem
from pudimd.config.locate import Locator, yaml_syntax_error
from pudimd.config.models import ConfigBase, DefaultsConfig, TargetBase
from pudimd.config.template_files import load_catalog
from pudimd.config.templates import USE_KEYS, Catalog, Expansion, expand_use, relocate

__all__ = ["ConfigSchema", "format_path", "load_config", "load_config_text", "read_config_text"]

_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DEFAULT_KEYS = frozenset(DefaultsConfig.model_fields)


@dataclass(frozen=True)
class ConfigSchema:
    """The config model and the probe type names it was built from."""

    model: type[ConfigBase]
    probe_types: tuple[str, ...]
    notifier_types: dict[str, type[Any]] = field(default_factory=dict)


def format_path(path: Sequence[str | int]) -> str:
    """``("targets", 0, "http", "method")`` -> ``targets[0].http.method``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_config_text(path: Path) -> str:
    """The text of a YAML file pudimd reads (the config, a rule test, a results file).
    Raises ConfigError naming the file: cannot read it, not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [Problem(str(path), None, None, "", f"cannot read: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, None, "", f"not UTF-8 text: {exc}")]) from None


def load_config(
    path: str | Path,
    schema: ConfigSchema,
    env: Mapping[str, str] | None = None,
    *,
    alertmanager_config: str | Path | None = None,
) -> ConfigBase:
    """Load and validate the config file at ``path``.  Raises ConfigError.

    Blocking (file I/O, parsing): call it from a worker thread inside the daemon."""
    text = read_config_text(Path(path))
    return load_config_text(
        text, schema, file=str(path), env=env, alertmanager_config=alertmanager_config
    )


AM_SECTIONS = (
    "global",
    "route",
    "receivers",
    "inhibit_rules",
    "time_intervals",
    "mute_time_intervals",
    "templates",
)
"""The parts of an alertmanager.yml pudimd reads (``alertmanager_config_file``)."""


def _load_alertmanager(path: Path, schema: ConfigSchema, env: Mapping[str, str]) -> dict[str, Any]:
    """The sections of the Alertmanager config at ``path``, validated on their own so
    that errors point into that file.  Raises ConfigError."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [Problem(file, None, None, "", f"cannot read the Alertmanager config: {exc.strerror}")]
        ) from None
    locator = Locator(text)
    problems: list[Problem] = []

    def problem(where: Sequence[str | int], message: str, *, key: bool = False) -> None:
        found = locator.locate(where, key=key)
        line, col = found if found else (None, None)
        problems.append(Problem(file, line, col, format_path(where), message))

    try:
        data = yaml_rs.loads(text, parse_datetime=False) if text.strip() else {}
    except Exception as exc:
        found = yaml_syntax_error(text)
        line, col, reason = found if found else (None, None, str(exc).splitlines()[-1])
        raise ConfigError([Problem(file, line, col, "", f"invalid YAML: {reason}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, 1, "", "the top level must be a mapping")])
    model: Any = schema.model.model_fields["alerting"].annotation
    for key in data:
        if key in AM_SECTIONS:
            continue
        if key in AM_TOP_LEVEL:
            reason = f"Alertmanager setting {key!r} is not supported by pudimd"
        elif key in _field_names(model):
            reason = f"{key!r} is a pudimd setting: set it under alerting: in the pudimd config"
        else:
            reason = unknown_field(str(key), AM_SECTIONS)
        problem([key], reason, key=True)
    section = {key: data[key] for key in AM_SECTIONS if key in data}
    for where, message in merge_globals(section, schema.notifier_types):
        problem(where, message, key=True)
    if problems:
        raise ConfigError(problems)
    try:
        alerting = model.model_validate(section, context={"base_dir": str(path.resolve().parent)})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = list(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                parent = _model_for(["alerting", *loc[:-1]], section, schema)
                message = extra_field_reason(str(loc[-1]), loc[:-1], _field_names(parent))
            problem(loc, message, key=error["type"] == "extra_forbidden")
        raise ConfigError(problems) from None
    for where, message in alerting_problems(alerting):
        problem(where, message)
    if problems:
        raise ConfigError(problems)
    return section


def load_config_text(
    text: str,
    schema: ConfigSchema,
    *,
    file: str = "<config>",
    env: Mapping[str, str] | None = None,
    alertmanager_config: str | Path | None = None,
    template_overlay: Mapping[Path, str] | None = None,
) -> ConfigBase:
    """Validate config ``text`` (named ``file`` in errors).  Raises ConfigError.

    ``template_overlay``: template file texts that stand in for those files on disk (or
    are added to the template files), to validate a template before it is written."""
    env = os.environ if env is None else env
    locator = Locator(text)
    problems: list[Problem] = []
    expansions: list[Expansion] = []

    def problem(path: Sequence[str | int], message: str, *, key: bool = False) -> None:
        if expansions:  # a path into the expanded targets: point at the target in the file
            path, message, same = relocate(expansions, path, message)
            key = key and same
        where = locator.locate(path, key=key)
        line, col = where if where else (None, None)
        problems.append(Problem(file, line, col, format_path(path), message))

    try:
        data = yaml_rs.loads(text, parse_datetime=False) if text.strip() else {}
    except Exception as exc:
        found = yaml_syntax_error(text)
        if found is None:
            reason = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
            raise ConfigError([Problem(file, None, None, "", f"invalid YAML: {reason}")]) from None
        line, col, reason = found
        raise ConfigError([Problem(file, line, col, "", f"invalid YAML: {reason}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, 1, "", "the top level must be a mapping of sections")])

    if "$" in text:
        data = _interpolate(data, env, (), problem)
    am_file = (
        alertmanager_config
        if alertmanager_config is not None
        else data.get("alertmanager_config_file")
    )
    if isinstance(am_file, str | Path) and am_file:
        am_path = Path(am_file)
        if not am_path.is_absolute() and file != "<config>" and alertmanager_config is None:
            am_path = Path(file).resolve().parent / am_path
        am_data = _load_alertmanager(am_path, schema, env)
        section = data.setdefault("alerting", {})
        if isinstance(section, dict):
            for key, value in am_data.items():
                if key in section:
                    problem(
                        ("alerting", key),
                        f"{key} is set both here and in the Alertmanager config {am_path}",
                        key=True,
                    )
                section[key] = value
        if alertmanager_config is not None:
            data["alertmanager_config_file"] = str(am_path)
    catalog, template_problems = load_catalog(data, file, problem, template_overlay)
    problems.extend(template_problems)
    expansions.extend(_expand_templates(data, catalog, schema, problem))
    _merge_defaults(data, schema, problem, expansions)
    alerting = data.get("alerting")
    if isinstance(alerting, dict):
        for path, message in merge_globals(alerting, schema.notifier_types):
            problem(["alerting", *path], message, key=True)
    if problems:
        raise ConfigError(problems)

    base_dir = str(Path(file).resolve().parent) if file != "<config>" else None
    try:
        config = schema.model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            where, reason, at_key = _explain(error, data, schema)
            problem(where, reason, key=at_key)
        raise ConfigError(problems) from None
    for where, reason in _semantic_problems(config):
        problem(where, reason)
    if problems:
        raise ConfigError(problems)
    config.set_templates(
        catalog,
        list(data.get("targets") or []),
        {e.name: (e.index, e.template) for e in expansions if e.template is not None},
    )
    return config


def _expand_templates(
    data: dict[str, Any], catalog: Catalog, schema: ConfigSchema, problem: Any
) -> list[Expansion]:
    """Replace every ``use:`` target of ``data`` by the targets its template expands to.
    Returns where each target of the new list comes from (empty when nothing used a
    template: paths need no translation)."""
    targets = data.get("targets")
    if not isinstance(targets, list) or not any(
        isinstance(item, dict) and "use" in item for item in targets
    ):
        return []
    expanded: list[Any] = []
    origins: list[Expansion] = []
    for index, item in enumerate(targets):
        if not (isinstance(item, dict) and "use" in item):
            expanded.append(item)
            origins.append(Expansion(index))
            continue
        made, found, template = expand_use(item, catalog, schema.probe_types)
        for path, message in found:
            problem(("targets", index, *path), message)
        if found or template is None:
            continue
        using = frozenset(str(key) for key in item) - USE_KEYS
        for target in made:
            expanded.append(target)
            origins.append(Expansion(index, template.spec.label, target["name"], using))
    data["targets"] = expanded
    return origins


def _semantic_problems(config: ConfigBase) -> list[tuple[list[str | int], str]]:
    """What the models cannot check one by one: routes naming unknown receivers or time
    intervals, dependencies between targets."""
    from pudimd.alerting.escalation import escalation_problems
    from pudimd.alerting.oncall import oncall_problems
    from pudimd.alerting.rules import check_dependencies, check_rules

    found: list[tuple[list[str | int], str]] = [
        (["alerting", *path], message) for path, message in alerting_problems(config.alerting)
    ]
    for index, message in check_rules(config.alerting.rules, config.targets):
        found.append((["alerting", "rules", index], message))
    for index, message in check_dependencies(config.targets):
        found.append((["targets", index, "depends_on"], message))
    receivers = [receiver.name for receiver in config.alerting.receivers]
    for path, message in oncall_problems(config.oncall, receivers):
        found.append((["oncall", *path], message))
    policies = _route_policies(config.alerting.route) if config.alerting.route else []
    found.extend(escalation_problems(config.oncall, receivers, policies))
    return found


def _route_policies(route: Any, path: list[Any] | None = None) -> list[tuple[list[Any], str]]:
    """(path under ``alerting.route``, policy) of every route naming an escalation policy."""
    path = path or []
    found = [(path, route.escalation_policy)] if route.escalation_policy else []
    for index, child in enumerate(route.routes):
        found.extend(_route_policies(child, [*path, "routes", index]))
    return found


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """``text`` with ``${VAR}``/``${VAR:-default}`` expanded (unset without default:
    empty) and ``$$`` as ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(2) or "")

    return _ENV.sub(replace, text)


def _interpolate(
    value: Any, env: Mapping[str, str], path: tuple[str | int, ...], problem: Any
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, str):
        if "$" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problem(path, f"environment variable {name} is not set (use ${{{name}:-default}})")
            return ""

        return _ENV.sub(replace, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, (*path, k), problem) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, (*path, i), problem) for i, v in enumerate(value)]
    return value


def _merge_defaults(
    data: dict[str, Any],
    schema: ConfigSchema,
    problem: Any,
    expansions: Sequence[Expansion] = (),
) -> None:
    """Fold ``defaults:`` labels and per-type blocks into each target (key by key; the
    target wins).  Interval and timeout defaults are applied by the model, typed."""
    defaults = data.get("defaults")
    targets = data.get("targets")
    if defaults is None:
        defaults = {}
    if not isinstance(defaults, dict):
        return  # the model reports it
    for key, value in defaults.items():
        if key in _DEFAULT_KEYS:
            continue
        if key not in schema.probe_types:
            problem(
                ("defaults", key),
                unknown_field(str(key), [*_DEFAULT_KEYS, *schema.probe_types]),
                key=True,
            )
        elif not isinstance(value, dict):
            problem(("defaults", key), f"expected a mapping of {key} probe settings")
    if not isinstance(targets, list):
        return
    seen: dict[str, int] = {}
    for index, target in enumerate(targets):
        if not isinstance(target, dict):
            continue
        name = target.get("name")
        if isinstance(name, str):
            if name in seen:
                problem(
                    ("targets", index, "name"),
                    f"duplicate target name {name!r} (first at "
                    f"targets[{expansions[seen[name]].index if expansions else seen[name]}])",
                )
            seen.setdefault(name, index)
        labels = defaults.get("labels")
        if isinstance(labels, dict) and isinstance(target.get("labels", {}), dict):
            target["labels"] = {**labels, **target.get("labels", {})}
        probe = target.get("probe")
        block = defaults.get(probe) if isinstance(probe, str) else None
        if isinstance(block, dict):
            own = target.get(probe, {})
            if isinstance(own, dict):
                target[probe] = {**block, **own}


def _field_names(model: Any) -> list[str]:
    """The names ``model``'s fields are written as in the file (aliases where set)."""
    fields = getattr(model, "model_fields", None) or {}
    return [info.alias or name for name, info in fields.items()]


def _explain(
    error: Any, data: dict[str, Any], schema: ConfigSchema
) -> tuple[list[str | int], str, bool]:
    """Turn one pydantic error into (path in the file, one-line reason, points at key)."""
    loc = list(error["loc"])
    kind = error["type"]
    # A discriminated union inserts the tag into the path: targets.3.<http>.interval.
    if (
        len(schema.probe_types) > 1
        and len(loc) > 2
        and loc[0] == "targets"
        and isinstance(loc[1], int)
        and kind not in ("union_tag_invalid", "union_tag_not_found")
    ):
        del loc[2]
    installed = ", ".join(schema.probe_types) or "none installed"
    if kind in ("union_tag_invalid", "union_tag_not_found") or (
        kind == "literal_error" and loc[-1:] == ["probe"] and loc[:1] == ["targets"]
    ):
        target = _get(data, loc[:2])
        probe = target.get("probe") if isinstance(target, dict) else None
        if probe is None:
            return [*loc[:2], "probe"], f"missing field 'probe' (one of: {installed})", False
        close = difflib.get_close_matches(str(probe), list(schema.probe_types), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        reason = f"unknown probe type {probe!r} ({hint}installed: {installed})"
        return [*loc[:2], "probe"], reason, False
    if kind == "extra_forbidden":
        known = _field_names(_model_for(loc[:-1], data, schema))
        if loc[:1] == ["alerting"]:  # Alertmanager's layout: tell its fields from typos
            return loc, extra_field_reason(str(loc[-1]), loc[1:-1], known), True
        return loc, unknown_field(str(loc[-1]), known), True
    if kind == "missing":
        return loc, f"missing required field {loc[-1]!r}", False
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    elif message.startswith("Assertion failed, "):
        message = message[len("Assertion failed, ") :]
    value = error.get("input")
    if kind not in ("value_error", "assertion_error") and not isinstance(value, dict | list):
        message += f" (got {value!r})"
    return loc, message, False


def _get(data: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _model_for(path: Sequence[str | int], data: dict[str, Any], schema: ConfigSchema) -> Any:
    """The pydantic model that validates the mapping at ``path`` (for field suggestions)."""
    model: Any = schema.model
    for i, part in enumerate(path):
        if isinstance(part, int):
            continue
        if model is schema.model and part == "targets":
            target = _get(data, path[: i + 2])
            probe = target.get("probe") if isinstance(target, dict) else None
            model = TargetBase
            if isinstance(probe, str):
                for member in _target_models(schema):
                    if member.model_fields["probe"].annotation.__args__ == (probe,):
                        model = member
            continue
        model = _field_model(model, part)
        if model is None:
            return None
    return model


def _field_model(model: Any, part: str) -> Any:
    """The model validating field ``part`` (name or alias) of ``model``, looking through
    lists and optionals; None when that field does not hold a model."""
    for name, info in getattr(model, "model_fields", {}).items():
        if part in (name, info.alias):
            return model_in(info.annotation)
    return None


def model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


def _target_models(schema: ConfigSchema) -> list[Any]:
    annotation: Any = schema.model.model_fields["targets"].annotation
    item = annotation.__args__[0]
    origin = getattr(item, "__origin__", None)
    if origin is not None and hasattr(item, "__metadata__"):
        item = item.__origin__
    return list(getattr(item, "__args__", (item,)))
