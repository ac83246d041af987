"""The ``email`` notifier: send one mail per notification through an SMTP smarthost.

Configured in a receiver's ``email_configs`` with Alertmanager's fields, so an
``alertmanager.yml`` receiver entry validates unchanged::

    email_configs:
      - to: oncall@example.com, sre@example.com   # template; a comma-separated list
        from: pudimd@example.com        # template; default: smtp_from of alerting.global
        smarthost: smtp.example.com:587 # host:port; default: smtp_smarthost
        hello: localhost                # name given in EHLO; default: smtp_hello or localhost
        auth_username: pudimd           # log in (AUTH) when the server offers it
        auth_password_file: /run/secrets/smtp   # or auth_password (PLAIN and LOGIN)
        auth_secret: ...                # or auth_secret_file (CRAM-MD5)
        auth_identity: ""               # authorisation identity for PLAIN
        require_tls: true               # STARTTLS is required (default, as Alertmanager)
        force_implicit_tls: null        # null: implicit TLS ("SMTPS") on port 465 only
        tls_config: {ca_file: /etc/ssl/corp-ca.pem, server_name: smtp.example.com}
        headers: {Subject: "{{ common_labels.alertname }} is {{ status }}"}  # templates
        html: "..."                     # template; default: pudimd's HTML summary; "": none
        text: "..."                     # template; default: pudimd's text summary; "": none
        send_resolved: false            # default false, as in Alertmanager
        threading: {enabled: false, thread_by_date: none}   # none | daily

Every field but ``to`` may come from Alertmanager's ``global`` block (``smtp_from``,
``smtp_smarthost``, ``smtp_hello``, ``smtp_auth_username``, ``smtp_auth_password``,
``smtp_auth_password_file``, ``smtp_auth_secret``, ``smtp_auth_secret_file``,
``smtp_auth_identity``, ``smtp_require_tls``, ``smtp_force_implicit_tls``): see
:attr:`EmailNotifier.global_defaults`.

Session: connect to the smarthost (with TLS from the first byte when
``force_implicit_tls`` is true, or unset and the port is 465), ``EHLO`` with ``hello``,
then ``STARTTLS`` when ``require_tls`` is true and the connection is not already TLS (a
server that does not offer it fails the notification: no mail goes out in clear text),
then ``AUTH`` when ``auth_username`` is set and the server offers it: the first mechanism
the server lists among CRAM-MD5 (with ``auth_secret``), PLAIN and LOGIN (with
``auth_password``).  As in Alertmanager, a password is never sent over a connection
without TLS, unless the smarthost is on loopback.  The server certificate is verified
against ``tls_config`` (or the system's CAs) for the smarthost's name (or
``tls_config.server_name``).

Message: ``multipart/alternative`` with the text part then the HTML part (one of them
alone when the other is set to ``""``); headers ``From``, ``To``, ``Subject`` (from
``headers`` when given there, else ``from``, ``to`` and the default subject, like
Alertmanager's ``[FIRING:2] HighLatency (prod)``: status, firing count, group label values,
then the other common label values), ``Date``, ``Message-ID``, ``Auto-Submitted:
auto-generated``, ``X-Pudimd-Idempotency-Key``, the other ``headers``, and
``References``/``In-Reply-To`` with ``threading`` (all mails of a group, or of a group and
day, form one thread).  Subjects are cut to 255 characters; the default bodies list at most
100 firing and 100 resolved alerts (labels, annotations, start and end, source link) and say
how many were left out.  Once every firing alert of the group is acknowledged, the default
subject starts with ``[ACK]`` and both bodies say *Acknowledged*.  With signed action
links on (``alerting.external_url`` set; see :mod:`pudimd.alerting.links`), each firing
alert has its *Acknowledge*, *Snooze 1h* and *Resolve* links (only *Resolve* once
acknowledged) in both bodies; a link opens a confirmation page, so mail scanners that
fetch links change nothing.  A custom template that fails falls back to the default (the error
is recorded on the notification); a failing ``to`` or ``from`` template, or one rendering no
valid address, fails the notification.

Errors: connection failures, timeouts, TLS failures and SMTP ``4xx`` answers are retried;
failed authentication, SMTP ``5xx`` answers (recipient refused...), a server without
STARTTLS under ``require_tls``, and unusable addresses fail the notification at once.
``send()`` returns the server's answer to the message (and any refused recipients).

Not supported yet (a config error if given): ``tls_config`` fields beyond those of
:class:`pudimd_plugins.notifiers._http.TlsConfig` (``ca``, ``cert``, ``key`` inline,
``max_version``); XOAUTH2 authentication.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import socket
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import anyio
from pydantic import Field, SecretStr, field_validator, model_validator

from pudimd.alerting.notification import DeliveryError, Notification
from pudimd.alerting.templates import Template, render_notification, truncate
from pudimd.hookspecs import hookimpl
from pudimd.settings import NotifierSettings, PluginSettings, SecretFile
from pudimd_plugins.notifiers._http import HttpConfig, TlsConfig

if TYPE_CHECKING:
    import aiosmtplib

__all__ = ["EmailNotifier", "EmailSettings", "EmailThreading", "pudimd_notifier_types"]

SUBJECT_LIMIT = 255
"""Characters kept of a subject (the common limit of mail stores and clients)."""
IDEMPOTENCY_HEADER = "X-Pudimd-Idempotency-Key"
_HELLO = re.compile(r"^[A-Za-z0-9.\-\[\]:_]+$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII but ':'
_STRUCTURAL = {"Content-Type", "Content-Transfer-Encoding", "Mime-Version"}

_SUBJECT = (
    '{% set others = common_labels | sortedpairs | rejectattr("0", "in", group_labels)'
    ' | map(attribute="1") | list %}'
    "{% if acknowledged %}[ACK] {% endif %}"
    '[{{ status | upper }}{% if status == "firing" %}:{{ firing | length }}{% endif %}] '
    '{{ group_labels | sortedpairs | map(attribute="1") | join(" ") }}'
    '{% if others %} ({{ others | join(" ") }}){% endif %}'
)
DEFAULT_SUBJECT = _SUBJECT
"""The default ``Subject`` template: ``[FIRING:2] HighLatency (prod)``, with ``[ACK] `` in
front once every firing alert of the group is acknowledged."""

_TIME = '.strftime("%Y-%m-%d %H:%M:%S %Z")'
_SHOWN = 100

DEFAULT_TEXT = (
    (
        _SUBJECT
        # trim_blocks drops the first line break after the subject's closing tag
        + """


