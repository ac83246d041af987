"""``/probe`` of pudimd next to the real blackbox_exporter (Debian's
prometheus-blackbox-exporter), same modules file, same targets: the same metric names,
the same ``probe_success`` and the same status values."""

from __future__ import annotations

import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.dnsmasq import EXAMPLE_ZONE, run_dnsmasq
from tests.helpers import free_port, missing, stop, wait_listening
from tests.integration.daemon_harness import DaemonProcess
from tests.integration.servers import run_sshd
from tests.nginx import run_nginx

pytestmark = [pytest.mark.integration]

BLACKBOX = Path("/usr/bin/prometheus-blackbox-exporter")

MODULES = """
modules:
  http_2xx:
    prober: http
  http_short:
    prober: http
    timeout: 1s
  tcp_connect:
    prober: tcp
  tcp_banner_short:
    prober: tcp
    timeout: 1s
    tcp:
      query_response:
        - expect: "^SSH-2.0-"
  dns_nx:
    prober: dns
    dns:
      query_name: nxdomain.example.test
      query_type: A
  dns_www:
    prober: dns
    dns:
      query_name: www.example.test
      query_type: A
  ssh_banner:
    prober: tcp
    tcp:
      query_response:
      - expect: "^SSH-2.0-"
      - send: "SSH-2.0-blackbox-ssh-check"
  irc_banner:
    prober: tcp
    tcp:
      query_response:
      - send: "NICK prober"
      - send: "USER prober prober prober :prober"
      - expect: "PING :([^ ]+)"
        send: "PONG ${1}"
      - expect: "^:[^ ]+ 001"
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      tls_config:
        ca_file: {ca_file}
        server_name: mail.example.test
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "EHLO prober\\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\\r"
        - expect: "^250-AUTH"
        - send: "QUIT\\r"
  icmp:
    prober: icmp
  icmp_short:
    prober: icmp
    timeout: 1s
  grpc_plain:
    prober: grpc
    grpc:
      tls: false
      service: "service1"
  grpc_down:
    prober: grpc
    grpc:
      tls: false
      service: down.Service
"""

_NGINX = """
    server {{
        listen 127.0.0.1:{port};
        location = /health {{ default_type text/plain; return 200 "status: ok\\n"; }}
        location / {{ return 404; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;
        location / {{ default_type text/plain; return 200 "secret\\n"; }}
    }}
"""

Sample = tuple[str, tuple[tuple[str, str], ...]]


