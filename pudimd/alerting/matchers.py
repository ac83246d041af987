"""Label matchers: the one type routes, silences, inhibit rules, API filters and the CLI use.

A matcher is a label name, an operator and a value, written as Alertmanager and amtool
write them::

    alertname="Watchdog"     severity=~"crit.*"     env!=prod     team!~"db|net"

Semantics follow Alertmanager (``pkg/labels``):

- ``=`` / ``!=`` compare the label's value; ``=~`` / ``!~`` match a regular expression
  against the *whole* value (anchored, as Alertmanager's ``^(?:value)$``).
- An absent label has the empty value: ``foo=""`` matches alerts without ``foo``,
  ``foo!=""`` matches alerts that have it.
- A list of matchers matches when every one does (the empty list matches everything).

Text forms accepted by :func:`parse_matcher` / :func:`parse_matchers` (Alertmanager's
tolerant "classic" parser, plus the quoted label names of its newer UTF-8 parser):

- whitespace around names, operators and values is ignored;
- values may be unquoted (``env=prod``; ``env=`` is ``env=""``) or double-quoted; inside a
  value ``\\"`` is a quote, ``\\n`` a line feed and ``\\\\`` a backslash; any other
  backslash is kept as it is, so regexes such as ``"\\d+"`` need no doubling;
- a list is ``{a="b", c=~"d"}`` or ``a="b",c=~"d"``: braces optional, commas inside quotes
  do not split, a trailing comma is allowed and ``{}`` is the empty list.

Regexes use Python's :mod:`re` (Alertmanager uses Go's RE2): the common syntax is the same,
including leading flag groups such as ``(?i)``.  As in RE2, ``\\d``, ``\\w``, ``\\s`` and
``\\b`` are ASCII-only (:data:`re.ASCII`, which also makes ``(?i)`` fold ASCII letters only)
and RE2's ``\\z`` means end of text.  Python-only constructs (look-arounds,
back-references) are accepted; RE2 syntax Python lacks (``(?U)``, ``\\Q...\\E``) is an
error when the matcher is built.  Each distinct regex is compiled once and shared.

For config models use :data:`MatcherField` and :data:`MatcherList`; for the API v2 silence
form ``{name, value, isRegex, isEqual}`` use :meth:`Matcher.to_api` / :meth:`Matcher.from_api`.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, GetCoreSchemaHandler, PlainSerializer, WithJsonSchema
from pydantic_core import CoreSchema, core_schema

__all__ = [
    "MatchType",
    "Matcher",
    "MatcherError",
    "MatcherField",
    "MatcherList",
    "format_matchers",
    "from_legacy",
    "matches_all",
    "parse_matcher",
    "parse_matchers",
]


class MatcherError(ValueError):
    """A matcher cannot be parsed or built; the message names the text and the reason."""


class MatchType(StrEnum):
    """A matcher's operator; its value is how it is written."""

    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


# A label name that needs no quotes (Alertmanager's classic parser: Prometheus names plus ':').
_PLAIN_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# A label name as Prometheus (and Alertmanager's `match:`) define them.
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# What was meant as a label name: everything up to an operator character or a space.
_WORD = re.compile(r"[^=!~\s]+")

# Go's `\z` (end of text) is Python's `\Z`: translated unless the backslash is escaped.
_GO_END = re.compile(r"(?<!\\)((?:\\\\)*)\\z")
_REGEXES: dict[str, re.Pattern[str]] = {}
_REGEX_CACHE_SIZE = 4096
"""How many distinct regexes are kept compiled (configs and silences hold far fewer)."""
_RESULT_CACHE_SIZE = 1024
"""How many label values each regex matcher remembers its answer for."""


def _compile(value: str) -> re.Pattern[str]:
    """``value`` compiled, shared by every matcher with the same regex.  Matching uses
    ``fullmatch``, which anchors like Alertmanager's ``^(?:value)$`` and, unlike wrapping the
    text in a group, keeps leading flag groups such as ``(?i)`` valid in Python."""
    pattern = _REGEXES.get(value)
    if pattern is None:
        try:
            pattern = re.compile(_GO_END.sub(r"\1\\Z", value), re.ASCII)
        except re.error as exc:
            raise MatcherError(f"invalid regex {value!r}: {exc}") from None
        if len(_REGEXES) >= _REGEX_CACHE_SIZE:
            _REGEXES.clear()
        _REGEXES[value] = pattern
    return pattern


