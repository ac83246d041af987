"""Base model for every plugin's ``Settings`` and the field types they share.

A plugin's ``Settings`` is its config schema: the block under the probe's type name in a
target (``http: {...}``), validated when the config is loaded and exported with
``pudimd config schema``.

Secrets are :class:`pydantic.SecretStr` (never logged, shown as ``**********``).  Each secret
``x`` may be given as ``x_file`` instead, a path to a file holding it (the systemd
``LoadCredential=``/Kubernetes secret pattern): declare ``x_file: SecretFile | None = None``
next to ``x: SecretStr | None = None`` and the base class reads the file into ``x``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

__all__ = ["PluginSettings", "SecretFile", "StrictModel", "read_secret_file"]


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
