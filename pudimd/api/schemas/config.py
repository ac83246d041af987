"""Bodies of the config endpoints: targets, the whole file, versions, and the named items
of the ``alerting`` section (receivers, rules, the route tree)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from pudimd.api.schemas.common import Answer, Request, Time

__all__ = [
    "BulkChange",
    "BulkResult",
    "ConfigJSON",
    "ConfigWritten",
    "Diff",
    "NamedItem",
    "ReceiverList",
    "RollbackBody",
    "RollbackResult",
    "RouteTree",
    "RuleList",
    "Target",
    "TargetExport",
    "TargetListing",
    "TargetPage",
    "TargetStatus",
    "TargetView",
    "Valid",
    "Version",
    "VersionList",
]

Health = Literal["up", "down", "degraded", "unknown"]


class Target(BaseModel):
    """A target as written in the config file (``targets:`` item): the probe's settings
    under its name; see docs/configuration.md.  Secret settings read as ``<secret>``, and
    ``<secret>`` written back keeps the value in the file."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, description="Unique; no ``..`` segment, leading ``/``")
    probe: str | None = Field(None, description="The probe type (``http``, ``tcp``...)")
    target: str | None = Field(None, description="What the probe checks")
    interval: str | None = Field(None, description="A duration (``30s``)")
    labels: dict[str, str] | None = None


class TargetStatus(Answer):
    """The live state of a target's checks (read-only)."""

    scheduled: bool
    health: Health
    checks: int | None = None
    failures: int | None = None
    consecutive_failures: int | None = None
    last_check: float | None = Field(None, description="Unix seconds")
    duration: float | None = Field(None, description="Seconds the last check took")
    message: str | None = None


class TargetView(Target):
    """A target as written, with its live ``status``."""

    status: TargetStatus


class TargetPage(Answer):
    """One page of targets, sorted by name."""

    targets: list[TargetView]
    total: int = Field(description="Targets in the config (before filters)")
    next_cursor: str | None = Field(description="Pass as ``cursor`` for the next page")


class TargetExport(Answer):
    """Every target, importable as it is (``POST /api/v1/targets/import``)."""

    targets: list[dict[str, Any]]


class TargetListing(RootModel[TargetPage | TargetExport]):
    """A page of targets, or (with ``format``) every target as a document."""


class BulkChange(Request):
    """Targets created, replaced and deleted together, or none of them."""

    create: list[Target] = Field(default_factory=list)
    update: list[Target] = Field(default_factory=list)
    delete: list[str] = Field(default_factory=list, description="Target names")


class BulkResult(Answer):
    created: int
    updated: int = Field(description="Targets that differed and were rewritten")
    deleted: int
    changed: bool = Field(description="Whether the file changed")


class ConfigJSON(RootModel[dict[str, Any]]):
    """The config file parsed (a mapping; docs/configuration.md), or ``{"config": TEXT}``
    with the YAML text."""


class ConfigWritten(Answer):
    changed: bool
    seconds: float = Field(description="How long validating, writing and applying took")


class Valid(Answer):
    valid: Literal[True]
    seconds: float


class Version(Answer):
    """A config the daemon applied."""

    id: int
    at: Time
    source: str = Field(description="``file``, ``http``, ``api``, ``rollback``...")
    author: str | None
    message: str | None
    sha256: str
    current: bool = Field(description="Whether it is the config running now")
    text: str | None = Field(None, description="The config text (one version only)")


class VersionList(Answer):
    versions: list[Version]


class Diff(Answer):
    from_: int = Field(alias="from")
    to: int
    diff: str = Field(description="Unified diff")


class RollbackBody(Request):
    author: str | None = Field(None, description="Default: the caller")
    message: str | None = None


class RollbackResult(Answer):
    rolled_back_to: int
    changed: bool
    version: Version | None = Field(description="The version recorded by the rollback")


class NamedItem(BaseModel):
    """A receiver or alert rule as written in ``alerting`` (docs/alerting.md); the name
    comes from the path."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(None, description="Ignored when written: the path names it")


class ReceiverList(Answer):
    receivers: list[dict[str, Any]]


class RuleList(Answer):
    rules: list[dict[str, Any]]


class RouteTree(Answer):
    """The route tree (``alerting.route``); a PUT may send the tree itself or
    ``{"route": TREE}``."""

    route: dict[str, Any] | None
