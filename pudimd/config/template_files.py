"""Where target templates come from: the built-ins shipped with pudimd
(``pudimd/config/builtin_templates/*.yaml``), the config file's ``templates:`` list, and
template files (``template_files:`` globs and every ``*.yaml`` in ``templates_dir``).

Every problem is located: a built-in that does not load is a bug (RuntimeError); a bad
inline template is reported at its place in the config; a bad file at its place in that file.
"""

from __future__ import annotations

import functools
import glob
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml_rs
from pydantic import ValidationError

from pudimd.config.errors import Problem
from pudimd.config.locate import Locator, yaml_syntax_error
from pudimd.config.templates import (
    Catalog,
    ParamSpec,
    Template,
    TemplateSpec,
    template_problems,
)

__all__ = [
    "BUILTIN_PACKAGE",
    "DEFAULT_TEMPLATES_DIR",
    "builtin_templates",
    "load_catalog",
    "spec_problems",
    "templates_dir",
]

BUILTIN_PACKAGE = "pudimd.config.builtin_templates"
DEFAULT_TEMPLATES_DIR = "templates"
_GLOB = frozenset("*?[")

Located = list[tuple[tuple[str | int, ...], str, bool]]
ProblemHook = Callable[..., None]


@functools.cache
def builtin_templates() -> tuple[Template, ...]:
    """The templates shipped with pudimd (parsed once per process)."""
    found = []
    package = resources.files(BUILTIN_PACKAGE)
    for entry in sorted(package.iterdir(), key=lambda entry: entry.name):
        if not entry.name.endswith((".yaml", ".yml")):
            continue
        data = yaml_rs.loads(entry.read_text(encoding="utf-8"), parse_datetime=False)
        spec, problems = spec_problems(data)
        if spec is None or problems:
            raise RuntimeError(f"built-in template {entry.name} is invalid: {problems}")
        found.append(Template(spec, "builtin"))
    return tuple(found)


def spec_problems(data: Any) -> tuple[TemplateSpec | None, Located]:
    """``data`` validated as one template: (spec, problems as (path, reason, at key))."""
    if not isinstance(data, dict):
        return None, [((), "expected a template: a mapping with name, params and targets", False)]
    try:
        spec = TemplateSpec.model_validate(data)
    except ValidationError as exc:
        return None, [_explain(error) for error in exc.errors(include_url=False)]
    return spec, [(path, message, False) for path, message in template_problems(spec)]


def _explain(error: Any) -> tuple[tuple[str | int, ...], str, bool]:
    from pudimd.alerting.amfields import unknown_field

    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        model: Any = ParamSpec if len(loc) == 3 and loc[0] == "params" else TemplateSpec
        return loc, unknown_field(str(loc[-1]), list(model.model_fields)), True
    if kind == "missing":
        return loc, f"missing required field {loc[-1]!r}", False
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if kind != "value_error" and not isinstance(value, dict | list):
        message += f" (got {value!r})"
    return loc, message, False


def templates_dir(data: Mapping[str, Any], file: str) -> Path | None:
    """The directory whose ``*.yaml`` files are template files (``templates_dir``, relative
    to the config file; default ``templates/`` next to it), or None for a config without a
    file and without an absolute ``templates_dir``."""
    value = data.get("templates_dir")
    if value is not None and not isinstance(value, str):
        return None
    path = Path(value or DEFAULT_TEMPLATES_DIR)
    if path.is_absolute():
        return path
    if file == "<config>":
        return None
    return Path(file).resolve().parent / path


