"""Config versions in ``/api/v1``: every config the daemon applied, the diff between two,
and a rollback.  Errors are RFC 9457 problem documents (:mod:`pudimd.api.problems`).

==========================================  ==================================================
``GET /api/v1/config/versions``             versions newest first (no text): ``id``, ``at``,
                                            ``source``, ``author``, ``message``, ``sha256``,
                                            ``current``; ``limit`` (default 100), ``before``
``GET /api/v1/config/versions/{id}``        one version with its ``text``
``GET /api/v1/config/diff?from=A&to=B``     unified diff from version A to B (``to`` defaults
                                            to the current one): ``text/plain``, or JSON
                                            ``{from, to, diff}`` with ``Accept:
                                            application/json``
``POST /api/v1/config/rollback/{id}``       body ``{author, message}``: validate version
                                            ``id``'s text, write it to the config file
                                            (atomically), reload, record a ``rollback``
                                            version; 400 with the file:line errors when it no
                                            longer validates (nothing changed)
==========================================  ==================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from pudimd.api._amjson import api_time, read_json
from pudimd.api.problems import Problem, answers_problems
from pudimd.config import ConfigError
from pudimd.store.versions import (
    Change,
    ConfigVersion,
    get_version,
    latest_version,
    list_versions,
    unified_diff,
)

if TYPE_CHECKING:
    from pudimd.daemon import Daemon
    from pudimd.store.threaded import AsyncEngine

__all__ = ["version_json", "versions_routes"]

log = structlog.get_logger("pudimd.api")

MAX_LIMIT = 1000
MAX_MESSAGE = 10_000


def version_json(version: ConfigVersion, current: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": version.id,
        "at": api_time(version.at),
        "source": version.source,
        "author": version.author,
        "message": version.message,
        "sha256": version.sha256,
        "current": version.id == current,
    }
    if version.text is not None:
        out["text"] = version.text
    return out


def _int(text: str | None, what: str, *, default: int | None = None) -> int:
    if text is None or text == "":
        if default is None:
            raise Problem(400, f"{what} is required (a version id)")
        return default
    try:
        value = int(text)
    except ValueError:
        raise Problem(400, f"{what} must be an integer, got {text!r}") from None
    if not 1 <= value < 2**63:  # the database's integers are 64-bit
        raise Problem(400, f"{what} must be at least 1 (and a 64-bit integer), got {value}")
    return value


def _string(body: dict[str, Any], name: str, *, required: bool) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise Problem(400, f"{name} is required", errors=[_error(name, "required")])
        return ""
    if not isinstance(value, str):
        raise Problem(400, f"{name} must be a string", errors=[_error(name, "not a string")])
    if len(value) > MAX_MESSAGE:
        raise Problem(400, f"{name} is too long", errors=[_error(name, "too long")])
    return value


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept or request.query.get("format") == "json"


class _VersionsAPI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _engine(self) -> AsyncEngine:
        store = self.daemon.store
        if store is None:
            raise Problem(503, "pudimd's store is not open")
        return store.engine

    def _current(self) -> int | None:
        version = self.daemon.config_version
        return None if version is None else version.id

    async def _get(self, version_id: int) -> ConfigVersion:
        version = await get_version(self._engine(), version_id)
        if version is None:
            raise Problem(404, f"no config version {version_id}")
        return version

    async def list(self, request: web.Request) -> web.StreamResponse:
        limit = _int(request.query.get("limit"), "limit", default=100)
        before = request.query.get("before")
        found = await list_versions(
            self._engine(),
            limit=min(limit, MAX_LIMIT),
            before=None if before is None else _int(before, "before"),
        )
        current = self._current()
        return web.json_response({"versions": [version_json(v, current) for v in found]})

    async def get(self, request: web.Request) -> web.StreamResponse:
        version = await self._get(_int(request.match_info["id"], "id"))
        return web.json_response(version_json(version, self._current()))

    async def diff(self, request: web.Request) -> web.StreamResponse:
        old = await self._get(_int(request.query.get("from"), "from"))
        to = request.query.get("to")
        if to is None or to == "":
            latest = await latest_version(self._engine())
            current = self._current() or (latest.id if latest is not None else None)
            if current is None:
                raise Problem(404, "no config version is stored")
            new = await self._get(current)
        else:
            new = await self._get(_int(to, "to"))
        text = unified_diff(old, new)
        if _wants_json(request):
            return web.json_response({"from": old.id, "to": new.id, "diff": text})
        return web.Response(text=text, content_type="text/plain")

    async def rollback(self, request: web.Request) -> web.StreamResponse:
        version = await self._get(_int(request.match_info["id"], "id"))
        body = await read_json(request) if request.can_read_body else {}
        if not isinstance(body, dict):
            raise Problem(400, "the request body must be a JSON object")
        from pudimd.auth.principal import actor

        caller = actor(request)  # the signed-in caller is the author a body may omit
        author = _string(body, "author", required=not caller) or caller
        message = _string(body, "message", required=False) or f"rollback to version {version.id}"
        assert version.text is not None
        before = self._current()
        try:
            error = await self.daemon.reload(
                "rollback",
                text=version.text,
                change=Change("rollback", author, message),
            )
        except ConfigError as exc:
            raise Problem(
                400,
                f"version {version.id} does not validate any more; nothing was changed:\n{exc}",
                errors=[
                    {
                        "field": problem.path,
                        "location": _location(problem.file, problem.line, problem.column),
                        "message": problem.message,
                    }
                    for problem in exc.problems
                ],
            ) from None
        except OSError as exc:
            raise Problem(
                500, f"cannot write the config file {self.daemon.config_path}: {exc}"
            ) from None
        if error is not None:
            raise Problem(500, f"the config file was written but its reload failed:\n{error}")
        current = self.daemon.config_version
        log.info(
            "config rolled back",
            to_version=version.id,
            author=author,
            recorded=None if current is None else current.id,
        )
        return web.json_response(
            {
                "rolled_back_to": version.id,
                "changed": current is not None and current.id != before,
                "version": None if current is None else version_json(current, current.id),
            }
        )


def _location(file: str, line: int | None, column: int | None) -> str:
    if line is None:
        return file
    return f"{file}:{line}" if column is None else f"{file}:{line}:{column}"


def versions_routes(daemon: Daemon) -> list[web.RouteDef]:
    api = _VersionsAPI(daemon)
    return [
        web.get("/api/v1/config/versions", answers_problems(api.list)),
        web.get("/api/v1/config/versions/{id}", answers_problems(api.get)),
        web.get("/api/v1/config/diff", answers_problems(api.diff)),
        web.post("/api/v1/config/rollback/{id}", answers_problems(api.rollback)),
    ]