def _regex_test(pattern: re.Pattern[str], negate: bool) -> Callable[[str], bool]:
    """A test of one label value against ``pattern``, remembering recent answers (label
    values repeat: the same few severities and instances for thousands of alerts)."""
    fullmatch = pattern.fullmatch
    answers: dict[str, bool] = {}

    def test(value: str) -> bool:
        answer = answers.get(value)
        if answer is None:
            answer = (fullmatch(value) is None) is negate
            if len(answers) >= _RESULT_CACHE_SIZE:
                answers.clear()
            answers[value] = answer
        return answer

    return test


def _escape(text: str) -> str:
    """OpenMetrics escaping, as Alertmanager prints matcher values: ``\\``, ``"``, newline."""
    if "\\" in text or '"' in text or "\n" in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return text


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher.  Build it directly (``Matcher("env", MatchType.EQUAL, "prod")``),
    or with :func:`parse_matcher`; a bad regex raises :class:`MatcherError`."""

    name: str
    type: MatchType
    value: str
    _test: Callable[[str], bool] = field(init=False, repr=False, compare=False, hash=False)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise MatcherError(
                f"invalid matcher: the label name must be a non-empty string, got {self.name!r}"
            )
        if not isinstance(self.value, str):
            raise MatcherError(
                f"invalid matcher for {self.name!r}: the value must be a string, got {self.value!r}"
            )
        try:
            kind = MatchType(self.type)
        except ValueError:
            raise MatcherError(
                f"invalid matcher for {self.name!r}: unknown operator {self.type!r} "
                "(expected =, !=, =~ or !~)"
            ) from None
        object.__setattr__(self, "type", kind)
        regex: re.Pattern[str] | None = None
        test: Callable[[str], bool]
        if kind is MatchType.EQUAL:
            test = self.value.__eq__
        elif kind is MatchType.NOT_EQUAL:
            test = self.value.__ne__
        else:
            regex = _compile(self.value)
            test = _regex_test(regex, negate=kind is MatchType.NOT_REGEX)
        object.__setattr__(self, "_regex", regex)
        object.__setattr__(self, "_test", test)

    def __reduce__(self) -> tuple[builtins.type[Matcher], tuple[str, MatchType, str]]:
        return (Matcher, (self.name, self.type, self.value))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: builtins.type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # Only instances: text is parsed by MatcherField / MatcherList.
        return core_schema.is_instance_schema(cls)

    # -- matching ------------------------------------------------------------------------

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (an absent label is the empty string)."""
        return self._test(labels.get(self.name, ""))

    def matches_value(self, value: str) -> bool:
        """Whether a label value satisfies this matcher."""
        return self._test(value)

    # -- forms ---------------------------------------------------------------------------

    @property
    def regex(self) -> re.Pattern[str] | None:
        """The compiled regex of ``=~`` / ``!~`` matchers (matched with ``fullmatch``)."""
        return self._regex

    @property
    def is_regex(self) -> bool:
        """API v2 ``isRegex``: the operator is ``=~`` or ``!~``."""
        return self.type is MatchType.REGEX or self.type is MatchType.NOT_REGEX

    @property
    def is_equal(self) -> bool:
        """API v2 ``isEqual``: the operator is ``=`` or ``=~`` (not negated)."""
        return self.type is MatchType.EQUAL or self.type is MatchType.REGEX

    def __str__(self) -> str:
        """The matcher as amtool shows it: ``name="value"``, ``name=~"value"``.  A name that
        is not a plain label name is quoted too."""
        name = self.name if _PLAIN_NAME.fullmatch(self.name) else f'"{_escape(self.name)}"'
        return f'{name}{self.type.value}"{_escape(self.value)}"'

    def to_api(self) -> dict[str, Any]:
        """The API v2 form ``{name, value, isRegex, isEqual}``."""
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Matcher:
        """Build from the API v2 form; ``isEqual`` defaults to true.  Raises MatcherError."""
        if not isinstance(data, Mapping):
            raise MatcherError(
                f"invalid matcher {data!r}: expected an object with name, value and isRegex"
            )
        name, value = data.get("name"), data.get("value")
        is_regex, is_equal = data.get("isRegex"), data.get("isEqual", True)
        if not isinstance(name, str) or not name:
            raise MatcherError(f"invalid matcher {dict(data)!r}: name must be a non-empty string")
        if not isinstance(value, str):
            raise MatcherError(f"invalid matcher {dict(data)!r}: value must be a string")
        if not isinstance(is_regex, bool):
            raise MatcherError(f"invalid matcher {dict(data)!r}: isRegex must be true or false")
        if not isinstance(is_equal, bool):
            raise MatcherError(f"invalid matcher {dict(data)!r}: isEqual must be true or false")
        if is_regex:
            kind = MatchType.REGEX if is_equal else MatchType.NOT_REGEX
        else:
            kind = MatchType.EQUAL if is_equal else MatchType.NOT_EQUAL
        return cls(name, kind, value)


