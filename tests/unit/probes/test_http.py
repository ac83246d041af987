"""The ``http`` probe against real aiohttp servers on loopback (TLS certificates by trustme)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from pudimd_plugins.probes.http import HttpProbe, HttpSettings, pudimd_probe_types
from pydantic import ValidationError

from tests.helpers import free_port, require_ipv6_loopback, run_check

pytestmark = pytest.mark.anyio

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(
    routes: Mapping[str, Handler],
    host: str = "127.0.0.1",
    ssl_context: ssl.SSLContext | None = None,
    port: int | None = None,
) -> AsyncIterator[int]:
    """Run an aiohttp app with ``routes`` (any method) on ``host``; yield its port."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    port = port or free_port()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def check(url: str, within: float = 5.0, **settings: Any) -> Any:
    return await run_check(HttpProbe, url, within, **settings)


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="all ok here")


async def not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text="nope")


def redirect_to(location: str, status: int = 302) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    return handler


# ----------------------------------------------------------------------------- basics


def test_plugin_registers_the_http_type() -> None:
    assert pudimd_probe_types() == [HttpProbe]
    assert HttpProbe.type == "http"
    assert HttpProbe.Settings is HttpSettings


def test_settings_reject_unknown_fields_and_bad_regexes() -> None:
    with pytest.raises(ValidationError):
        HttpSettings(nope=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="invalid regex"):
        HttpSettings(fail_if_body_matches_regex=["("])
    with pytest.raises(ValidationError, match="not both"):
        HttpSettings(username="u", bearer_token="t")


async def test_200_succeeds_with_phases_and_metrics() -> None:
    async with serving({"/": ok}) as port:
        result = await check(f"http://127.0.0.1:{port}/")
    assert result.success, result.message
    assert result.status == 200
    assert result.message == ""
    assert set(result.phases) == {"dns", "connect", "tls", "first_byte", "transfer"}
    assert result.phases["connect"] > 0
    assert result.phases["first_byte"] > 0
    assert result.phases["tls"] == 0
    assert result.metrics["content_length"] == len("all ok here")
    assert result.metrics["body_bytes"] == len("all ok here")
    assert result.metrics["redirects"] == 0
    assert result.metrics["http_version"] == 1.1
    assert result.metrics["tls"] == 0
    assert result.metrics["ip_protocol"] == 4
    assert "cert_expiry_timestamp" not in result.metrics
    assert 0 < result.duration >= sum(result.phases.values())


async def test_404_fails_naming_the_status() -> None:
    async with serving({"/missing": not_found}) as port:
        result = await check(f"http://127.0.0.1:{port}/missing")
    assert not result.success
    assert result.status == 404
    assert result.message == "status 404 not in [200..299]"


async def test_valid_status_codes_accepts_listed_codes_only() -> None:
    async with serving({"/missing": not_found, "/": ok}) as port:
        accepted = await check(f"http://127.0.0.1:{port}/missing", valid_status_codes=[404])
        refused = await check(f"http://127.0.0.1:{port}/", valid_status_codes=[201, 404])
    assert accepted.success
    assert not refused.success
    assert refused.message == "status 200 not in [201, 404]"


