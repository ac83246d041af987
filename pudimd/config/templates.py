"""Target templates: a named, versioned set of target bodies with typed parameters.

A config target ``{name: shop, use: website, params: {url: https://shop.example}}`` is
replaced, before validation, by the targets the template ``website`` describes, with every
``${params.NAME}`` in their string values replaced by the parameter's value (and
``${target.name}`` by the using target's name).  Nothing is evaluated: a value that is
exactly one reference takes the parameter's typed value; a reference inside a longer string
is interpolated as text.  See docs/templates.md.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from pudimd.settings import StrictModel

__all__ = [
    "PARAM_TYPES",
    "Catalog",
    "Expansion",
    "ParamSpec",
    "Template",
    "TemplateSpec",
    "coerce_param",
    "expand_use",
    "parse_use",
    "template_problems",
]

ParamType = Literal["string", "int", "number", "bool", "duration", "url", "host", "host_port"]
PARAM_TYPES: tuple[str, ...] = (
    "string", "int", "number", "bool", "duration", "url", "host", "host_port"
)  # fmt: skip
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
_NAME = re.compile(NAME_PATTERN)
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SUFFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_USE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*)(?:@(\d+))?$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+$")
_REF = re.compile(r"\$\{((?:params|target)\.[^}]*)\}")
_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "url": ("scheme", "host", "port", "host_port", "path"),
    "host_port": ("host", "port"),
}
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
USE_KEYS = frozenset({"name", "use", "params"})
"""Keys of a using target that are not copied into the expanded targets."""
TEMPLATE_OWNED = frozenset({"probe", "target", "name_suffix"})
"""Keys only a template sets."""

Problems = list[tuple[tuple[str | int, ...], str]]


class ParamSpec(StrictModel):
    """One parameter of a template."""

    type: ParamType = Field("string", description="Type of the value")
    default: Any = Field(None, description="Value when the using target gives none")
    required: bool | None = Field(
        None, description="The using target must give it (default: true when no default)"
    )
    description: str = Field("", description="What it is, for `pudimd templates show`")
    enum: list[Any] | None = Field(None, description="The only values allowed")
    pattern: str | None = Field(
        None, description="Regular expression the value (as text) must match in full"
    )

    @field_validator("pattern")
    @classmethod
    def _pattern_ok(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _default_ok(self) -> ParamSpec:
        if self.enum is not None:
            checked = []
            for item in self.enum:
                value, error = _coerce(self.type, item)
                if error:
                    raise ValueError(f"enum: {error}")
                checked.append(value)
            object.__setattr__(self, "enum", checked)
        if self.has_default:
            if self.required:
                raise ValueError("a required parameter cannot have a default")
            if self.default is not None:
                value, error = coerce_param(self, self.default)
                if error:
                    raise ValueError(f"default: {error}")
                object.__setattr__(self, "default", value)
        return self

    @property
    def has_default(self) -> bool:
        """Whether ``default`` was written (``default: null`` makes an optional parameter)."""
        return "default" in self.model_fields_set

    @property
    def is_required(self) -> bool:
        """Whether a using target must give this parameter."""
        return self.required if self.required is not None else not self.has_default

    def summary(self) -> dict[str, Any]:
        """The parameter as shown by the API and ``pudimd templates``."""
        out: dict[str, Any] = {"type": self.type, "required": self.is_required}
        if self.has_default:
            out["default"] = self.default
        if self.description:
            out["description"] = self.description
        if self.enum is not None:
            out["enum"] = self.enum
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out


class TemplateSpec(StrictModel):
    """A target template: what a ``use:`` target expands to."""

    name: str = Field(description="Name used in `use: NAME` (letters, digits, _ and -)")
    version: int = Field(1, ge=1, description="Version; `use: NAME@VERSION` pins one")
    description: str = Field("", description="What the template checks")
    params: dict[str, ParamSpec] = Field(default_factory=dict, description="Parameters by name")
    targets: list[dict[str, Any]] = Field(
        min_length=1,
        description="Target bodies (probe, target, probe block, labels, conditions...) "
        "without `name`; the first gets the using target's name, the others `NAME:SUFFIX` "
        "from their `name_suffix`. String values may hold ${params.NAME} and ${target.name}",
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"invalid template name {value!r}: use letters, digits, _ and - "
                "(no /, \\, dots or spaces)"
            )
        return value

    @property
    def label(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


def template_problems(spec: TemplateSpec) -> Problems:
    """What a valid-looking template gets wrong: parameter names, target names, references
    to parameters it does not declare.  Paths are relative to the template."""
    found: Problems = []
    for name in spec.params:
        if not _PARAM.match(name):
            found.append((("params", name), f"invalid parameter name {name!r}"))
    suffixes: dict[str, int] = {}
    for index, body in enumerate(spec.targets):
        where: tuple[str | int, ...] = ("targets", index)
        if "name" in body:
            found.append(
                ((*where, "name"), "a template target has no name: it gets the using target's")
            )
        if not isinstance(body.get("probe"), str):
            found.append(((*where, "probe"), "missing required field 'probe'"))
        suffix = body.get("name_suffix")
        if index == 0:
            if suffix is not None:
                found.append(
                    ((*where, "name_suffix"), "the first target takes the using target's name")
                )
        elif not isinstance(suffix, str) or not _SUFFIX.match(suffix):
            found.append(
                (
                    (*where, "name_suffix"),
                    "targets after the first need a name_suffix (letters, digits, _ . -)",
                )
            )
        elif suffix in suffixes:
            found.append(
                ((*where, "name_suffix"), f"duplicate name_suffix (targets[{suffixes[suffix]}])")
            )
        else:
            suffixes[suffix] = index
        for path, text in _strings(body, where):
            for match in _REF.finditer(text):
                reason = _reference_problem(match.group(1), spec.params)
                if reason:
                    found.append((path, reason))
    return found


def _strings(
    value: Any, path: tuple[str | int, ...]
) -> Iterable[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _reference_problem(ref: str, params: Mapping[str, ParamSpec]) -> str | None:
    parts = ref.split(".")
    if parts == ["target", "name"]:
        return None
    if parts[0] != "params" or len(parts) not in (2, 3):
        return f"unknown reference ${{{ref}}} (use ${{params.NAME}} or ${{target.name}})"
    spec = params.get(parts[1])
    if spec is None:
        return f"${{{ref}}}: {_unknown('parameter', parts[1], params)}"
    if len(parts) == 3:
        known = _ATTRIBUTES.get(spec.type, ())
        if parts[2] not in known:
            have = f"it has {', '.join(known)}" if known else "only url and host_port have parts"
            return f"${{{ref}}}: parameter {parts[1]!r} ({spec.type}) has no {parts[2]!r} ({have})"
    return None


def _unknown(what: str, name: str, known: Collection[str], of: str = "") -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} {name!r}{of} ({hint}known: {', '.join(sorted(known)) or 'none'})"


# -- parameter values ----------------------------------------------------------------------


def coerce_param(spec: ParamSpec, value: Any) -> tuple[Any, str | None]:
    """``value`` checked against ``spec``: (typed value, None) or (None, reason)."""
    typed, error = _coerce(spec.type, value)
    if error:
        return None, error
    if spec.enum is not None and typed not in spec.enum:
        return None, f"expected one of {', '.join(map(_text, spec.enum))}, got {value!r}"
    if spec.pattern is not None and not re.fullmatch(spec.pattern, _text(typed)):
        return None, f"{_text(typed)!r} does not match /{spec.pattern}/"
    return typed, None


def _coerce(kind: str, value: Any) -> tuple[Any, str | None]:
    if isinstance(value, dict | list) or value is None:
        return None, f"expected {_article(kind)}, got {_shown(value)}"
    if kind == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE, None
        return None, f"expected a boolean (true or false), got {value!r}"
    if isinstance(value, bool):
        return None, f"expected {_article(kind)}, got {value!r}"
    if kind == "int":
        if isinstance(value, int):
            return value, None
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value), None
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        return None, f"expected an integer, got {value!r}"
    if kind == "number":
        if isinstance(value, int | float):
            return value, None
        try:
            return float(value), None
        except ValueError:
            return None, f"expected a number, got {value!r}"
    if kind == "duration":
        from pudimd.durations import parse_duration

        try:
            parse_duration(value)
        except ValueError as exc:
            return None, str(exc)
        return value, None
    if kind == "string" and isinstance(value, int):
        return str(value), None
    if not isinstance(value, str):
        hint = " (quote it)" if kind == "string" else ""
        return None, f"expected {_article(kind)}, got {value!r}{hint}"
    if kind == "url":
        parts = urlsplit(value)
        if not parts.scheme or not parts.netloc or not parts.hostname:
            return None, f"expected a URL (scheme://host/...), got {value!r}"
        try:
            _ = parts.port
        except ValueError:
            return None, f"invalid port in URL {value!r}"
        return value, None
    if kind == "host":
        return (value, None) if _is_host(value) else (None, _host_error(value))
    if kind == "host_port":
        from pudimd.config.models import parse_host_port

        try:
            host, _port = parse_host_port(value)
        except ValueError:
            return None, f"expected HOST:PORT (e.g. db.example:5432, [::1]:6379), got {value!r}"
        if not value.rpartition(":")[0] or not _is_host(host if ":" not in host else f"[{host}]"):
            return None, f"expected HOST:PORT (e.g. db.example:5432, [::1]:6379), got {value!r}"
        return value, None
    return value, None


def _is_host(value: str) -> bool:
    if value.startswith("[") and value.endswith("]"):
        try:
            ipaddress.IPv6Address(value[1:-1])
        except ValueError:
            return False
        return True
    if ":" in value:
        return False
    return bool(_HOSTNAME.match(value))


def _host_error(value: str) -> str:
    if ":" in value and not value.startswith("["):
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return f"expected a host name or address without a port, got {value!r}"
        return f"write an IPv6 address in brackets ([{value}]), got {value!r}"
    return f"expected a host name or address, got {value!r}"


def _article(kind: str) -> str:
    return {
        "string": "a string",
        "int": "an integer",
        "number": "a number",
        "duration": "a duration (e.g. 30s, 5m, 1h)",
        "url": "a URL",
        "host": "a host name or address",
        "host_port": "HOST:PORT",
    }.get(kind, kind)


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    return "a mapping" if isinstance(value, dict) else "a list"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- the catalog ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A template and where it comes from: ``builtin``, ``config`` (the config file's
    ``templates:``) or ``file`` (``file`` names it)."""

    spec: TemplateSpec
    source: Literal["builtin", "config", "file"]
    file: str | None = None

    def export(self) -> dict[str, Any]:
        """The definition, as it would be written in a template file."""
        data = self.spec.model_dump(mode="json", exclude_unset=True)
        data["name"] = self.spec.name
        data["version"] = self.spec.version
        ordered: dict[str, Any] = {
            key: data[key] for key in ("name", "version", "description") if key in data
        }
        ordered["params"] = {
            name: param.model_dump(mode="json", exclude_unset=True)
            for name, param in self.spec.params.items()
        }
        ordered["targets"] = data["targets"]
        return ordered

    def summary(self) -> dict[str, Any]:
        """Name, version, description, parameters and source, for listings."""
        out: dict[str, Any] = {
            "name": self.spec.name,
            "version": self.spec.version,
            "description": self.spec.description,
            "params": {name: param.summary() for name, param in self.spec.params.items()},
            "targets": len(self.spec.targets),
            "source": self.source,
        }
        if self.file is not None:
            out["file"] = self.file
        return out


