"""Base model for every plugin's ``Settings`` and the field types they share.

A plugin's ``Settings`` is its config schema: the block under the probe's type name in a
target (``http: {...}``), validated when the config is loaded and exported with
``pudimd config schema``.

Secrets are :class:`pydantic.SecretStr` (never logged, shown as ``**********``).  Each secret
``x`` may be given as ``x_file`` instead, a path to a file holding it (the systemd
``LoadCredential=``/Kubernetes secret pattern): declare ``x_file: SecretFile | None = None``
next to ``x: SecretStr | None = None`` and the base class reads the file into ``x``.

Regular expressions are :data:`Regex` (a list of them: :data:`Regexes`; one matched against
bytes: :data:`BytesRegex`), compiled when the config is loaded so a bad one is a config error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

__all__ = [
    "BytesRegex",
    "CronExpression",
    "NotifierSettings",
    "PluginSettings",
    "Regex",
    "Regexes",
    "SecretFile",
    "StrictModel",
    "TimeZoneName",
    "read_secret_file",
]


def read_secret_file(value: Any, info: ValidationInfo | None = None) -> SecretStr:
    """Read the secret held in the file at ``value`` (trailing newline stripped).

    A relative path is relative to the config file's folder (validation context
    ``base_dir``)."""
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str | Path):
        raise ValueError("expected the path of a file holding the secret")
    path = Path(value)
    base = (info.context or {}).get("base_dir") if info is not None else None
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {str(value)!r}: {exc.strerror}") from None
    return SecretStr(text.rstrip("\r\n"))


def _secret_file_validator(value: Any, info: ValidationInfo) -> SecretStr:
    return read_secret_file(value, info)


SecretFile = Annotated[
    SecretStr,
    BeforeValidator(_secret_file_validator),
    WithJsonSchema({"type": "string", "description": "Path of a file holding the secret"}),
]
"""A ``*_file`` field: validated by reading the file, so a missing file is an error at its
own location in the config."""


def _compiles(pattern: str | bytes, shown: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {shown!r}: {exc}") from None


def _check_regex(value: str) -> str:
    _compiles(value, value)
    return value


def _check_regexes(values: list[str]) -> list[str]:
    for value in values:
        _compiles(value, value)
    return values


def _check_bytes_regex(value: str) -> str:
    _compiles(value.encode(), value)
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]
"""A regular expression (Python's syntax), checked when the config is loaded."""
Regexes = Annotated[list[str], AfterValidator(_check_regexes)]
"""A list of regular expressions (a bad one is an error at the list's location)."""
BytesRegex = Annotated[str, AfterValidator(_check_bytes_regex)]
"""A regular expression matched against bytes (its text is UTF-8 encoded)."""


class StrictModel(BaseModel):
    """A config model: unknown fields are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginSettings(StrictModel):
    """Base class of every plugin's ``Settings``.  Fills ``x`` from ``x_file``."""

    __secret_files__: ClassVar[tuple[tuple[str, str], ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields
        cls.__secret_files__ = tuple(
            (name, name[: -len("_file")])
            for name in fields
            if name.endswith("_file") and name[: -len("_file")] in fields
        )

    @model_validator(mode="after")
    def _secret_files(self) -> Self:
        for name, base in self.__secret_files__:
            loaded = getattr(self, name)
            if loaded is None:
                continue
            if getattr(self, base) is not None:
                raise ValueError(f"set {base} or {name}, not both")
            object.__setattr__(self, base, loaded)
        return self


class NotifierSettings(PluginSettings):
    """Base class of every notifier's ``Settings``: what every integration of a receiver
    has.  A notifier overrides ``send_resolved``'s default with Alertmanager's for its
    kind."""

    send_resolved: bool = True
    """Also notify when the alerts of a group resolve."""


def check_cron(value: str) -> str:
    """``value`` if croniter takes it as a cron expression (five fields, or six with
    seconds); ValueError otherwise."""
    from croniter import croniter  # imported when a config has a cron schedule (~3 MB)

    if not croniter.is_valid(value):
        raise ValueError(f"invalid cron expression {value!r} (e.g. '*/5 * * * *', '0 3 * * *')")
    return value


def check_timezone(value: str) -> str:
    """``value`` if it names an IANA time zone; ValueError otherwise."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


CronExpression = Annotated[str, AfterValidator(check_cron)]
"""A cron expression field (``'0 3 * * *'``), checked with croniter."""

TimeZoneName = Annotated[str, AfterValidator(check_timezone)]
"""An IANA time zone name field (``Europe/Lisbon``)."""