{% if acknowledged %}
Acknowledged: someone is on it; repeats are paused.

{% endif %}
{% for title, items in [("Firing", firing), ("Resolved", resolved)] if items %}
{{ title }} ({{ items | length }}):
{% for alert in items[:@SHOWN@] %}

- {{ alert.annotations.summary or alert.labels.alertname }}
  Labels:
{% for name, value in alert.labels | sortedpairs %}
    {{ name }} = {{ value }}
{% endfor %}
{% if alert.annotations %}
  Annotations:
{% for name, value in alert.annotations | sortedpairs %}
    {{ name }} = {{ value }}
{% endfor %}
{% endif %}
  Started: {{ alert.starts_at@TIME@ }}
{% if alert.status == "resolved" and alert.ends_at %}
  Ended: {{ alert.ends_at@TIME@ }}
{% endif %}
{% if alert.generator_url %}
  Source: {{ alert.generator_url }}
{% endif %}
{% if alert.ack_url %}
{% if not acknowledged %}
  Acknowledge: {{ alert.ack_url }}
  Snooze {{ snooze_for }}: {{ alert.snooze_url }}
{% endif %}
  Resolve: {{ alert.resolve_url }}
{% endif %}
{% endfor %}
{% if items | length > @SHOWN@ %}

... and {{ items | length - @SHOWN@ }} more.
{% endif %}

{% endfor %}
{% if truncated_alerts %}
{{ truncated_alerts }} more alerts were left out of this notification.

{% endif %}
Sent by pudimd to {{ receiver }}{% if external_url %}: {{ external_url }}{% endif %}