class Catalog:
    """Every template a config may use, by name and version.  A later template of the same
    name and version replaces an earlier one (custom templates are added after the
    built-ins, so they override them)."""

    def __init__(self, templates: Iterable[Template] = ()) -> None:
        self._by_name: dict[str, dict[int, Template]] = {}
        for template in templates:
            self.add(template)

    def add(self, template: Template) -> Template | None:
        """Add ``template``; returns the one of the same name and version it replaced."""
        versions = self._by_name.setdefault(template.spec.name, {})
        replaced = versions.get(template.spec.version)
        versions[template.spec.version] = template
        return replaced

    def find(self, name: str, version: int | None = None) -> Template | None:
        """Template ``name`` at ``version`` (default: its highest version), or None."""
        versions = self._by_name.get(name)
        if not versions:
            return None
        return versions.get(max(versions) if version is None else version)

    def lookup(self, use: str) -> tuple[Template | None, str | None]:
        """The template a ``use:`` value names: (template, None) or (None, reason)."""
        parsed = parse_use(use)
        if parsed is None:
            return None, f"invalid template reference {use!r} (NAME or NAME@VERSION)"
        name, version = parsed
        versions = self._by_name.get(name)
        if not versions:
            return None, _unknown("template", name, self._by_name)
        template = self.find(name, version)
        if template is None:
            have = ", ".join(str(v) for v in sorted(versions))
            return None, f"template {name!r} has no version {version} (versions: {have})"
        return template, None

    def __iter__(self) -> Iterator[Template]:
        for name in sorted(self._by_name):
            versions = self._by_name[name]
            for version in sorted(versions):
                yield versions[version]

    def all(self) -> list[Template]:
        """Every template, by name then version."""
        return list(self.__iter__())


