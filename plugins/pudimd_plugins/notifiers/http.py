"""The ``http`` notifier: send a request whose body and headers are templates, for a
receiver with its own format (a chat bridge, an ITSM API, a home-grown service).

pudimd's own notifier (Alertmanager has no equivalent); configured in a receiver's
``http_configs``::

    http_configs:
      - url: https://itsm.example/api/incidents   # or url_file: a file holding the URL
        method: POST                  # POST | PUT | PATCH
        content_type: application/json
        headers:                      # values are templates
          X-Severity: "{{ common_labels.severity }}"
        body: |                       # a template (required)
          {"title": {{ ("[" ~ status ~ "] " ~ common_labels.alertname) | tojson }},
           "count": {{ alerts | length }}}
        send_resolved: true           # default true
        timeout: 10s                  # optional; 0 or unset: the dispatcher's timeout
        http_config:                  # Alertmanager's http_config (auth, TLS, proxy)
          authorization: {credentials_file: /run/secrets/itsm-token}

Templates are Jinja2 (see :mod:`pudimd.alerting.templates` for what they see); ``tojson``
writes a value as a JSON literal, with its quotes and escapes.  When ``content_type`` is
JSON (``application/json`` or ``*+json``) the rendered body must parse as JSON.

A body that fails to render (or is not the JSON it should be) is not dropped: the
error is recorded in the notification's ``template_errors`` and Alertmanager's webhook
payload (version 4, as the ``webhook`` notifier sends it) is sent instead, as
``application/json``.  A header whose template fails, or renders empty, is left out (and
the error recorded).

Every request carries ``X-Pudimd-Idempotency-Key`` (see the ``webhook`` notifier).
``headers`` may not set ``Authorization`` (use ``http_config``) nor ``Content-Type`` (use
``content_type``).

Errors: connection failures, timeouts, HTTP 408, 429 and 5xx are retried (honouring
``Retry-After``); any other non-2xx answer fails the notification at once.

Not supported yet (a config error if given): the ``http_config`` fields beyond those of
:class:`pudimd_plugins.notifiers._http.HttpConfig` (``oauth2``, ``proxy_from_environment``,
``no_proxy``, ``proxy_connect_header``, ``http_headers``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from pudimd.alerting.notification import DeliveryError, Notification
from pudimd.alerting.templates import Template
from pudimd.durations import Duration
from pudimd.hookspecs import hookimpl
from pudimd.settings import NotifierSettings, SecretFile
from pudimd_plugins.notifiers._http import (
    ERROR_BODY_CHARS,
    HttpClient,
    HttpConfig,
    _retry_after,
)

__all__ = ["HttpNotifier", "HttpNotifierSettings", "pudimd_notifier_types"]

IDEMPOTENCY_HEADER = "X-Pudimd-Idempotency-Key"
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(\s*;.*)?$")
_RESERVED = {
    "authorization": "set credentials in http_config (basic_auth, authorization)",
    "content-type": "use content_type",
    "content-length": "it is computed from the body",
    "host": "it comes from url",
    "transfer-encoding": "it is chosen by the HTTP client",
    IDEMPOTENCY_HEADER.lower(): "pudimd sets it",
}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class HttpNotifierSettings(NotifierSettings):
    """One entry of a receiver's ``http_configs`` (see the module docstring)."""

    send_resolved: bool = True
    url: SecretStr | None = Field(None, description="Where to send (kept secret: may hold a token)")
    url_file: SecretFile | None = Field(None, description="File holding url")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, Template] = Field(
        default_factory=dict, description="Extra request headers; values are templates"
    )
    body: Template = Field(description="The request body (a template)")
    content_type: str = Field("application/json", description="Content-Type of the body")
    http_config: HttpConfig | None = None
    timeout: Duration | None = Field(
        None, description="Time allowed per request; 0 or unset: the dispatcher's timeout"
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name in value:
            lower = name.lower()
            if not _TOKEN.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if lower in _RESERVED:
                raise ValueError(f"header {name!r} cannot be set in headers: {_RESERVED[lower]}")
            if lower in seen:
                raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
            seen.add(lower)
        return value

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str) -> str:
        if not _MEDIA_TYPE.match(value) or "\r" in value or "\n" in value:
            raise ValueError(f"invalid content type {value!r} (expected e.g. application/json)")
        return value

    @model_validator(mode="after")
    def _url(self) -> Self:
        from urllib.parse import urlsplit

        if self.url is None:
            raise ValueError("one of url or url_file must be configured")
        try:
            parts = urlsplit(self.url.get_secret_value())
        except ValueError:
            raise ValueError("url is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http:// or https:// URL")
        return self


