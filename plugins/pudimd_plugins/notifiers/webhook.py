"""The ``webhook`` notifier: POST Alertmanager's webhook payload (version 4) to a URL.

Configured in a receiver's ``webhook_configs``, with Alertmanager's fields, so an
``alertmanager.yml`` receiver entry validates unchanged::

    webhook_configs:
      - url: https://hooks.example/alerts   # or url_file: a file holding the URL
        send_resolved: true                 # default true, as in Alertmanager
        max_alerts: 0                       # at most this many alerts per message; 0: all
        timeout: 10s                        # optional; 0 or unset: the dispatcher's timeout
        http_config:                        # Alertmanager's http_config (auth, TLS, proxy)
          authorization: {credentials_file: /run/secrets/hook-token}
        # pudimd's additions:
        headers: {X-Team: sre}              # extra request headers
        hmac_secret_file: /run/secrets/hook-hmac   # or hmac_secret: sign every request

Request: ``POST`` with ``Content-Type: application/json`` and the body Alertmanager sends
(``version``, ``groupKey``, ``truncatedAlerts``, ``status``, ``receiver``, ``groupLabels``,
``commonLabels``, ``commonAnnotations``, ``externalURL``, ``alerts``).  With ``max_alerts``
the ``alerts`` list is cut to that many and ``truncatedAlerts`` counts the ones left out.
Every request carries ``X-Pudimd-Idempotency-Key``: the same value when pudimd resends a
notification after a crash or a failed attempt, so a receiver can drop duplicates.

``headers`` may not set ``Authorization`` (use ``http_config``), ``Content-Type`` (always
JSON) nor the headers pudimd sets itself.

Signature (``hmac_secret``): each request carries::

    X-Pudimd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

To verify it, a receiver (1) reads the raw request body, before any JSON parsing; (2)
splits the header on ``,`` into ``key=value`` pairs; (3) computes the HMAC-SHA256 of the
bytes ``<t>.`` followed by the body with the shared secret, in lowercase hex; (4) compares
it in constant time with each ``v1`` value; (5) rejects the request when ``t`` is more than
a few minutes away from its own clock (a replayed request).  Python receivers can call
:func:`verify_signature`.

Errors: connection failures, timeouts, HTTP 408, 429 and 5xx are retried (honouring
``Retry-After``); any other non-2xx answer fails the notification at once.

Not supported yet (a config error if given): Alertmanager's ``http_config`` fields beyond
those of :class:`pudimd_plugins.notifiers._http.HttpConfig` (``oauth2``, ``proxy_from_
environment``, ``no_proxy``, ``proxy_connect_header``, ``http_headers``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any, Self

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from pudimd.alerting.notification import Notification
from pudimd.durations import Duration
from pudimd.hookspecs import hookimpl
from pudimd.settings import NotifierSettings, SecretFile
from pudimd_plugins.notifiers._http import HttpClient, HttpConfig

__all__ = [
    "SIGNATURE_HEADER",
    "WebhookNotifier",
    "WebhookSettings",
    "pudimd_notifier_types",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Pudimd-Signature"
IDEMPOTENCY_HEADER = "X-Pudimd-Idempotency-Key"
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_RESERVED = {
    "authorization": "set credentials in http_config (basic_auth, authorization)",
    "content-type": "the webhook payload is always application/json",
    "content-length": "it is computed from the body",
    "host": "it comes from url",
    "transfer-encoding": "it is chosen by the HTTP client",
    SIGNATURE_HEADER.lower(): "pudimd sets it (hmac_secret)",
    IDEMPOTENCY_HEADER.lower(): "pudimd sets it",
}


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """Refuse header names that are not HTTP tokens, values with line breaks, and the
    headers pudimd sets itself."""
    seen: set[str] = set()
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}")
        lower = name.lower()
        if lower in _RESERVED:
            raise ValueError(f"header {name!r} cannot be set in headers: {_RESERVED[lower]}")
        if lower in seen:
            raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
        seen.add(lower)
        if "\r" in value or "\n" in value:
            raise ValueError(f"the value of header {name!r} contains a line break")
    return headers


def check_url(url: str) -> None:
    """``url`` must be an absolute http(s) URL (the message never shows it: it may hold a
    token)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url must be an absolute http:// or https:// URL")


class WebhookSettings(NotifierSettings):
    """One entry of a receiver's ``webhook_configs`` (see the module docstring)."""

    send_resolved: bool = True
    url: SecretStr | None = Field(None, description="Where to POST (kept secret: may hold a token)")
    url_file: SecretFile | None = Field(None, description="File holding url")
    http_config: HttpConfig | None = None
    max_alerts: int = Field(0, ge=0, description="At most this many alerts per message; 0: all")
    timeout: Duration | None = Field(
        None, description="Time allowed per request; 0 or unset: the dispatcher's timeout"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers")
    hmac_secret: SecretStr | None = Field(None, description="Sign requests (X-Pudimd-Signature)")
    hmac_secret_file: SecretFile | None = None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)

    @model_validator(mode="after")
    def _url(self) -> Self:
        if self.url is None:
            raise ValueError("one of url or url_file must be configured")
        check_url(self.url.get_secret_value())
        return self


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Pudimd-Signature`` value for ``body`` sent at ``timestamp`` (now if None)."""
    key = secret.encode() if isinstance(secret, str) else secret
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(key, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def verify_signature(
    secret: str | bytes,
    header: str,
    body: bytes,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (an ``X-Pudimd-Signature`` value) signs ``body`` (the raw
    request body) with ``secret``, at a time at most ``tolerance`` seconds away from
    ``now`` (default: the current time).  Any ``v1`` value may match (several are allowed
    while a secret is being rotated)."""
    stamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, eq, value = part.strip().partition("=")
        if not eq:
            return False
        if key == "t":
            if not value.isdigit():
                return False
            stamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if stamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    expected = sign(secret, body, stamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


class WebhookNotifier:
    """Alertmanager's webhook notifier (see the module docstring)."""

    type = "webhook"
    config_key = "webhook_configs"
    Settings = WebhookSettings

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._http = HttpClient(settings.http_config)

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON document sent for ``notification`` (``max_alerts`` applied)."""
        payload = notification.webhook_payload()
        limit = self.settings.max_alerts
        alerts = payload["alerts"]
        if limit and len(alerts) > limit:
            payload["alerts"] = alerts[:limit]
            payload["truncatedAlerts"] = notification.truncated_alerts + len(alerts) - limit
        return payload

    async def send(self, notification: Notification, timeout: float) -> str | None:
        body = orjson.dumps(self.payload(notification))
        headers = dict(self.settings.headers)
        headers["Content-Type"] = "application/json"
        headers[IDEMPOTENCY_HEADER] = notification.idempotency_key
        if self.settings.hmac_secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.settings.hmac_secret.get_secret_value(), body)
        if self.settings.timeout:
            timeout = min(timeout, self.settings.timeout.total_seconds())
        assert self.settings.url is not None  # the settings' validator saw to it
        await self._http.post(
            self.settings.url.get_secret_value(), data=body, headers=headers, timeout=timeout
        )
        return None

    async def aclose(self) -> None:
        await self._http.aclose()


@hookimpl
def pudimd_notifier_types() -> list[type[Any]]:
    """The ``webhook`` notifier."""
    return [WebhookNotifier]
