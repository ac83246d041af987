"""The ``grpc`` probe against a real grpcio health server on loopback (TLS certificates by
trustme), and its blackbox_exporter translation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pudimd_plugins.probes.grpc import GrpcProbe, GrpcSettings, pudimd_probe_types
from pydantic import ValidationError

from pudimd.contracts import BlackboxProber
from pudimd.results import ProbeResult
from tests.helpers import free_port, run_check

pytestmark = pytest.mark.anyio

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Recording(health.aio.HealthServicer):  # type: ignore[misc]
    """The standard health servicer, recording each call's metadata; ``delay`` slows it."""

    def __init__(self) -> None:
        super().__init__()
        self.metadata: list[dict[str, str]] = []
        self.delay = 0.0

    async def Check(self, request: Any, context: Any) -> Any:
        self.metadata.append({k: v for k, v in context.invocation_metadata()})
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().Check(request, context)


@asynccontextmanager
async def health_server(
    port: int | None = None, credentials: Any = None, with_health: bool = True
) -> AsyncIterator[tuple[int, Recording]]:
    servicer = Recording()
    await servicer.set("ready.Service", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("sick.Service", NOT_SERVING)
    server = grpc.aio.server()
    if with_health:
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"127.0.0.1:{port or 0}"
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    await server.start()
    try:
        yield bound, servicer
    finally:
        await server.stop(None)


def server_credentials(ca: trustme.CA) -> Any:
    cert = ca.issue_cert("localhost", "grpc.test")
    chain = b"".join(pem.bytes() for pem in cert.cert_chain_pems)
    return grpc.ssl_server_credentials([(cert.private_key_pem.bytes(), chain)])


async def check(target: str, within: float = 5.0, **settings: Any) -> ProbeResult:
    return await run_check(GrpcProbe, target, within, **settings)


def test_plugin_registers_the_grpc_type() -> None:
    assert pudimd_probe_types() == [GrpcProbe]
    assert isinstance(GrpcProbe, BlackboxProber)


async def test_serving_server_is_up() -> None:
    async with health_server() as (port, servicer):
        result = await check(f"127.0.0.1:{port}", metadata={"x-team": "sre"})
    assert result.success, result.message
    assert result.status == "SERVING"
    assert result.metrics["grpc_status_code"] == 0.0
    assert result.metrics["tls"] == 0.0
    assert result.values["SERVING_STATUS"] == "SERVING"
    assert result.values["GRPC_STATUS"] == "OK"
    assert result.values["CONNECTED"] is True
    assert result.phases["check"] > 0
    assert servicer.metadata[-1]["x-team"] == "sre"


async def test_named_services_serving_and_not_serving() -> None:
    async with health_server() as (port, _):
        ready = await check(f"127.0.0.1:{port}", service="ready.Service")
        sick = await check(f"127.0.0.1:{port}", service="sick.Service")
    assert ready.success, ready.message
    assert not sick.success
    assert sick.status == "NOT_SERVING"
    assert sick.message == "NOT_SERVING"
    assert sick.values["CONNECTED"] is True


async def test_unknown_service_is_not_found() -> None:
    async with health_server() as (port, _):
        result = await check(f"127.0.0.1:{port}", service="nope.Service")
    assert not result.success
    assert result.status == "NOT_FOUND"
    assert result.metrics["grpc_status_code"] == 5.0
    assert result.message.startswith("NOT_FOUND")


async def test_server_without_health_service_is_unimplemented() -> None:
    async with health_server(with_health=False) as (port, _):
        result = await check(f"127.0.0.1:{port}")
    assert not result.success
    assert result.status == "UNIMPLEMENTED"
    assert result.metrics["grpc_status_code"] == 12.0


async def test_refused_port_is_unavailable() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.status == "UNAVAILABLE"
    assert result.metrics["grpc_status_code"] == 14.0
    assert result.message.startswith("UNAVAILABLE")
    assert result.values["CONNECTED"] is False


async def test_slow_server_times_out_in_check() -> None:
    async with health_server() as (port, servicer):
        servicer.delay = 2.0
        result = await check(f"127.0.0.1:{port}", within=0.3)
    assert not result.success
    assert result.status == "DEADLINE_EXCEEDED"
    assert result.message == "timeout after 0.3s during check"


async def test_tls_with_trusted_certificate(ca: trustme.CA, ca_file: Path) -> None:
    async with health_server(credentials=server_credentials(ca)) as (port, _):
        result = await check(f"localhost:{port}", tls=True, ca_file=ca_file)
        renamed = await check(
            f"127.0.0.1:{port}", tls=True, ca_file=ca_file, server_name="grpc.test"
        )
    assert result.success, result.message
    assert result.metrics["tls"] == 1.0
    assert result.metrics["cert_expiry_timestamp"] > time.time()
    assert result.values["TLS_VERSION"] in ("TLS 1.2", "TLS 1.3")
    assert result.phases["tls"] > 0
    assert renamed.success, renamed.message


async def test_tls_with_untrusted_certificate_fails(ca: trustme.CA) -> None:
    async with health_server(credentials=server_credentials(ca)) as (port, _):
        result = await check(f"localhost:{port}", tls=True)
    assert not result.success
    assert result.message == "TLS: unable to get local issuer certificate"
    assert result.status == "UNAVAILABLE"


async def test_plaintext_client_against_tls_server_fails(ca: trustme.CA) -> None:
    async with health_server(credentials=server_credentials(ca)) as (port, _):
        result = await check(f"127.0.0.1:{port}", within=2.0)
    assert not result.success
    assert result.status == "UNAVAILABLE"


async def test_channel_is_reused_and_recovers_after_restart() -> None:
    probe = GrpcProbe(GrpcSettings())
    port = free_port()
    try:
        async with health_server(port) as _:
            first = await probe.check(f"127.0.0.1:{port}", 5.0)
            channel = probe._channel
            second = await probe.check(f"127.0.0.1:{port}", 5.0)
            assert probe._channel is channel
        down = await probe.check(f"127.0.0.1:{port}", 5.0)
        async with health_server(port) as _:
            deadline = time.monotonic() + 5
            again = await probe.check(f"127.0.0.1:{port}", 5.0)
            while not again.success and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                again = await probe.check(f"127.0.0.1:{port}", 5.0)
    finally:
        await probe.aclose()
    assert first.success and second.success
    assert not down.success and down.status == "UNAVAILABLE"
    assert again.success, again.message


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match="need tls"):
        GrpcSettings(server_name="x")
    with pytest.raises(ValidationError, match="invalid metadata key"):
        GrpcSettings(metadata={"X-Upper": "1"})


