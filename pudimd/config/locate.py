"""Find where a value sits in a YAML file, for error messages.

Parsing keeps no positions (the fast parser has none), so this re-reads the text with
ruamel.yaml's round-trip loader, which does, only when there is an error to place (and
imports it only then: the daemon need not carry it).
"""

from __future__ import annotations

from collections.abc import Sequence
from io import StringIO
from typing import Any

__all__ = ["Locator", "yaml_syntax_error"]


def yaml_syntax_error(text: str) -> tuple[int | None, int | None, str] | None:
    """Line, column (1-based) and reason of the first YAML syntax error in ``text``."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    try:
        YAML(typ="rt").load(StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        if mark is None:
            return None, None, reason
        return mark.line + 1, mark.column + 1, reason
    except Exception as exc:
        return None, None, str(exc)
    return None


class Locator:
    """Maps a path of keys and indexes (``("targets", 3, "interval")``) to a line:column."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._doc: Any = None
        self._parsed = False

    def _root(self) -> Any:
        if not self._parsed:
            from ruamel.yaml import YAML

            self._parsed = True
            try:
                self._doc = YAML(typ="rt").load(StringIO(self._text))
            except Exception:
                self._doc = None
        return self._doc

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int] | None:
        """1-based (line, column) of the value at ``path``, or of its key when ``key``;
        the nearest existing ancestor's position when ``path`` is not in the file."""
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        node = self._root()
        if node is None:
            return None
        best: tuple[int, int] | None = (1, 1)
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, CommentedMap) and part in node:
                line, col = node.lc.key(part) if (last and key) else node.lc.value(part)
                if not (last and key):
                    value = node[part]
                    if isinstance(value, CommentedMap | CommentedSeq) and value.lc.line is not None:
                        line, col = value.lc.line, value.lc.col
                best = (line + 1, col + 1)
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                line, col = node.lc.item(part)
                best = (line + 1, col + 1)
                node = node[part]
            else:
                break
        return best
