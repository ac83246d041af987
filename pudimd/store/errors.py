"""The store's error type and the helpers that keep its messages to one safe line."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import StatementError

__all__ = ["StoreError", "describe", "mask_url"]


class StoreError(Exception):
    """The database cannot be used.  ``str()`` is one line, fit for a log or a terminal,
    with any password masked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"StoreError({self.message!r})"


_USERINFO = re.compile(r"(?P<head>://[^:/@\s]*:)[^@\s]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)[^&\s]*", re.IGNORECASE)
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


def mask_url(url: str) -> str:
    """``url`` with its password (in the user info or the query) replaced by ``***``."""
    try:
        text = make_url(url).render_as_string(hide_password=True)
    except Exception:
        text = _USERINFO.sub(r"\g<head>***@", url)
    return _QUERY_PASSWORD.sub(r"\g<head>***", text)


def describe(exc: BaseException, url: str | None = None) -> str:
    """The reason ``exc`` gives, on one line, without SQL or ``url``'s password."""
    inner: BaseException = exc
    if isinstance(exc, StatementError) and exc.orig is not None:
        inner = exc.orig  # the driver's own message, without the SQL statement
    text = _BACKGROUND.sub("", str(inner))
    text = " ".join(text.split())
    if not text:
        text = "timed out" if isinstance(inner, TimeoutError) else type(inner).__name__
    if url is not None:
        password = _password(url)
        if password and len(password) >= 4:  # a shorter one would mangle the text
            text = text.replace(password, "***")
    return _USERINFO.sub(r"\g<head>***@", text)


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except Exception:
        return None
