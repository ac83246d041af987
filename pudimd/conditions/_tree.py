"""The evaluable tree a condition compiles to, and the facts of one result it reads.

Values are compared the way Gatus does, as text unless both sides are numbers: ``==``
and ``!=`` compare numbers as numbers (a numeric text counts as a number: ``"200" == 200``)
and anything else by its text (``true``, ``false``, ``null``, a body decoded as UTF-8);
``<``, ``<=``, ``>``, ``>=`` need two numbers and do not hold otherwise.  A missing value
(no such placeholder, a JSON path that does not exist, a body that is not JSON) makes a
comparison not hold, whatever its operator; ``has()`` tests for it.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pudimd.results import ProbeResult

__all__ = ["MISSING", "Facts", "Node"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What a placeholder or path that has no value evaluates to."""

_NOT_PARSED: Any = object()
_ORDER: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class Facts:
    """The placeholders of one result, resolved on demand; the body is decoded and parsed
    as JSON at most once, and only if a condition reads a path of it."""

    __slots__ = ("_json", "result")

    def __init__(self, result: ProbeResult) -> None:
        self.result = result
        self._json: Any = _NOT_PARSED

    def lookup(self, name: str, path: Sequence[str | int]) -> Any:
        result = self.result
        if name == "STATUS":
            value: Any = MISSING if result.status is None else result.status
        elif name == "RESPONSE_TIME":
            value = result.duration * 1000.0
        elif name == "BODY" and path:
            value = self._body_json()
        else:
            value = result.values.get(name, MISSING)
            if value is MISSING:
                value = result.metrics.get(name.lower(), MISSING)
        for part in path:
            if value is MISSING:
                break
            value = _step(value, part)
        return value

    def _body_json(self) -> Any:
        if self._json is _NOT_PARSED:
            body = self.result.values.get("BODY", MISSING)
            try:
                self._json = MISSING if body is MISSING else json.loads(body)
            except (ValueError, TypeError, RecursionError):
                self._json = MISSING
        return self._json


def _step(value: Any, part: str | int) -> Any:
    if isinstance(part, int):
        if isinstance(value, list) and -len(value) <= part < len(value):
            return value[part]
        return MISSING
    if isinstance(value, dict):
        return value.get(part, MISSING)
    return MISSING


def number(value: Any) -> float | None:
    """``value`` as a number, or None (booleans are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str | bytes | bytearray):
        try:
            return float(value)
        except (ValueError, OverflowError):
            return None
    return None


def text(value: Any) -> str:
    """``value`` as the text conditions compare: JSON spelling for booleans and null."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def equal(left: Any, right: Any) -> bool:
    if isinstance(left, int | float) and isinstance(right, int | float):
        if isinstance(left, bool) or isinstance(right, bool):
            return left is right
        return left == right
    if isinstance(left, int | float) != isinstance(right, int | float):
        a, b = number(left), number(right)
        if a is not None and b is not None:
            return a == b
    return text(left) == text(right)


def shown(value: Any) -> str:
    """A value as the failure record shows it: short, on one line."""
    if value is MISSING:
        return "missing"
    if isinstance(value, float) and not value.is_integer():
        value = round(value, 3)
    out = text(value).replace("\r", "\\r").replace("\n", "\\n")
    return out if len(out) <= 60 else out[:57] + "..."


# -- values -------------------------------------------------------------------------


class Node:
    """A value in a condition; ``text`` is how it is written."""

    __slots__ = ("text",)
    shows_value = True  # the failure record shows what it evaluated to

    def __init__(self, text: str) -> None:
        self.text = text

    def value(self, facts: Facts) -> Any:
        raise NotImplementedError


class Ref(Node):
    """``[NAME]`` with an optional path."""

    __slots__ = ("name", "path")

    def __init__(self, text: str, name: str, path: tuple[str | int, ...]) -> None:
        super().__init__(text)
        self.name = name
        self.path = path

    def value(self, facts: Facts) -> Any:
        return facts.lookup(self.name, self.path)


