"""Blackbox-exporter compatibility: modules, the timeout rule, rendering, debug output,
errors, and the http/tcp adapters run against loopback servers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pudimd_plugins.probes._blackbox import http_settings, tcp_settings

from pudimd.blackbox import Metric
from pudimd.blackbox.modules import STOCK_MODULES, load_modules, parse_modules, probe_timeout
from pudimd.blackbox.render import debug_page, format_value, render
from pudimd.blackbox.runner import ModuleError, Runner, ip_hash, shared_metrics
from pudimd.config import ConfigError, load_config_text, schema_for
from pudimd.daemon import make_host
from pudimd.plugins import PluginHost
from pudimd.results import ProbeResult
from tests.helpers import free_port, missing

DEBIAN_FILE = Path("/etc/prometheus/blackbox.yml")
EXAMPLE_FILE = Path("/usr/share/doc/prometheus-blackbox-exporter/examples/example.yml")


# ------------------------------------------------------------------------------ modules


def test_stock_modules_exist_without_a_modules_file() -> None:
    modules = load_modules(None)
    for name in ("http_2xx", "http_post_2xx", "tcp_connect", "icmp", "dns", "ssh_banner"):
        assert name in modules
    assert modules["http_post_2xx"].block == {"method": "POST"}
    assert modules["icmp_ttl5"].timeout == 5.0


def test_debian_default_blackbox_yml_loads_unchanged() -> None:
    if not DEBIAN_FILE.exists():
        missing(f"{DEBIAN_FILE} (Debian package prometheus-blackbox-exporter)")
    modules = load_modules(DEBIAN_FILE)
    assert {"http_2xx", "pop3s_banner", "irc_banner", "icmp_ttl5"} <= set(modules)
    # the stock modules are the Debian file's: loading it changes none of them
    assert {n: m.raw for n, m in modules.items()} == {
        n: m.raw for n, m in parse_modules(STOCK_MODULES).items()
    }


def test_modules_file_adds_and_overrides_stock_modules(tmp_path: Path) -> None:
    file = tmp_path / "blackbox.yml"
    file.write_text(
        "modules:\n"
        "  http_2xx: {prober: http, timeout: 2s, http: {valid_status_codes: [200]}}\n"
        "  mine: {prober: tcp, timeout: 1m30s}\n"
    )
    modules = load_modules(file, {"inline": {"prober": "http"}})
    assert modules["http_2xx"].block == {"valid_status_codes": [200]}
    assert modules["http_2xx"].timeout == 2.0
    assert modules["mine"].timeout == 90.0
    assert modules["inline"].prober == "http"
    assert "tcp_connect" in modules


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("modules: {x: {prober: ftp}}", "modules.x.prober: unknown prober 'ftp'"),
        (
            "modules: {x: {prober: http, http: {methd: GET}}}",
            "modules.x.http: unknown field 'methd'",
        ),
        ("modules: {x: {prober: http, timeout: soon}}", "modules.x.timeout: invalid duration"),
        ("modules: {x: {prober: http, smtp: {}}}", "modules.x: unknown field 'smtp'"),
        ("modulez: {}", "unknown top-level field 'modulez'"),
        ("modules: [", "invalid YAML"),
    ],
)
def test_bad_modules_file_is_an_error_naming_file_and_field(
    tmp_path: Path, text: str, reason: str
) -> None:
    file = tmp_path / "blackbox.yml"
    file.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{file}: {reason}")):
        load_modules(file)


def test_config_loads_modules_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "bb.yml").write_text("modules: {mine: {prober: tcp}}\n")
    schema = schema_for(make_host(None))
    config = load_config_text(
        "probe_modules_file: bb.yml\nprobe_modules: {inl: {prober: http}}\n",
        schema,
        file=str(tmp_path / "pudimd.yaml"),
    )
    assert {"mine", "inl", "http_2xx"} <= set(config.blackbox_modules)


def test_bad_modules_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bb.yml").write_text("modules: {x: {prober: nope}}\n")
    schema = schema_for(make_host(None))
    with pytest.raises(ConfigError, match=r"probe_modules_file: .*bb\.yml: .*unknown prober"):
        load_config_text("probe_modules_file: bb.yml\n", schema, file=str(tmp_path / "p.yaml"))


# ------------------------------------------------------------------------------ timeout


@pytest.mark.parametrize(
    ("header", "module", "expected"),
    [
        (None, 0.0, 119.5),  # no header: 120 s less the 0.5 s offset
        ("3", 0.0, 2.5),
        ("10", 1.0, 1.0),  # the module's timeout when smaller
        ("3", 5.0, 2.5),  # the scrape budget when smaller
        ("0.2", 5.0, 5.0),  # a budget below zero: blackbox falls back to the module's
    ],
)
def test_timeout_follows_blackbox_rule(header: str | None, module: float, expected: float) -> None:
    assert probe_timeout(header, module) == pytest.approx(expected)


def test_unparseable_timeout_header_raises() -> None:
    with pytest.raises(ValueError, match="soon"):
        probe_timeout("soon", 0.0)


# ---------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (200.0, "200"),
        (0.0, "0"),
        (-1.0, "-1"),
        (1.1, "1.1"),
        (0.001624938, "0.001624938"),
        (1.4588e-05, "1.4588e-05"),
        (1445412480.0, "1.44541248e+09"),
        (3668918509.0, "3.668918509e+09"),
        (123456.5, "123456.5"),
        (float("nan"), "NaN"),
    ],
)
def test_values_are_written_like_go(value: float, text: str) -> None:
    assert format_value(value) == text


def test_render_groups_families_sorted_with_one_help_and_type() -> None:
    text = render(
        [
            Metric("probe_success", "Displays whether or not the probe was a success", 1.0),
            Metric("probe_http_duration_seconds", "By phase", 0.5, {"phase": "tls"}),
            Metric("probe_http_duration_seconds", "By phase", 0.25, {"phase": "connect"}),
            Metric("probe_x_info", "Info", 1.0, {"v": 'a"b\\c'}),
        ]
    )
    assert text == (
        "# HELP probe_http_duration_seconds By phase\n"
        "# TYPE probe_http_duration_seconds gauge\n"
        'probe_http_duration_seconds{phase="connect"} 0.25\n'
        'probe_http_duration_seconds{phase="tls"} 0.5\n'
        "# HELP probe_success Displays whether or not the probe was a success\n"
        "# TYPE probe_success gauge\n"
        "probe_success 1\n"
        "# HELP probe_x_info Info\n"
        "# TYPE probe_x_info gauge\n"
        'probe_x_info{v="a\\"b\\\\c"} 1\n'
    )


def test_debug_page_has_blackbox_layout() -> None:
    page = debug_page(["line one"], [Metric("probe_success", "h", 0.0)], "prober: tcp\n")
    assert page == (
        "Logs for the probe:\nline one\n"
        "\n\n\nMetrics that would have been returned:\n"
        "# HELP probe_success h\n# TYPE probe_success gauge\nprobe_success 0\n"
        "\n\n\nModule configuration:\nprober: tcp\n"
    )


def test_ip_hash_is_fnv1a_of_the_address_bytes() -> None:
    # the value blackbox_exporter 0.23 reports for 127.0.0.1
    assert ip_hash("127.0.0.1") == 3668918509.0
    assert ip_hash("not an ip") == 0.0


# ----------------------------------------------------------------------------- adapters


def test_http_module_fields_map_onto_http_settings(tmp_path: Path) -> None:
    settings = http_settings(
        {
            "method": "POST",
            "headers": {"X-A": "1"},
            "body": "hi",
            "valid_status_codes": [200, 204],
            "valid_http_versions": ["HTTP/1.1", "HTTP/2.0"],
            "no_follow_redirects": True,
            "fail_if_not_ssl": True,
            "fail_if_body_matches_regexp": ["^+error"],
            "fail_if_body_not_matches_regexp": ["ok"],
            "preferred_ip_protocol": "ip4",
            "ip_protocol_fallback": False,
            "basic_auth": {"username": "u", "password": "p"},
            "proxy_url": "http://127.0.0.1:3128",
            "compression": "gzip",
            "tls_config": {"insecure_skip_verify": True, "server_name": "example.org"},
        }
    )
    assert settings.method == "POST"
    assert settings.headers == {"X-A": "1", "Accept-Encoding": "gzip"}
    assert settings.valid_status_codes == [200, 204]
    assert settings.follow_redirects is False
    assert settings.fail_if_not_ssl is True
    assert settings.fail_if_body_matches_regex == ["^error"]
    assert settings.ip_version == "ipv4" and settings.ip_fallback is False
    assert settings.username == "u" and settings.password is not None
    assert settings.proxy == "http://127.0.0.1:3128"
    assert settings.verify is False and settings.server_name == "example.org"


def test_http_defaults_are_blackbox_defaults() -> None:
    settings = http_settings({})
    assert settings.ip_version == "ipv6" and settings.ip_fallback is True
    assert settings.follow_redirects is True and settings.verify is True


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"fail_if_header_matches": [{"header": "a", "regexp": "b"}]}, "fail_if_header_matches"),
        ({"oauth2": {"client_id": "x"}}, "oauth2"),
        ({"compression": "br"}, "compression"),
        ({"tls_config": {"min_version": "TLS13"}}, "tls_config.min_version"),
        ({"valid_http_versions": ["HTTP/2.0"]}, "valid_http_versions"),
    ],
)
def test_http_unsupported_field_is_named(block: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"http.{field}")):
        http_settings(block)


def test_tcp_query_response_maps_step_for_step() -> None:
    settings = tcp_settings(
        {
            "query_response": [
                {"expect": "^+OK (.+)$", "send": "HELLO ${1} a\\b"},
                {"send": ""},  # nothing to do: dropped, as blackbox does nothing
                {"expect": "^\\+OK", "starttls": True},
                {"send": "PING"},
            ],
            "tls_config": {"insecure_skip_verify": True},
        }
    )
    assert [s.model_dump() for s in settings.query_response] == [
        {"expect": "^OK (.+)$", "send": "HELLO ${1} a\\\\b\\n", "starttls": False},
        {"expect": "^\\+OK", "send": None, "starttls": True},
        {"expect": None, "send": "PING\\n", "starttls": False},
    ]
    assert settings.match_lines is True  # blackbox matches line by line
    assert settings.tls is False and settings.verify is False


def test_tcp_stock_and_example_modules_are_all_servable() -> None:
    modules = dict(load_modules(None))
    if EXAMPLE_FILE.exists():
        modules.update(load_modules(EXAMPLE_FILE))
    tcp = {name: m for name, m in modules.items() if m.prober == "tcp"}
    assert {"ssh_banner", "irc_banner", "pop3s_banner", "tcp_connect"} <= set(tcp)
    for module in tcp.values():
        if "source_ip_address" in module.block:
            continue
        tcp_settings(module.block)  # no ValueError: none answers 400
    if EXAMPLE_FILE.exists():
        starttls = tcp_settings(modules["smtp_starttls"].block)
        assert [s.starttls for s in starttls.query_response].count(True) == 1


def test_tcp_unknown_step_field_and_source_ip_are_refused_with_their_place() -> None:
    with pytest.raises(
        ValueError, match=re.escape("tcp.query_response[1]: unknown field 'labels'")
    ):
        tcp_settings({"query_response": [{"expect": "x"}, {"labels": [{"name": "a"}]}]})
    with pytest.raises(ValueError, match=re.escape("tcp.query_response[0].expect: invalid regex")):
        tcp_settings({"query_response": [{"expect": "("}]})
    with pytest.raises(ValueError, match=re.escape("tcp.source_ip_address")):
        tcp_settings({"source_ip_address": "127.0.0.1"})


# ------------------------------------------------------------------------ running modules


@pytest.fixture
async def web_server() -> AsyncIterator[int]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(
            text="all good", headers={"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}
        )

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no")

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/missing", missing)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def _runner(extra: str = "") -> Runner:
    host = PluginHost()
    host.load_entry_points()
    modules = load_modules(None, parse_and_raw(extra))
    return Runner(host, modules)


def parse_and_raw(text: str) -> dict[str, object]:
    import yaml_rs

    data = yaml_rs.loads(text) if text else {}
    assert isinstance(data, dict)
    return data


def _samples(metrics: list[Metric]) -> dict[str, float]:
    return {m.name + str(sorted(m.labels.items())): m.value for m in metrics}


@pytest.mark.anyio
async def test_http_2xx_success_exports_blackbox_metrics(web_server: int) -> None:
    runner = _runner()
    module = runner.module("http_2xx")
    outcome = await runner.run(module, f"127.0.0.1:{web_server}/", 5.0)  # no scheme: http://
    names = {m.name for m in outcome.metrics}
    assert {
        "probe_success", "probe_duration_seconds", "probe_dns_lookup_time_seconds",
        "probe_ip_protocol", "probe_ip_addr_hash", "probe_http_status_code",
        "probe_http_content_length", "probe_http_uncompressed_body_length",
        "probe_http_redirects", "probe_http_ssl", "probe_http_version",
        "probe_http_duration_seconds", "probe_failed_due_to_regex",
        "probe_http_last_modified_timestamp_seconds",
    } == names  # fmt: skip
    values = _samples(outcome.metrics)
    assert values["probe_success[]"] == 1.0
    assert values["probe_http_status_code[]"] == 200.0
    assert values["probe_http_content_length[]"] == 8.0
    assert values["probe_http_last_modified_timestamp_seconds[]"] == 1445412480.0
    assert values["probe_ip_protocol[]"] == 4.0
    phases = {m.labels["phase"] for m in outcome.metrics if m.labels}
    assert phases == {"resolve", "connect", "tls", "processing", "transfer"}
    assert any("Probe succeeded" in line for line in outcome.logs)


@pytest.mark.anyio
async def test_http_404_fails_with_its_status(web_server: int) -> None:
    runner = _runner()
    outcome = await runner.run(
        runner.module("http_2xx"), f"http://127.0.0.1:{web_server}/missing", 5.0
    )
    values = _samples(outcome.metrics)
    assert values["probe_success[]"] == 0.0
    assert values["probe_http_status_code[]"] == 404.0


@pytest.mark.anyio
async def test_body_regex_failure_sets_failed_due_to_regex(web_server: int) -> None:
    runner = _runner("re: {prober: http, http: {fail_if_body_matches_regexp: ['good']}}")
    outcome = await runner.run(runner.module("re"), f"http://127.0.0.1:{web_server}/", 5.0)
    values = _samples(outcome.metrics)
    assert values["probe_success[]"] == 0.0
    assert values["probe_failed_due_to_regex[]"] == 1.0


@pytest.mark.anyio
async def test_tcp_refused_port_fails_and_module_instance_is_reused() -> None:
    runner = _runner()
    module = runner.module("tcp_connect")
    port = free_port()
    first = await runner.run(module, f"127.0.0.1:{port}", 2.0)
    assert _samples(first.metrics)["probe_success[]"] == 0.0
    assert any("connection refused" in line for line in first.logs)
    served = runner._served["tcp_connect"].probe
    await runner.run(module, f"127.0.0.1:{port}", 2.0)
    assert runner._served["tcp_connect"].probe is served
    assert runner.reset(runner.modules) == [served]


@pytest.mark.anyio
async def test_tcp_expect_banner_and_timeout() -> None:
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"hello\r\n+OK ready\r\n")
            await writer.drain()
            await reader.read()  # until the prober hangs up
        except ConnectionResetError:
            pass  # the prober aborts its connection: a reset, as from blackbox
        finally:
            writer.close()

    server = await asyncio.start_server(banner, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    runner = _runner(
        "pop: {prober: tcp, tcp: {query_response: [{expect: '^\\+OK'}]}}\n"
        "never: {prober: tcp, timeout: 300ms, tcp: {query_response: [{expect: '^NEVER'}]}}\n"
    )
    try:
        ok = await runner.run(runner.module("pop"), f"127.0.0.1:{port}", 2.0)
        assert _samples(ok.metrics)["probe_success[]"] == 1.0
        # blackbox's own pop3s_banner regex ^+OK is RE2's "one or more ^, then OK": it
        # does not match "+OK" there (checked against blackbox 0.23), nor here
        stock = await runner.run(runner.module("tcp_connect"), f"127.0.0.1:{port}", 2.0)
        assert _samples(stock.metrics)["probe_success[]"] == 1.0
        caret = _runner("pop: {prober: tcp, tcp: {query_response: [{expect: '^+OK'}]}}")
        strict = await caret.run(caret.module("pop"), f"127.0.0.1:{port}", 2.0)
        assert _samples(strict.metrics)["probe_success[]"] == 0.0
        timeout = probe_timeout(None, runner.module("never").timeout)
        slow = await runner.run(runner.module("never"), f"127.0.0.1:{port}", timeout)
        assert _samples(slow.metrics)["probe_success[]"] == 0.0
        assert _samples(slow.metrics)["probe_duration_seconds[]"] < 1.0
    finally:
        server.close()
        await server.wait_closed()


def test_unknown_module_and_unservable_module_are_400() -> None:
    runner = _runner()
    with pytest.raises(ModuleError, match="Unknown module 'nope'") as caught:
        runner.module("nope")
    assert caught.value.status == 400


@pytest.mark.anyio
async def test_module_pudimd_cannot_honour_answers_400_naming_the_field() -> None:
    runner = _runner("src: {prober: tcp, tcp: {source_ip_address: 127.0.0.1}}")
    with pytest.raises(
        ModuleError, match=r"'src' cannot be served.*tcp\.source_ip_address"
    ) as caught:
        await runner.run(runner.module("src"), "127.0.0.1:22", 1.0)
    assert caught.value.status == 400


@pytest.mark.anyio
async def test_stock_ssh_and_irc_banner_modules_hold_their_conversations() -> None:
    said: list[bytes] = []

    async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        await writer.drain()
        said.append(await reader.readline())
        writer.close()  # early: an IRC prober is still waiting for its PING

    async def irc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        said.extend([await reader.readline(), await reader.readline()])
        writer.write(b":irc.test NOTICE * :hi\r\nPING :abc123\r\n")
        await writer.drain()
        pong = await reader.readline()
        said.append(pong)
        if pong == b"PONG abc123\n":
            writer.write(b":irc.test 001 prober :Welcome\r\n")
            await writer.drain()
        writer.close()

    runner = _runner()
    ssh_server = await asyncio.start_server(ssh, "127.0.0.1", 0)
    irc_server = await asyncio.start_server(irc, "127.0.0.1", 0)
    try:
        for module, server in (("ssh_banner", ssh_server), ("irc_banner", irc_server)):
            port = server.sockets[0].getsockname()[1]
            outcome = await runner.run(runner.module(module), f"127.0.0.1:{port}", 2.0)
            values = _samples(outcome.metrics)
            assert values["probe_success[]"] == 1.0, (module, outcome.result.message)
            assert values["probe_failed_due_to_regex[]"] == 0.0
        # the early-closing server fails the IRC module in its last step, on a regex
        port = ssh_server.sockets[0].getsockname()[1]
        failed = await runner.run(runner.module("irc_banner"), f"127.0.0.1:{port}", 2.0)
        assert _samples(failed.metrics)["probe_failed_due_to_regex[]"] == 1.0, failed.result
        assert failed.result.message.startswith("step 3: connection closed before /PING")
    finally:
        for server in (ssh_server, irc_server):
            server.close()
            await server.wait_closed()
    assert said[:4] == [
        b"SSH-2.0-blackbox-ssh-check\n",
        b"NICK prober\n",
        b"USER prober prober prober :prober\n",
        b"PONG abc123\n",
    ]


@pytest.mark.anyio
async def test_prober_without_a_serving_probe_type_is_unknown_prober() -> None:
    host = PluginHost(disabled=["http"])
    host.load_entry_points()
    runner = Runner(host, load_modules(None))
    with pytest.raises(ModuleError, match="Unknown prober 'http'"):
        await runner.run(runner.module("http_2xx"), "http://127.0.0.1:1/", 1.0)


def test_shared_metrics_use_the_server_address_and_the_resolve_phase_when_given() -> None:
    # the dns probe: IP is the first answer, SERVER_IP the server asked; its lookup of the
    # server's name is the "resolve" phase
    dns = ProbeResult(
        True,
        phases={"resolve": 0.25, "query": 0.5},
        values={"IP": "192.0.2.10", "SERVER_IP": "127.0.0.1"},
    )
    shared = {m.name: m.value for m in shared_metrics(dns, 1.0)}
    assert shared["probe_ip_addr_hash"] == ip_hash("127.0.0.1") != ip_hash("192.0.2.10")
    assert shared["probe_dns_lookup_time_seconds"] == 0.25
    http = ProbeResult(True, phases={"dns": 0.125}, values={"IP": "127.0.0.1"})
    shared = {m.name: m.value for m in shared_metrics(http, 1.0)}
    assert shared["probe_dns_lookup_time_seconds"] == 0.125
    assert shared["probe_ip_addr_hash"] == ip_hash("127.0.0.1")


def test_the_fast_float_formatting_agrees_with_the_digit_by_digit_one() -> None:
    import random

    from pudimd.blackbox.render import _format_digits

    rng = random.Random(7)
    values = [rng.uniform(-1, 1) * 10 ** rng.uniform(-7, 9) for _ in range(20000)]
    values += [float(n) for n in range(-1000, 1000)] + [1e-4, 999999.0, 1e6 - 0.5, 0.1 + 0.2]
    assert all(format_value(v) == _format_digits(v) for v in values if v)
