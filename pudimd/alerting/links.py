"""Signed action links: a URL in a notification that lets whoever holds it acknowledge,
resolve or snooze one alert, from an email or a chat message, without logging in.

A link is ``{external_url}/api/v1/actions/{token}``; the token is::

    base64url(payload) "." base64url(HMAC-SHA256(secret, base64url(payload)))

with ``payload`` the compact JSON ``{"f": fingerprint, "a": action, "e": expiry, "v": 1}``
(``e`` in Unix seconds; a snooze link adds ``"d"``, how long it snoozes, in seconds) and
base64url without padding.  The signature covers the encoded payload, so changing one
character of the token breaks it.  A token is single purpose: it names one alert and one
action (``ack``, ``resolve`` or ``snooze``), and nothing else can be done with it.  It
works any number of times until it expires (acknowledging twice is harmless; resolving a
resolved alert is refused).

The key is ``alerting.action_links.secret`` (or ``secret_file``); without one, pudimd makes
a random key once and keeps it in its state directory (:func:`load_or_create_secret`,
file ``action-links.key``), so links survive restarts.  Changing the key voids every link
already sent.

Templates get links through a *provider* (:func:`set_provider`): the HTTP API installs
one when it starts (:mod:`pudimd.api.actionlinks`), built from the running config, and
:mod:`pudimd.alerting.templates` asks it for the links of a notification's
``external_url`` when a notification is rendered.  Without a provider, or when
``external_url`` is empty, notifications carry no links.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import structlog

__all__ = [
    "ACTIONS",
    "KEY_FILE",
    "ActionLinks",
    "LinkAction",
    "LinkError",
    "LinkName",
    "clear_provider",
    "links_for",
    "load_or_create_secret",
    "set_provider",
]

log = structlog.get_logger("pudimd.alerting.links")

LinkName = Literal["ack", "resolve", "snooze"]
ACTIONS: tuple[LinkName, ...] = get_args(LinkName)
"""What a link can do."""
VERSION = 1
PATH = "/api/v1/actions/"
KEY_FILE = "action-links.key"
"""The key's file in the state directory, when the config gives none."""
MIN_SECRET = 32
"""Bytes a key has at least (a configured secret: characters)."""
MAX_TOKEN = 1024
"""Characters of a token at most (a real one is about 130)."""
MAX_FINGERPRINT = 64

_B64 = re.compile(r"^[A-Za-z0-9_-]+$")
_FIELDS = {"f", "a", "e", "v", "d"}


class LinkError(ValueError):
    """A token that cannot be used.  ``reason`` is ``malformed`` (not a token, or a damaged
    one), ``signature`` (not signed with this key: forged, or the key changed),
    ``expired`` or ``action`` (an action links do not do); ``status`` the HTTP status
    that fits it (400, or 403 for a bad signature or an expired link)."""

    _STATUS = {"malformed": 400, "signature": 403, "expired": 403, "action": 400}

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = self._STATUS.get(reason, 400)

    def __repr__(self) -> str:
        return f"LinkError({self.reason!r}, {self.message!r})"