"""
    )
    .replace("@SHOWN@", str(_SHOWN))
    .replace("@TIME@", _TIME)
)
"""The default text body: the subject line, then each firing and resolved alert."""

_LINK = (
    '{% if URL.startswith(("http://", "https://")) %}'
    '<a href="{{ URL | e }}">{{ URL | e }}</a>'
    "{% else %}{{ URL | e }}{% endif %}"
)
"""A link only for http(s) URLs (never ``javascript:``), its text and target escaped."""

DEFAULT_HTML = (
    """<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>"""
    + _SUBJECT.replace("}}", "| e }}")
    + """</title></head>
<body style="font-family: Helvetica, Arial, sans-serif; font-size: 14px; color: #222;">
<h2 style="color: {{ "#2e7d32" if status != "firing" else "#b26a00" if acknowledged \
else "#c62828" }};">"""
    + _SUBJECT.replace("}}", "| e }}")
    + """</h2>
{% if acknowledged %}
<p style="color: #b26a00;"><strong>Acknowledged</strong>: someone is on it; repeats are paused.</p>
{% endif %}
{% for title, items in [("Firing", firing), ("Resolved", resolved)] if items %}
<h3>{{ title }} ({{ items | length }})</h3>
{% for alert in items[:@SHOWN@] %}
<table cellpadding="4" style="border-collapse: collapse; margin-bottom: 12px; width: 100%;">
<tr><th colspan="2" style="text-align: left; background: #f2f2f2;">"""
    """{{ (alert.annotations.summary or alert.labels.alertname) | e }}</th></tr>
<tr><td style="vertical-align: top; width: 110px;">Labels</td><td>
{% for name, value in alert.labels | sortedpairs %}
<code>{{ name | e }}</code> = {{ value | e }}<br>
{% endfor %}
</td></tr>
{% if alert.annotations %}
<tr><td style="vertical-align: top;">Annotations</td><td>
{% for name, value in alert.annotations | sortedpairs %}
<code>{{ name | e }}</code> = {{ value | e }}<br>
{% endfor %}
</td></tr>
{% endif %}
<tr><td>Started</td><td>{{ alert.starts_at@TIME@ | e }}</td></tr>
{% if alert.status == "resolved" and alert.ends_at %}
<tr><td>Ended</td><td>{{ alert.ends_at@TIME@ | e }}</td></tr>
{% endif %}
{% if alert.generator_url %}
<tr><td>Source</td><td>@SOURCE@</td></tr>
{% endif %}
{% if alert.ack_url %}
<tr><td>Act</td><td>
{% if not acknowledged %}
<a href="{{ alert.ack_url | e }}">Acknowledge</a> ·
<a href="{{ alert.snooze_url | e }}">Snooze {{ snooze_for | e }}</a> ·
{% endif %}
<a href="{{ alert.resolve_url | e }}">Resolve</a>
</td></tr>
{% endif %}
</table>
{% endfor %}
{% if items | length > @SHOWN@ %}
<p>... and {{ items | length - @SHOWN@ }} more.</p>
{% endif %}
{% endfor %}
{% if truncated_alerts %}
<p>{{ truncated_alerts }} more alerts were left out of this notification.</p>
{% endif %}
<p style="color: #777;">Sent by pudimd to {{ receiver | e }}"""
    """{% if external_url %}: @EXTERNAL@{% endif %}</p>
</body>
</html>
""".replace("@SHOWN@", str(_SHOWN))
    .replace("@TIME@", _TIME)
    .replace("@SOURCE@", _LINK.replace("URL", "alert.generator_url"))
    .replace("@EXTERNAL@", _LINK.replace("URL", "external_url"))
)
"""The default HTML body (every value escaped: the template environment does not
autoescape)."""


