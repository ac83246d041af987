"""What every ``/api/v1`` endpoint that edits the config shares (reading bodies, ``dry_run``,
``If-Match``, turning a failed edit into a problem document), and the whole-file endpoints.

==================================  ==========================================================
``GET /api/v1/config``              the config file as it is on disk (``text/yaml``, with its
                                    ``ETag``); ``?format=json`` the same parsed
``PUT /api/v1/config``              replace the whole file (YAML, or JSON converted to YAML);
                                    ``If-Match`` recommended
``POST /api/v1/validate``           dry run: a whole config (YAML body, or JSON
                                    ``{"config": TEXT}``) or a targets bulk change (JSON
                                    ``{create, update, delete}``); 200 ``{valid: true}`` or a
                                    422 problem with every error's line and field
``GET /api/v1/export``              the whole config, ``?format=yaml`` (default) or ``json``
``POST /api/v1/import``             the whole config from YAML or JSON (like ``PUT``)
==================================  ==========================================================
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import structlog
import yaml_rs
from aiohttp import web

from pudimd.api.problems import Problem, answers_problems
from pudimd.auth.audit import audit as audit_row
from pudimd.config.editor import (
    ConfigEditor,
    Edited,
    Invalid,
    PreconditionFailed,
    item_etag,
    matches,
)
from pudimd.config.yamledit import Document, EditError
from pudimd.store.versions import Change

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

__all__ = [
    "MAX_EDIT_BYTES",
    "EditContext",
    "body_items",
    "config_routes",
    "read_body",
    "respond_json",
    "wants_format",
]

log = structlog.get_logger("pudimd.api")

T = TypeVar("T")

MAX_EDIT_BYTES = 32 * 1024 * 1024
"""The largest body an edit accepts (a bulk import of tens of thousands of targets)."""

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
_TARGET_PATH = re.compile(r"^targets\[(\d+)\](.*)$")
_TRUE = ("1", "true", "yes", "on")


async def read_raw(request: web.Request) -> bytes:
    """The whole request body; 413 over :data:`MAX_EDIT_BYTES`."""
    if request.content_length is not None and request.content_length > MAX_EDIT_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_EDIT_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: web.Request, *, yaml: bool = False) -> Any:
    """The request body as data: JSON, or YAML when ``yaml`` and the content type says so
    (or the text does not parse as JSON).  413 over :data:`MAX_EDIT_BYTES`, 400 when it
    does not parse."""
    raw = await read_raw(request)
    if not raw.strip():
        raise Problem(400, "the request body is empty")
    is_yaml = yaml and request.content_type in YAML_TYPES
    if not is_yaml:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if not yaml:
                raise Problem(400, f"the request body is not valid JSON: {exc}") from None
    try:
        return yaml_rs.loads(raw.decode("utf-8"), parse_datetime=False)
    except (UnicodeDecodeError, Exception) as exc:
        raise Problem(400, f"the request body is not valid YAML or JSON: {exc}") from None


def _too_large() -> Problem:
    return Problem(413, f"the request body is larger than {MAX_EDIT_BYTES // (1024 * 1024)} MiB")


def body_items(body: Any, key: str) -> list[Any]:
    """The list in an import body: the body itself or its ``key``."""
    if isinstance(body, dict) and key in body:
        body = body[key]
    if not isinstance(body, list):
        raise Problem(422, f"expected a list of {key} (or an object with {key}: [...])")
    return body


def wants_format(request: web.Request, default: str | None = "json") -> str | None:
    """``yaml`` or ``json`` from ``?format=`` (or an ``Accept`` of YAML), else ``default``."""
    fmt = request.query.get("format")
    if fmt is None:
        accept = request.headers.get("Accept", "")
        if any(kind in accept for kind in YAML_TYPES):
            return "yaml"
        return default
    if fmt not in ("yaml", "json"):
        raise Problem(400, f"format must be yaml or json, got {fmt!r}")
    return fmt


def respond_json(body: Any, fmt: str, *, etag: str | None = None) -> web.Response:
    """``body`` as JSON or YAML."""
    headers = {"ETag": etag} if etag else {}
    if fmt == "yaml":
        text = yaml_rs.dumps(body)
        if text.startswith("---\n"):
            text = text[4:]
        return web.Response(text=text, content_type="application/yaml", headers=headers)
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)


def actor(request: web.Request) -> str:
    """Who makes the request: the authenticated principal's name, else ``api``."""
    from pudimd.auth.principal import actor as principal_actor

    return principal_actor(request, "api")


