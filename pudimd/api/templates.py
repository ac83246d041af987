"""Target templates in ``/api/v1`` (docs/templates.md): list, export, dry-run expansion and
import.  Errors are RFC 9457 problem documents (:mod:`pudimd.api.problems`).

==========================================  ==================================================
``GET /api/v1/templates``                   every template the running config may use: name,
                                            version, description, params, source
                                            (``builtin``, ``config``, ``file``), file
``GET /api/v1/templates/{name}``            one template's definition (newest version, or
                                            ``?version=N``) as JSON, or YAML with
                                            ``?format=yaml`` / ``Accept: application/yaml``
``POST /api/v1/templates/expand``           body ``{use, params, name, ...}`` (a using
                                            target): the targets it expands to, validated;
                                            422 with the field paths of what is wrong
``POST /api/v1/templates``                  body: a template (JSON, or YAML with a YAML
                                            content type): validated with the whole config,
                                            written to ``templates_dir`` as
                                            ``NAME.vVERSION.yaml`` (atomically), then the
                                            daemon reloads; 422 and nothing written when
                                            the template or the config with it is invalid
==========================================  ==================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import orjson
import structlog
import yaml_rs
from aiohttp import web
from pydantic import ValidationError

from pudimd.api.problems import Problem, answers_problems
from pudimd.config import ConfigError, load_config_text
from pudimd.config.loader import format_path
from pudimd.config.template_files import builtin_templates, spec_problems, templates_dir
from pudimd.config.templates import Catalog, Template, TemplateSpec, expand_use
from pudimd.store.versions import read_config_file, write_config_file

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

__all__ = ["templates_routes"]

log = structlog.get_logger("pudimd.api")

MAX_TEMPLATE_BYTES = 256 * 1024
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _error(field: str, message: str, location: str | None = None) -> dict[str, str]:
    out = {"field": field, "message": message}
    if location:
        out["location"] = location
    return out


def _location(file: str, line: int | None, column: int | None) -> str:
    if line is None:
        return file
    return f"{file}:{line}" if column is None else f"{file}:{line}:{column}"


def _wants_yaml(request: web.Request) -> bool:
    fmt = request.query.get("format", "")
    if fmt:
        if fmt not in ("json", "yaml"):
            raise Problem(400, f"format must be json or yaml, got {fmt!r}")
        return fmt == "yaml"
    accept = request.headers.get("Accept", "")
    return any(kind in accept for kind in YAML_TYPES)


class _TemplatesAPI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._import_lock = anyio.Lock()  # one import validates, writes and reloads at a time

    def _catalog(self) -> Catalog:
        config = self.daemon.config
        return config.template_catalog if config is not None else Catalog(builtin_templates())

    async def list(self, request: web.Request) -> web.StreamResponse:
        templates = [template.summary() for template in self._catalog().all()]
        return web.json_response({"templates": templates})

    async def get(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        version_text = request.query.get("version")
        version: int | None = None
        if version_text:
            try:
                version = int(version_text)
            except ValueError:
                raise Problem(400, f"version must be an integer, got {version_text!r}") from None
        template = self._catalog().find(name, version)
        if template is None:
            what = f"{name}@{version}" if version is not None else repr(name)
            raise Problem(404, f"no template {what}")
        exported = template.export()
        if _wants_yaml(request):
            return web.Response(text=yaml_rs.dumps(exported), content_type="application/yaml")
        return web.json_response(exported)

    async def expand(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, json_only=True)
        if not isinstance(body, dict):
            raise Problem(400, "the request body must be a JSON object (a using target)")
        catalog = self._catalog()
        targets, problems, template = expand_use(body, catalog, self.daemon.schema.probe_types)
        if problems:
            errors = [_error(format_path(path), message) for path, message in problems]
            raise Problem(422, _summary(errors), errors=errors)
        assert template is not None
        try:
            self.daemon.schema.model.model_validate(
                {"targets": targets},
                context={"base_dir": str(self.daemon.config_path.resolve().parent)},
            )
        except ValidationError as exc:
            errors = []
            for error in exc.errors(include_url=False):
                loc = list(error["loc"])
                tagged = len(self.daemon.schema.probe_types) > 1
                if tagged and len(loc) > 2 and loc[0] == "targets":
                    del loc[2]  # the union's tag (the probe type)
                message = str(error["msg"]).removeprefix("Value error, ")
                if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                    installed = ", ".join(self.daemon.schema.probe_types)
                    loc, message = [*loc, "probe"], f"unknown probe type (installed: {installed})"
                errors.append(_error(format_path(loc), message))
            raise Problem(422, _summary(errors), errors=errors) from None
        return web.json_response({"template": template.summary(), "targets": targets})

    async def create(self, request: web.Request) -> web.StreamResponse:
        data = await self._body(request, json_only=False)
        spec, found = spec_problems(data)
        if spec is None or found:
            errors = [_error(format_path(path), message) for path, message, _key in found]
            raise Problem(422, _summary(errors), errors=errors)
        text = yaml_rs.dumps(Template(spec, "file").export())
        async with self._import_lock:
            path = await self._write(spec, text)
            error = await self.daemon.reload(source="api")
        if error is not None:
            raise Problem(
                500, f"the template was written to {path} but the reload failed:\n{error}"
            )
        log.info("template imported", template=spec.label, file=str(path))
        template = self._catalog().find(spec.name, spec.version)
        summary = template.summary() if template is not None else {"name": spec.name}
        return web.json_response(
            {"template": summary, "file": str(path), "reloaded": True}, status=201
        )

    async def _write(self, spec: TemplateSpec, text: str) -> Path:
        """Validate the config with the template file ``text`` added, then write it."""
        config_path = self.daemon.config_path
        config_text = await anyio.to_thread.run_sync(read_config_file, config_path)
        config = self.daemon.config
        where = {"templates_dir": str(config.templates_dir)} if config is not None else {}
        directory = templates_dir(where, str(config_path))
        if directory is None:
            raise Problem(500, "the config has no templates_dir to write to")
        path = directory / f"{spec.name}.v{spec.version}.yaml"

        def validate() -> None:
            load_config_text(
                config_text,
                self.daemon.schema,
                file=str(config_path),
                alertmanager_config=self.daemon.alertmanager_config,
                template_overlay={path: text},
            )

        try:
            await anyio.to_thread.run_sync(validate)
        except ConfigError as exc:
            errors = [
                _error(p.path, p.message, _location(p.file, p.line, p.column)) for p in exc.problems
            ]
            raise Problem(
                422,
                f"the config does not validate with this template; nothing was written:\n{exc}",
                errors=errors,
            ) from None

        def write() -> None:
            directory.mkdir(parents=True, exist_ok=True)
            write_config_file(path, text)

        try:
            await anyio.to_thread.run_sync(write)
        except OSError as exc:
            raise Problem(500, f"cannot write {path}: {exc}") from None
        return path

    async def _body(self, request: web.Request, *, json_only: bool) -> Any:
        raw = await request.content.read(MAX_TEMPLATE_BYTES + 1)
        if len(raw) > MAX_TEMPLATE_BYTES:
            raise Problem(413, f"the request body is over {MAX_TEMPLATE_BYTES} bytes")
        if not raw.strip():
            raise Problem(400, "the request body is empty")
        if not json_only and request.content_type in YAML_TYPES:
            try:
                return yaml_rs.loads(raw.decode("utf-8"), parse_datetime=False)
            except Exception as exc:
                reason = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
                raise Problem(400, f"the request body is not valid YAML: {reason}") from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Problem(400, f"the request body is not valid JSON: {exc}") from None


def _summary(errors: list[dict[str, str]]) -> str:
    return "; ".join(
        f"{error['field']}: {error['message']}" if error["field"] else error["message"]
        for error in errors
    )


def templates_routes(daemon: Daemon) -> list[web.RouteDef]:
    """The ``/api/v1/templates`` routes of ``daemon``."""
    api = _TemplatesAPI(daemon)
    return [
        web.get("/api/v1/templates", answers_problems(api.list)),
        web.post("/api/v1/templates", answers_problems(api.create)),
        web.post("/api/v1/templates/expand", answers_problems(api.expand)),
        web.get("/api/v1/templates/{name}", answers_problems(api.get)),
    ]