def parse_use(use: str) -> tuple[str, int | None] | None:
    """``"website@2"`` -> ``("website", 2)``; ``"website"`` -> ``("website", None)``;
    None when malformed."""
    match = _USE.match(use)
    if match is None:
        return None
    return match.group(1), int(match.group(2)) if match.group(2) else None


# -- expansion -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expansion:
    """Where an expanded target came from: the using target's ``index`` in the file, the
    template, the expanded target's name and the keys written at the using site."""

    index: int
    template: str | None = None
    name: str = ""
    using_keys: frozenset[str] = frozenset()


_DROP = object()


def expand_use(
    item: Mapping[str, Any], catalog: Catalog, probe_types: Collection[str] = ()
) -> tuple[list[dict[str, Any]], Problems, Template | None]:
    """The targets the using target ``item`` expands to, the problems found (paths relative
    to ``item``) and the template used.  With problems the targets are not usable."""
    problems: Problems = []
    use = item.get("use")
    if not isinstance(use, str):
        return [], [(("use",), "expected a template name (NAME or NAME@VERSION)")], None
    template, reason = catalog.lookup(use)
    if template is None:
        return [], [(("use",), reason or "unknown template")], None
    spec = template.spec
    name = item.get("name")
    if not isinstance(name, str) or not name:
        problems.append((("name",), "missing required field 'name'"))
        name = ""
    for key in sorted(TEMPLATE_OWNED & item.keys()):
        problems.append(((key,), f"{key} is set by template {spec.label}; remove it here"))
    values, param_problems = _param_values(item.get("params", {}), spec)
    problems.extend(param_problems)
    if problems:
        return [], problems, template
    context = {"params": values, "types": {k: p.type for k, p in spec.params.items()}}
    targets: list[dict[str, Any]] = []
    for body in spec.targets:
        expanded = _substitute(body, context, name)
        suffix = expanded.pop("name_suffix", None)
        target: dict[str, Any] = {"name": f"{name}:{suffix}" if suffix else name, **expanded}
        targets.append(target)
    problems.extend(_merge_using(item, targets, spec, probe_types))
    return targets, problems, template


