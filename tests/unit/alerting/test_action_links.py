"""Signed action links: tokens (round trip, tampering, expiry, actions), the key kept in the
state directory, the ``action_links`` settings, and the links templates see."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pudimd.alerting import links
from pudimd.alerting.config import ActionLinksConfig, AlertingBase
from pudimd.alerting.links import ActionLinks, LinkError, load_or_create_secret
from pudimd.alerting.templates import action_buttons, render_notification, template_data
from tests.unit.notifiers.notifier_helpers import sample_notification

SECRET = b"0123456789abcdef0123456789abcdef"
BASE = "https://pudimd.example/"
NOW = 1_800_000_000.0
FP = "ea066677afff25f6"


@pytest.fixture
def signer() -> ActionLinks:
    return ActionLinks(SECRET, BASE, ttl=3600.0, snooze=1800.0)


@pytest.fixture
def provided() -> Iterator[list[str]]:
    """Links on for every notification (as the running daemon's API provides them); the
    list records the external URLs asked for."""
    asked: list[str] = []

    def provider(base_url: str) -> ActionLinks:
        asked.append(base_url)
        return ActionLinks(SECRET, base_url)

    links.set_provider(provider)
    try:
        yield asked
    finally:
        links.clear_provider(provider)


def token_of(url: str) -> str:
    assert "/api/v1/actions/" in url
    return url.rsplit("/", 1)[1]


def forge(payload: dict[str, Any], secret: bytes = SECRET) -> str:
    """A token of ``payload`` signed with ``secret``, as links.py makes them."""
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    signature = hmac.new(secret, encoded.encode(), hashlib.sha256).digest()
    return f"{encoded}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


# -- tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["ack", "resolve", "snooze"])
def test_a_link_names_its_alert_and_action_until_it_expires(
    signer: ActionLinks, action: links.LinkName
) -> None:
    url = signer.url(FP, action, NOW)
    assert url.startswith("https://pudimd.example/api/v1/actions/")  # one slash
    verified = signer.verify(token_of(url), NOW + 10)
    assert verified.fingerprint == FP and verified.action == action
    assert verified.extra["expires"] == NOW + 3600
    if action == "snooze":
        assert verified.extra["for"] == 1800.0
    else:
        assert "for" not in verified.extra
    # another pudimd with the same key accepts it: the base URL is not part of the token
    assert ActionLinks(SECRET, "http://other:1").verify(token_of(url), NOW).action == action


def test_the_token_is_compact_json_and_an_hmac(signer: ActionLinks) -> None:
    token = signer.token(FP, "ack", NOW)
    encoded, signature = token.split(".")
    text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    assert json.loads(text) == {"f": FP, "a": "ack", "e": int(NOW + 3600), "v": 1}
    assert " " not in text and "=" not in token  # compact JSON, no padding
    expected = hmac.new(SECRET, encoded.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=") == expected
    assert len(signer.url(FP, "snooze", NOW)) < 200


def test_an_expired_link_is_refused(signer: ActionLinks) -> None:
    token = signer.token(FP, "ack", NOW)
    signer.verify(token, NOW + 3599)
    with pytest.raises(LinkError, match="expired") as caught:
        signer.verify(token, NOW + 3600)
    assert caught.value.reason == "expired" and caught.value.status == 403


def test_a_changed_payload_is_refused(signer: ActionLinks) -> None:
    token = signer.token(FP, "ack", NOW)
    encoded, signature = token.split(".")
    # the same signature on another alert, another action, a later expiry
    for payload in (
        {"f": "0000000000000000", "a": "ack", "e": int(NOW + 3600), "v": 1},
        {"f": FP, "a": "resolve", "e": int(NOW + 3600), "v": 1},
        {"f": FP, "a": "ack", "e": int(NOW + 10**6), "v": 1},
    ):
        other = forge(payload).split(".")[0]
        with pytest.raises(LinkError) as caught:
            signer.verify(f"{other}.{signature}", NOW)
        assert caught.value.reason == "signature" and caught.value.status == 403
    # one character of the payload changed
    flipped = encoded[:-1] + ("A" if encoded[-1] != "A" else "B")
    with pytest.raises(LinkError, match="signature"):
        signer.verify(f"{flipped}.{signature}", NOW)


def test_a_changed_signature_or_another_key_is_refused(signer: ActionLinks) -> None:
    token = signer.token(FP, "resolve", NOW)
    encoded, signature = token.split(".")
    for bad in (
        signature[:-1] + ("A" if signature[-1] != "A" else "B"),
        signature[:-2],
        forge({"f": FP, "a": "resolve", "e": int(NOW + 3600), "v": 1}, b"x" * 32).split(".")[1],
    ):
        with pytest.raises(LinkError) as caught:
            signer.verify(f"{encoded}.{bad}", NOW)
        assert caught.value.reason == "signature"
    with pytest.raises(LinkError, match="signature"):
        ActionLinks(b"another key of at least 32 bytes!", BASE).verify(token, NOW)


def test_the_signature_is_compared_in_constant_time(
    signer: ActionLinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("pudimd.alerting.links.hmac.compare_digest", spy)
    token = signer.token(FP, "ack", NOW)
    signer.verify(token, NOW)
    with pytest.raises(LinkError):
        signer.verify(token[:-1] + ("A" if token[-1] != "A" else "B"), NOW)
    assert len(compared) == 2 and compared[0][1] == token.split(".")[1]


def test_a_validly_signed_token_for_another_action_is_refused(signer: ActionLinks) -> None:
    for action in ("unack", "assign", "delete", None):
        token = forge({"f": FP, "a": action, "e": int(NOW + 60), "v": 1})
        with pytest.raises(LinkError, match="action links do ack, resolve, snooze") as caught:
            signer.verify(token, NOW)
        assert caught.value.reason == "action" and caught.value.status == 400
    with pytest.raises(ValueError, match="not 'assign'"):
        signer.url(FP, "assign", NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "no-dot",
        "a.b.c",
        "not base64!.sig",
        "x" * 2000 + ".y",
        forge({"f": FP, "a": "ack", "e": int(NOW + 60), "v": 2}),
        forge({"f": FP, "a": "ack", "e": int(NOW + 60), "v": 1, "x": 1}),
        forge({"f": FP, "a": "ack", "e": "later", "v": 1}),
        forge({"f": "", "a": "ack", "e": int(NOW + 60), "v": 1}),
        forge({"f": FP, "a": "snooze", "e": int(NOW + 60), "v": 1}),
        forge({"f": FP, "a": "ack", "e": int(NOW + 60), "d": 60, "v": 1}),
        forge([FP, "ack"]),  # type: ignore[arg-type]
        "bm90IGpzb24." + forge({}).split(".")[1],
    ],
)
def test_a_malformed_token_is_refused(signer: ActionLinks, token: str) -> None:
    with pytest.raises(LinkError) as caught:
        signer.verify(token, NOW)
    assert caught.value.reason in ("malformed", "signature")
    assert caught.value.status in (400, 403)
    assert "LinkError(" in repr(caught.value)


def test_a_signed_token_of_another_shape_is_malformed(signer: ActionLinks) -> None:
    token = forge({"f": FP, "a": "ack", "e": int(NOW + 60), "v": 2})
    with pytest.raises(LinkError) as caught:
        signer.verify(token, NOW)
    assert caught.value.reason == "malformed" and caught.value.status == 400


def test_a_short_key_is_refused_and_the_key_is_never_shown() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ActionLinks(b"short", BASE)
    assert "0123" not in repr(ActionLinks(SECRET, BASE))


# -- the key in the state directory ------------------------------------------------------


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / links.KEY_FILE
    key = load_or_create_secret(path)
    assert len(key) == 64 and bytes.fromhex(key.decode())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == key  # a restart reads the same key
    assert [p.name for p in path.parent.iterdir()] == [links.KEY_FILE]  # no leftovers
    # the file's text is a usable secret_file
    config = ActionLinksConfig.model_validate({"secret_file": str(path)})
    assert config.secret is not None and config.secret.get_secret_value().encode() == key


def test_a_damaged_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / links.KEY_FILE
    path.write_text("short\n")
    with pytest.raises(ValueError, match="delete the file"):
        load_or_create_secret(path)
    assert path.read_text() == "short\n"


def test_a_state_dir_that_cannot_hold_the_key_is_an_os_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(NotADirectoryError):
        load_or_create_secret(blocker / links.KEY_FILE)


# -- settings ----------------------------------------------------------------------------


def test_the_settings_default_to_a_day_and_an_hour() -> None:
    config = AlertingBase().action_links
    assert config.enabled is True and config.secret is None
    assert config.ttl.total_seconds() == 86400 and config.snooze.total_seconds() == 3600
    parsed = AlertingBase.model_validate(
        {"action_links": {"secret": "s" * 32, "ttl": "2h", "snooze": "30m"}}
    ).action_links
    assert parsed.ttl.total_seconds() == 7200 and parsed.snooze.total_seconds() == 1800


def test_a_short_secret_is_a_config_error_that_does_not_echo_it(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 32 characters") as caught:
        ActionLinksConfig.model_validate({"secret": "hunter2hunter2"})
    assert "hunter2" not in str(caught.value)
    path = tmp_path / "key"
    path.write_text("tiny\n")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        ActionLinksConfig.model_validate({"secret_file": str(path)})
    with pytest.raises(ValidationError, match="not both"):
        ActionLinksConfig.model_validate({"secret": "s" * 32, "secret_file": str(path)})


# -- templates ---------------------------------------------------------------------------

TEMPLATE = (
    "{{ action_links }}|{{ snooze_for }}|{{ ack_url }}|"
    "{% for a in alerts %}{{ a.status }} {{ a.ack_url }} {{ a.resolve_url }} "
    "{{ a.snooze_url }};{% endfor %}"
)


def test_templates_have_no_links_without_a_provider_or_an_external_url(
    provided: list[str],
) -> None:
    no_url = sample_notification(firing=1, external_url="")
    assert render_notification(TEMPLATE, no_url) == "False|None|None|firing None None None;"
    assert provided == []
    links.set_provider(None)
    assert render_notification(TEMPLATE, sample_notification(firing=1)).startswith("False|")


def test_each_firing_alert_has_its_own_links(provided: list[str]) -> None:
    notification = sample_notification(firing=2, resolved=1)
    before = time.time()
    data = template_data(notification)
    assert data["action_links"] is True and data["snooze_for"] == "1h"
    assert data["ack_url"] is None  # two alerts fire: no link for "the" alert
    signer = ActionLinks(SECRET, "")
    for alert, info in zip(data["alerts"], notification.alerts, strict=True):
        if info.status == "resolved":
            assert alert["ack_url"] is alert["resolve_url"] is alert["snooze_url"] is None
            continue
        for key, action in (("ack_url", "ack"), ("resolve_url", "resolve")):
            url = alert[key]
            assert url.startswith("http://pudimd.example:9093/api/v1/actions/")
            verified = signer.verify(token_of(url), time.time())
            assert verified.fingerprint == info.fingerprint and verified.action == action
            assert verified.extra["expires"] >= int(before + 86400)
        assert signer.verify(token_of(alert["snooze_url"]), time.time()).extra["for"] == 3600
    assert provided == ["http://pudimd.example:9093"]


def test_a_group_with_one_firing_alert_has_group_links(provided: list[str]) -> None:
    notification = sample_notification(firing=1, resolved=2)
    data = template_data(notification)
    signer = ActionLinks(SECRET, "")
    assert signer.verify(token_of(data["ack_url"]), time.time()).action == "ack"
    assert data["ack_url"] == data["firing"][0]["ack_url"]
    assert data["acknowledged"] is False
    left_out = dataclasses.replace(notification, truncated_alerts=1)
    assert template_data(left_out)["ack_url"] is None  # the one shown may not be the one


def test_links_are_signed_only_when_a_template_uses_them(
    provided: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    signed: list[str] = []
    real = ActionLinks.url

    def counting(self: ActionLinks, fp: str, action: links.LinkName, now: float) -> str:
        signed.append(action)
        return real(self, fp, action, now)

    monkeypatch.setattr(ActionLinks, "url", counting)
    notification = sample_notification(firing=50)
    render_notification("{{ firing | length }}", notification)
    assert signed == []
    render_notification("{{ alerts[3].ack_url }}{{ alerts[3].ack_url }}", notification)
    assert signed == ["ack"]  # once, then kept


def test_a_failing_provider_means_no_links_not_no_notification() -> None:
    def broken(base_url: str) -> ActionLinks:
        raise OSError("state directory is read-only")

    links.set_provider(broken)
    try:
        assert links.links_for("http://x") is None
        assert render_notification(TEMPLATE, sample_notification()).startswith("False|")
    finally:
        links.clear_provider(broken)


def test_buttons_for_the_one_firing_alert(provided: list[str]) -> None:
    assert action_buttons(sample_notification(firing=2)) == []
    buttons = action_buttons(sample_notification(firing=1, resolved=1))
    assert [(action, label) for action, label, _ in buttons] == [
        ("ack", "Acknowledge"),
        ("snooze", "Snooze 1h"),
        ("resolve", "Resolve"),
    ]
    acked = action_buttons(sample_notification(firing=1, acknowledged=True))
    assert [action for action, _, _ in acked] == ["resolve"]
    assert action_buttons(sample_notification(firing=1, external_url="")) == []


def test_clear_provider_leaves_a_newer_provider_in_place(provided: list[str]) -> None:
    def old(base_url: str) -> None:
        return None

    links.clear_provider(old)  # not the one in place: nothing happens
    assert links.links_for("http://x") is not None
