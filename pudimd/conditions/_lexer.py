"""Split a condition into tokens.

A placeholder with its path (``[BODY].items[0].name``) is one token; so is the raw
pattern of ``pat(...)``, which may hold characters that mean something elsewhere (``*``,
``=``, spaces).  Positions are 0-based offsets; :class:`ConditionError` reports them
1-based.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ConditionError", "Token", "tokenize"]

OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
_STOP = frozenset(" \t\r\n()[],'\"=!<>")
_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_KEY_STOP = _STOP | {"."}


class ConditionError(ValueError):
    """A condition that does not parse: what was expected, at which 1-based position."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position

    def __repr__(self) -> str:
        return f"ConditionError(message={self.message!r}, position={self.position!r})"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is ``ref``, ``op``, ``(``, ``)``, ``,``, ``word``, ``string``,
    ``raw`` (a pattern) or ``end``; ``value`` is (name, path) for ``ref`` and the text for
    ``string`` and ``raw``."""

    kind: str
    text: str
    pos: int
    value: Any = None


def _error(message: str, pos: int) -> ConditionError:
    return ConditionError(message, pos + 1)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _string(text: str, i: int) -> tuple[Token, int]:
    quote = text[i]
    out: list[str] = []
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and j + 1 < len(text):
            out.append(text[j + 1])
            j += 2
            continue
        if c == quote:
            return Token("string", text[i : j + 1], i, "".join(out)), j + 1
        out.append(c)
        j += 1
    raise _error(f"unterminated string (expected a closing {quote})", i)


def _ref(text: str, i: int) -> tuple[Token, int]:
    """``[NAME]`` followed by any number of ``.key`` and ``[index]``."""
    j = i + 1
    while j < len(text) and text[j] in _NAME:
        j += 1
    if j == i + 1 or j >= len(text) or text[j] != "]":
        raise _error("expected a placeholder name in capitals, e.g. [STATUS]", i + 1)
    name = text[i + 1 : j]
    j += 1
    path: list[str | int] = []
    while j < len(text) and text[j] in ".[":
        if text[j] == ".":
            k = j + 1
            while k < len(text) and text[k] not in _KEY_STOP:
                k += 1
            if k == j + 1:
                raise _error("expected a key after '.'", k)
            path.append(text[j + 1 : k])
            j = k
            continue
        k = j + 1
        if k < len(text) and text[k] == "-":
            k += 1
        start = k
        while k < len(text) and text[k].isdigit():
            k += 1
        if k == start or k >= len(text) or text[k] != "]":
            raise _error("expected an index such as [0]", j + 1)
        path.append(int(text[j + 1 : k]))
        j = k + 1
    return Token("ref", text[i:j], i, (name, tuple(path))), j


def _pattern(text: str, i: int) -> tuple[list[Token], int]:
    """The argument of ``pat(`` (``i`` is just after the parenthesis) and its ``)``."""
    j = _skip(text, i)
    if j < len(text) and text[j] in "'\"":
        token, k = _string(text, j)
        k = _skip(text, k)
        if k >= len(text) or text[k] != ")":
            raise _error("expected ')' after the pattern", k)
        return [Token("raw", token.text, j, token.value), Token(")", ")", k)], k + 1
    k = text.find(")", j)
    if k < 0:
        raise _error("expected ')' closing pat(", len(text))
    raw = text[j:k].strip()
    if not raw:
        raise _error("expected a pattern such as *healthy*", j)
    return [Token("raw", raw, j, raw), Token(")", ")", k)], k + 1


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``end`` token; raises ConditionError."""
    out: list[Token] = []
    i = 0
    while True:
        i = _skip(text, i)
        if i >= len(text):
            out.append(Token("end", "", i))
            return out
        c = text[i]
        if c == "[":
            token, i = _ref(text, i)
            out.append(token)
        elif c in "(),":
            out.append(Token(c, c, i))
            i += 1
        elif c in "=!<>":
            two = text[i : i + 2]
            op = two if two in OPERATORS else c if c in "<>" else None
            if op is None:
                raise _error("expected an operator (==, !=, <, <=, >, >=)", i)
            out.append(Token("op", op, i))
            i += len(op)
        elif c in "'\"":
            token, i = _string(text, i)
            out.append(token)
        elif c == "]":
            raise _error("unexpected ']' (placeholders are written [NAME])", i)
        else:
            j = i
            while j < len(text) and text[j] not in _STOP:
                j += 1
            word = text[i:j]
            out.append(Token("word", word, i))
            k = _skip(text, j)
            if word == "pat" and k < len(text) and text[k] == "(":
                out.append(Token("(", "(", k))
                tokens, j = _pattern(text, k + 1)
                out.extend(tokens)
            i = j
