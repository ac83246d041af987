"""Recursive-descent parser: tokens to the evaluable tree of :mod:`._tree`.

Grammar::

    condition := "any" "(" condition ("," condition)* ")"  |  value OP value
    value     := REF | "len" "(" REF ")" | "has" "(" REF ")" | "pat" "(" RAW ")"
               | "any" "(" value ("," value)* ")" | STRING | WORD
    OP        := "==" | "!=" | "<" | "<=" | ">" | ">="

A WORD is a number, a duration (``48h``, ``500ms``), ``true``, ``false``, ``null`` or else
a bare text (``UP``, ``127.0.0.1``).  ``pat()`` and ``any()`` of values go on the right of
``==`` or ``!=``.  ``any(`` starts a list of conditions when an operator appears inside it.
"""

from __future__ import annotations

import re

from pudimd.conditions._lexer import ConditionError, Token, tokenize
from pudimd.conditions._tree import (
    AnyOf,
    AnyTest,
    Compare,
    Duration,
    Has,
    Len,
    Literal,
    Node,
    Pattern,
    Ref,
    Test,
)
from pudimd.durations import parse_duration

__all__ = ["parse"]

_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")
_DURATION = re.compile(r"(\d+(\.\d+)?(ms|s|m|h|d|w))+")
_WORDS = {"true": True, "false": False, "null": None}
_FUNCTIONS = ("len", "has", "pat", "any")
_EXPECT_VALUE = "expected a value: a [PLACEHOLDER], a number, a text, len(), has(), pat() or any()"

UNITS: dict[str, float] = {"RESPONSE_TIME": 1000.0}
"""Durations compared with these placeholders count in their unit (per second): the
response time is in milliseconds; every other placeholder counts seconds."""


def parse(text: str) -> Test:
    """The tree of condition ``text``; raises ConditionError with a 1-based position."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def parse(self) -> Test:
        test = self.condition()
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"unexpected {token.text!r}: expected the end of the condition")
        return test

    # -- helpers --

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.i += 1
        return token

    def error(self, message: str, token: Token | None = None) -> ConditionError:
        return ConditionError(message, (token or self.peek()).pos + 1)

    def expect(self, kind: str, what: str) -> Token:
        if self.peek().kind != kind:
            token = self.peek()
            found = "the end" if token.kind == "end" else repr(token.text)
            raise self.error(f"expected {what}, found {found}")
        return self.take()

    def span(self, start: Token) -> str:
        end = self.tokens[self.i - 1]
        return self.text[start.pos : end.pos + len(end.text)]

    def _is_call(self, name: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text == name and self.peek(1).kind == "("

    def _conditions_inside(self) -> bool:
        """Whether the ``any(`` at the cursor holds conditions (an operator inside)."""
        depth = 0
        for token in self.tokens[self.i + 1 :]:
            if token.kind == "(":
                depth += 1
            elif token.kind == ")":
                depth -= 1
                if depth == 0:
                    return False
            elif token.kind == "op":
                return True
            elif token.kind == "end":
                return False
        return False

    # -- grammar --

    def condition(self) -> Test:
        if self._is_call("any") and self._conditions_inside():
            self.take()
            self.take()
            tests = [self.condition()]
            while self.peek().kind == ",":
                self.take()
                tests.append(self.condition())
            self.expect(")", "',' or ')' closing any(")
            return AnyTest(tests)
        first = self.peek()
        left = self.value()
        if isinstance(left, Pattern | AnyOf):
            raise self.error("pat() and any() go on the right of == or !=", first)
        op = self.expect("op", "an operator (==, !=, <, <=, >, >=)")
        right = self.value()
        if isinstance(right, Pattern | AnyOf) and op.text not in ("==", "!="):
            raise self.error(f"pat() and any() compare with == or !=, not {op.text}", op)
        return Compare(_in_unit(left, right), op.text, _in_unit(right, left))

    def value(self) -> Node:
        token = self.peek()
        if token.kind == "ref":
            self.take()
            name, path = token.value
            return Ref(token.text, name, path)
        if token.kind == "string":
            self.take()
            return Literal(token.text, token.value)
        if token.kind != "word":
            found = "the end" if token.kind == "end" else repr(token.text)
            raise self.error(f"{_EXPECT_VALUE}, found {found}")
        if self.peek(1).kind == "(":
            return self.call()
        self.take()
        return _word(token)

    def call(self) -> Node:
        start = self.take()
        name = start.text
        if name not in _FUNCTIONS:
            raise self.error(f"unknown function {name!r} (expected len, has, pat or any)", start)
        self.take()
        if name == "pat":
            raw = self.expect("raw", "a pattern")
            self.expect(")", "')' closing pat(")
            return Pattern(self.span(start), raw.value)
        if name == "any":
            items = [self.value()]
            while self.peek().kind == ",":
                self.take()
                items.append(self.value())
            self.expect(")", "',' or ')' closing any(")
            for item in items:
                if isinstance(item, AnyOf):
                    raise self.error("any() cannot hold any()", start)
            return AnyOf(self.span(start), items)
        inner = self.peek()
        if inner.kind != "ref":
            raise self.error(f"{name}() takes a placeholder, e.g. {name}([BODY].items)")
        self.take()
        ref = Ref(inner.text, *inner.value)
        self.expect(")", f"')' closing {name}(")
        return Len(self.span(start), ref) if name == "len" else Has(self.span(start), ref)


def _word(token: Token) -> Node:
    word = token.text
    if word.lower() in _WORDS:
        return Literal(word, _WORDS[word.lower()])
    if _INT.fullmatch(word):
        return Literal(word, int(word))
    if _FLOAT.fullmatch(word):
        return Literal(word, float(word))
    if _DURATION.fullmatch(word):
        return Duration(word, parse_duration(word).total_seconds())
    return Literal(word, word)


def _in_unit(node: Node, other: Node) -> Node:
    """A duration as a number in the unit of the placeholder it is compared with."""
    unit = UNITS.get(other.name, 1.0) if isinstance(other, Ref) and not other.path else 1.0
    if isinstance(node, Duration):
        return Literal(node.text, node.literal * unit)
    if isinstance(node, AnyOf):
        node.items = [_in_unit(item, other) for item in node.items]
    return node