class LinkAction(NamedTuple):
    """What a verified token allows: ``action`` on the alert ``fingerprint``; ``extra``
    holds ``expires`` (Unix seconds) and, for a snooze, ``for`` (seconds)."""

    fingerprint: str
    action: LinkName
    extra: dict[str, float]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ActionLinks:
    """Makes and checks the links of one key (``secret``) for one pudimd (``base_url``,
    its external URL); a link works for ``ttl`` seconds and a snooze link snoozes for
    ``snooze`` seconds."""

    def __init__(
        self, secret: bytes, base_url: str, ttl: float = 86400.0, snooze: float = 3600.0
    ) -> None:
        if len(secret) < MIN_SECRET:
            raise ValueError(f"an action link key has at least {MIN_SECRET} bytes")
        if ttl <= 0 or snooze <= 0:
            raise ValueError("ttl and snooze must be positive")
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        self.snooze = snooze

    def __repr__(self) -> str:  # never the key
        return f"ActionLinks(base_url={self.base_url!r}, ttl={self.ttl!r})"

    def _sign(self, encoded: str) -> str:
        digest = hmac.new(self._secret, encoded.encode("ascii"), hashlib.sha256).digest()
        return _b64encode(digest)

    def token(self, fingerprint: str, action: LinkName, now: float) -> str:
        """A token allowing ``action`` on ``fingerprint`` until ``now + ttl``."""
        if action not in ACTIONS:
            raise ValueError(f"links do {', '.join(ACTIONS)}, not {action!r}")
        if not fingerprint or len(fingerprint) > MAX_FINGERPRINT:
            raise ValueError(f"not a fingerprint: {fingerprint!r}")
        payload: dict[str, Any] = {"f": fingerprint, "a": action, "e": int(now + self.ttl)}
        if action == "snooze":
            payload["d"] = int(self.snooze)
        payload["v"] = VERSION
        encoded = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{encoded}.{self._sign(encoded)}"

    def url(self, fingerprint: str, action: LinkName, now: float) -> str:
        """``{base_url}/api/v1/actions/{token}`` (see :meth:`token`)."""
        return f"{self.base_url}{PATH}{self.token(fingerprint, action, now)}"

    def verify(self, token: str, now: float) -> LinkAction:
        """What ``token`` allows at ``now``.  Raises :class:`LinkError`."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 1:
            raise LinkError("malformed", "this is not an action link (the token is damaged)")
        encoded, signature = token.split(".")
        if not _B64.match(encoded) or not _B64.match(signature):
            raise LinkError("malformed", "this is not an action link (the token is damaged)")
        # Compare the encoded signatures in constant time: the comparison's duration says
        # nothing of how much of a forged signature was right.
        if not hmac.compare_digest(self._sign(encoded), signature):
            raise LinkError(
                "signature",
                "this link's signature is not valid: it was changed, or pudimd's link key "
                "changed since it was sent",
            )
        try:
            payload = json.loads(_b64decode(encoded))
        except (ValueError, binascii.Error):
            raise LinkError("malformed", "this action link's content is damaged") from None
        if not isinstance(payload, dict) or set(payload) - _FIELDS or payload.get("v") != VERSION:
            raise LinkError("malformed", "this action link is of an unknown version")
        fingerprint, action, expires = payload.get("f"), payload.get("a"), payload.get("e")
        if (
            not isinstance(fingerprint, str)
            or not fingerprint
            or not isinstance(expires, int)
            or isinstance(expires, bool)
        ):
            raise LinkError("malformed", "this action link's content is damaged")
        if action not in ACTIONS:
            raise LinkError("action", f"action links do {', '.join(ACTIONS)}, not {action!r}")
        extra: dict[str, float] = {"expires": float(expires)}
        if action == "snooze":
            duration = payload.get("d")
            if not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0:
                raise LinkError("malformed", "this snooze link does not say for how long")
            extra["for"] = float(duration)
        elif "d" in payload:
            raise LinkError("malformed", "this action link's content is damaged")
        if now >= expires:
            raise LinkError("expired", "this action link has expired")
        return LinkAction(fingerprint, action, extra)


def load_or_create_secret(path: str | Path) -> bytes:
    """The key kept in the file at ``path``; made (32 random bytes, written as 64 hex
    digits, mode 0600) when the file does not exist.  The file's text is the key, as a
    ``secret_file`` would give it, so it can be moved into the config as it is.  Raises
    OSError when the file cannot be read or made, ValueError when it holds too short a
    key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = _create(path)
    key = text.strip().encode()
    if len(key) < MIN_SECRET:
        raise ValueError(
            f"{path} holds a key of {len(key)} bytes; an action link key has at least "
            f"{MIN_SECRET} (delete the file to have a new one made)"
        )
    return key


def _create(path: Path) -> str:
    """Write a new key to ``path`` whole or not at all (a temporary file linked into
    place), keeping the key another process wrote first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = secrets.token_hex(32) + "\n"
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.read_text(encoding="utf-8")
    finally:
        temporary.unlink(missing_ok=True)
    log.info("action link key made", path=str(path))
    return text


# -- the provider templates ask ------------------------------------------------------

Provider = Callable[[str], "ActionLinks | None"]
"""Given a notification's external URL, the links to put in it (None: no links)."""

_provider: Provider | None = None


def set_provider(provider: Provider | None) -> None:
    """Make ``provider`` the one :func:`links_for` asks (the running daemon's API does)."""
    global _provider
    _provider = provider


def clear_provider(provider: Provider) -> None:
    """Forget ``provider`` if it is still the one in place (a stopping daemon's)."""
    global _provider
    if _provider is provider:
        _provider = None


def links_for(external_url: str) -> ActionLinks | None:
    """The links of a notification whose external URL is ``external_url``: None when it
    is empty, when no provider is set, or when the provider has none (links turned off,
    the key cannot be read: logged)."""
    provider = _provider
    if provider is None or not external_url.startswith(("http://", "https://")):
        return None
    try:
        return provider(external_url)
    except Exception as exc:  # a notification without links beats no notification
        log.error("cannot make action links", error=f"{type(exc).__name__}: {exc}")
        return None