# -- matching lists ----------------------------------------------------------------------


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every matcher (true for no matchers)."""
    get = labels.get
    for matcher in matchers:  # noqa: SIM110 (a plain loop is faster than all() on the hot path)
        if not matcher._test(get(matcher.name, "")):
            return False
    return True


def format_matchers(matchers: Iterable[Matcher]) -> str:
    """A list of matchers as Alertmanager prints one: ``{a="b",c=~"d"}``."""
    return "{" + ",".join(str(m) for m in matchers) + "}"


# -- parsing -----------------------------------------------------------------------------

_OPERATORS = (MatchType.REGEX, MatchType.NOT_EQUAL, MatchType.NOT_REGEX, MatchType.EQUAL)
"""Longest first where one is a prefix of another (``=~`` before ``=``)."""


def _unescape(raw: str) -> str:
    """Undo ``\\"``, ``\\n`` and ``\\\\``; any other backslash stays literal (as in
    Alertmanager's classic parser, which keeps regexes like ``\\d`` readable)."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i, end = 0, len(raw)
    while i < end:
        char = raw[i]
        if char == "\\" and i + 1 < end:
            following = raw[i + 1]
            if following == "n":
                out.append("\n")
            elif following in '"\\':
                out.append(following)
            else:
                out.append("\\" + following)
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _quoted(text: str, start: int, what: str, whole: str) -> tuple[str, int]:
    """Read the double-quoted string opening at ``text[start]``; return its unescaped
    content and the index after the closing quote."""
    i, end = start + 1, len(text)
    while i < end:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            return _unescape(text[start + 1 : i]), i + 1
        i += 1
    raise MatcherError(f"invalid matcher {whole!r}: unterminated quoted {what}")


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as ``alertname="Watchdog"``, ``severity=~"crit.*"`` or
    ``env!=prod``.  Raises :class:`MatcherError` saying what is wrong."""
    if not isinstance(text, str):
        raise MatcherError(f"invalid matcher {text!r}: expected a string")
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    if not body:
        raise MatcherError(f"invalid matcher {text!r}: it is empty")

    # label name: plain, or quoted (Alertmanager's UTF-8 form)
    if body[0] == '"':
        name, pos = _quoted(body, 0, "label name", text)
        if not name:
            raise MatcherError(f"invalid matcher {text!r}: the label name is empty")
    else:
        found = _PLAIN_NAME.match(body)
        pos = found.end() if found else 0
        if pos < len(body) and not body[pos].isspace() and body[pos] not in "=!~":
            word = _WORD.match(body)
            shown = word.group() if word else body
            raise MatcherError(
                f"invalid matcher {text!r}: invalid label name {shown!r} (use letters, digits,"
                " '_' and ':', not starting with a digit, or quote the name)"
            )
        name = body[:pos]
        if not name:
            raise MatcherError(f"invalid matcher {text!r}: the label name is missing")
    while pos < len(body) and body[pos].isspace():
        pos += 1

    rest = body[pos:]
    for kind in _OPERATORS:
        if rest.startswith(kind.value):
            break
    else:
        found_text = repr(rest.split(None, 1)[0][:2]) if rest.strip() else "nothing"
        raise MatcherError(
            f"invalid matcher {text!r}: expected an operator (=, !=, =~ or !~) after "
            f"the label name {name!r}, found {found_text}"
        )

    raw = rest[len(kind.value) :].strip()
    if raw[:1] == '"':
        value, after = _quoted(raw, 0, "value", text)
        if after != len(raw):
            raise MatcherError(
                f"invalid matcher {text!r}: unexpected {raw[after:]!r} after the closing quote"
            )
    else:
        escaped = False
        for char in raw:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                raise MatcherError(
                    f"invalid matcher {text!r}: unescaped double quote in the unquoted value "
                    f'{raw!r} (quote the value, escaping inner quotes as \\")'
                )
        value = _unescape(raw)
    try:
        return Matcher(name, kind, value)
    except MatcherError as exc:
        raise MatcherError(f"invalid matcher {text!r}: {exc}") from None


def _split(text: str) -> list[str]:
    """Split at commas outside double quotes (a ``\\"`` does not open or close quotes)."""
    parts: list[str] = []
    start, quoted, escaped = 0, False, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_matchers(text: str) -> list[Matcher]:
    """Parse a list of matchers: ``{a="b", c=~"d"}`` or ``a="b",c=~"d"`` (braces optional,
    trailing comma allowed, ``{}`` or ``""`` is the empty list).  Raises MatcherError."""
    if not isinstance(text, str):
        raise MatcherError(f"invalid matchers {text!r}: expected a string")
    body = text.strip()
    if body.startswith("{"):
        body = body[1:]
    if body.endswith("}"):
        body = body[:-1]
    if not body.strip():
        return []
    parts = [part.strip() for part in _split(body)]
    if not parts[-1]:
        parts.pop()  # trailing comma
    matchers: list[Matcher] = []
    for index, part in enumerate(parts):
        if not part:
            raise MatcherError(f"invalid matchers {text!r}: matcher {index + 1} is empty")
        matchers.append(parse_matcher(part))
    return matchers


# -- Alertmanager's deprecated forms -----------------------------------------------------


def from_legacy(
    match: Mapping[str, str] | None, match_re: Mapping[str, str] | None
) -> list[Matcher]:
    """Matchers equivalent to Alertmanager's deprecated ``match:`` (equality) and
    ``match_re:`` (anchored regex) maps of routes and inhibit rules."""
    matchers: list[Matcher] = []
    for field_name, mapping, kind in (
        ("match", match, MatchType.EQUAL),
        ("match_re", match_re, MatchType.REGEX),
    ):
        for name, value in (mapping or {}).items():
            if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
                raise MatcherError(f"{field_name}: invalid label name {name!r}")
            if not isinstance(value, str):
                raise MatcherError(f"{field_name}.{name}: the value must be a string")
            try:
                matchers.append(Matcher(name, kind, value))
            except MatcherError as exc:
                raise MatcherError(f"{field_name}.{name}: {exc}") from None
    return matchers


# -- pydantic field types ----------------------------------------------------------------


def _to_matcher(value: Any) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if isinstance(value, str):
        return parse_matcher(value)
    raise ValueError(f"expected a matcher such as 'severity=\"critical\"', got {value!r}")


def _to_matchers(value: Any) -> list[Matcher]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(
            "expected a list of matchers such as ['severity=\"critical\"', 'env=~\"prod|staging\"']"
        )
    matchers: list[Matcher] = []
    for index, item in enumerate(value):
        if isinstance(item, Matcher):
            matchers.append(item)
        elif isinstance(item, str):
            try:
                matchers.extend(parse_matchers(item))
            except MatcherError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        else:
            raise ValueError(f"item {index}: expected a matcher string, got {item!r}")
    return matchers


def _format_list(matchers: list[Matcher]) -> list[str]:
    return [str(m) for m in matchers]


MatcherField = Annotated[
    Matcher,
    BeforeValidator(_to_matcher),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "description": "A label matcher: name, operator (=, !=, =~, !~) and value",
            "examples": ['severity="critical"', 'instance=~"db-.*"'],
        }
    ),
]
"""A config field holding one matcher, written as text (``severity="critical"``)."""

MatcherList = Annotated[
    list[Matcher],
    BeforeValidator(_to_matchers),
    PlainSerializer(_format_list, return_type=list[str]),
    WithJsonSchema(
        {
            "type": "array",
            "items": {
                "type": "string",
                "description": "One or more comma-separated label matchers",
            },
            "description": "Label matchers; an alert must match all of them",
            "examples": [['severity="critical"', 'env=~"prod|staging"']],
        }
    ),
]
"""A config field holding matchers (Alertmanager's ``matchers:``): a list of strings, each
one or more comma-separated matchers (``['a="b", c="d"']`` is two)."""
