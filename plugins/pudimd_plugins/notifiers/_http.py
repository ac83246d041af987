"""What the HTTP-based notifiers share (private to the built-in plugins): Alertmanager's
``http_config`` block and a client that posts and turns failures into
:class:`~pudimd.alerting.notification.DeliveryError`."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, SecretStr, model_validator

from pudimd import __version__
from pudimd.alerting.notification import DeliveryError
from pudimd.settings import PluginSettings, SecretFile

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "Authorization",
    "BasicAuth",
    "HttpClient",
    "HttpConfig",
    "Response",
    "TlsConfig",
    "check_url",
]

USER_AGENT = f"pudimd/{__version__}"
ERROR_BODY_CHARS = 200
"""How much of a refusing receiver's answer goes into the error message."""


def check_url(url: str, name: str) -> None:
    """``url`` must be an absolute http(s) URL.  The message never shows it: receiver URLs
    often hold a token or a signature."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"{name} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an absolute http:// or https:// URL")


class BasicAuth(PluginSettings):
    """HTTP basic authentication."""

    username: str
    password: SecretStr | None = None
    password_file: SecretFile | None = None


class Authorization(PluginSettings):
    """An ``Authorization: <type> <credentials>`` header."""

    type: str = "Bearer"
    credentials: SecretStr | None = None
    credentials_file: SecretFile | None = None


class TlsConfig(PluginSettings):
    """TLS settings for HTTPS receivers."""

    ca_file: Path | None = Field(None, description="PEM CA bundle instead of the system's")
    cert_file: Path | None = Field(None, description="PEM client certificate")
    key_file: Path | None = Field(None, description="PEM key of cert_file")
    server_name: str | None = Field(None, description="Name to verify the certificate for")
    insecure_skip_verify: bool = Field(False, description="Do not verify the certificate")
    min_version: Literal["TLS12", "TLS13"] | None = None


class HttpConfig(PluginSettings):
    """Alertmanager's ``http_config`` (the parts pudimd supports; any other field is a
    config error)."""

    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    bearer_token: SecretStr | None = Field(None, description="Deprecated: use authorization")
    bearer_token_file: SecretFile | None = None
    tls_config: TlsConfig | None = None
    proxy_url: str | None = Field(None, description="HTTP proxy to go through")
    follow_redirects: bool = True
    enable_http2: bool = Field(
        True, description="Accepted for compatibility; pudimd speaks HTTP/1.1 to receivers"
    )

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        given = [
            name
            for name in ("basic_auth", "authorization", "bearer_token")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(
                f"set at most one of basic_auth, authorization, bearer_token; got {given}"
            )
        return self

    def auth_header(self) -> str | None:
        """The ``Authorization`` header value these settings ask for, if any."""
        import base64

        if self.basic_auth is not None:
            password = self.basic_auth.password
            pair = f"{self.basic_auth.username}:{password.get_secret_value() if password else ''}"
            return "Basic " + base64.b64encode(pair.encode()).decode()
        if self.authorization is not None and self.authorization.credentials is not None:
            return f"{self.authorization.type} {self.authorization.credentials.get_secret_value()}"
        if self.bearer_token is not None:
            return f"Bearer {self.bearer_token.get_secret_value()}"
        return None

    def ssl_context(self) -> ssl.SSLContext | None:
        tls = self.tls_config
        if tls is None:
            return None
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        if tls.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.min_version is not None:
            context.minimum_version = (
                ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
            )
        return context


@dataclass(frozen=True, slots=True)
class Response:
    """A receiver's answer (2xx)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class HttpClient:
    """One aiohttp session per notifier instance, made on first use.

    :meth:`post` returns the 2xx :class:`Response` and raises ``DeliveryError`` otherwise:
    connection errors, timeouts, 408, 429 and 5xx are retryable (with the receiver's
    ``Retry-After``); any other status is not (the payload or credentials are wrong).
    """

    def __init__(self, config: HttpConfig | None = None) -> None:
        self.config = config or HttpConfig()
        self._session: aiohttp.ClientSession | None = None
        self._ssl = self.config.ssl_context()

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": USER_AGENT}
            )
        return self._session

    async def post(
        self,
        url: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float,
        auth: bool = True,
    ) -> Response:
        """POST ``json_body`` (serialised compactly) or ``data`` to ``url``.  ``auth``
        False leaves out the ``http_config`` credentials (for URLs that carry their own)."""
        import aiohttp

        sent = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
            sent.setdefault("Content-Type", "application/json")
        if auth:
            header = self.config.auth_header()
            if header is not None:
                sent.setdefault("Authorization", header)
        server_hostname = None
        if self.config.tls_config is not None:
            server_hostname = self.config.tls_config.server_name
        try:
            async with self._client().post(
                url,
                data=data,
                headers=sent,
                timeout=aiohttp.ClientTimeout(total=timeout),
                proxy=self.config.proxy_url,
                allow_redirects=self.config.follow_redirects,
                server_hostname=server_hostname,
            ) as response:
                body = await response.read()
                status = response.status
                answer_headers = {key: value for key, value in response.headers.items()}
        except TimeoutError:
            raise DeliveryError(f"timeout after {timeout:g}s posting to the receiver") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return Response(status, answer_headers, body)
        text = body[:ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
        message = f"HTTP {status}" + (f": {text}" if text else "")
        retryable = status in (408, 429) or status >= 500
        raise DeliveryError(
            message,
            retryable=retryable,
            retry_after=_retry_after(answer_headers.get("Retry-After")) if retryable else None,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
