"""Docs are part of the work: every hook has its section, with its exact signature."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pudimd import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = [
    (name, fn)
    for name, fn in vars(hookspecs).items()
    if name.startswith("pudimd_") and callable(fn) and hasattr(fn, "pudimd_spec")
]


def test_there_are_hooks() -> None:
    assert len(HOOKS) >= 7


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[name for name, _ in HOOKS])
def test_every_hook_is_documented_with_its_signature(name: str, fn: object) -> None:
    assert inspect.getdoc(fn), f"{name} has no docstring"
    args = ", ".join(inspect.signature(fn).parameters)  # type: ignore[arg-type]
    heading = f"### `{name}({args})`"
    assert heading in (ROOT / "docs" / "plugins.md").read_text(), f"docs/plugins.md lacks {heading}"


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make run" in text and "make test" in text
    assert text.index("make run") < 600
