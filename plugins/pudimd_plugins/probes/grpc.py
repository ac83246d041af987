"""The ``grpc`` probe: ask a server's gRPC health service whether it is serving.

Target: ``host[:port]`` (``[::1]:port`` for an IPv6 literal; port 443 with ``tls: true``,
else 80, when left out, as the Blackbox exporter does).  Each check calls
``grpc.health.v1.Health/Check`` (the standard health checking protocol) for ``service`` and
is up only when the answer is ``SERVING``.

The probe keeps one gRPC channel (an HTTP/2 connection) per target and reuses it between
checks, as a gRPC client does; it resolves the host on every check, connects to the first
address (in ``ip_version``'s order) and makes a new channel when that address changes.
With ``tls: true`` each check first does a TLS handshake of its own on a separate
connection, to read the certificate chain (gRPC's Python client does not show it) and to
report verification errors clearly; the call itself goes over the channel, which verifies
the server the same way.

Settings (the block under ``grpc:`` in a target)::

    service: ""          # service name asked about; "" is the server as a whole
    tls: false           # speak TLS (the server certificate is always verified)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (needed with cert_file)
    server_name: null    # TLS SNI and certificate name, instead of the target's host
    metadata: {}         # request metadata (headers) of the call; keys in lowercase
    authority: null      # the :authority of the call, instead of host:port (server_name:port
                         # with TLS and server_name); with TLS it must match the certificate
    ip_version: any      # any | ipv4 | ipv6: address family to try first
    ip_fallback: true    # with ipv4/ipv6, also try the other family's addresses

gRPC's Python client cannot skip certificate verification, so there is no ``verify``
setting: give the server's CA with ``ca_file``.

Result: ``status`` is the serving status the server answered (``SERVING``,
``NOT_SERVING``, ``SERVICE_UNKNOWN``, ``UNKNOWN``), or the gRPC status code's name when the
call failed (``UNAVAILABLE``, ``NOT_FOUND`` for a service the server does not know,
``UNIMPLEMENTED`` when it has no health service, ``DEADLINE_EXCEEDED``...); ``message``
names the failure (``NOT_SERVING``, ``NOT_FOUND``, ``UNAVAILABLE: failed to connect...``,
``timeout after 2s during check``, the TLS verification error).

Phases (seconds): ``dns``, ``tls`` (the separate handshake), ``check`` (the call, including
connecting the channel when it is new).

Metrics: ``ip_protocol`` (4 or 6), ``grpc_status_code`` (the call's status code number, 0
for OK; 14 UNAVAILABLE for a failed TLS handshake), ``tls`` (1 or 0),
``cert_expiry_timestamp`` (earliest notAfter of the server's certificate chain, Unix time;
only with TLS).

Values: ``CONNECTED`` (bool: the server answered the call), ``IP`` (str), ``GRPC_STATUS``
(status code name, ``OK``), ``SERVING_STATUS`` (when answered), ``TLS_VERSION`` (``TLS 1.3``;
only with TLS), ``CERTIFICATE_EXPIRATION`` (seconds until ``cert_expiry_timestamp``).

Blackbox exporter: serves ``grpc`` modules on ``/probe`` with ``probe_grpc_*`` metrics,
``probe_ssl_earliest_cert_expiry`` and ``probe_tls_version_info`` (not
``probe_ssl_last_chain_info``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, FilePath, field_validator, model_validator

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings
from pudimd_plugins.probes._net import (
    Failure,
    PhaseClock,
    cert_expiry,
    client_ssl_context,
    error_text,
    host_port,
    ip_protocol,
    resolve,
)

if TYPE_CHECKING:
    from pudimd.blackbox import Metric

__all__ = ["GrpcProbe", "GrpcSettings", "pudimd_probe_types"]

_SERVING_STATUSES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")
_UNAVAILABLE = 14
_TLS_VERSIONS = {
    "TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3",
}  # fmt: skip
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.enable_http_proxy", 0),  # a probe checks the target, not a proxy from the environment
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),  # a restarted server is seen again within a second
]


class GrpcSettings(PluginSettings):
    """Settings of the ``grpc`` probe (see the module docstring)."""

    service: str = Field(default="", description='Service name asked about; "" is the server.')
    tls: bool = Field(default=False, description="Speak TLS (the certificate is verified).")
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    server_name: str | None = None
    metadata: dict[str, str] = Field(
        default_factory=dict, description="Request metadata (headers) of the call."
    )
    authority: str | None = Field(
        default=None, description="The :authority of the call, instead of host:port."
    )
    ip_version: Literal["any", "ipv4", "ipv6"] = "any"
    ip_fallback: bool = True

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key or key != key.lower() or key.startswith(":") or key.endswith("-bin"):
                raise ValueError(
                    f"invalid metadata key {key!r}: lowercase, no ':' prefix, no '-bin' suffix"
                )
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> GrpcSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if not self.tls and (self.ca_file or self.cert_file or self.server_name):
            raise ValueError("ca_file, cert_file, key_file and server_name need tls: true")
        return self


class _Channel:
    """The reused channel and what it was made for."""

    __slots__ = ("address", "channel", "loop", "stub")

    def __init__(
        self, address: tuple[str, int], loop: asyncio.AbstractEventLoop, channel: Any, stub: Any
    ) -> None:
        self.address = address
        self.loop = loop
        self.channel = channel
        self.stub = stub


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


class GrpcProbe:
    """Check a gRPC server's health service; see the module docstring."""

    type = "grpc"
    Settings = GrpcSettings
    blackbox_prober = "grpc"

    def __init__(self, settings: GrpcSettings) -> None:
        self.settings = settings
        self._channel: _Channel | None = None
        self._ssl: ssl.SSLContext | None = None
        self._credentials: Any = None
        self._metadata = tuple(settings.metadata.items())
        if settings.tls:
            self._ssl = client_ssl_context(
                verify=True,
                ca_file=settings.ca_file,
                cert_file=settings.cert_file,
                key_file=settings.key_file,
                alpn=["h2"],
            )

    async def aclose(self) -> None:
        """Close the channel."""
        held, self._channel = self._channel, None
        if held is not None and held.loop is asyncio.get_running_loop():
            await held.channel.close()

    # ---------------------------------------------------------------------------- check

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = PhaseClock("dns", "tls", "check")
        result = ProbeResult(success=False, metrics={"tls": 0.0}, values={"CONNECTED": False})
        message = ""
        try:
            async with asyncio.timeout(timeout):
                await self._run(target, start + timeout, clock, result)
        except TimeoutError:
            message = f"timeout after {timeout:g}s during {clock.phase}"
            if clock.phase == "check":
                result.status = "DEADLINE_EXCEEDED"
        except Failure as exc:
            message = exc.message
        except OSError as exc:
            message = error_text(exc)
        clock.enter("")
        result.success = not message
        result.message = message
        result.duration = time.perf_counter() - start
        result.phases = clock.phases
        return result

    async def _run(
        self, target: str, deadline: float, clock: PhaseClock, result: ProbeResult
    ) -> None:
        st = self.settings
        host, port = host_port(target, 443 if st.tls else 80)
        loop = asyncio.get_running_loop()
        addresses = await resolve(loop, host, port, st.ip_version, st.ip_fallback)
        family, ip = addresses[0]
        result.metrics["ip_protocol"] = ip_protocol(family)
        result.values["IP"] = ip
        if self._ssl is not None:
            clock.enter("tls")
            await self._handshake(ip, port, host, result)
        clock.enter("check")
        await self._call(loop, host, ip, port, deadline, result)

    async def _handshake(self, ip: str, port: int, host: str, result: ProbeResult) -> None:
        """A TLS handshake of our own: the chain's expiry, the version, clear errors."""
        assert self._ssl is not None
        name = self.settings.server_name or host
        try:
            _, writer = await asyncio.open_connection(ip, port, ssl=self._ssl, server_hostname=name)
        except (ssl.SSLError, ConnectionError) as exc:
            result.status = "UNAVAILABLE"
            result.metrics["grpc_status_code"] = float(_UNAVAILABLE)
            result.values["GRPC_STATUS"] = "UNAVAILABLE"
            raise Failure(error_text(exc)) from None
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is not None:
                version = ssl_object.version()
                if version:
                    result.values["TLS_VERSION"] = _TLS_VERSIONS.get(version, version)
                expiry = cert_expiry(ssl_object)
                if expiry is not None:
                    result.metrics["cert_expiry_timestamp"] = expiry
                    result.values["CERTIFICATE_EXPIRATION"] = expiry - time.time()
        finally:
            writer.transport.abort()

    async def _stub(self, loop: asyncio.AbstractEventLoop, host: str, ip: str, port: int) -> Any:
        """The channel's stub for ``ip``:``port``; a new channel when the address (or the
        event loop) changed."""
        held = self._channel
        if held is not None and held.address == (ip, port) and held.loop is loop:
            return held.stub
        if held is not None:
            self._channel = None
            if held.loop is loop:
                await held.channel.close()
        import grpc  # type: ignore[import-untyped]
        from grpc_health.v1 import health_pb2_grpc  # type: ignore[import-untyped]

        st = self.settings
        name = st.server_name if st.tls and st.server_name else host
        netloc = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
        address = f"ipv6:[{ip}]:{port}" if ":" in ip else f"ipv4:{ip}:{port}"
        options = [*_CHANNEL_OPTIONS, ("grpc.default_authority", st.authority or netloc)]
        if st.tls:
            if self._credentials is None:
                self._credentials = grpc.ssl_channel_credentials(
                    root_certificates=_read(st.ca_file),
                    private_key=_read(st.key_file),
                    certificate_chain=_read(st.cert_file),
                )
            options.append(("grpc.ssl_target_name_override", st.server_name or host))
            channel = grpc.aio.secure_channel(address, self._credentials, options=options)
        else:
            channel = grpc.aio.insecure_channel(address, options=options)
        stub = health_pb2_grpc.HealthStub(channel)
        self._channel = _Channel((ip, port), loop, channel, stub)
        return stub

    async def _call(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        ip: str,
        port: int,
        deadline: float,
        result: ProbeResult,
    ) -> None:
        import grpc
        from grpc_health.v1 import health_pb2

        stub = await self._stub(loop, host, ip, port)
        request = health_pb2.HealthCheckRequest(service=self.settings.service)
        # grpc's own deadline ends the call a little before the outer timeout does
        remaining = max(deadline - time.perf_counter() - 0.01, 0.001)
        try:
            response = await stub.Check(
                request, timeout=remaining, metadata=self._metadata or None, wait_for_ready=False
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            name = str(code.name)
            result.status = name
            result.metrics["grpc_status_code"] = float(code.value[0])
            result.values["GRPC_STATUS"] = name
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TimeoutError from None
            details = exc.details() or ""
            raise Failure(f"{name}: {details}" if details else name) from None
        serving = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        result.status = str(serving)
        result.metrics["grpc_status_code"] = 0.0
        result.metrics["tls"] = 1.0 if self.settings.tls else 0.0
        result.values.update(CONNECTED=True, GRPC_STATUS="OK", SERVING_STATUS=str(serving))
        if serving != "SERVING":
            raise Failure(str(serving))

    # ------------------------------------------------------------------------ blackbox

    @classmethod
    def from_blackbox(cls, prober: Mapping[str, Any]) -> GrpcSettings:
        """Settings equivalent to a blackbox ``grpc:`` prober block."""
        known = {
            "service", "tls", "tls_config", "preferred_ip_protocol", "ip_protocol_fallback",
            "metadata",
        }  # fmt: skip
        for key in prober:
            if key not in known:
                raise ValueError(f"grpc.{key} is not supported")
        settings: dict[str, Any] = {
            "service": prober.get("service", ""),
            "tls": bool(prober.get("tls", False)),
            "ip_fallback": bool(prober.get("ip_protocol_fallback", True)),
        }
        preferred = prober.get("preferred_ip_protocol", "ip6")
        versions = {"ip4": "ipv4", "ip6": "ipv6", "": "ipv6"}
        if preferred not in versions:
            raise ValueError(f"grpc.preferred_ip_protocol: unknown value {preferred!r}")
        settings["ip_version"] = versions[preferred]
        metadata = prober.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ValueError("grpc.metadata: expected a mapping")
        values: dict[str, str] = {}
        for key, value in metadata.items():
            if isinstance(value, list):
                if len(value) != 1:
                    raise ValueError(f"grpc.metadata.{key}: only one value per key is supported")
                value = value[0]
            values[str(key).lower()] = str(value)
        settings["metadata"] = values
        tls_config = prober.get("tls_config") or {}
        for key, value in tls_config.items():
            if key in ("ca_file", "cert_file", "key_file", "server_name"):
                if value:
                    settings[key] = value
            elif key == "insecure_skip_verify":
                if value:
                    raise ValueError(
                        "grpc.tls_config.insecure_skip_verify: the grpc probe always verifies"
                    )
            else:
                raise ValueError(f"grpc.tls_config.{key} is not supported")
        if not settings["tls"]:  # blackbox ignores tls_config without tls
            for key in ("ca_file", "cert_file", "key_file", "server_name"):
                settings.pop(key, None)
        return GrpcSettings(**settings)

    @staticmethod
    def blackbox_metrics(result: ProbeResult) -> list[Metric]:
        """The ``probe_grpc_*`` and TLS metrics blackbox_exporter exports for ``result``."""
        from pudimd.blackbox import Metric

        duration = "Duration of gRPC request by phase"
        out = [
            Metric("probe_grpc_duration_seconds", duration, result.phases.get("dns", 0.0),
                   {"phase": "resolve"}),
        ]  # fmt: skip
        called = "grpc_status_code" in result.metrics
        if called:
            spent = result.phases.get("tls", 0.0) + result.phases.get("check", 0.0)
            out.append(Metric("probe_grpc_duration_seconds", duration, spent, {"phase": "check"}))
        answered = result.values.get("GRPC_STATUS") == "OK"
        tls = answered and result.metrics.get("tls", 0.0) == 1.0
        out.append(
            Metric(
                "probe_grpc_ssl",
                "Indicates if SSL was used for the connection",
                1.0 if tls else 0.0,
            )
        )
        out.append(
            Metric(
                "probe_grpc_status_code",
                "Response gRPC status code",
                result.metrics.get("grpc_status_code", 0.0),
            )
        )
        if called:
            serving = result.values.get("SERVING_STATUS")
            for name in _SERVING_STATUSES:
                out.append(
                    Metric(
                        "probe_grpc_healthcheck_response",
                        "Response HealthCheck response",
                        1.0 if name == serving else 0.0,
                        {"serving_status": name},
                    )
                )
        expiry = result.metrics.get("cert_expiry_timestamp", 0.0) if tls else 0.0
        out.append(
            Metric(
                "probe_ssl_earliest_cert_expiry",
                "Returns last SSL chain expiry in unixtime",
                float(int(expiry)),
            )
        )
        version = result.values.get("TLS_VERSION")
        if tls and version:
            out.append(
                Metric(
                    "probe_tls_version_info",
                    "Returns the TLS version used or NaN when unknown",
                    1.0,
                    {"version": str(version)},
                )
            )
        return out


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``grpc`` probe."""
    return [GrpcProbe]