def _canonical(name: str) -> str:
    """``content-type`` -> ``Content-Type`` (Go's CanonicalMIMEHeaderKey)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid smarthost {value!r}: expected host:port (port 1-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"invalid smarthost {value!r}: write an IPv6 address as [addr]:port")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmailThreading(PluginSettings):
    """Alertmanager's ``threading``: put a group's mails in one thread."""

    enabled: bool = False
    thread_by_date: Literal["none", "daily"] = Field(
        "none", description="daily: a new thread each day (UTC)"
    )


class EmailSettings(NotifierSettings):
    """One entry of a receiver's ``email_configs`` (see the module docstring)."""

    send_resolved: bool = False
    to: Template = Field(description="Recipients, comma-separated (a template)")
    from_: Template = Field(
        alias="from", description="Sender address (a template); default: smtp_from (global)"
    )
    smarthost: str = Field(description="SMTP server as host:port; default: smtp_smarthost (global)")
    hello: str = Field("localhost", description="Name given in EHLO")
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    auth_password_file: SecretFile | None = None
    auth_secret: SecretStr | None = Field(None, description="CRAM-MD5 secret")
    auth_secret_file: SecretFile | None = None
    auth_identity: str | None = Field(None, description="PLAIN authorisation identity")
    require_tls: bool = Field(True, description="Require STARTTLS (unless implicit TLS)")
    force_implicit_tls: bool | None = Field(
        None, description="TLS from the first byte; null: only on port 465"
    )
    tls_config: TlsConfig | None = None
    headers: dict[str, Template] = Field(
        default_factory=dict, description="Mail headers (Subject, To, From...); templates"
    )
    html: Template | None = Field(None, description="HTML body; null: default; empty: none")
    text: Template | None = Field(None, description="Text body; null: default; empty: none")
    threading: EmailThreading = Field(default_factory=EmailThreading)

    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, value: str) -> str:
        _split_hostport(value)
        return value

    @field_validator("hello")
    @classmethod
    def _hello(cls, value: str) -> str:
        if not _HELLO.match(value):
            raise ValueError(f"invalid EHLO name {value!r}")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, template in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"invalid header name {name!r}")
            canonical = _canonical(name)
            if canonical in headers:
                raise ValueError(f"duplicate header {canonical!r} in email config")
            if canonical in _STRUCTURAL:
                raise ValueError(f"header {name!r} cannot be set: pudimd builds the MIME parts")
            headers[canonical] = template
        return headers

    @model_validator(mode="after")
    def _threading(self) -> Self:
        if self.threading.enabled:
            for name in ("References", "In-Reply-To"):
                if name in self.headers:
                    raise ValueError(
                        f"conflicting configuration: threading.enabled conflicts with "
                        f"custom {name} header"
                    )
        return self


