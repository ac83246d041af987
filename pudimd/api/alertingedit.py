"""Receivers, the route tree and alert rules in ``/api/v1``, read from and edited through
the config file's ``alerting`` section (like targets: validated, written atomically,
applied); and silences, which live in the store as Alertmanager's do.

=========================================  ===================================================
``GET /api/v1/receivers``                  every receiver as written (secrets as
                                           ``<secret>``)
``GET|PUT|DELETE /api/v1/receivers/{n}``   one receiver; ``PUT`` creates or replaces it
``GET|PUT /api/v1/routes``                 the route tree (``alerting.route``)
``GET /api/v1/rules``                      every alert rule
``GET|PUT|DELETE /api/v1/rules/{name}``    one rule (by name); ``PUT`` creates or replaces
``GET|POST /api/v1/silences``              silences (``?filter=`` matchers); create or update
                                           one (Alertmanager's postableSilence; ``createdBy``
                                           defaults to the caller)
``GET|DELETE /api/v1/silences/{id}``       one silence; expire it
=========================================  ===================================================

When the routing lives in an ``alertmanager_config_file``, receivers and routes are read
from it but not edited here (409): edit that file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from pudimd.alerting.config import config_key
from pudimd.alerting.silences import SilenceError, SilenceNotFound
from pudimd.api._amjson import gettable_silence, matchers_param, postable_silence, sort_silences
from pudimd.api.configedit import EditContext, actor, read_body
from pudimd.api.problems import Problem, answers_problems
from pudimd.api.targets import check_name
from pudimd.config.editor import item_etag, redact, secret_paths
from pudimd.config.yamledit import Document, assign, plain

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

__all__ = ["alerting_edit_routes"]


def _json(body: Any, *, status: int = 200, etag: str | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"ETag": etag} if etag else None,
    )


class _NamedList:
    """A list of named mappings under ``alerting`` (``receivers``, ``rules``)."""

    def __init__(self, daemon: Daemon, edits: EditContext, key: str, noun: str) -> None:
        self.daemon = daemon
        self.edits = edits
        self.key = key
        self.noun = noun

    def _secrets(self) -> list[tuple[str, ...]]:
        if self.key != "receivers":
            return []
        paths: list[tuple[str, ...]] = []
        for cls in self.daemon.host.types("notifier").values():
            settings = getattr(cls, "Settings", None)
            if settings is not None:
                paths += [(config_key(cls), *p) for p in secret_paths(settings)]
        return paths

    def _redact(self, item: Any) -> Any:
        return redact(item, self._secrets()) if isinstance(item, dict) else item

    def _guard(self) -> None:
        config = self.daemon.config
        if self.key == "receivers" and config is not None and config.alertmanager_config_file:
            raise Problem(
                409,
                f"receivers are in {config.alertmanager_config_file} "
                "(alertmanager_config_file): edit that file",
            )

    async def _items(self) -> list[dict[str, Any]]:
        snapshot = await self.edits.editor.snapshot()
        section = snapshot.doc.data().get("alerting") or {}
        items = section.get(self.key) if isinstance(section, dict) else None
        if self.key == "receivers" and not items and self.daemon.config is not None:
            return self._from_running()
        return [x for x in items or [] if isinstance(x, dict)]

    def _from_running(self) -> list[dict[str, Any]]:
        """Receivers of an alertmanager_config_file, as the running config has them."""
        config = self.daemon.config
        assert config is not None
        receivers = getattr(config.alerting, "receivers", [])
        return [r.model_dump(mode="json", by_alias=True, exclude_defaults=True) for r in receivers]

    async def list(self, request: web.Request) -> web.StreamResponse:
        secrets = self._secrets()
        return _json({self.key: [redact(x, secrets) for x in await self._items()]})

    async def get(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        for item in await self._items():
            if item.get("name") == name:
                return _json(redact(item, self._secrets()), etag=item_etag(item))
        raise Problem(404, f"no {self.noun} named {name!r}")

    async def put(self, request: web.Request) -> web.StreamResponse:
        self._guard()
        name = request.match_info["name"]
        check_name(name, "name")
        body = await read_body(request)
        if not isinstance(body, dict):
            raise Problem(422, f"a {self.noun} is an object")
        body = {"name": name, **{k: v for k, v in body.items() if k != "name"}}
        created: list[bool] = []
        found: dict[str, Any] = {"after": body}

        def change(doc: Document) -> None:
            def edit(node: Any) -> None:
                section = node.setdefault("alerting", {})
                items = section.setdefault(self.key, [])
                for entry in items:
                    if isinstance(entry, dict) and entry.get("name") == name:
                        found["before"] = plain(entry)
                        assign(entry, body)
                        return
                items.append(body)
                created.append(True)

            doc.edit_section("alerting", edit)

        edited = await self.edits.run(
            request, change, action=f"{self.key}.put", audit_from=found, redact=self._redact
        )
        return _json(
            redact(body, self._secrets()),
            status=201 if created and edited.changed else 200,
            etag=item_etag(body),
        )

    async def delete(self, request: web.Request) -> web.StreamResponse:
        self._guard()
        name = request.match_info["name"]

        found: dict[str, Any] = {}

        def change(doc: Document) -> None:
            def edit(node: Any) -> None:
                items = (node.get("alerting") or {}).get(self.key) or []
                for i, entry in enumerate(items):
                    if isinstance(entry, dict) and entry.get("name") == name:
                        found["before"] = plain(entry)
                        del items[i]
                        return

            doc.edit_section("alerting", edit)
            if "before" not in found:
                raise Problem(404, f"no {self.noun} named {name!r}")

        await self.edits.run(
            request,
            change,
            action=f"{self.key}.delete",
            status=204,
            audit_from=found,
            redact=self._redact,
        )
        return web.Response(status=204)


class _Routes:
    def __init__(self, daemon: Daemon, edits: EditContext) -> None:
        self.daemon = daemon
        self.edits = edits

    async def get(self, request: web.Request) -> web.StreamResponse:
        snapshot = await self.edits.editor.snapshot()
        section = snapshot.doc.data().get("alerting") or {}
        route = section.get("route") if isinstance(section, dict) else None
        if route is None and self.daemon.config is not None:
            running = self.daemon.config.alerting.route
            route = (
                None
                if running is None
                else running.model_dump(mode="json", by_alias=True, exclude_defaults=True)
            )
        return _json({"route": route}, etag=item_etag(route))

    async def put(self, request: web.Request) -> web.StreamResponse:
        config = self.daemon.config
        if config is not None and config.alertmanager_config_file:
            raise Problem(409, f"the route tree is in {config.alertmanager_config_file}: edit it")
        body = await read_body(request)
        route = body.get("route", body) if isinstance(body, dict) else body
        if not isinstance(route, dict):
            raise Problem(422, "the route tree is an object (with a receiver)")

        found: dict[str, Any] = {"after": route}

        def change(doc: Document) -> None:
            def edit(node: Any) -> None:
                section = node.setdefault("alerting", {})
                if isinstance(section.get("route"), dict):
                    found["before"] = plain(section["route"])
                    assign(section["route"], route)
                else:
                    section["route"] = route

            doc.edit_section("alerting", edit)

        await self.edits.run(request, change, action="routes.put", audit_from=found)
        return _json({"route": route}, etag=item_etag(route))


class _Silences:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _alerting(self) -> Any:
        if self.daemon.alerting is None:
            raise Problem(503, "alerting is not running")
        return self.daemon.alerting

    async def list(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        matchers = matchers_param(request.query.getall("filter", []))
        now = alerting.clock()
        found = sort_silences(alerting.silences.query(matchers), now)
        return _json({"silences": [gettable_silence(s, now) for s in found]})

    async def post(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        body = await read_body(request)
        if isinstance(body, dict) and not body.get("createdBy"):
            body = {**body, "createdBy": actor(request)}
        silence = postable_silence(body)
        try:
            silence_id = await alerting.put_silence(silence)
        except SilenceNotFound:
            raise Problem(404, "silence not found") from None
        except SilenceError as exc:
            raise Problem(422, f"silence invalid: {exc}") from None
        return _json({"silenceID": silence_id}, status=201 if not body.get("id") else 200)

    async def get(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        try:
            silence = alerting.silences.get(request.match_info["id"])
        except SilenceNotFound:
            raise Problem(404, "silence not found") from None
        return _json(gettable_silence(silence, alerting.clock()))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        silence_id = request.match_info["id"]
        try:
            if alerting.silences.get(silence_id).state(alerting.clock()) != "expired":
                await alerting.expire_silence(silence_id)
        except SilenceNotFound:
            raise Problem(404, "silence not found") from None
        except SilenceError as exc:
            raise Problem(422, str(exc)) from None
        return web.Response(status=204)


def alerting_edit_routes(daemon: Daemon, edits: EditContext) -> list[web.RouteDef]:
    receivers = _NamedList(daemon, edits, "receivers", "receiver")
    rules = _NamedList(daemon, edits, "rules", "rule")
    routes = _Routes(daemon, edits)
    silences = _Silences(daemon)
    out = []
    for prefix, api in (("/api/v1/receivers", receivers), ("/api/v1/rules", rules)):
        out += [
            web.get(prefix, answers_problems(api.list)),
            web.get(prefix + "/{name}", answers_problems(api.get)),
            web.put(prefix + "/{name}", answers_problems(api.put)),
            web.delete(prefix + "/{name}", answers_problems(api.delete)),
        ]
    return [
        *out,
        web.get("/api/v1/routes", answers_problems(routes.get)),
        web.put("/api/v1/routes", answers_problems(routes.put)),
        web.get("/api/v1/silences", answers_problems(silences.list)),
        web.post("/api/v1/silences", answers_problems(silences.post)),
        web.get("/api/v1/silences/{id}", answers_problems(silences.get)),
        web.delete("/api/v1/silences/{id}", answers_problems(silences.delete)),
    ]