def _param_values(given: Any, spec: TemplateSpec) -> tuple[dict[str, Any], Problems]:
    problems: Problems = []
    if given is None:
        given = {}
    if not isinstance(given, dict):
        return {}, [(("params",), "expected a mapping of parameter values")]
    for key in given:
        if key not in spec.params:
            problems.append(
                (("params", key), _unknown("parameter", str(key), spec.params, f" of {spec.label}"))
            )
    values: dict[str, Any] = {}
    for key, param in spec.params.items():
        if key in given:
            value, error = coerce_param(param, given[key])
            if error:
                problems.append((("params", key), error))
            values[key] = value
        elif param.is_required:
            about = f": {param.description}" if param.description else ""
            problems.append(
                (("params", key), f"missing required parameter {key!r} ({param.type}{about})")
            )
        else:
            values[key] = param.default
    return values, problems


def _substitute(value: Any, context: dict[str, Any], name: str) -> Any:
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole is not None:
            resolved = _resolve(whole.group(1), context, name)
            return _DROP if resolved is None else resolved
        if "${" not in value:
            return value
        return _REF.sub(lambda m: _text(_resolve(m.group(1), context, name)), value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new = _substitute(item, context, name)
            if new is not _DROP:
                out[key] = new
        return out
    if isinstance(value, list):
        return [new for item in value if (new := _substitute(item, context, name)) is not _DROP]
    return value


def _resolve(ref: str, context: dict[str, Any], name: str) -> Any:
    parts = ref.split(".")
    if parts == ["target", "name"]:
        return name
    value = context["params"].get(parts[1])
    if len(parts) < 3 or value is None:
        return value
    kind = context["types"][parts[1]]
    if kind == "host_port":
        from pudimd.config.models import parse_host_port

        address = parse_host_port(value)
        return address[0] if parts[2] == "host" else address[1]
    url = urlsplit(value)
    host = url.hostname or ""
    port: int | None = url.port or _DEFAULT_PORTS.get(url.scheme)
    return {
        "scheme": url.scheme,
        "host": host,
        "port": port,
        "host_port": None if port is None else f"{f'[{host}]' if ':' in host else host}:{port}",
        "path": url.path or "/",
    }[parts[2]]


def _merge_using(
    item: Mapping[str, Any],
    targets: list[dict[str, Any]],
    spec: TemplateSpec,
    probe_types: Collection[str],
) -> Problems:
    """Lay the using target's own fields over each expanded target: ``labels`` and mappings
    key by key, a probe's block only into that probe's targets, anything else replaced."""
    problems: Problems = []
    for key, value in item.items():
        if key in USE_KEYS or key in TEMPLATE_OWNED:
            continue
        probes = {target.get("probe") for target in targets}
        if key in probe_types or (key in probes and isinstance(value, dict)):
            if key not in probes:
                problems.append(
                    ((key,), f"template {spec.label} has no {key} target to apply this to")
                )
                continue
            chosen = [target for target in targets if target.get("probe") == key]
        else:
            chosen = targets
        for target in chosen:
            own = target.get(key)
            if isinstance(value, dict) and isinstance(own, dict):
                target[key] = {**own, **value}
            else:
                target[key] = value
    return problems


def relocate(
    expansions: Sequence[Expansion], path: Sequence[str | int], message: str
) -> tuple[list[str | int], str, bool]:
    """A problem found in the expanded targets, moved to the using target in the file:
    (path in the file, message, whether the path still names the same field)."""
    if len(path) < 2 or path[0] != "targets" or not isinstance(path[1], int):
        return list(path), message, True
    if path[1] >= len(expansions):
        return list(path), message, True
    origin = expansions[path[1]]
    rest = list(path[2:])
    if origin.template is None:
        return ["targets", origin.index, *rest], message, True
    where = f"template {origin.template}, target {origin.name!r}"
    if rest and rest[0] in origin.using_keys:
        return ["targets", origin.index, *rest], f"{message} ({where})", True
    from pudimd.config.loader import format_path

    field = f"{format_path(rest)}: " if rest else ""
    return ["targets", origin.index], f"{where}: {field}{message}", False
