"""The OpenAPI document of ``/api/v1``: a valid OpenAPI 3.1 document that describes every
``/api/v1`` route of the application and nothing else, served without credentials with
its docs page."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pudimd.api.app import make_app
from pudimd.api.openapi import OPERATIONS, build_spec
from tests.unit.api_harness import Api, served

pytestmark = pytest.mark.anyio

CONFIG = """\
targets:
  - name: web
    probe: echo
    target: a.example
    interval: 1h
"""
_OWN = {"/api/v1/openapi.json", "/api/v1/docs", "/api/v1/docs/app.js", "/api/v1/docs/app.css"}
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
async def api(tmp_path: Path, migrated: Path) -> AsyncIterator[Api]:
    async with served(tmp_path, migrated, CONFIG) as run:
        yield run


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(x) for x in node)) if node else set()
    return set()


def test_the_document_is_valid_openapi_3_1() -> None:
    spec = build_spec()
    assert spec["openapi"].startswith("3.1")
    try:
        from openapi_spec_validator import validate  # type: ignore[import-not-found]
    except ImportError:
        if os.environ.get("CI") == "true":
            pass  # the validator schemathesis ships (below) is the one that must be there
        validate = None
    if validate is not None:
        validate(spec)
    # schemathesis's own validator of OpenAPI 3.1 (the meta-schema of the spec)
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    OPENAPI_31_VALIDATOR.validate(spec)
    import schemathesis

    loaded = schemathesis.openapi.from_dict(spec)
    results = list(loaded.get_all_operations())
    ops = [result.ok() for result in results]  # type: ignore[union-attr]
    assert len(ops) == len(OPERATIONS)


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    import jsonschema_rs

    spec = build_spec()
    for name, schema in spec["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_every_reference_resolves() -> None:
    spec = build_spec()
    for ref in _refs(spec):
        assert ref.startswith("#/components/"), ref
        node: Any = spec
        for part in ref[2:].split("/"):
            assert part in node, ref
            node = node[part]


def test_every_error_is_a_problem_document_and_operation_ids_are_unique() -> None:
    spec = build_spec()
    ids = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert method in _METHODS
            ids.append(op["operationId"])
            for status, reply in op["responses"].items():
                if int(status) >= 400 and path != "/api/v1/alertmanager/webhook":
                    assert "application/problem+json" in reply["content"], (path, status)
            if op.get("security", [True]) != []:
                assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
            assert "Minimum role" in op["description"] or op.get("security") == []
    assert len(ids) == len(set(ids))


async def test_the_document_describes_every_route_and_only_them(api: Api) -> None:
    app = make_app(api.daemon)  # the running daemon's routes, as its own app has them
    app.freeze()
    app_routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
        and route.resource.canonical not in _OWN
    }
    await app.cleanup()
    described = {(op.method, op.route_path) for op in OPERATIONS}
    assert app_routes - described == set(), "routes the OpenAPI document lacks"
    assert described - app_routes == set(), "operations with no route"


async def test_the_document_and_its_page_are_served_without_credentials(api: Api) -> None:
    async with aiohttp.ClientSession() as anonymous:
        base = f"http://127.0.0.1:{api.daemon.port}/api/v1"
        async with anonymous.get(base + "/openapi.json") as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert await resp.json() == build_spec()
        async with anonymous.get(base + "/docs") as resp:
            assert resp.status == 200
            page = await resp.text()
            assert resp.content_type == "text/html"
            assert '<script src="/api/v1/docs/app.js"' in page
            assert "<script>" not in page  # nothing inline: the CSP default-src 'self' holds
            assert "default-src 'self'" in resp.headers.get("Content-Security-Policy", "")
        async with anonymous.get(base + "/docs/app.js") as resp:
            assert resp.status == 200
            assert "openapi.json" in await resp.text()
        async with anonymous.get(base + "/docs/app.css") as resp:
            assert resp.status == 200
        async with anonymous.get(base + "/targets") as resp:
            assert resp.status == 401  # the rest still needs credentials
