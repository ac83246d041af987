"""Edit the config file's YAML text and keep what a person wrote: comments, key order,
quoting and flow style.

A round trip of the whole file through ruamel.yaml keeps all that, but it is pure Python:
ten seconds for a file of 10,000 targets.  So an edit touches only the text it changes.
The file is cut into its top-level sections (``targets:``, ``alerting:``...) and the
``targets`` sequence into its items by reading lines (a block mapping at column 0, a block
sequence under ``targets:``, which is how config files are written).  The item or
section being changed goes through ruamel.yaml alone; a new item is rendered by the fast
emitter (``yaml_rs``; it has no comments to keep); the rest of the text is left byte for
byte.  A file the line reader does not understand (flow style at the top, several
documents, an alias to an anchor in another section...) is edited by a round trip of the
whole file instead: slower, just as faithful.

Everything here is text in, text out, and blocking: the caller validates the result and
runs it in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from typing import Any

import yaml_rs

__all__ = [
    "REDACTED",
    "Document",
    "EditError",
    "assign",
    "plain",
    "render_items",
]

REDACTED = "<secret>"
"""What a secret reads as through the API; writing it back keeps the value in the file."""

_TOP_KEY = re.compile(r"^([A-Za-z_][\w.-]*)[ \t]*:(?:[ \t]+(.*?))?[ \t]*$")
_ITEM = re.compile(r"^([ \t]*)-(?:[ \t]+|$)")


class EditError(ValueError):
    """The edit cannot be made to this text (and why)."""


@dataclass(slots=True)
class _Span:
    start: int  # first line (index)
    end: int  # one past the last line


def _blank_or_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _rt() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def _rt_load(text: str) -> Any:
    from ruamel.yaml.error import YAMLError

    try:
        return _rt().load(StringIO(text))
    except YAMLError as exc:
        raise EditError(f"cannot parse the YAML being edited: {exc}") from None


def _rt_dump(data: Any) -> str:
    out = StringIO()
    _rt().dump(data, out)
    return out.getvalue()


def render_items(items: Iterable[Mapping[str, Any]], indent: str) -> list[str]:
    """Lines of new sequence items (plain data) under ``indent``, block style."""
    text = yaml_rs.dumps(list(items))
    if text.startswith("---\n"):
        text = text[4:]
    if not text.endswith("\n"):
        text += "\n"
    lines = text.splitlines(keepends=True)
    return [indent + line if line.strip() else line for line in lines]


def assign(node: Any, new: Mapping[str, Any]) -> None:
    """Make the ruamel mapping ``node`` equal to ``new``, keeping the comments, order and
    style of what does not change.  A value of :data:`REDACTED` keeps the current one;
    where there is none to keep, it is an EditError."""
    from ruamel.yaml.comments import CommentedMap

    for key in [k for k in node if k not in new]:
        del node[key]
    for key, value in new.items():
        if key not in node:
            node[key] = _new_value(value, key)
            continue
        current = node[key]
        if value == REDACTED:
            continue
        if isinstance(current, CommentedMap) and isinstance(value, Mapping):
            assign(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            _assign_list(current, value, key)
        elif plain(current) != value or type(plain(current)) is not type(value):
            node[key] = _new_value(value, key)


def _assign_list(current: Any, value: list[Any], where: Any) -> None:
    from ruamel.yaml.comments import CommentedMap

    if len(current) != len(value):
        current[:] = [_new_value(v, where) for v in value]
        return
    for i, (old, new) in enumerate(zip(current, value, strict=True)):
        if isinstance(old, CommentedMap) and isinstance(new, Mapping):
            assign(old, new)
        elif new == REDACTED:
            continue
        elif plain(old) != new or type(plain(old)) is not type(new):
            current[i] = _new_value(new, where)


def _new_value(value: Any, where: Any) -> Any:
    """``value`` to write where nothing was: it must not hold :data:`REDACTED`."""
    if _holds_redacted(value):
        raise EditError(
            f"{where}: {REDACTED} stands for a secret kept in the file, but there is "
            "none here to keep; give the value"
        )
    return value


def _holds_redacted(value: Any) -> bool:
    if value == REDACTED:
        return True
    if isinstance(value, Mapping):
        return any(_holds_redacted(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_redacted(v) for v in value)
    return False


def plain(value: Any) -> Any:
    """ruamel's node types as plain Python values, for comparison."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