class HttpNotifier:
    """pudimd's generic, template-driven HTTP notifier (see the module docstring)."""

    type = "http"
    config_key = "http_configs"
    Settings = HttpNotifierSettings

    def __init__(self, settings: HttpNotifierSettings) -> None:
        self.settings = settings
        self._http = HttpClient(settings.http_config)
        self._json = _is_json(settings.content_type)

    def render_body(self, notification: Notification) -> tuple[bytes, str]:
        """The body and its content type: the rendered ``body``, or the webhook payload
        when that fails (the error recorded in ``notification.template_errors``)."""
        errors = len(notification.template_errors)
        text = notification.render(self.settings.body, "")
        if len(notification.template_errors) == errors and self._json:
            try:
                json.loads(text)
            except ValueError as exc:
                notification.template_errors.append(
                    f"body: the rendered template is not valid JSON ({exc}); "
                    "sent the webhook payload instead"
                )
        if len(notification.template_errors) > errors:
            payload = notification.webhook_payload()
            data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
            return data, "application/json"
        return text.encode(), self.settings.content_type

    def render_headers(self, notification: Notification) -> dict[str, str]:
        """The ``headers`` templates rendered; one that fails or renders empty is left out."""
        headers: dict[str, str] = {}
        for name, template in self.settings.headers.items():
            errors = len(notification.template_errors)
            value = notification.render(template, "")
            if len(notification.template_errors) > errors:
                notification.template_errors[-1] = (
                    f"header {name}: {notification.template_errors[-1]}"
                )
            value = " ".join(value.split())  # no line breaks in a header
            if value:
                headers[name] = value
        return headers

    async def send(self, notification: Notification, timeout: float) -> str | None:
        body, content_type = self.render_body(notification)
        headers = self.render_headers(notification)
        headers["Content-Type"] = content_type
        headers[IDEMPOTENCY_HEADER] = notification.idempotency_key
        if self.settings.timeout:
            timeout = min(timeout, self.settings.timeout.total_seconds())
        assert self.settings.url is not None  # the settings' validator saw to it
        url = self.settings.url.get_secret_value()
        if self.settings.method == "POST":
            await self._http.post(url, data=body, headers=headers, timeout=timeout)
        else:
            await self._request(url, body, headers, timeout)
        return None

    async def _request(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> None:
        """PUT or PATCH, with the same error handling as ``HttpClient.post``.

        TODO: drop once ``HttpClient`` takes a method."""
        import aiohttp

        config = self._http.config
        auth = config.auth_header()
        if auth is not None:
            headers.setdefault("Authorization", auth)
        tls = config.tls_config
        try:
            async with self._http._client().request(
                self.settings.method,
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                proxy=config.proxy_url,
                allow_redirects=config.follow_redirects,
                server_hostname=tls.server_name if tls is not None else None,
            ) as response:
                answer = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            raise DeliveryError(f"timeout after {timeout:g}s sending to the receiver") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return
        text = answer[:ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
        retryable = status in (408, 429) or status >= 500
        raise DeliveryError(
            f"HTTP {status}" + (f": {text}" if text else ""),
            retryable=retryable,
            retry_after=_retry_after(retry_after) if retryable else None,
        )

    async def aclose(self) -> None:
        await self._http.aclose()


@hookimpl
def pudimd_notifier_types() -> list[type[Any]]:
    """The ``http`` notifier."""
    return [HttpNotifier]
