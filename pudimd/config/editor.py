"""The API's way of changing the config: the YAML file stays the source of truth and every
edit goes through it.

An edit holds the daemon's reload lock from reading the file to applying the result, so
edits and reloads never interleave.  It reads the file as it is on disk (a hand edit not
yet reloaded is part of it, never overwritten), checks ``If-Match`` against the file's
ETag, changes the text (:mod:`pudimd.config.yamledit`: comments and order kept),
validates the whole result as a reload would, and only then writes it (temporary file,
fsync, rename) and applies it.  A bad edit leaves the file and the running config as they
were.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio

from pudimd.config.errors import ConfigError
from pudimd.config.yamledit import REDACTED, Document, EditError
from pudimd.store.versions import Change, read_config_file, write_config_file

if TYPE_CHECKING:
    from pudimd.config.models import ConfigBase

__all__ = [
    "ConfigEditor",
    "EditError",
    "Edited",
    "Invalid",
    "PreconditionFailed",
    "Snapshot",
    "etag_of",
    "item_etag",
    "matches",
    "secret_paths",
]

T = TypeVar("T")


class _Daemon(Protocol):
    config_path: Path

    @property
    def reload_lock(self) -> anyio.Lock: ...

    def load_text(self, text: str | None = None) -> tuple[ConfigBase, str]: ...

    async def apply_locked(
        self, config: ConfigBase, text: str, source: str, change: Change = ...
    ) -> None: ...


class PreconditionFailed(Exception):
    """``If-Match`` names another state of the file than the one on disk."""

    def __init__(self, current: str) -> None:
        super().__init__(f"the config changed since it was read (now {current})")
        self.current = current


class Invalid(Exception):
    """The edited config does not validate; ``error`` says where in the edited text."""

    def __init__(self, error: ConfigError, doc: Document) -> None:
        super().__init__(str(error))
        self.error = error
        self.doc = doc


def etag_of(text: str) -> str:
    """The strong ETag of a config text."""
    return '"' + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32] + '"'


def item_etag(item: Any) -> str:
    """The strong ETag of one item as written (a target, a receiver...)."""
    import orjson

    raw = orjson.dumps(item, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'


def matches(if_match: str | None, etag: str) -> bool:
    """Whether an ``If-Match`` header value accepts ``etag`` (absent or ``*``: yes)."""
    if if_match is None:
        return True
    for candidate in if_match.split(","):
        tag = candidate.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag in ("*", etag):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The config file as read: its text, ETag and parsed document."""

    text: str
    etag: str
    doc: Document
    stat: tuple[int, int, int]
    cache: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Edited(Generic[T]):
    """The outcome of an edit: what the edit function returned, the new ETag, whether the
    file changed, and how long the whole edit took (seconds)."""

    value: T
    etag: str
    changed: bool
    seconds: float
    doc: Document


def _stat(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ConfigEditor:
    """Reads and edits the config file of a running daemon (one per daemon)."""

    def __init__(self, daemon: _Daemon) -> None:
        self.daemon = daemon
        self._snapshot: Snapshot | None = None

    def _read(self) -> Snapshot:
        path = self.daemon.config_path
        before = _stat(path)
        cached = self._snapshot
        if cached is not None and cached.stat == before:
            return cached
        text = read_config_file(path)
        snapshot = Snapshot(text, etag_of(text), Document(text), before)
        self._snapshot = snapshot
        return snapshot

    async def snapshot(self) -> Snapshot:
        """The file as it is now (cached while its inode, size and mtime stay the same)."""
        cached = self._snapshot
        if cached is not None:
            try:
                if _stat(self.daemon.config_path) == cached.stat:
                    return cached
            except OSError:
                pass
        return await anyio.to_thread.run_sync(self._read)

    async def edit(
        self,
        change_fn: Callable[[Document], T],
        *,
        change: Change,
        if_match: str | None = None,
        dry_run: bool = False,
    ) -> Edited[T]:
        """Run ``change_fn`` on the file's document, validate the result and (unless
        ``dry_run``) write and apply it.  Raises PreconditionFailed, EditError (the edit
        itself is wrong: raised by ``change_fn``), Invalid (the result does not validate),
        OSError (the file cannot be written)."""
        started = time.perf_counter()
        daemon = self.daemon
        async with daemon.reload_lock:
            snapshot = await anyio.to_thread.run_sync(self._read)
            if not matches(if_match, snapshot.etag):
                raise PreconditionFailed(snapshot.etag)
            doc = snapshot.doc.copy()

            def prepare() -> tuple[T, ConfigBase | None]:
                value = change_fn(doc)
                if doc.text == snapshot.text:
                    return value, None
                try:
                    config, _ = daemon.load_text(doc.text)
                except ConfigError as exc:
                    raise Invalid(exc, doc) from None
                return value, config

            value, config = await anyio.to_thread.run_sync(prepare)
            if config is None or dry_run:
                return Edited(value, etag_of(doc.text), False, time.perf_counter() - started, doc)
            await anyio.to_thread.run_sync(write_config_file, daemon.config_path, doc.text)
            await daemon.apply_locked(config, doc.text, change.source, change)
            return Edited(value, etag_of(doc.text), True, time.perf_counter() - started, doc)


# -- secrets --------------------------------------------------------------------------------


def secret_paths(model: type[Any]) -> list[tuple[str, ...]]:
    """Paths of the fields of pydantic ``model`` (and its nested models) that hold a
    secret (``SecretStr``): what the API shows as :data:`REDACTED`."""
    from pydantic import BaseModel, SecretStr

    found: list[tuple[str, ...]] = []

    def walk(cls: type[BaseModel], prefix: tuple[str, ...], seen: frozenset[type]) -> None:
        for name, info in cls.model_fields.items():
            key = info.alias or name
            for kind in _types_in(info.annotation):
                if kind is SecretStr:
                    found.append((*prefix, key))
                elif isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in seen:
                    walk(kind, (*prefix, key), seen | {kind})

    walk(model, (), frozenset({model}))
    return found


def _types_in(annotation: Any) -> list[Any]:
    from typing import get_args

    out = [annotation]
    for arg in get_args(annotation):
        out.extend(_types_in(arg))
    return out


def redact(item: Mapping[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """``item`` with the values at ``paths`` replaced by :data:`REDACTED`."""
    out = dict(item)
    for path in paths:
        _redact_path(out, path)
    return out


def _redact_path(node: dict[str, Any], path: tuple[str, ...]) -> None:
    head, rest = path[0], path[1:]
    if head not in node or node[head] is None:
        return
    if not rest:
        node[head] = REDACTED
        return
    child = node[head]
    if isinstance(child, dict):
        node[head] = dict(child)
        _redact_path(node[head], rest)
    elif isinstance(child, list):  # a list of settings blocks: each of them
        node[head] = copies = [dict(x) if isinstance(x, dict) else x for x in child]
        for entry in copies:
            if isinstance(entry, dict):
                _redact_path(entry, rest)
