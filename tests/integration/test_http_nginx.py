"""The ``http`` probe against a real nginx (started from /usr/sbin with a temporary config)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pudimd_plugins.probes.http import HttpProbe, HttpSettings

from pudimd.results import ProbeResult
from tests.helpers import free_port
from tests.nginx import run_nginx

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

_SERVER = """
    server {{
        listen 127.0.0.1:{port};
        location = /health {{ default_type text/plain; return 200 "status: ok\\n"; }}
        location = /moved {{ return 301 /health; }}
        location = /loop {{ return 302 /loop; }}
        location /static/ {{ alias {tmp}/html/; }}
        location / {{ return 404; }}
    }}
"""


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[str]:
    """Base URL of an nginx running for this test only."""
    (tmp_path / "html").mkdir()
    (tmp_path / "html" / "page.html").write_text("<h1>static page</h1>\n" * 50)
    port = free_port()
    with run_nginx(tmp_path, _SERVER.format(port=port, tmp=tmp_path), port):
        yield f"http://127.0.0.1:{port}"


async def probe(url: str, **settings: Any) -> ProbeResult:
    instance = HttpProbe(HttpSettings(**settings))
    try:
        return await instance.check(url, 5.0)
    finally:
        await instance.aclose()


async def test_nginx_200_with_body_check(nginx: str) -> None:
    result = await probe(f"{nginx}/health", body_contains="status: ok")
    assert result.success, result.message
    assert result.status == 200
    assert result.metrics["http_version"] == 1.1
    assert result.metrics["content_length"] == len("status: ok\n")


async def test_nginx_static_file(nginx: str) -> None:
    result = await probe(f"{nginx}/static/page.html", fail_if_body_not_matches_regex=["<h1>"])
    assert result.success, result.message
    assert result.metrics["body_bytes"] == len("<h1>static page</h1>\n") * 50


async def test_nginx_404_fails(nginx: str) -> None:
    result = await probe(f"{nginx}/nothing-here")
    assert not result.success
    assert result.message == "status 404 not in [200..299]"


async def test_nginx_301_redirect_followed_or_reported(nginx: str) -> None:
    followed = await probe(f"{nginx}/moved", body_contains="ok")
    reported = await probe(f"{nginx}/moved", follow_redirects=False, valid_status_codes=[301])
    assert followed.success, followed.message
    assert followed.metrics["redirects"] == 1
    assert reported.success, reported.message
    assert reported.status == 301


async def test_nginx_redirect_loop_hits_the_limit(nginx: str) -> None:
    result = await probe(f"{nginx}/loop", max_redirects=5)
    assert result.message == "too many redirects (more than 5)"


async def test_nginx_many_concurrent_checks_all_succeed(nginx: str) -> None:
    instance = HttpProbe(HttpSettings(body_contains="ok"))
    results = await asyncio.gather(*(instance.check(f"{nginx}/health", 5.0) for _ in range(200)))
    await instance.aclose()
    assert all(r.success for r in results), {r.message for r in results}