def load_catalog(
    data: Mapping[str, Any],
    file: str,
    problem: ProblemHook,
    overlay: Mapping[Path, str] | None = None,
) -> tuple[Catalog, list[Problem]]:
    """The templates config ``data`` (from ``file``) may use: the built-ins, then its
    ``templates:``, then its template files (``overlay``: file texts standing in for the
    files on disk, or added to them).  ``problem(path, reason, key=)`` reports a problem in
    the config; problems inside template files are returned."""
    catalog = Catalog(builtin_templates())
    defined: dict[tuple[str, int], str] = {}

    def add(spec: TemplateSpec, template: Template, report: Callable[[str], None]) -> None:
        first = defined.get((spec.name, spec.version))
        if first is not None:
            report(f"template {spec.label} is already defined in {first}")
            return
        defined[(spec.name, spec.version)] = (
            template.file if template.file is not None else "the config's templates"
        )
        catalog.add(template)

    inline = data.get("templates")
    if inline is not None and not isinstance(inline, list):
        problem(("templates",), "expected a list of templates")
        inline = None
    for index, item in enumerate(inline or []):
        spec, found = spec_problems(item)
        for path, message, key in found:
            problem(("templates", index, *path), message, key=key)
        if spec is not None and not found:
            add(spec, Template(spec, "config"), _reporter(problem, ("templates", index, "name")))

    file_problems: list[Problem] = []
    overlay = {path.resolve(): text for path, text in (overlay or {}).items()}
    for source in _template_paths(data, file, problem, overlay):
        text = overlay.get(source)
        if text is None:
            try:
                text = source.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                file_problems.append(Problem(str(source), None, None, "", f"cannot read: {reason}"))
                continue
        file_problems.extend(_load_file(source, text, add))
    return catalog, file_problems


def _reporter(problem: ProblemHook, path: tuple[str | int, ...]) -> Callable[[str], None]:
    """A callback reporting its message at ``path``."""

    def report(message: str) -> None:
        problem(path, message)

    return report


def _template_paths(
    data: Mapping[str, Any], file: str, problem: ProblemHook, overlay: Mapping[Path, str]
) -> list[Path]:
    base = Path(file).resolve().parent if file != "<config>" else Path.cwd()
    found: list[Path] = []
    patterns = data.get("template_files")
    if patterns is None:
        patterns = []
    if not isinstance(patterns, list):
        problem(("template_files",), "expected a list of file names or globs")
        patterns = []
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            problem(("template_files", index), "expected a file name or glob")
            continue
        full = Path(pattern) if Path(pattern).is_absolute() else base / pattern
        if _GLOB & set(pattern):
            found.extend(Path(p) for p in sorted(glob.glob(str(full), recursive=True)))
        elif full.resolve() in overlay or full.is_file():
            found.append(full)
        else:
            problem(("template_files", index), f"no such file: {full}")
    directory = templates_dir(data, file)
    if directory is not None and directory.is_dir():
        found.extend(sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml")))
    found.extend(overlay)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def _load_file(
    path: Path, text: str, add: Callable[[TemplateSpec, Template, Callable[[str], None]], None]
) -> list[Problem]:
    """The templates of one file (a template, a list of them, or ``templates: [...]``)."""
    name = str(path)
    locator = Locator(text)
    problems: list[Problem] = []

    def report(where: Sequence[str | int], message: str, *, key: bool = False) -> None:
        from pudimd.config.loader import format_path

        found = locator.locate(where, key=key)
        line, col = found if found else (None, None)
        problems.append(Problem(name, line, col, format_path(where), message))

    try:
        data = yaml_rs.loads(text, parse_datetime=False) if text.strip() else None
    except Exception as exc:
        syntax = yaml_syntax_error(text)
        line, col, reason = syntax if syntax else (None, None, str(exc).splitlines()[-1])
        return [Problem(name, line, col, "", f"invalid YAML: {reason}")]
    items: list[tuple[tuple[str | int, ...], Any]]
    if isinstance(data, list):
        items = [((index,), item) for index, item in enumerate(data)]
    elif (
        isinstance(data, dict)
        and set(data) == {"templates"}
        and isinstance(data["templates"], list)
    ):
        items = [(("templates", index), item) for index, item in enumerate(data["templates"])]
    elif isinstance(data, dict):
        items = [((), data)]
    else:
        return [Problem(name, 1, 1, "", "expected a template or a list of templates")]
    for prefix, item in items:
        spec, found = spec_problems(item)
        for where, message, key in found:
            report((*prefix, *where), message, key=key)
        if spec is not None and not found:
            add(spec, Template(spec, "file", name), _reporter(report, (*prefix, "name")))
    return problems
