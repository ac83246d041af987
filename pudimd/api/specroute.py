"""Serving the OpenAPI document and its docs page.  The document is built on its first
request: its ~75 models (:mod:`pudimd.api.schemas`) are not loaded by a daemon nobody
asks for it."""

from __future__ import annotations

import anyio
import orjson
from aiohttp import web

__all__ = ["install"]

JSON = "application/json"


class _Spec:
    """The document's bytes, once built."""

    def __init__(self) -> None:
        self.body: bytes | None = None
        self.lock = anyio.Lock()


SPEC: web.AppKey[_Spec] = web.AppKey("pudimd.openapi", _Spec)


def _build() -> bytes:
    from pudimd.api.openapi import build_spec

    return orjson.dumps(build_spec())


async def _serve(request: web.Request) -> web.Response:
    spec = request.app[SPEC]
    if spec.body is None:
        async with spec.lock:
            if spec.body is None:
                spec.body = await anyio.to_thread.run_sync(_build)
    return web.Response(body=spec.body, content_type=JSON)


def install(app: web.Application) -> None:
    """Serve ``/api/v1/openapi.json`` and the docs page in ``app``."""
    from pudimd.api import apidocs

    app[SPEC] = _Spec()
    app.router.add_get("/api/v1/openapi.json", _serve)
    apidocs.add_routes(app)
