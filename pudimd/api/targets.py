"""Targets in ``/api/v1``: read them, and change them through the config file
(:mod:`pudimd.config.editor`: validated like a reload, written atomically, applied).

=======================================  =====================================================
``GET /api/v1/targets``                  targets by name, ``limit`` (100, at most 1000) per
                                         page, ``cursor`` from ``next_cursor``; filters
                                         ``probe``, ``label=K=V`` (repeatable), ``q`` (in the
                                         name or target), ``health`` (up, down, degraded,
                                         unknown).  ``?format=yaml|json``: every target as an
                                         importable document, without live status
``POST /api/v1/targets``                 create one (201; 409 when the name is taken)
``GET /api/v1/targets/{name}``           one target as written, with its live ``status``
``PUT /api/v1/targets/{name}``           replace it (comments in the file kept where the
                                         values did not change)
``PATCH /api/v1/targets/{name}``         JSON merge patch (RFC 7396)
``DELETE /api/v1/targets/{name}``        remove it (204)
``POST /api/v1/targets/bulk``            ``{create, update, delete}`` applied together or not
                                         at all
``POST /api/v1/targets/import``          a YAML or JSON document (``{targets: [...]}`` or a
                                         list): ``mode=merge`` (default: create or replace by
                                         name) or ``mode=replace`` (the list becomes the
                                         targets)
=======================================  =====================================================

Every write takes ``If-Match`` (the target's ETag, or the config file's from
``GET /api/v1/config``): 409 when it no longer matches.  ``?dry_run=true`` validates
without writing.  Secret settings read as ``<secret>``; writing ``<secret>`` back keeps the
value in the file.  A target's ``status`` is read-only and ignored when written.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from aiohttp import web
from multidict import MultiMapping

from pudimd.api.configedit import (
    EditContext,
    body_items,
    read_body,
    respond_json,
    wants_format,
)
from pudimd.api.problems import Problem, answers_problems
from pudimd.config.editor import item_etag, redact, secret_paths
from pudimd.config.yamledit import Document, EditError

if TYPE_CHECKING:
    from pudimd.config.editor import Snapshot
    from pudimd.daemon import Daemon

__all__ = ["targets_routes"]

log = structlog.get_logger("pudimd.api")

DEFAULT_PAGE = 100
MAX_CACHED_PAGES = 256
MAX_PAGE = 1000
READ_ONLY = ("status",)


def clean_target(item: Any, where: str) -> dict[str, Any]:
    """A target from a request body: a JSON object with a name, read-only keys dropped."""
    if not isinstance(item, dict):
        raise Problem(
            422, f"{where}: a target must be an object", errors=[_err(where, "not an object")]
        )
    out = {k: v for k, v in item.items() if k not in READ_ONLY}
    name = out.get("name")
    if not isinstance(name, str) or not name:
        raise Problem(422, f"{where}.name is required", errors=[_err(f"{where}.name", "required")])
    check_name(name, f"{where}.name")
    return out


def check_name(name: str, where: str) -> None:
    """Refuse names that could escape a path: ``..`` segments, a leading ``/``, backslashes,
    control characters (the config's own rule is checked by the validator)."""
    bad = (
        name.startswith("/")
        or "\\" in name
        or any(part in ("..", ".") for part in name.split("/"))
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    )
    if bad:
        raise Problem(
            422,
            f"{where}: invalid name {name!r} (no '..' or '.' segments, leading '/' or '\\')",
            errors=[_err(where, "invalid name")],
        )


def _err(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


class _Index:
    """The file's targets sorted by name, for pagination (built once per file state)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        named = [(str(item.get("name", "")), item) for item in items if isinstance(item, dict)]
        named.sort(key=lambda pair: pair[0])
        self.names = [name for name, _ in named]
        self.items = [item for _, item in named]
        self.by_name = dict(named)
        self._json: list[bytes | None] = [None] * len(self.items)

    def json_without_status(self, position: int, public: Callable[[Any], dict[str, Any]]) -> bytes:
        """Item ``position`` as the API shows it (secrets redacted), as JSON without its
        closing brace: built once per file state, so a page costs the live status only."""
        cached = self._json[position]
        if cached is None:
            cached = self._json[position] = orjson.dumps(public(self.items[position]))[:-1]
        return cached


class _TargetsAPI:
    def __init__(self, daemon: Daemon, edits: EditContext) -> None:
        self.daemon = daemon
        self.edits = edits
        self._secrets: dict[str, list[tuple[str, ...]]] = {}
        self._status_cache: dict[str, tuple[Any, int, bytes, str]] = {}
        self._pages: dict[str, tuple[str, int, bytes]] = {}
        self._cached_for = ""

    # -- reading ----------------------------------------------------------------------

    def _index(self, snapshot: Snapshot) -> _Index:
        index = snapshot.cache.get("targets")
        if index is None:
            index = snapshot.cache["targets"] = _Index(snapshot.doc.targets())
        assert isinstance(index, _Index)
        return index

    def _secret_paths(self, probe: Any) -> list[tuple[str, ...]]:
        if not isinstance(probe, str):
            return []
        paths = self._secrets.get(probe)
        if paths is None:
            cls = self.daemon.host.types("probe").get(probe)
            settings = getattr(cls, "Settings", None)
            paths = [(probe, *p) for p in secret_paths(settings)] if settings is not None else []
            self._secrets[probe] = paths
        return paths

    def _public(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return redact(item, self._secret_paths(item.get("probe")))

    def _status(self, name: str) -> dict[str, Any]:
        scheduler = self.daemon.scheduler
        job = None if scheduler is None else scheduler.jobs.get(name)
        if job is None:
            return {"scheduled": False, "health": "unknown"}
        state = job.state
        out: dict[str, Any] = {
            "scheduled": True,
            "health": state.health,
            "checks": state.checks,
            "failures": state.failures,
            "consecutive_failures": state.consecutive_failures,
        }
        last = state.last
        if last is not None:
            out["last_check"] = last.timestamp
            out["duration"] = last.duration
            out["message"] = last.message
        return out

    _UNSCHEDULED = (b'{"scheduled":false,"health":"unknown"}', "unknown")

    def _status_json(self, name: str) -> tuple[bytes, str]:
        """A target's status as JSON and its health, kept per job until its next check
        (a page of the listing then costs a lookup per target)."""
        scheduler = self.daemon.scheduler
        job = None if scheduler is None else scheduler.jobs.get(name)
        if job is None:
            self._status_cache.pop(name, None)
            return self._UNSCHEDULED
        cached = self._status_cache.get(name)
        if cached is not None and cached[0] is job and cached[1] == job.state.checks:
            return cached[2], cached[3]
        status = self._status(name)
        entry = (job, job.state.checks, orjson.dumps(status), str(status["health"]))
        self._status_cache[name] = entry
        return entry[2], entry[3]

    def _view(self, item: Mapping[str, Any]) -> dict[str, Any]:
        out = self._public(item)
        out["status"] = self._status(str(item.get("name", "")))
        return out

    async def list(self, request: web.Request) -> web.StreamResponse:
        snapshot = await self.edits.editor.snapshot()
        index = self._index(snapshot)
        fmt = wants_format(request, default=None)
        if fmt is not None:
            export = {"targets": [self._public(item) for item in index.items]}
            return respond_json(export, fmt, etag=snapshot.etag)
        # A page is kept until the file or any target's state changes (every result and
        # alert moves the event bus's last id): dashboards polling the same page cost
        # nothing more than a lookup.
        if snapshot.etag != self._cached_for:  # a new file: forget the old one's targets
            self._status_cache.clear()
            self._pages.clear()
            self._cached_for = snapshot.etag
        key = request.query_string
        seen = self.daemon.events.last_id
        cached = self._pages.get(key)
        if cached is not None and cached[0] == snapshot.etag and cached[1] == seen:
            return _page_response(cached[2], snapshot.etag)
        body = self._page(index, request.query)
        if len(self._pages) >= MAX_CACHED_PAGES:
            self._pages.clear()
        self._pages[key] = (snapshot.etag, seen, body)
        return _page_response(body, snapshot.etag)

    def _page(self, index: _Index, query: MultiMapping[str]) -> bytes:
        """The JSON of one page of the listing."""
        try:
            limit = int(query.get("limit", DEFAULT_PAGE))
        except ValueError:
            raise Problem(400, "limit must be a whole number") from None
        if not 1 <= limit <= MAX_PAGE:
            raise Problem(400, f"limit must be between 1 and {MAX_PAGE}")
        start = 0
        cursor = query.get("cursor")
        if cursor:
            start = bisect.bisect_right(index.names, _decode_cursor(cursor))
        probe = query.get("probe")
        labels = [_label_filter(text) for text in query.getall("label", [])]
        needle = query.get("q", "").lower()
        health = query.get("health")
        page: list[bytes] = []
        position = start
        while position < len(index.items) and len(page) < limit:
            item = index.items[position]
            position += 1
            if probe and item.get("probe") != probe:
                continue
            if labels and not _has_labels(item, labels):
                continue
            if needle and not (
                needle in str(item.get("name", "")).lower()
                or needle in str(item.get("target", "")).lower()
            ):
                continue
            status, target_health = self._status_json(index.names[position - 1])
            if health and target_health != health:
                continue
            head = index.json_without_status(position - 1, self._public)
            glue = b',"status":' if len(head) > 1 else b'"status":'
            page.append(head + glue + status + b"}")
        more = position < len(index.items)
        tail = {
            "total": len(index.items),
            "next_cursor": _encode_cursor(index.names[position - 1]) if more else None,
        }
        return b'{"targets":[' + b",".join(page) + b"]," + orjson.dumps(tail)[1:]

    async def get(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        snapshot = await self.edits.editor.snapshot()
        item = self._index(snapshot).by_name.get(name)
        if item is None:
            raise Problem(404, f"no target named {name!r}")
        return web.Response(
            body=orjson.dumps(self._view(item)),
            content_type="application/json",
            headers={"ETag": item_etag(item)},
        )

    # -- writing ----------------------------------------------------------------------

    def _locate(self, doc: Document, name: str) -> int:
        index = doc.index_of(name)
        if index is None:
            raise Problem(404, f"no target named {name!r}")
        return index

    async def create(self, request: web.Request) -> web.StreamResponse:
        item = clean_target(await read_body(request), "body")

        def change(doc: Document) -> dict[str, Any]:
            if doc.index_of(item["name"]) is not None:
                raise Problem(
                    409, f"a target named {item['name']!r} exists", errors=[_err("name", "taken")]
                )
            doc.add_targets([item])
            return item

        await self.edits.run(
            request, change, action="targets.create", status=201, after=item, redact=self._public
        )
        return web.Response(
            status=201,
            body=orjson.dumps(self._view(item)),
            content_type="application/json",
            headers={
                "Location": f"/api/v1/targets/{item['name']}",
                "ETag": item_etag(item),
            },
        )

    async def _replace(self, request: web.Request, *, patch: bool) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await read_body(request)
        if_match = request.headers.get("If-Match")
        found: dict[str, Any] = {}

        def change(doc: Document) -> dict[str, Any]:
            index = self._locate(doc, name)
            current = doc.targets()[index]
            found["before"] = current
            if if_match is not None and self.edits.item_conflict(if_match, current, doc):
                raise Problem(409, f"target {name!r} changed since it was read (If-Match)")
            new = _merge_patch(current, body) if patch else body
            item = clean_target(new, "body")
            if item["name"] != name and doc.index_of(item["name"]) is not None:
                raise Problem(409, f"a target named {item['name']!r} exists")
            doc.set_target(index, item)
            found["after"] = item
            return item

        edited = await self.edits.run(
            request,
            change,
            action="targets.update",
            if_match=False,  # checked per target above (file ETags accepted there too)
            audit_from=found,
            redact=self._public,
        )
        item = edited.value
        return web.Response(
            body=orjson.dumps(self._view(item)),
            content_type="application/json",
            headers={"ETag": item_etag(item)},
        )

    async def put(self, request: web.Request) -> web.StreamResponse:
        return await self._replace(request, patch=False)

    async def patch(self, request: web.Request) -> web.StreamResponse:
        return await self._replace(request, patch=True)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if_match = request.headers.get("If-Match")
        found: dict[str, Any] = {}

        def change(doc: Document) -> None:
            index = self._locate(doc, name)
            current = doc.targets()[index]
            found["before"] = current
            if if_match is not None and self.edits.item_conflict(if_match, current, doc):
                raise Problem(409, f"target {name!r} changed since it was read (If-Match)")
            doc.remove_targets([index])

        await self.edits.run(
            request,
            change,
            action="targets.delete",
            status=204,
            if_match=False,
            audit_from=found,
            redact=self._public,
        )
        return web.Response(status=204)

    async def bulk(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        if not isinstance(body, dict):
            raise Problem(422, "the body must be an object with create, update and delete lists")
        unknown = set(body) - {"create", "update", "delete"}
        if unknown:
            raise Problem(
                422,
                f"unknown field(s): {', '.join(sorted(unknown))}",
                errors=[_err(key, "unknown field") for key in sorted(unknown)],
            )
        create = [clean_target(x, f"create[{i}]") for i, x in enumerate(_list(body, "create"))]
        update = [clean_target(x, f"update[{i}]") for i, x in enumerate(_list(body, "update"))]
        delete = _list(body, "delete")
        for i, name in enumerate(delete):
            if not isinstance(name, str):
                raise Problem(
                    422,
                    f"delete[{i}]: a target name (string)",
                    errors=[_err(f"delete[{i}]", "not a string")],
                )
        _no_duplicates([x["name"] for x in create] + [x["name"] for x in update] + delete)

        def change(doc: Document) -> dict[str, int]:
            return apply_bulk(doc, create, update, delete)

        summary = {
            "create": [x["name"] for x in create],
            "update": [x["name"] for x in update],
            "delete": delete,
        }
        edited = await self.edits.run(request, change, action="targets.bulk", after=summary)
        return web.json_response(
            {**edited.value, "changed": edited.changed}, headers={"ETag": edited.etag}
        )

    async def import_(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request, yaml=True)
        items = [
            clean_target(x, f"targets[{i}]") for i, x in enumerate(body_items(body, "targets"))
        ]
        mode = request.query.get("mode", "merge")
        if mode not in ("merge", "replace"):
            raise Problem(400, "mode must be merge or replace")
        _no_duplicates([x["name"] for x in items])

        def change(doc: Document) -> dict[str, int]:
            existing = {str(t.get("name")) for t in doc.targets() if isinstance(t, dict)}
            incoming = {x["name"] for x in items}
            create = [x for x in items if x["name"] not in existing]
            update = [x for x in items if x["name"] in existing]
            delete = sorted(existing - incoming) if mode == "replace" else []
            return apply_bulk(doc, create, update, delete)

        edited = await self.edits.run(
            request,
            change,
            action="targets.import",
            after={"mode": mode, "targets": [x["name"] for x in items]},
        )
        return web.json_response(
            {**edited.value, "changed": edited.changed}, headers={"ETag": edited.etag}
        )


def _page_response(body: bytes, etag: str) -> web.Response:
    return web.Response(body=body, content_type="application/json", headers={"ETag": etag})


def apply_bulk(
    doc: Document,
    create: list[dict[str, Any]],
    update: list[dict[str, Any]],
    delete: list[str],
) -> dict[str, int]:
    """Make the changes of a bulk request on ``doc``: counts of what was created, updated
    (only targets that differ are rewritten) and deleted.  Raises Problem (404, 409)."""
    positions = {str(t.get("name")): i for i, t in enumerate(doc.targets()) if isinstance(t, dict)}
    for i, item in enumerate(create):
        if item["name"] in positions:
            raise Problem(
                409,
                f"create[{i}]: a target named {item['name']!r} exists",
                errors=[_err(f"create[{i}].name", "taken")],
            )
    for i, item in enumerate(update):
        if item["name"] not in positions:
            raise Problem(
                404,
                f"update[{i}]: no target named {item['name']!r}",
                errors=[_err(f"update[{i}].name", "not found")],
            )
    for i, name in enumerate(delete):
        if name not in positions:
            raise Problem(
                404,
                f"delete[{i}]: no target named {name!r}",
                errors=[_err(f"delete[{i}]", "not found")],
            )
    current = doc.targets()
    changed = {
        positions[item["name"]]: item
        for item in update
        if current[positions[item["name"]]] != item
    }
    doc.set_targets(changed)
    doc.remove_targets(positions[name] for name in delete)
    doc.add_targets(create)
    return {"created": len(create), "updated": len(changed), "deleted": len(delete)}


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key) or []
    if not isinstance(value, list):
        raise Problem(422, f"{key} must be a list", errors=[_err(key, "not a list")])
    return value


def _no_duplicates(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise Problem(
                422,
                f"target {name!r} appears more than once in the request",
                errors=[_err("name", f"duplicate {name!r}")],
            )
        seen.add(name)


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            400, "cursor is not one this API gave", errors=[_err("cursor", "invalid")]
        ) from None


def _label_filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise Problem(
            400,
            f"label filter must be KEY=VALUE, got {text!r}",
            errors=[_err("label", "expected KEY=VALUE")],
        )
    return key, value


def _has_labels(item: Mapping[str, Any], wanted: list[tuple[str, str]]) -> bool:
    labels = item.get("labels")
    if not isinstance(labels, dict):
        return False
    return all(str(labels.get(key)) == value for key, value in wanted)


def targets_routes(daemon: Daemon, edits: EditContext) -> list[web.RouteDef]:
    api = _TargetsAPI(daemon, edits)
    return [
        web.get("/api/v1/targets", answers_problems(api.list)),
        web.post("/api/v1/targets", answers_problems(api.create)),
        web.post("/api/v1/targets/bulk", answers_problems(api.bulk)),
        web.post("/api/v1/targets/import", answers_problems(api.import_)),
        web.get("/api/v1/targets/{name:[\\s\\S]+}", answers_problems(api.get)),
        web.put("/api/v1/targets/{name:[\\s\\S]+}", answers_problems(api.put)),
        web.patch("/api/v1/targets/{name:[\\s\\S]+}", answers_problems(api.patch)),
        web.delete("/api/v1/targets/{name:[\\s\\S]+}", answers_problems(api.delete)),
    ]


__all__ += ["EditError", "apply_bulk", "check_name", "clean_target"]