class Len(Node):
    """``len(x)``: characters of a text, items of a list or object."""

    __slots__ = ("inner",)

    def __init__(self, text: str, inner: Node) -> None:
        super().__init__(text)
        self.inner = inner

    def value(self, facts: Facts) -> Any:
        value = self.inner.value(facts)
        if value is MISSING:
            return MISSING
        if isinstance(value, bytes | bytearray):
            return len(text(value))
        if isinstance(value, str | list | dict):
            return len(value)
        return len(text(value))


class Has(Node):
    """``has(x)``: true when ``x`` has a value."""

    __slots__ = ("inner",)

    def __init__(self, text: str, inner: Node) -> None:
        super().__init__(text)
        self.inner = inner

    def value(self, facts: Facts) -> Any:
        return self.inner.value(facts) is not MISSING


class Literal(Node):
    """A number, a text, true, false or null."""

    __slots__ = ("literal",)
    shows_value = False

    def __init__(self, text: str, literal: Any) -> None:
        super().__init__(text)
        self.literal = literal

    def value(self, facts: Facts) -> Any:
        return self.literal


class Duration(Literal):
    """A duration, in seconds until the comparison it is in converts it to the unit of the
    placeholder it is compared with."""

    __slots__ = ()


class Pattern(Node):
    """``pat(glob)``: ``*`` matches any run of characters; the whole text must match."""

    __slots__ = ("regex",)
    shows_value = False

    def __init__(self, text: str, glob: str) -> None:
        super().__init__(text)
        parts = (re.escape(p) for p in glob.split("*"))
        self.regex = re.compile(".*".join(parts), re.DOTALL)

    def value(self, facts: Facts) -> Any:
        return self

    def matches(self, value: Any) -> bool:
        return self.regex.fullmatch(text(value)) is not None


class AnyOf(Node):
    """``any(v1, v2...)`` on the right of ``==``/``!=``: equal to one of them."""

    __slots__ = ("items",)
    shows_value = False

    def __init__(self, text: str, items: list[Node]) -> None:
        super().__init__(text)
        self.items = items

    def value(self, facts: Facts) -> Any:
        return self

    def matches(self, value: Any, facts: Facts) -> bool:
        for item in self.items:
            other = item.value(facts)
            if isinstance(item, Pattern):
                if item.matches(value):
                    return True
            elif other is not MISSING and equal(value, other):
                return True
        return False


# -- conditions ---------------------------------------------------------------------


class Test:
    """A condition: ``holds`` decides, ``describe`` says it with the values seen."""

    __slots__ = ()

    def holds(self, facts: Facts) -> bool:
        raise NotImplementedError

    def describe(self, facts: Facts) -> str:
        raise NotImplementedError


class Compare(Test):
    __slots__ = ("left", "op", "right")

    def __init__(self, left: Node, op: str, right: Node) -> None:
        self.left = left
        self.op = op
        self.right = right

    def holds(self, facts: Facts) -> bool:
        left = self.left.value(facts)
        if left is MISSING:
            return False
        right = self.right
        if isinstance(right, Pattern):
            found = right.matches(left)
        elif isinstance(right, AnyOf):
            found = right.matches(left, facts)
        else:
            value = right.value(facts)
            if value is MISSING:
                return False
            order = _ORDER.get(self.op)
            if order is not None:
                a, b = number(left), number(value)
                return a is not None and b is not None and order(a, b)
            found = equal(left, value)
        return found if self.op == "==" else not found

    def describe(self, facts: Facts) -> str:
        parts = []
        for node in (self.left, self.right):
            if node.shows_value:
                parts.append(f"{node.text} ({shown(node.value(facts))})")
            else:
                parts.append(node.text)
        return f"{parts[0]} {self.op} {parts[1]}"


class AnyTest(Test):
    """``any(cond, cond...)``: holds when one of its conditions holds."""

    __slots__ = ("tests",)

    def __init__(self, tests: list[Test]) -> None:
        self.tests = tests

    def holds(self, facts: Facts) -> bool:
        return any(test.holds(facts) for test in self.tests)

    def describe(self, facts: Facts) -> str:
        return "any(" + ", ".join(test.describe(facts) for test in self.tests) + ")"