def _get(base: str, module: str, target: str) -> tuple[int, str]:
    query = urllib.parse.urlencode({"module": module, "target": target})
    try:
        with urllib.request.urlopen(f"{base}/probe?{query}", timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _parse(text: str) -> dict[Sample, float]:
    samples: dict[Sample, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, label_text = series.partition("{")
        labels: list[tuple[str, str]] = []
        for pair in filter(None, label_text.rstrip("}").split('",')):
            key, _, val = pair.partition("=")
            labels.append((key, val.strip('"')))
        samples[(name, tuple(sorted(labels)))] = float(value)
    return samples


class _Banner(socketserver.StreamRequestHandler):
    """Not SSH, not IRC: one line, then the connection is closed (the server's half first,
    then it reads what the prober sends until it hangs up: closing with unread bytes would
    reset the connection, and a prober might see the reset rather than the end)."""

    def handle(self) -> None:
        self.request.settimeout(5)
        self.wfile.write(b"220 this is not the service you expected\r\n")
        self.request.shutdown(socket.SHUT_WR)
        while self.request.recv(4096):
            pass


class _Irc(socketserver.StreamRequestHandler):
    """Registers a client: NICK, USER, then a PING it must answer with the right PONG."""

    def handle(self) -> None:
        self.request.settimeout(5)
        nick, user = self.rfile.readline(), self.rfile.readline()
        if not (nick.startswith(b"NICK ") and user.startswith(b"USER ")):
            return
        self.wfile.write(b":irc.example.test NOTICE * :hello\r\nPING :tok3n-42\r\n")
        if self.rfile.readline().rstrip(b"\r\n") == b"PONG tok3n-42":
            self.wfile.write(b":irc.example.test 001 prober :Welcome\r\n")
            self.rfile.readline()  # until the prober hangs up
        else:
            self.wfile.write(b"ERROR :Closing link (bad pong)\r\n")


class _Smtp(socketserver.StreamRequestHandler):
    """ESMTP with STARTTLS (the certificate from the ``tls`` attribute of the server)."""

    def handle(self) -> None:
        self.request.settimeout(5)
        self.wfile.write(b"220 mail.example.test ESMTP ready\r\n")
        if not self.rfile.readline().startswith(b"EHLO "):
            return
        self.wfile.write(b"250-mail.example.test\r\n250-STARTTLS\r\n250 OK\r\n")
        if self.rfile.readline() != b"STARTTLS\r\n":
            return
        self.wfile.write(b"220 go ahead\r\n")
        context: ssl.SSLContext = self.server.tls  # type: ignore[attr-defined]
        with context.wrap_socket(self.request, server_side=True) as tls:
            lines = tls.makefile("rb")
            if lines.readline().startswith(b"EHLO "):
                tls.sendall(b"250-mail.example.test\r\n250-AUTH PLAIN\r\n250 OK\r\n")
                lines.readline()  # QUIT, or the prober hangs up


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a prober hanging up is no error
            super().handle_error(request, client_address)


@contextmanager
def _serving(handler: type[socketserver.BaseRequestHandler], **attrs: Any) -> Iterator[int]:
    """A threaded TCP server on 127.0.0.1 running ``handler``; yields its port."""
    server = _Server(("127.0.0.1", 0), handler)
    for name, value in attrs.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def _grpc_health() -> Iterator[int]:
    """A grpcio server with the standard health service: "" and service1 SERVING,
    down.Service NOT_SERVING; yields its port."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    for service, status in (
        ("", health_pb2.HealthCheckResponse.SERVING),
        ("service1", health_pb2.HealthCheckResponse.SERVING),
        ("down.Service", health_pb2.HealthCheckResponse.NOT_SERVING),
    ):
        servicer.set(service, status)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None).wait()


@pytest.fixture(scope="module")
def sshd() -> Iterator[str]:
    """Debian's real sshd on a free port, with a host key made for it; yields host:port."""
    with tempfile.TemporaryDirectory() as tmp_dir, run_sshd(Path(tmp_dir)) as port:
        yield f"127.0.0.1:{port}"


class Peers:
    def __init__(self, blackbox: str, pudimd: str, targets: dict[str, str]) -> None:
        self.blackbox = blackbox
        self.pudimd = pudimd
        self.targets = targets


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    if not BLACKBOX.exists():
        missing("prometheus-blackbox-exporter (Debian package)")
    tmp = tmp_path_factory.mktemp("bbcompat")
    # a certificate from a CA nobody trusts: the "bad certificate" target; the modules
    # that speak STARTTLS trust it explicitly (tls_config.ca_file)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    modules = tmp / "blackbox.yml"
    modules.write_text(MODULES.replace("{ca_file}", str(tmp / "ca.pem")))
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
    smtp_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.example.test").configure_cert(smtp_tls)
    port, tls_port = free_port(), free_port()
    # accepts connections (the kernel's backlog) and never answers: the timeout target
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    silent_port = silent.getsockname()[1]
    bb_port = free_port()
    blackbox = subprocess.Popen(
        [str(BLACKBOX), f"--config.file={modules}", f"--web.listen-address=127.0.0.1:{bb_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = tmp / "pudimd.yaml"
    config.write_text("probe_modules_file: blackbox.yml\n")
    daemon = DaemonProcess(config, tmp / "state")
    try:
        with (
            run_nginx(tmp, _NGINX.format(port=port, tls_port=tls_port, tmp=tmp), port),
            run_dnsmasq(EXAMPLE_ZONE) as dns_port,
            _serving(_Banner) as banner_port,
            _serving(_Irc) as irc_port,
            _serving(_Smtp, tls=smtp_tls) as smtp_port,
            _grpc_health() as grpc_port,
        ):
            wait_listening(blackbox, "blackbox_exporter", bb_port, within=15)
            daemon.wait_for_message("READY=1")
            yield Peers(
                f"http://127.0.0.1:{bb_port}",
                daemon.url,
                {
                    "ok": f"http://127.0.0.1:{port}/health",
                    "not_found": f"http://127.0.0.1:{port}/nope",
                    "refused_http": f"http://127.0.0.1:{free_port()}/",
                    "bad_cert": f"https://127.0.0.1:{tls_port}/",
                    "timeout_http": f"http://127.0.0.1:{silent_port}/",
                    "tcp_ok": f"127.0.0.1:{port}",
                    "tcp_refused": f"127.0.0.1:{free_port()}",
                    "timeout_tcp": f"127.0.0.1:{silent_port}",
                    "dns": f"127.0.0.1:{dns_port}",
                    "not_ssh": f"127.0.0.1:{banner_port}",
                    "irc": f"127.0.0.1:{irc_port}",
                    "smtp": f"127.0.0.1:{smtp_port}",
                    "loopback": "127.0.0.1",
                    "unresolvable": "nonexistent.invalid",
                    "grpc": f"127.0.0.1:{grpc_port}",
                },
            )
    finally:
        daemon.stop()
        stop(blackbox)
        silent.close()


CASES = [
    # (case, module, target key, success expected)
    ("ok", "http_2xx", "ok", True),
    ("404", "http_2xx", "not_found", False),
    ("refused port", "http_2xx", "refused_http", False),
    ("bad certificate", "http_2xx", "bad_cert", False),
    ("timeout", "http_short", "timeout_http", False),
    ("tcp ok", "tcp_connect", "tcp_ok", True),
    ("tcp refused port", "tcp_connect", "tcp_refused", False),
    ("tcp timeout", "tcp_banner_short", "timeout_tcp", False),
    ("dns ok", "dns_www", "dns", True),
    ("NXDOMAIN", "dns_nx", "dns", False),
    ("ssh banner", "ssh_banner", "sshd", True),  # Debian's sshd, see the fixture
    ("ssh banner from another service", "ssh_banner", "not_ssh", False),
    ("irc registration with PING/PONG", "irc_banner", "irc", True),
    ("irc server closing early", "irc_banner", "not_ssh", False),
    ("smtp STARTTLS", "smtp_starttls", "smtp", True),
    ("icmp", "icmp", "loopback", True),
    ("icmp unresolvable", "icmp_short", "unresolvable", False),
    ("grpc SERVING", "grpc_plain", "grpc", True),
    ("grpc NOT_SERVING", "grpc_down", "grpc", False),
]

# Values that must agree (the rest are timings, hashes and sizes that legitimately differ).
_SAME_VALUES = {
    "probe_success",
    "probe_http_status_code",
    "probe_http_ssl",
    "probe_http_redirects",
    "probe_failed_due_to_regex",
    "probe_dns_answer_rrs",
    "probe_dns_authority_rrs",
    "probe_dns_additional_rrs",
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_tls_version_info",
    "probe_grpc_status_code",
    "probe_grpc_ssl",
    "probe_grpc_healthcheck_response",
}

# What blackbox exports and pudimd cannot (docs/operations.md, "Known differences").
_PUDIMD_LACKS = {
    # the leaf certificate's subject, issuer and fingerprint: not in a ProbeResult
    "probe_ssl_last_chain_info",
    # the reply's TTL: icmplib does not expose it (blackbox reads it when it can: here, 64)
    "probe_icmp_reply_hop_limit",
}


@pytest.mark.parametrize(("case", "module", "target", "success"), CASES, ids=[c[0] for c in CASES])
def test_probe_answers_like_blackbox_exporter(
    request: pytest.FixtureRequest,
    peers: Peers,
    case: str,
    module: str,
    target: str,
    success: bool,
) -> None:
    url = peers.targets[target] if target in peers.targets else request.getfixturevalue(target)
    bb_status, bb_text = _get(peers.blackbox, module, url)
    pd_status, pd_text = _get(peers.pudimd, module, url)
    assert bb_status == pd_status == 200, (bb_text, pd_text)
    theirs, ours = _parse(bb_text), _parse(pd_text)
    theirs = {s: v for s, v in theirs.items() if s[0] not in _PUDIMD_LACKS}
    assert {n for n, _ in theirs} == {n for n, _ in ours}, (case, bb_text, pd_text)
    assert {s for s in theirs} == {s for s in ours}, "same labels too"
    assert ours[("probe_success", ())] == (1.0 if success else 0.0), pd_text
    for sample, value in theirs.items():
        if sample[0] in _SAME_VALUES:
            assert ours[sample] == value, (case, sample, bb_text, pd_text)


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        ({"module": "nope", "target": "x"}, 400, 'Unknown module "nope"'),
        ({"module": "http_2xx"}, 400, "Target parameter is missing"),
    ],
)
def test_errors_answer_like_blackbox_exporter(
    peers: Peers, query: dict[str, str], status: int, text: str
) -> None:
    for base in (peers.blackbox, peers.pudimd):
        try:
            with urllib.request.urlopen(f"{base}/probe?{urllib.parse.urlencode(query)}") as r:
                got, body = r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            got, body = exc.code, exc.read().decode()
        assert got == status, base
        assert text.replace('"', "") in body.replace('"', "").replace("'", ""), (base, body)


def test_scrape_timeout_header_and_debug_output_match(peers: Peers) -> None:
    query = urllib.parse.urlencode(
        {"module": "tcp_connect", "target": peers.targets["tcp_ok"], "debug": "true"}
    )
    pages = []
    for base in (peers.blackbox, peers.pudimd):
        request = urllib.request.Request(
            f"{base}/probe?{query}", headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"}
        )
        with urllib.request.urlopen(request) as response:
            pages.append(response.read().decode())
    for page in pages:
        assert page.startswith("Logs for the probe:\n")
        assert "timeout_seconds=2.5" in page
        assert "\n\n\n\nMetrics that would have been returned:\n" in page
        assert "\n\n\nModule configuration:\nprober: tcp\n" in page
        assert "probe_success 1\n" in page