class EmailNotifier:
    """Alertmanager's email notifier (see the module docstring)."""

    type = "email"
    config_key = "email_configs"
    Settings = EmailSettings
    global_defaults: ClassVar[dict[str, str]] = {
        "smtp_from": "from",
        "smtp_smarthost": "smarthost",
        "smtp_hello": "hello",
        "smtp_auth_username": "auth_username",
        "smtp_auth_password": "auth_password",
        "smtp_auth_password_file": "auth_password_file",
        "smtp_auth_identity": "auth_identity",
        "smtp_auth_secret": "auth_secret",
        "smtp_auth_secret_file": "auth_secret_file",
        "smtp_require_tls": "require_tls",
        "smtp_force_implicit_tls": "force_implicit_tls",
    }
    """Alertmanager ``global`` key -> the key of an ``email_configs`` entry it defaults
    (``from`` is the field ``from_``, written ``from``)."""

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self.host, self.port = _split_hostport(settings.smarthost)
        forced = settings.force_implicit_tls
        self.implicit_tls = forced if forced is not None else self.port == 465
        tls = settings.tls_config
        self.server_name = (tls.server_name if tls is not None else None) or self.host
        self._ssl: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            tls = self.settings.tls_config
            context = HttpConfig(tls_config=tls).ssl_context() if tls is not None else None
            self._ssl = context or ssl.create_default_context()
        return self._ssl

    # -- the message ------------------------------------------------------------------

    def _render_required(self, notification: Notification, field: str, source: str) -> str:
        try:
            return render_notification(source, notification).strip()
        except Exception as exc:
            notification.template_errors.append(f"{field}: {type(exc).__name__}: {exc}")
            raise DeliveryError(
                f"the {field!r} template failed: {type(exc).__name__}: {exc}", retryable=False
            ) from None

    def _render_custom(self, notification: Notification, name: str, fallback: str) -> str:
        """Header ``name``'s template rendered, or ``fallback`` when it fails."""
        errors = len(notification.template_errors)
        value = notification.render(self.settings.headers[name], "")
        if len(notification.template_errors) > errors:
            notification.template_errors[-1] = f"header {name}: {notification.template_errors[-1]}"
            return fallback
        return value

    def build_message(self, notification: Notification) -> tuple[EmailMessage, str, list[str]]:
        """The message for ``notification``, its envelope sender and its recipients."""
        from email import policy
        from email.utils import format_datetime, getaddresses, make_msgid

        sender_text = self._render_required(notification, "from", self.settings.from_)
        to_text = self._render_required(notification, "to", self.settings.to)
        senders = [address for _, address in getaddresses([sender_text]) if address]
        if len(senders) != 1 or "@" not in senders[0]:
            raise DeliveryError(
                f"'from' must be exactly one address (got {sender_text!r})", retryable=False
            )
        recipients = [address for _, address in getaddresses([to_text]) if "@" in address]
        if not recipients:
            raise DeliveryError(f"'to' holds no address (got {to_text!r})", retryable=False)

        def clean(value: str) -> str:
            return " ".join(value.split())  # no line breaks (header injection), no runs

        headers = self.settings.headers
        if "Subject" in headers:
            subject = self._render_custom(notification, "Subject", "")
            subject = subject or notification.render(None, DEFAULT_SUBJECT)
        else:
            subject = notification.render(None, DEFAULT_SUBJECT)
        message = EmailMessage(policy=policy.SMTP.clone(cte_type="7bit"))
        message["From"] = clean(
            self._render_custom(notification, "From", sender_text)
            if "From" in headers
            else sender_text
        )
        message["To"] = clean(
            self._render_custom(notification, "To", to_text) if "To" in headers else to_text
        )
        message["Subject"] = truncate(clean(subject), SUBJECT_LIMIT)
        message["Date"] = format_datetime(datetime.now(UTC))
        if "Message-Id" not in headers:
            message["Message-ID"] = make_msgid(domain=senders[0].rpartition("@")[2])
        message["Auto-Submitted"] = "auto-generated"
        message[IDEMPOTENCY_HEADER] = clean(notification.idempotency_key)
        if self.settings.threading.enabled:
            key = hashlib.sha256(notification.group_key.encode()).hexdigest()[:16]
            day = ""
            if self.settings.threading.thread_by_date == "daily":
                day = datetime.now(UTC).strftime("%Y-%m-%d")
            root = f"<alert-{key}-{day}@pudimd>"
            message["References"] = root
            message["In-Reply-To"] = root
        for name in headers:
            if name not in ("Subject", "From", "To"):
                value = clean(self._render_custom(notification, name, ""))
                if not value:
                    continue
                del message[name]  # a header given here replaces pudimd's (Date...)
                try:
                    message[name] = value
                except (TypeError, ValueError) as exc:
                    notification.template_errors.append(f"header {name}: {exc}")

        text = (
            None
            if self.settings.text == ""
            else notification.render(self.settings.text, DEFAULT_TEXT)
        )
        html = (
            None
            if self.settings.html == ""
            else notification.render(self.settings.html, DEFAULT_HTML)
        )
        if text is not None:
            message.set_content(text)
            if html is not None:
                message.add_alternative(html, subtype="html")
        else:
            message.set_content(html or "", subtype="html" if html is not None else "plain")
        return message, senders[0], recipients

    # -- the session ------------------------------------------------------------------

    async def send(self, notification: Notification, timeout: float) -> str | None:
        message, sender, recipients = self.build_message(notification)
        try:
            data = message.as_bytes()
        except (TypeError, ValueError, UnicodeError) as exc:  # e.g. a non-ASCII address
            raise DeliveryError(f"cannot encode the message: {exc}", retryable=False) from None
        import aiosmtplib

        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            local_hostname=self.settings.hello,
            timeout=timeout,
            use_tls=self.implicit_tls,
            start_tls=False,
            tls_context=self._ssl_context() if self.implicit_tls else None,
        )
        phase = "connect"
        try:
            with anyio.fail_after(timeout):
                await self._connect(client)
                phase = "ehlo"
                await client.ehlo()
                tls = self.implicit_tls
                if self.settings.require_tls and not tls:
                    phase = "starttls"
                    if not client.supports_extension("starttls"):
                        raise DeliveryError(
                            f"require_tls is true but {self.settings.smarthost} does not offer "
                            "STARTTLS",
                            retryable=False,
                        )
                    await client.starttls(
                        server_hostname=self.server_name, tls_context=self._ssl_context()
                    )
                    tls = True
                    await client.ehlo()
                if self.settings.auth_username and client.supports_extension("auth"):
                    phase = "auth"
                    await self._login(client, tls)
                phase = "mail"
                refused, answer = await client.sendmail(sender, recipients, data)
                phase = "quit"
                await client.quit()
        except TimeoutError:
            raise DeliveryError(f"timeout after {timeout:g}s during {phase}") from None
        except DeliveryError:
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"authentication failed: {exc.code} {exc.message}", retryable=False
            ) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            detail = "; ".join(
                f"{refusal.recipient}: {refusal.code} {refusal.message}"
                for refusal in exc.recipients
            )
            raise DeliveryError(
                f"all recipients refused: {detail}", retryable=any(c < 500 for c in codes)
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{phase}: {exc.code} {exc.message}", retryable=exc.code < 500
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{phase}: {exc}") from None
        finally:
            client.close()
        result = answer.strip()
        if refused:
            result += "; refused: " + ", ".join(
                f"{address} ({response.code} {response.message})"
                for address, response in refused.items()
            )
        return truncate(result, 200)

    async def _connect(self, client: aiosmtplib.SMTP) -> None:
        if not (self.implicit_tls and self.server_name != self.host):
            await client.connect()
            return
        # Implicit TLS verified for another name than the one connected to: aiosmtplib
        # verifies its hostname, so hand it a connected socket and the name to verify.
        sock = await _open_socket(self.host, self.port)
        try:
            await client.connect(hostname=self.server_name, port=None, sock=sock)
        except BaseException:
            sock.close()
            raise

    async def _login(self, client: aiosmtplib.SMTP, tls: bool) -> None:
        """AUTH with the first mechanism the server offers that we have credentials for."""
        username = self.settings.auth_username or ""
        password = self.settings.auth_password
        secret = self.settings.auth_secret
        offered = client.esmtp_extensions.get("auth", "").upper().split()
        for mechanism in offered:
            if mechanism == "CRAM-MD5" and secret is not None:
                await client.auth_crammd5(username, secret.get_secret_value())
                return
            if mechanism in ("PLAIN", "LOGIN") and password is not None:
                if not tls and not _is_loopback(self.host):
                    raise DeliveryError(
                        f"refusing to send the password to {self.host} without TLS "
                        "(set require_tls: true)",
                        retryable=False,
                    )
                if mechanism == "LOGIN":
                    await client.auth_login(username, password.get_secret_value())
                else:
                    await _auth_plain(
                        client,
                        self.settings.auth_identity or "",
                        username,
                        password.get_secret_value(),
                    )
                return
        have = "auth_secret" if secret is not None else "auth_password"
        if secret is None and password is None:
            have = "no password or secret"
        raise DeliveryError(
            f"no usable AUTH mechanism: the server offers {' '.join(offered) or 'none'}, "
            f"configured: {have}",
            retryable=False,
        )

    async def aclose(self) -> None:
        """Nothing to release: every notification opens its own SMTP session."""


async def _auth_plain(client: aiosmtplib.SMTP, identity: str, username: str, password: str) -> None:
    """AUTH PLAIN with an authorisation identity (aiosmtplib's own sends none)."""
    import aiosmtplib

    token = base64.b64encode(f"{identity}\0{username}\0{password}".encode())
    response = await client.execute_command(b"AUTH", b"PLAIN", token)
    if response.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)


async def _open_socket(host: str, port: int) -> socket.socket:
    """A connected, non-blocking TCP socket to ``host:port`` (each address in turn)."""
    import asyncio

    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"cannot resolve {host}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


@hookimpl
def pudimd_notifier_types() -> list[type[Any]]:
    """The ``email`` notifier."""
    return [EmailNotifier]