class Document:
    """The config file's text, cut into sections and target items for editing.

    ``targets()`` are the items as plain data (the fast parser's), in file order; edits
    (:meth:`set_target`, :meth:`add_targets`, :meth:`remove_targets`,
    :meth:`edit_section`) change :attr:`text`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._data: Any = None
        self._count: int | None = None
        """How many targets the text has, when known without parsing it again."""

    def copy(self) -> Document:
        """Another document on the same text, sharing what was parsed of it (edits replace
        the text and drop the parse; nothing here changes parsed data in place)."""
        other = Document(self.text)
        other._data, other._count = self._data, self._count
        return other

    # -- reading ----------------------------------------------------------------------

    def data(self) -> dict[str, Any]:
        """The whole file as plain data (``${ENV}`` unexpanded)."""
        if self._data is None:
            try:
                data = yaml_rs.loads(self.text, parse_datetime=False) if self.text.strip() else {}
            except Exception as exc:
                raise EditError(f"the config file is not valid YAML: {exc}") from None
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise EditError("the config file is not a mapping at the top")
            self._data = data
        return dict(self._data)

    def targets(self) -> list[dict[str, Any]]:
        """The ``targets`` items as written (plain data)."""
        items = self.data().get("targets") or []
        if not isinstance(items, list):
            raise EditError("targets: expected a list")
        return items

    def index_of(self, name: str) -> int | None:
        """Index of the target named ``name`` in ``targets``."""
        for i, item in enumerate(self.targets()):
            if isinstance(item, dict) and item.get("name") == name:
                return i
        return None

    # -- cutting ----------------------------------------------------------------------

    def _lines(self) -> list[str]:
        return self.text.splitlines(keepends=True)

    def _sections(self, lines: list[str]) -> dict[str, _Span] | None:
        """Top-level keys and their line spans, or None when the text is not a plain block
        mapping at column 0."""
        keys: list[tuple[str, int]] = []
        for i, line in enumerate(lines):
            if _blank_or_comment(line) or line[0] in " \t":
                continue
            if line.rstrip() == "---" and not keys:
                continue
            match = _TOP_KEY.match(line.rstrip("\r\n"))
            if match is None:
                return None
            keys.append((match.group(1), i))
        spans: dict[str, _Span] = {}
        for n, (key, start) in enumerate(keys):
            end = keys[n + 1][1] if n + 1 < len(keys) else len(lines)
            # blank lines and column-0 comments before the next key belong to it
            while end > start + 1 and (
                not lines[end - 1].strip() or lines[end - 1].startswith("#")
            ):
                end -= 1
            if key in spans:
                return None  # a duplicate key: let the validator say so
            spans[key] = _Span(start, end)
        return spans

    def _items(self, lines: list[str], section: _Span) -> tuple[str, list[_Span]] | None:
        """The indent and the line spans of the block sequence under ``targets:``."""
        indent: str | None = None
        starts: list[int] = []
        for i in range(section.start + 1, section.end):
            line = lines[i]
            if _blank_or_comment(line):
                continue
            match = _ITEM.match(line)
            if indent is None:
                if match is None:
                    return None
                indent = match.group(1)
            if match is not None and match.group(1) == indent:
                starts.append(i)
            elif not line.startswith(indent + " ") and not line.startswith(indent + "\t"):
                return None
        spans = []
        for n, start in enumerate(starts):
            end = starts[n + 1] if n + 1 < len(starts) else section.end
            # comments at the item's indent or less just before the next item are its heading
            while end > start + 1 and _blank_or_comment(lines[end - 1]):
                body = lines[end - 1]
                if body.strip() and len(body) - len(body.lstrip()) > len(indent or ""):
                    break
                end -= 1
            spans.append(_Span(start, end))
        return indent or "  ", spans

    def _target_layout(self) -> tuple[list[str], _Span | None, str, list[_Span]] | None:
        """Lines, the targets section (None when absent), item indent and item spans; None
        when the text is not laid out for line editing."""
        lines = self._lines()
        sections = self._sections(lines)
        if sections is None:
            return None
        section = sections.get("targets")
        if section is None:
            return lines, None, "  ", []
        head = _TOP_KEY.match(lines[section.start].rstrip("\r\n"))
        assert head is not None
        rest = (head.group(2) or "").split("#", 1)[0].strip()
        if rest == "[]":
            return lines, section, "  ", []
        if rest:
            return None
        cut = self._items(lines, section)
        if cut is None:
            return None
        indent, spans = cut
        count = self._count if self._count is not None else len(self.targets())
        if len(spans) != count:
            return None
        self._count = count
        return lines, section, indent, spans

    def _changed(self, text: str, count: int | None = None) -> None:
        """The text is now ``text``, with ``count`` targets (None: unknown)."""
        self.text = text
        self._data = None
        self._count = count

    # -- whole-file fallback ----------------------------------------------------------

    def _round_trip(self, edit: Callable[[Any], None]) -> None:
        doc = _rt_load(self.text) if self.text.strip() else None
        if doc is None:
            from ruamel.yaml.comments import CommentedMap

            doc = CommentedMap()
        edit(doc)
        self._changed(_rt_dump(doc))

    # -- target edits -----------------------------------------------------------------

    def set_target(self, index: int, item: Mapping[str, Any]) -> None:
        """Replace target ``index`` by ``item`` (see :meth:`set_targets`)."""
        self.set_targets({index: item})

    def set_targets(self, changes: Mapping[int, Mapping[str, Any]]) -> None:
        """Replace the targets at the indexes of ``changes`` by their new values, in one
        pass.  A target whose lines hold a comment goes through ruamel.yaml (comments,
        order, quoting and style kept where values did not change); one without is
        written anew: a one-line flow mapping as JSON (still one line), a block as a
        block.  :data:`REDACTED` keeps the value in the file."""
        if not changes:
            return
        layout = self._target_layout()
        if layout is None:

            def edit(doc: Any) -> None:
                for index, item in changes.items():
                    assign(doc["targets"][index], item)

            self._round_trip(edit)
            return
        lines, _, indent, spans = layout
        count = len(spans)
        current = self.targets() if any(_holds_redacted(i) for i in changes.values()) else []
        for index in sorted(changes, reverse=True):
            span = spans[index]
            block = lines[span.start : span.end]
            old = current[index] if current else None
            lines[span.start : span.end] = _render_item(block, changes[index], old, indent)
        self._changed("".join(lines), count)

    def add_targets(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Append ``items`` to ``targets`` (creating the section when there is none)."""
        if not items:
            return
        for item in items:
            _new_value(item, f"target {item.get('name')!r}")
        layout = self._target_layout()
        if layout is None:

            def edit(doc: Any) -> None:
                doc.setdefault("targets", [])
                doc["targets"].extend(items)

            self._round_trip(edit)
            return
        lines, section, indent, spans = layout
        new = render_items(items, indent)
        if section is None:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.extend(["targets:\n", *new])
        else:
            if not spans:
                lines[section.start] = "targets:\n"
            at = spans[-1].end if spans else section.end
            if at > 0 and not lines[at - 1].endswith("\n"):
                lines[at - 1] += "\n"
            lines[at:at] = new
        self._changed("".join(lines), len(spans) + len(items))

    def remove_targets(self, indexes: Iterable[int]) -> None:
        """Remove the targets at ``indexes`` (with their comments)."""
        doomed = sorted(set(indexes), reverse=True)
        if not doomed:
            return
        layout = self._target_layout()
        if layout is None:

            def edit(doc: Any) -> None:
                for i in doomed:
                    del doc["targets"][i]

            self._round_trip(edit)
            return
        lines, section, _, spans = layout
        assert section is not None
        for i in doomed:
            span = spans[i]
            start = span.start
            floor = spans[i - 1].end if i else section.start + 1
            # its heading: the comment lines right above it
            while start > floor and lines[start - 1].strip().startswith("#"):
                start -= 1
            del lines[start : span.end]
        if len(doomed) == len(spans):
            lines[section.start] = "targets: []\n"
        self._changed("".join(lines), len(spans) - len(doomed))

    # -- section edits ----------------------------------------------------------------

    def edit_section(self, key: str, edit: Callable[[Any], Any]) -> None:
        """Run ``edit`` on top-level section ``key`` loaded with ruamel.yaml (a mapping
        holding ``key``; ``edit`` may add it) and put the result back in its place."""
        lines = self._lines()
        sections = self._sections(lines)
        if sections is None:
            self._round_trip(edit)
            return
        span = sections.get(key)
        if span is None:
            from ruamel.yaml.comments import CommentedMap

            node = CommentedMap()
            edit(node)
            if key not in node:
                return
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.extend(_rt_dump(node).splitlines(keepends=True))
            self._changed("".join(lines))
            return
        try:
            node = _rt_load("".join(lines[span.start : span.end]))
        except EditError:  # an alias to an anchor elsewhere in the file
            self._round_trip(edit)
            return
        edit(node)
        out = _rt_dump(node).splitlines(keepends=True) if node else []
        lines[span.start : span.end] = out
        self._changed("".join(lines))