# ------------------------------------------------------------------------------ blackbox


def test_from_blackbox_maps_the_grpc_module(ca_file: Path) -> None:
    settings = GrpcProbe.from_blackbox(
        {
            "service": "ready.Service",
            "tls": True,
            "tls_config": {"ca_file": str(ca_file), "server_name": "grpc.test"},
            "preferred_ip_protocol": "ip4",
            "ip_protocol_fallback": False,
            "metadata": {"X-Team": ["sre"]},
        }
    )
    assert settings == GrpcSettings(
        service="ready.Service",
        tls=True,
        ca_file=ca_file,
        server_name="grpc.test",
        ip_version="ipv4",
        ip_fallback=False,
        metadata={"x-team": "sre"},
    )
    defaults = GrpcProbe.from_blackbox({})
    assert defaults.ip_version == "ipv6"  # blackbox prefers ip6
    assert defaults.service == "" and not defaults.tls


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"tls": True, "tls_config": {"insecure_skip_verify": True}}, "insecure_skip_verify"),
        ({"tls": True, "tls_config": {"min_version": "TLS13"}}, "min_version"),
        ({"query": "x"}, "grpc.query"),
        ({"preferred_ip_protocol": "ip5"}, "preferred_ip_protocol"),
    ],
)
def test_from_blackbox_refuses_what_it_cannot_honour(block: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GrpcProbe.from_blackbox(block)


def _samples(result: ProbeResult) -> dict[str, float]:
    out = {}
    for metric in GrpcProbe.blackbox_metrics(result):
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric.labels.items()))
        out[f"{metric.name}{{{labels}}}" if labels else metric.name] = metric.value
    return out


async def test_blackbox_metrics_of_a_serving_tls_server(ca: trustme.CA, ca_file: Path) -> None:
    async with health_server(credentials=server_credentials(ca)) as (port, _):
        result = await check(f"localhost:{port}", tls=True, ca_file=ca_file)
    samples = _samples(result)
    assert samples['probe_grpc_healthcheck_response{serving_status="SERVING"}'] == 1.0
    assert samples['probe_grpc_healthcheck_response{serving_status="NOT_SERVING"}'] == 0.0
    assert samples['probe_grpc_healthcheck_response{serving_status="UNKNOWN"}'] == 0.0
    assert samples['probe_grpc_healthcheck_response{serving_status="SERVICE_UNKNOWN"}'] == 0.0
    assert samples["probe_grpc_status_code"] == 0.0
    assert samples["probe_grpc_ssl"] == 1.0
    assert samples["probe_ssl_earliest_cert_expiry"] == int(
        result.metrics["cert_expiry_timestamp"]
    )
    version = result.values["TLS_VERSION"]
    assert samples[f'probe_tls_version_info{{version="{version}"}}'] == 1.0
    assert samples['probe_grpc_duration_seconds{phase="check"}'] > 0
    assert 'probe_grpc_duration_seconds{phase="resolve"}' in samples


async def test_blackbox_metrics_of_an_unavailable_server() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    samples = _samples(result)
    assert samples["probe_grpc_status_code"] == 14.0
    assert samples["probe_grpc_ssl"] == 0.0
    assert samples["probe_ssl_earliest_cert_expiry"] == 0.0
    assert all(v == 0.0 for k, v in samples.items() if "healthcheck_response" in k)
    assert not any(k.startswith("probe_tls_version_info") for k in samples)