async def test_each_check_uses_a_fresh_connection() -> None:
    peers: list[int] = []

    async def remember(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername")[1])
        return web.Response(text="ok")

    async with serving({"/": remember}) as port:
        probe = HttpProbe(HttpSettings())
        for _ in range(3):
            assert (await probe.check(f"http://127.0.0.1:{port}/", 5)).success
        await probe.aclose()
    assert len(set(peers)) == 3


# -------------------------------------------------------------------------- redirects


async def test_redirect_chain_is_followed() -> None:
    routes = {"/a": redirect_to("/b", 301), "/b": redirect_to("/c", 307), "/c": ok}
    async with serving(routes) as port:
        result = await check(f"http://127.0.0.1:{port}/a", body_contains="all ok")
    assert result.success, result.message
    assert result.status == 200
    assert result.metrics["redirects"] == 2


async def test_redirect_to_another_server_by_absolute_url() -> None:
    async with (
        serving({"/": ok}) as target,
        serving({"/": redirect_to(f"http://localhost:{target}/")}) as port,
    ):
        result = await check(f"http://127.0.0.1:{port}/", ip_version="ipv4")
    assert result.success, result.message
    assert result.metrics["redirects"] == 1


async def test_redirect_not_followed_reports_the_3xx() -> None:
    async with serving({"/a": redirect_to("/b"), "/b": ok}) as port:
        failed = await check(f"http://127.0.0.1:{port}/a", follow_redirects=False)
        accepted = await check(
            f"http://127.0.0.1:{port}/a", follow_redirects=False, valid_status_codes=[302]
        )
    assert not failed.success
    assert failed.status == 302
    assert failed.message == "status 302 not in [200..299]"
    assert failed.metrics["redirects"] == 0
    assert accepted.success


async def test_too_many_redirects_fail() -> None:
    routes = {"/r/{n}": _counting_redirect}
    async with serving(routes) as port:
        result = await check(f"http://127.0.0.1:{port}/r/0", max_redirects=3)
        enough = await check(f"http://127.0.0.1:{port}/r/6", max_redirects=3)
    assert not result.success
    assert result.message == "too many redirects (more than 3)"
    assert enough.success, enough.message
    assert enough.metrics["redirects"] == 3


async def _counting_redirect(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    if n >= 9:
        return web.Response(text="end")
    return web.Response(status=302, headers={"Location": f"/r/{n + 1}"})


async def test_post_redirected_by_303_becomes_a_get_without_body() -> None:
    seen: list[tuple[str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, await request.read()))
        if request.path == "/form":
            return web.Response(status=303, headers={"Location": "/done"})
        return web.Response(text="done")

    async with serving({"/form": record, "/done": record}) as port:
        result = await check(f"http://127.0.0.1:{port}/form", method="POST", body="a=1")
    assert result.success, result.message
    assert seen == [("POST", b"a=1"), ("GET", b"")]


# ------------------------------------------------------------------------------- body


async def test_body_contains_passes_and_fails() -> None:
    async with serving({"/": ok}) as port:
        found = await check(f"http://127.0.0.1:{port}/", body_contains="ok here")
        missing = await check(f"http://127.0.0.1:{port}/", body_contains="healthy")
    assert found.success
    assert not missing.success
    assert missing.message == "body does not contain 'healthy'"
    assert missing.status == 200


async def test_body_regexes_pass_and_fail() -> None:
    async with serving({"/": ok}) as port:
        url = f"http://127.0.0.1:{port}/"
        good = await check(
            url, fail_if_body_not_matches_regex=[r"all \w+"], fail_if_body_matches_regex=["err"]
        )
        bad_match = await check(url, fail_if_body_matches_regex=[r"o+k"])
        no_match = await check(url, fail_if_body_not_matches_regex=[r"^healthy$"])
    assert good.success, good.message
    assert bad_match.message == "body matches /o+k/"
    assert no_match.message == "body does not match /^healthy$/"


async def test_chunked_body_is_read_whole() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"first ", b"second ", b"third"):
            await response.write(part)
        await response.write_eof()
        return response

    async with serving({"/": chunked}) as port:
        result = await check(f"http://127.0.0.1:{port}/", body_contains="second third")
    assert result.success, result.message
    assert result.metrics["body_bytes"] == len("first second third")
    assert "content_length" not in result.metrics


async def test_gzip_body_is_decoded_before_matching() -> None:
    async def compressed(request: web.Request) -> web.Response:
        response = web.Response(text="compressed hello " * 100)
        response.enable_compression()
        return response

    async with serving({"/": compressed}) as port:
        result = await check(
            f"http://127.0.0.1:{port}/",
            headers={"Accept-Encoding": "gzip"},
            body_contains="hello compressed",
        )
    assert result.success, result.message
    assert result.metrics["body_bytes"] == len("compressed hello " * 100)
    assert result.metrics["content_length"] < result.metrics["body_bytes"]


async def test_body_larger_than_max_body_bytes_fails() -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async with serving({"/": big}) as port:
        result = await check(f"http://127.0.0.1:{port}/", max_body_bytes=1000)
        fits = await check(f"http://127.0.0.1:{port}/", max_body_bytes=5000)
    assert not result.success
    assert result.message == "body larger than max_body_bytes (1000)"
    assert fits.success


async def test_head_request_reads_no_body() -> None:
    async with serving({"/": ok}) as port:
        result = await check(f"http://127.0.0.1:{port}/", method="head")
    assert result.success, result.message
    assert result.metrics["body_bytes"] == 0


# ------------------------------------------------------------------ request and auth


async def test_method_headers_and_body_reach_the_server() -> None:
    async def echo(request: web.Request) -> web.Response:
        text = await request.text()
        return web.Response(
            text=f"{request.method}|{request.headers.get('X-Probe')}|{text}|"
            f"{request.headers.get('User-Agent')}|{request.host}"
        )

    async with serving({"/echo": echo}) as port:
        result = await check(
            f"http://127.0.0.1:{port}/echo?x=1",
            method="PUT",
            headers={"X-Probe": "yes"},
            body="payload é",
            body_contains="PUT|yes|payload é|pudimd/",
        )
        host = await check(
            f"http://127.0.0.1:{port}/echo",
            headers={"Host": "example.test", "User-Agent": "custom"},
            body_contains="|custom|example.test",
        )
    assert result.success, result.message
    assert host.success, host.message


def _auth_required(expected: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="who are you")
        return web.Response(text="welcome")

    return handler


async def test_basic_auth_is_sent() -> None:
    token = base64.b64encode(b"alice:s3cret").decode()
    async with serving({"/": _auth_required(f"Basic {token}")}) as port:
        url = f"http://127.0.0.1:{port}/"
        good = await check(url, username="alice", password="s3cret")
        bad = await check(url, username="alice", password="wrong")
        anonymous = await check(url)
        in_url = await check(f"http://alice:s3cret@127.0.0.1:{port}/")
    assert good.success, good.message
    assert not bad.success
    assert bad.message == "status 401 not in [200..299]"
    assert not anonymous.success
    assert in_url.success, in_url.message


async def test_bearer_token_from_a_file_is_sent(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("t0ken\n")
    async with serving({"/": _auth_required("Bearer t0ken")}) as port:
        result = await check(f"http://127.0.0.1:{port}/", bearer_token_file=str(secret))
    assert result.success, result.message


async def test_credentials_do_not_follow_a_redirect_to_another_origin() -> None:
    async def show(request: web.Request) -> web.Response:
        return web.Response(text=f"auth={request.headers.get('Authorization')}")

    async with (
        serving({"/": show}) as other,
        serving({"/": redirect_to(f"http://localhost:{other}/")}) as port,
    ):
        result = await check(
            f"http://127.0.0.1:{port}/", bearer_token="t", body_contains="auth=None"
        )
        by_header = await check(
            f"http://127.0.0.1:{port}/",
            headers={"Authorization": "Token secret"},
            body_contains="auth=None",
        )
    assert result.success, result.message
    assert by_header.success, "an Authorization set in headers stays with its origin too"


# ----------------------------------------------------------------------- failures


async def test_slow_server_times_out_naming_the_phase() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(text="late")

    async with serving({"/": slow}) as port:
        started = time.perf_counter()
        result = await check(f"http://127.0.0.1:{port}/", within=0.3)
        elapsed = time.perf_counter() - started
    assert not result.success
    assert result.message == "timeout after 0.3s during first_byte"
    assert elapsed < 2
    assert result.phases["connect"] > 0


async def test_refused_port_fails_with_connection_refused() -> None:
    result = await check(f"http://127.0.0.1:{free_port()}/")
    assert not result.success
    assert result.message == "connection refused"
    assert result.status is None


async def test_unresolvable_host_fails_at_dns() -> None:
    result = await check("http://does-not-exist.invalid/")
    assert not result.success
    assert result.message.startswith("resolving 'does-not-exist.invalid'")


async def test_invalid_url_fails_without_raising() -> None:
    result = await check("ftp://example.test/")
    assert not result.success
    assert "expected http:// or https://" in result.message


async def test_server_closing_without_answer_fails() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await check(f"http://127.0.0.1:{port}/")
    assert not result.success
    assert result.message == "connection closed before a response"


async def test_ipv6_literal_url() -> None:
    require_ipv6_loopback()
    async with serving({"/": ok}, host="::1") as port:
        result = await check(f"http://[::1]:{port}/")
    assert result.success, result.message
    assert result.metrics["ip_protocol"] == 6


async def test_ip_version_picks_the_address_family() -> None:
    async with serving({"/": ok}) as port:
        ipv4 = await check(f"http://localhost:{port}/", ip_version="ipv4", ip_fallback=False)
    assert ipv4.success, ipv4.message
    assert ipv4.metrics["ip_protocol"] == 4


# ---------------------------------------------------------------------------- proxy


@asynccontextmanager
async def proxying(seen: list[bytes]) -> AsyncIterator[int]:
    """A minimal HTTP proxy (absolute-form requests and CONNECT); records request lines."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0]
        seen.append(line)
        method, where, _ = line.split(b" ")
        if method == b"CONNECT":
            host, _, port = where.decode().rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = where.decode()
            hostport = url.split("/")[2]
            host, _, port = hostport.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(head)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_http_through_a_proxy_uses_absolute_form() -> None:
    seen: list[bytes] = []
    async with serving({"/": ok}) as port, proxying(seen) as proxy:
        result = await check(f"http://127.0.0.1:{port}/?q=1", proxy=f"http://127.0.0.1:{proxy}")
    assert result.success, result.message
    assert seen == [f"GET http://127.0.0.1:{port}/?q=1 HTTP/1.1".encode()]


# ------------------------------------------------------------------------------ TLS


def server_context(ca: trustme.CA, *names: str, client_ca: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    if client_ca:
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def test_tls_verified_with_ca_file(ca: trustme.CA, ca_file: Path) -> None:
    async with serving({"/": ok}, ssl_context=server_context(ca, "127.0.0.1")) as port:
        result = await check(f"https://127.0.0.1:{port}/", ca_file=ca_file, fail_if_not_ssl=True)
    assert result.success, result.message
    assert result.metrics["tls"] == 1
    assert result.phases["tls"] > 0
    assert result.phases["connect"] > 0
    expiry = result.metrics["cert_expiry_timestamp"]
    assert expiry > time.time()  # trustme certificates last until the year 3000


async def test_cert_expiry_is_the_earliest_of_the_chain(ca: trustme.CA, ca_file: Path) -> None:
    import datetime

    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", not_after=soon).configure_cert(ctx)
    async with serving({"/": ok}, ssl_context=ctx) as port:
        result = await check(f"https://127.0.0.1:{port}/", ca_file=ca_file)
        unverified = await check(f"https://127.0.0.1:{port}/", verify=False)
    assert result.success, result.message
    assert abs(result.metrics["cert_expiry_timestamp"] - soon.timestamp()) < 2
    assert abs(unverified.metrics["cert_expiry_timestamp"] - soon.timestamp()) < 2


async def test_tls_unknown_ca_fails_with_the_verify_error(ca: trustme.CA) -> None:
    async with serving({"/": ok}, ssl_context=server_context(ca, "127.0.0.1")) as port:
        result = await check(f"https://127.0.0.1:{port}/")
    assert not result.success
    assert result.message.startswith("TLS: ")
    assert "certificate" in result.message
    assert result.metrics["tls"] == 0


async def test_tls_verify_false_accepts_any_certificate(ca: trustme.CA) -> None:
    async with serving({"/": ok}, ssl_context=server_context(ca, "127.0.0.1")) as port:
        result = await check(f"https://127.0.0.1:{port}/", verify=False)
    assert result.success, result.message
    assert result.metrics["tls"] == 1


async def test_tls_hostname_mismatch_fails(ca: trustme.CA, ca_file: Path) -> None:
    ctx = server_context(ca, "service.test")
    async with serving({"/": ok}, ssl_context=ctx) as port:
        result = await check(f"https://127.0.0.1:{port}/", ca_file=ca_file)
        named = await check(
            f"https://127.0.0.1:{port}/", ca_file=ca_file, server_name="service.test"
        )
    assert not result.success
    assert "mismatch" in result.message
    assert named.success, named.message


async def test_tls_client_certificate(ca: trustme.CA, ca_file: Path, tmp_path: Path) -> None:
    client = ca.issue_cert("probe@pudimd.test")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    ctx = server_context(ca, "127.0.0.1", client_ca=True)
    async with serving({"/": ok}, ssl_context=ctx) as port:
        url = f"https://127.0.0.1:{port}/"
        with_cert = await check(url, ca_file=ca_file, cert_file=cert, key_file=key)
        without = await check(url, ca_file=ca_file)
    assert with_cert.success, with_cert.message
    assert not without.success


async def test_fail_if_ssl_and_not_ssl(ca: trustme.CA, ca_file: Path) -> None:
    async with serving({"/": ok}, ssl_context=server_context(ca, "127.0.0.1")) as port:
        result = await check(f"https://127.0.0.1:{port}/", ca_file=ca_file, fail_if_ssl=True)
    async with serving({"/": ok}) as port:
        plain = await check(f"http://127.0.0.1:{port}/", fail_if_not_ssl=True)
    assert result.message == "response came over TLS (fail_if_ssl)"
    assert plain.message == "response did not come over TLS (fail_if_not_ssl)"


async def test_https_redirect_from_http(ca: trustme.CA, ca_file: Path) -> None:
    ctx = server_context(ca, "127.0.0.1")
    async with (
        serving({"/": ok}, ssl_context=ctx) as secure,
        serving({"/": redirect_to(f"https://127.0.0.1:{secure}/")}) as port,
    ):
        result = await check(f"http://127.0.0.1:{port}/", ca_file=ca_file)
    assert result.success, result.message
    assert result.metrics["tls"] == 1
    assert result.metrics["redirects"] == 1
    assert "cert_expiry_timestamp" in result.metrics


async def test_https_through_a_proxy_uses_connect(ca: trustme.CA, ca_file: Path) -> None:
    seen: list[bytes] = []
    ctx = server_context(ca, "127.0.0.1")
    async with serving({"/": ok}, ssl_context=ctx) as port, proxying(seen) as proxy:
        result = await check(
            f"https://127.0.0.1:{port}/", ca_file=ca_file, proxy=f"http://127.0.0.1:{proxy}"
        )
    assert result.success, result.message
    assert seen == [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]
    assert result.phases["tls"] > 0


# ------------------------------------------------------------------------- keep-alive


async def test_keepalive_reuses_one_connection_and_measures_only_the_exchange() -> None:
    peers: list[int] = []

    async def remember(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername")[1])
        return web.Response(text="ok")

    async with serving({"/": remember}) as port:
        probe = HttpProbe(HttpSettings(keepalive=True))
        results = [await probe.check(f"http://127.0.0.1:{port}/", 5) for _ in range(3)]
        await probe.aclose()
    assert all(r.success for r in results)
    assert len(set(peers)) == 1
    assert [r.metrics["reused"] for r in results] == [0.0, 1.0, 1.0]
    assert results[0].phases["connect"] > 0
    assert results[2].phases["connect"] == 0 and results[2].phases["first_byte"] > 0


async def test_keepalive_reconnects_when_the_server_closed_the_connection() -> None:
    peers: list[int] = []

    async def remember(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername")[1])
        return web.Response(text="ok")

    probe = HttpProbe(HttpSettings(keepalive=True))
    async with serving({"/": remember}) as port:
        assert (await probe.check(f"http://127.0.0.1:{port}/", 5)).success
    # The server went away (closing the kept connection) and came back on the same port.
    async with serving({"/": remember}, port=port) as port:
        result = await probe.check(f"http://127.0.0.1:{port}/", 5)
    await probe.aclose()
    assert result.success, result.message
    assert result.metrics["reused"] == 0.0 and len(set(peers)) == 2


async def test_keepalive_is_not_used_when_the_server_says_close() -> None:
    peers: list[int] = []

    async def closing(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername")[1])
        return web.Response(text="ok", headers={"Connection": "close"})

    async with serving({"/": closing}) as port:
        probe = HttpProbe(HttpSettings(keepalive=True))
        results = [await probe.check(f"http://127.0.0.1:{port}/", 5) for _ in range(2)]
        await probe.aclose()
    assert all(r.success and r.metrics["reused"] == 0.0 for r in results)
    assert len(set(peers)) == 2


async def test_keepalive_retries_once_when_a_kept_connection_dies_unanswered() -> None:
    """The race a kept connection always has: the server drops it as the request goes out."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # a second request on this connection: drop it (the retried connection sees the
        # client close first, at aclose)
        with contextlib.suppress(asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe = HttpProbe(HttpSettings(keepalive=True))
    try:
        first = await probe.check(f"http://127.0.0.1:{port}/", 5)
        second = await probe.check(f"http://127.0.0.1:{port}/", 5)
    finally:
        await probe.aclose()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
    assert first.success and second.success, second.message
    assert second.metrics["reused"] == 0.0
    assert len(writers) == 2