def _dedent(line: str, column: int) -> str:
    if not line.strip():
        return line.lstrip(" \t") if line.endswith("\n") else line
    width = len(line) - len(line.lstrip(" "))
    return line[min(width, column) :]


def _render_item(
    block: list[str], item: Mapping[str, Any], current: Any, indent: str
) -> list[str]:
    """The lines of a sequence item ``block`` rewritten to hold ``item``."""
    first = block[0]
    dash = _ITEM.match(first)
    assert dash is not None
    column = dash.end()
    if any("#" in line for line in block):
        body = [" " * column + first[column:], *block[1:]]
        node = _rt_load("".join(_dedent(line, column) for line in body))
        if node is None:
            from ruamel.yaml.comments import CommentedMap

            node = CommentedMap()
        assign(node, item)
        out = _rt_dump(node).splitlines(keepends=True)
        rendered = [(" " * column + line) if line.strip() else line for line in out]
        rendered[0] = first[:column] + rendered[0][column:]
    else:
        value = _unredact(item, current, str(item.get("name", "")))
        if len(block) == 1 and first[column:].lstrip().startswith("{"):
            import orjson

            rendered = [first[:column] + orjson.dumps(value).decode() + "\n"]
        else:
            rendered = render_items([value], dash.group(1))
    if not block[-1].endswith("\n") and rendered[-1].endswith("\n"):
        rendered[-1] = rendered[-1][:-1]
    return rendered


def _unredact(new: Any, current: Any, where: str) -> Any:
    """``new`` with each :data:`REDACTED` replaced by ``current``'s value at that place;
    EditError where there is none."""
    if new == REDACTED:
        if current is None or current == REDACTED:
            _new_value(new, where)
        return current
    if isinstance(new, Mapping):
        here = current if isinstance(current, Mapping) else {}
        return {k: _unredact(v, here.get(k), f"{where}.{k}") for k, v in new.items()}
    if isinstance(new, list):
        same = current if isinstance(current, list) and len(current) == len(new) else None
        return [
            _unredact(v, same[i] if same else None, f"{where}[{i}]") for i, v in enumerate(new)
        ]
    return new
