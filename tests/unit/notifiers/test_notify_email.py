"""The ``email`` notifier against a real aiosmtpd server on loopback (TLS certificates by
trustme); received mails are parsed back with the ``email`` package."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pudimd_plugins.notifiers.email import EmailNotifier, EmailSettings, pudimd_notifier_types
from pydantic import ValidationError

from pudimd.alerting.notification import DeliveryError, Notification
from tests.helpers import free_port
from tests.unit.notifiers.notifier_helpers import (
    action_links_on,
    sample_alert,
    sample_notification,
)

pytestmark = pytest.mark.anyio

USER, PASSWORD, CRAM_SECRET = "alice", "s3cret", "cr4m"


@dataclass
class Mail:
    """One mail the server accepted."""

    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool


@dataclass
class Mailbox:
    """What a :func:`smtpd` server received (mails, AUTH mechanisms that succeeded)."""

    port: int = 0
    mails: list[Mail] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    def last(self) -> Mail:
        """The last mail received (a method: aiosmtpd inspects every attribute of its handler)."""
        assert self.mails, "the server received no mail"
        return self.mails[-1]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        sender = envelope.mail_from or ""
        implicit = server.transport is not None and server.transport.get_extra_info("ssl_object")
        tls = session.ssl is not None or bool(implicit)  # STARTTLS, or TLS from the start
        self.mails.append(Mail(sender, list(envelope.rcpt_tos), message, tls))
        return "250 2.0.0 queued as 42"

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        challenge = b"<1896.697170952@pudimd.test>"
        answer = await server.challenge_auth(challenge)
        assert isinstance(answer, bytes)
        user, _, digest = answer.decode().partition(" ")
        expected = hmac.new(CRAM_SECRET.encode(), challenge, hashlib.md5).hexdigest()
        ok = user == USER and hmac.compare_digest(digest, expected)
        if ok:
            self.logins.append("CRAM-MD5")
        return AuthResult(success=ok, handled=False)

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)


@asynccontextmanager
async def smtpd(auth: bool = False, **kwargs: Any) -> AsyncIterator[Mailbox]:
    """An aiosmtpd server on 127.0.0.1 (in its own thread, as aiosmtpd runs); ``auth``:
    it checks logins (alice / s3cret, or CRAM-MD5 with the secret cr4m)."""
    box = Mailbox(port=free_port())
    if auth:
        kwargs["authenticator"] = box.authenticate
    controller = Controller(
        box, hostname="127.0.0.1", port=box.port, ident="pudimd-test-smtpd", **kwargs
    )
    await anyio.to_thread.run_sync(controller.start)
    try:
        yield box
    finally:
        await anyio.to_thread.run_sync(controller.stop)


def server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("localhost", "127.0.0.1"))).configure_cert(context)
    return context


async def deliver(notification: Notification, within: float = 5.0, **settings: Any) -> str | None:
    """Send ``notification`` once (``within``: the dispatcher's timeout) with ``settings``
    (an ``email_configs`` entry; ``from`` defaults to pudimd@example.com)."""
    settings.setdefault("from", "pudimd@example.com")
    notifier = EmailNotifier(EmailSettings.model_validate(settings))
    try:
        return await notifier.send(notification, within)
    finally:
        await notifier.aclose()


def plain(port: int, **settings: Any) -> dict[str, Any]:
    """Settings for a server without TLS."""
    return {"smarthost": f"127.0.0.1:{port}", "require_tls": False, **settings}


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None, f"no text/{kind} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


# -- settings -----------------------------------------------------------------------


def test_plugin_registers_the_email_type() -> None:
    assert pudimd_notifier_types() == [EmailNotifier]
    assert EmailNotifier.config_key == "email_configs"
    assert EmailNotifier.global_defaults["smtp_from"] == "from"
    assert EmailNotifier.global_defaults["smtp_smarthost"] == "smarthost"


def test_alertmanager_receiver_entry_validates_unchanged(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    entry = {
        "to": "oncall@example.com",
        "from": "alertmanager@example.com",
        "smarthost": "smtp.example.com:587",
        "hello": "am.example.com",
        "auth_username": "am",
        "auth_password_file": str(tmp_path / "pw"),
        "auth_identity": "am",
        "require_tls": True,
        "tls_config": {"insecure_skip_verify": False, "server_name": "smtp.example.com"},
        "headers": {"subject": "{{ common_labels.alertname }}"},
        "html": "{{ status }}",
        "send_resolved": True,
    }
    settings = EmailSettings.model_validate(entry)
    assert settings.from_ == "alertmanager@example.com"
    assert settings.auth_password is not None
    assert settings.auth_password.get_secret_value() == "s3cret"
    assert list(settings.headers) == ["Subject"]  # canonical header names, as Alertmanager


def test_send_resolved_defaults_to_false() -> None:
    settings = EmailSettings.model_validate(
        {"to": "a@example.com", "from": "b@example.com", "smarthost": "h:25"}
    )
    assert settings.send_resolved is False
    assert settings.require_tls is True
    assert settings.hello == "localhost"


def test_missing_from_is_reported_as_from() -> None:
    with pytest.raises(ValidationError) as caught:
        EmailSettings.model_validate({"to": "a@example.com", "smarthost": "h:25"})
    assert caught.value.errors()[0]["loc"] == ("from",)
    assert "from\n  Field required" in str(caught.value)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        EmailSettings.model_validate(
            {"to": "a@x.example", "from_": "b@x.example", "smarthost": "h:25"}
        )


@pytest.mark.parametrize(
    ("smarthost", "error"),
    [
        (None, "smarthost\n  Field required"),
        ("smtp.example.com", "expected host:port"),
        ("::1:25", r"\[addr\]:port"),
        ("h:99999", "expected host:port"),
    ],
)
def test_invalid_smarthost_is_a_config_error(smarthost: str | None, error: str) -> None:
    entry = {"to": "a@example.com", "from": "b@example.com"}
    if smarthost is not None:
        entry["smarthost"] = smarthost
    with pytest.raises(ValidationError, match=error):
        EmailSettings.model_validate(entry)


@pytest.mark.parametrize(
    ("port", "forced", "implicit"),
    [(465, None, True), (587, None, False), (2465, True, True), (465, False, False)],
)
def test_port_465_means_implicit_tls_unless_forced(
    port: int, forced: bool | None, implicit: bool
) -> None:
    entry = {"to": "a@x.example", "from": "b@x.example", "smarthost": f"smtp.x.example:{port}"}
    settings = EmailSettings.model_validate({**entry, "force_implicit_tls": forced})
    assert EmailNotifier(settings).implicit_tls is implicit


def test_duplicate_header_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="duplicate header 'Subject'"):
        EmailSettings.model_validate(
            {
                "to": "a@example.com",
                "from": "b@example.com",
                "smarthost": "h:25",
                "headers": {"Subject": "a", "subject": "b"},
            }
        )


# -- sessions -----------------------------------------------------------------------


async def test_plain_session_delivers_a_multipart_mail() -> None:
    notification = sample_notification(firing=2, resolved=1)
    async with smtpd() as box:
        answer = await deliver(
            notification, to="oncall@example.com, SRE <sre@example.com>", **plain(box.port)
        )
    assert answer == "2.0.0 queued as 42"
    mail = box.last()
    assert mail.sender == "pudimd@example.com"
    assert mail.recipients == ["oncall@example.com", "sre@example.com"]
    assert not mail.tls
    message = mail.message
    assert message["Subject"] == "[FIRING:2] HighLatency (prod)"
    assert message["To"] == "oncall@example.com, SRE <sre@example.com>"
    assert message["From"] == "pudimd@example.com"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Date"]
    assert message["X-Pudimd-Idempotency-Key"] == notification.idempotency_key
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = body(message, "plain")
    assert text.startswith("[FIRING:2] HighLatency (prod)\n\nFiring (2):")
    assert "instance = web-1" in text
    assert "Started: 2026-11-23 10:01:00 UTC" in text
    assert "Resolved (1):" in text
    assert "Ended: 2026-11-23 10:32:00 UTC" in text
    assert "Source: http://prometheus.example/graph?g0.expr=latency&i=2" in text
    html = body(message, "html")
    assert "<h3>Firing (2)</h3>" in html
    assert '<a href="http://prometheus.example/graph?g0.expr=latency&amp;i=0">' in html


async def test_resolved_subject_has_no_count() -> None:
    async with smtpd() as box:
        await deliver(
            sample_notification(firing=0, resolved=2), to="a@example.com", **plain(box.port)
        )
    assert box.last().message["Subject"] == "[RESOLVED] HighLatency (prod)"


async def test_html_escapes_label_values() -> None:
    evil = "<script>alert(1)</script>"
    alert = sample_alert(0, team=evil)
    notification = sample_notification(
        alerts=(alert,), common_labels={**alert.labels}, external_url="javascript:alert(2)"
    )
    async with smtpd() as box:
        await deliver(notification, to="a@example.com", **plain(box.port))
    html = body(box.last().message, "html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript:' not in html
    assert evil in body(box.last().message, "plain")
    assert evil in box.last().message["Subject"]


async def test_starttls_is_required_by_default(ca: trustme.CA, ca_file: Path) -> None:
    async with smtpd(tls_context=server_tls(ca)) as box:
        await deliver(
            sample_notification(),
            to="a@example.com",
            smarthost=f"localhost:{box.port}",
            tls_config={"ca_file": str(ca_file)},
        )
    assert box.last().tls


async def test_server_without_starttls_is_refused_under_require_tls() -> None:
    async with smtpd() as box:
        with pytest.raises(DeliveryError) as caught:
            await deliver(
                sample_notification(), to="a@example.com", smarthost=f"127.0.0.1:{box.port}"
            )
    assert not caught.value.retryable
    assert "does not offer STARTTLS" in caught.value.message
    assert box.mails == []


async def test_implicit_tls_on_a_tls_only_server(ca: trustme.CA, ca_file: Path) -> None:
    async with smtpd(ssl_context=server_tls(ca, "smtp.test")) as box:
        settings: dict[str, Any] = {
            "to": "a@example.com",
            "smarthost": f"127.0.0.1:{box.port}",
            "force_implicit_tls": True,
        }
        await deliver(
            sample_notification(),
            **settings,
            tls_config={"ca_file": str(ca_file), "server_name": "smtp.test"},
        )
        with pytest.raises(DeliveryError) as wrong_name:
            await deliver(sample_notification(), **settings, tls_config={"ca_file": str(ca_file)})
    assert len(box.mails) == 1 and box.last().tls
    assert wrong_name.value.retryable
    assert "certificate" in wrong_name.value.message.lower()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_login_after_starttls(ca: trustme.CA, ca_file: Path, mechanism: str) -> None:
    others = [m for m in ("PLAIN", "LOGIN") if m != mechanism]
    async with smtpd(auth=True, tls_context=server_tls(ca), auth_exclude_mechanism=others) as box:
        await deliver(
            sample_notification(),
            to="a@example.com",
            smarthost=f"localhost:{box.port}",
            tls_config={"ca_file": str(ca_file)},
            auth_username=USER,
            auth_password=PASSWORD,
            auth_identity=USER,
        )
    assert box.logins == [mechanism]
    assert len(box.mails) == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_wrong_password_is_not_retryable(mechanism: str) -> None:
    others = [m for m in ("PLAIN", "LOGIN") if m != mechanism]
    async with smtpd(auth=True, auth_require_tls=False, auth_exclude_mechanism=others) as box:
        with pytest.raises(DeliveryError) as caught:
            await deliver(
                sample_notification(),
                to="a@example.com",
                **plain(box.port, auth_username=USER, auth_password="wrong"),
            )
    assert not caught.value.retryable
    assert caught.value.message.startswith("authentication failed: 535")
    assert box.mails == []


async def test_cram_md5_with_auth_secret() -> None:
    async with smtpd(auth=True, auth_require_tls=False) as box:
        await deliver(
            sample_notification(),
            to="a@example.com",
            **plain(box.port, auth_username=USER, auth_secret=CRAM_SECRET),
        )
    assert box.logins == ["CRAM-MD5"]
    assert len(box.mails) == 1


async def test_connection_refused_is_retryable() -> None:
    with pytest.raises(DeliveryError) as caught:
        await deliver(sample_notification(), to="a@example.com", **plain(free_port()))
    assert caught.value.retryable
    assert caught.value.message.startswith("connect:")


async def test_refused_recipient_is_not_retryable() -> None:
    async with smtpd() as box:
        box.refuse = {"gone@example.com"}
        answer = await deliver(
            sample_notification(), to="a@example.com, gone@example.com", **plain(box.port)
        )
        with pytest.raises(DeliveryError) as caught:
            await deliver(sample_notification(), to="gone@example.com", **plain(box.port))
    assert answer is not None and "refused: gone@example.com (550" in answer
    assert box.mails[0].recipients == ["a@example.com"]
    assert not caught.value.retryable
    assert "gone@example.com: 550" in caught.value.message


# -- templates ----------------------------------------------------------------------


async def test_header_and_address_templates() -> None:
    headers = {
        "Subject": "{{ common_labels.alertname }} is {{ status }}",
        "To": "Ops Team <ops@example.com>",
        "X-Team": "sre-{{ common_labels.env }}",
    }
    async with smtpd() as box:
        await deliver(
            sample_notification(),
            to="{{ common_labels.env }}-oncall@example.com",
            headers=headers,
            **plain(box.port),
        )
    mail = box.last()
    assert mail.recipients == ["prod-oncall@example.com"]
    assert mail.message["Subject"] == "HighLatency is firing"
    assert mail.message["To"] == "Ops Team <ops@example.com>"
    assert mail.message["X-Team"] == "sre-prod"


async def test_broken_templates_fall_back_to_the_defaults() -> None:
    notification = sample_notification()
    async with smtpd() as box:
        await deliver(
            notification,
            to="a@example.com",
            headers={"Subject": "{{ 1 / 0 }}"},
            text="{{ alerts[0].labels | int + none }}",
            **plain(box.port),
        )
    assert box.last().message["Subject"] == "[FIRING:1] HighLatency (prod)"
    assert body(box.last().message, "plain").startswith("[FIRING:1] HighLatency (prod)")
    assert len(notification.template_errors) == 2
    assert notification.template_errors[0].startswith("header Subject: ZeroDivisionError")


async def test_failing_to_template_fails_without_retry() -> None:
    notification = sample_notification()
    with pytest.raises(DeliveryError) as caught:
        await deliver(notification, to="{{ 1 / 0 }}", **plain(free_port()))
    assert not caught.value.retryable
    assert caught.value.message.startswith("the 'to' template failed: ZeroDivisionError")
    assert notification.template_errors


async def test_empty_text_sends_only_html() -> None:
    async with smtpd() as box:
        await deliver(sample_notification(), to="a@example.com", text="", **plain(box.port))
    assert box.last().message.get_content_type() == "text/html"


async def test_long_subject_is_cut() -> None:
    notification = sample_notification(group_labels={"alertname": "x" * 400})
    async with smtpd() as box:
        await deliver(notification, to="a@example.com", **plain(box.port))
    subject = box.last().message["Subject"]
    assert len(subject) == 255
    assert subject.endswith("…")


async def test_threading_puts_a_groups_mails_in_one_thread() -> None:
    async with smtpd() as box:
        for _ in range(2):
            await deliver(
                sample_notification(),
                to="a@example.com",
                threading={"enabled": True},
                **plain(box.port),
            )
    first, second = (mail.message for mail in box.mails)
    assert first["References"] == second["References"] == first["In-Reply-To"]
    assert first["References"].startswith("<alert-")
    assert first["Message-ID"] != second["Message-ID"]


# -- action links and acknowledgement ---------------------------------------------------


async def test_each_firing_alert_has_its_links_in_text_and_html() -> None:
    notification = sample_notification(firing=2, resolved=1)
    with action_links_on() as checker:
        async with smtpd() as box:
            await deliver(notification, to="a@example.com", **plain(box.port))
        message = box.last().message
        text, html = body(message, "plain"), body(message, "html")
        fps = [alert.fingerprint for alert in notification.alerts]
        expected = [(fp, action) for fp in fps[:2] for action in ("ack", "snooze", "resolve")]
        assert [(f.fingerprint, f.action) for f in checker.found(text)] == expected
        # the anchors show labels, not URLs: each link once
        assert [(f.fingerprint, f.action) for f in checker.found(html)] == expected
    assert "  Acknowledge: http://pudimd.example:9093/api/v1/actions/" in text
    assert "  Snooze 1h: http://" in text and "  Resolve: http://" in text
    resolved = text.split("Resolved (1):")[1]
    assert "/api/v1/actions/" not in resolved
    assert '<a href="http://pudimd.example:9093/api/v1/actions/' in html
    assert ">Acknowledge</a>" in html and ">Snooze 1h</a>" in html and ">Resolve</a>" in html


async def test_an_acknowledged_group_says_so_in_subject_and_bodies() -> None:
    notification = sample_notification(firing=1, acknowledged=True)
    with action_links_on() as checker:
        async with smtpd() as box:
            await deliver(notification, to="a@example.com", **plain(box.port))
        message = box.last().message
        text, html = body(message, "plain"), body(message, "html")
        assert [f.action for f in checker.found(text)] == ["resolve"]
        assert [f.action for f in checker.found(html)] == ["resolve"]
    assert message["Subject"] == "[ACK] [FIRING:1] HighLatency (prod)"
    assert text.startswith(
        "[ACK] [FIRING:1] HighLatency (prod)\n\n"
        "Acknowledged: someone is on it; repeats are paused.\n\nFiring (1):"
    )
    assert "<strong>Acknowledged</strong>" in html and "[ACK] [FIRING:1]" in html


async def test_no_links_without_links_turned_on() -> None:
    async with smtpd() as box:
        await deliver(sample_notification(firing=1), to="a@example.com", **plain(box.port))
    message = box.last().message
    assert "/api/v1/actions/" not in body(message, "plain")
    assert "Acknowledge" not in body(message, "html")