class EditContext:
    """One daemon's editor, and how an endpoint runs an edit on behalf of a request."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.editor = ConfigEditor(daemon)

    def item_conflict(self, if_match: str, item: Any, doc: Document) -> bool:
        """Whether ``If-Match`` accepts neither the item's ETag nor the file's."""
        from pudimd.config.editor import etag_of

        return not (matches(if_match, item_etag(item)) or matches(if_match, etag_of(doc.text)))

    async def run(
        self,
        request: web.Request,
        change_fn: Callable[[Document], T],
        *,
        action: str,
        status: int = 200,
        if_match: bool = True,
        dry_run: bool | None = None,
        before: Any = None,
        after: Any = None,
        audit_from: Mapping[str, Any] | None = None,
        redact: Callable[[Any], Any] | None = None,
    ) -> Edited[T]:
        """Run an edit for ``request``: the file's ETag checked against its ``If-Match``
        header (unless ``if_match`` is False: the endpoint checks it per item), a dry run
        when its query says ``dry_run`` (unless ``dry_run`` is given), its caller as the
        version's author; failures raised as Problem.  A change made is written to the
        audit log with ``before`` and ``after`` (or what ``change_fn`` left under those keys
        of ``audit_from``), through ``redact`` when given, and the config versions it went
        between."""
        header = request.headers.get("If-Match") if if_match else None
        if dry_run is None:
            dry_run = request.query.get("dry_run", "").lower() in _TRUE
        message = request.headers.get("X-Pudimd-Message", "") or f"{action} through the API"
        change = Change("api", actor(request), message)
        current = self.daemon.config_version
        version_before = None if current is None else current.id
        try:
            edited = await self.editor.edit(
                change_fn,
                change=change,
                if_match=header,
                dry_run=dry_run,
            )
        except PreconditionFailed as exc:
            raise Problem(
                409,
                f"the config file changed since it was read: If-Match {header} does not "
                f"match {exc.current}; read it again and retry",
            ) from None
        except Invalid as exc:
            raise invalid_problem(exc) from None
        except EditError as exc:
            raise Problem(422, str(exc)) from None
        except OSError as exc:
            raise Problem(
                500, f"cannot write the config file {self.daemon.config_path}: {exc}"
            ) from None
        if edited.changed:
            log.info(
                "config edited",
                action=action,
                author=change.author,
                seconds=round(edited.seconds, 3),
            )
            if audit_from is not None:
                before = audit_from.get("before", before)
                after = audit_from.get("after", after)
            if redact is not None:
                before = None if before is None else redact(before)
                after = None if after is None else redact(after)
            version = self.daemon.config_version
            await audit(
                request,
                action,
                before,
                after,
                status=status,
                versions={"from": version_before, "to": None if version is None else version.id},
            )
        return edited


async def audit(
    request: web.Request,
    action: str,
    before: Any,
    after: Any,
    *,
    status: int,
    versions: dict[str, int | None],
) -> None:
    """The audit row of a config edit: the resource before and after, and the config
    versions it went from and to (their texts are in the versions table)."""
    await audit_row(
        request,
        action,
        None if before is None else {"config_version": versions["from"], "value": before},
        None if after is None else {"config_version": versions["to"], "value": after},
        status=status,
    )


def invalid_problem(exc: Invalid) -> Problem:
    """A 422 problem listing what does not validate in an edited config, each error with
    its field, its line in the edited text and, for a target, its name."""
    names: list[Any] = []
    with contextlib.suppress(EditError):
        names = [t.get("name") if isinstance(t, dict) else None for t in exc.doc.targets()]
    errors = []
    for problem in exc.error.problems:
        entry: dict[str, Any] = {"field": problem.path, "message": problem.message}
        if problem.line is not None:
            entry["line"] = problem.line
            if problem.column is not None:
                entry["column"] = problem.column
        match = _TARGET_PATH.match(problem.path)
        if match and int(match.group(1)) < len(names) and names[int(match.group(1))]:
            entry["target"] = names[int(match.group(1))]
        errors.append(entry)
    first = exc.error.problems[0] if exc.error.problems else None
    detail = "the change does not validate; nothing was changed"
    if first is not None:
        detail += f": {first.path + ': ' if first.path else ''}{first.message}"
    return Problem(422, detail, errors=errors)


class _ConfigAPI:
    def __init__(self, edits: EditContext) -> None:
        self.edits = edits

    async def get(self, request: web.Request) -> web.StreamResponse:
        snapshot = await self.edits.editor.snapshot()
        if wants_format(request, default="yaml") == "json":
            return respond_json(snapshot.doc.data(), "json", etag=snapshot.etag)
        return web.Response(
            text=snapshot.text, content_type="application/yaml", headers={"ETag": snapshot.etag}
        )

    async def _text_of(self, request: web.Request) -> str:
        if request.content_type in YAML_TYPES or request.content_type == "text/plain":
            raw = await read_body_text(request)
            return raw
        body = await read_body(request, yaml=True)
        if isinstance(body, dict) and set(body) == {"config"} and isinstance(body["config"], str):
            return body["config"]
        if not isinstance(body, dict):
            raise Problem(422, "a config is a mapping at the top")
        text = yaml_rs.dumps(body)
        return text[4:] if text.startswith("---\n") else text

    async def put(self, request: web.Request) -> web.StreamResponse:
        text = await self._text_of(request)

        def change(doc: Document) -> None:
            doc.text = text

        edited = await self.edits.run(request, change, action="config.replace")
        return web.json_response(
            {"changed": edited.changed, "seconds": round(edited.seconds, 3)},
            headers={"ETag": edited.etag},
        )

    async def validate(self, request: web.Request) -> web.StreamResponse:
        from pudimd.api.targets import apply_bulk, clean_target

        if request.content_type in YAML_TYPES or request.content_type == "text/plain":
            text: str | None = await read_body_text(request)
            body: Any = None
        else:
            body = await read_body(request)
            text = None
            if isinstance(body, dict) and isinstance(body.get("config"), str):
                text = body["config"]
        bulk = isinstance(body, dict) and bool(set(body) & {"create", "update", "delete"})
        if text is None and not bulk:
            raise Problem(
                422, 'expected a YAML config, {"config": TEXT} or {create, update, delete}'
            )

        def change(doc: Document) -> None:
            if text is not None:
                doc.text = text
                return
            create = [
                clean_target(x, f"create[{i}]") for i, x in enumerate(body.get("create") or [])
            ]
            update = [
                clean_target(x, f"update[{i}]") for i, x in enumerate(body.get("update") or [])
            ]
            apply_bulk(doc, create, update, [str(n) for n in body.get("delete") or []])

        edited = await self.edits.run(
            request, change, action="config.validate", if_match=False, dry_run=True
        )
        return web.json_response({"valid": True, "seconds": round(edited.seconds, 3)})



async def read_body_text(request: web.Request) -> str:
    """The request body as UTF-8 text (413 over :data:`MAX_EDIT_BYTES`)."""
    raw = await read_raw(request)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "the request body is not UTF-8 text") from None


def config_routes(edits: EditContext) -> list[web.RouteDef]:
    api = _ConfigAPI(edits)
    return [
        web.get("/api/v1/config", answers_problems(api.get)),
        web.put("/api/v1/config", answers_problems(api.put)),
        web.post("/api/v1/validate", answers_problems(api.validate)),
        web.get("/api/v1/export", answers_problems(api.get)),
        web.post("/api/v1/import", answers_problems(api.put)),
    ]


__all__ += ["actor", "invalid_problem", "read_body_text"]
