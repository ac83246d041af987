"""Bodies of the operator endpoints: sign-in and tokens, the audit log, status, stored
results, backups and target templates."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pudimd.api.schemas.common import Answer, Request, Time

__all__ = [
    "AuditPage",
    "BackupList",
    "BackupMade",
    "LoginBody",
    "LoginResult",
    "ResultHistory",
    "ResultPage",
    "Status",
    "TemplateCreated",
    "TemplateDefinition",
    "TemplateExpanded",
    "TemplateList",
    "TokenCreate",
    "TokenCreated",
    "TokenList",
    "Whoami",
]

Role = Literal["viewer", "operator", "admin"]


class LoginBody(Request):
    model_config = ConfigDict(extra="allow")

    username: str
    password: str
    totp: str | None = Field(None, description="The current TOTP code, for users with one")


class LoginResult(Answer):
    user: str
    role: Role
    csrf_token: str = Field(description="Send as ``X-CSRF-Token`` with every write")
    expires_at: float = Field(description="Unix seconds")


class Whoami(Answer):
    name: str
    kind: str = Field(description="``token``, ``user`` or ``anonymous``")
    role: Role
    scopes: list[str]


class Token(Answer):
    """An API token (never its secret)."""

    id: int
    name: str
    role: Role
    scopes: list[str]
    prefix: str = Field(description="The first characters of the secret, to recognise it")
    created_at: float = Field(description="Unix seconds")
    created_by: str | None
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


class TokenList(Answer):
    tokens: list[Token]


class TokenCreate(Request):
    name: str
    role: Role
    scopes: list[str] = Field(
        default_factory=list, description="``RESOURCE`` or ``RESOURCE:read``; empty: all"
    )
    expires: str | None = Field(None, description="A duration (``90d``); none: never")


class TokenCreated(Token):
    token: str = Field(description="The secret: shown this once")


class AuditEntry(Answer):
    id: int
    at: float = Field(description="Unix seconds")
    actor: str
    address: str | None
    method: str
    path: str
    action: str
    status: int
    before: Any
    after: Any


class AuditPage(Answer):
    entries: list[AuditEntry]
    next_cursor: str | None


class Status(Answer):
    """What the daemon is doing (see docs/api.md); every section may grow."""

    version: str
    started_at: Any
    uptime_seconds: float
    config: dict[str, Any] | None
    targets: Any
    plugins: list[dict[str, Any]]
    scheduler: dict[str, Any] | None
    database: dict[str, Any] | None
    alerting: dict[str, Any] | None
    events: dict[str, Any] | None


class StoredResult(Answer):
    id: int
    target: str
    probe: str
    started: Time
    ts: float = Field(description="Unix seconds")
    success: bool
    duration: float
    status: Any
    message: str | None
    phases: dict[str, Any]
    metrics: dict[str, Any]


class ResultPage(Answer):
    results: list[StoredResult]
    next_cursor: str | None


class Bucket(Answer):
    start: Time
    checks: int
    failures: int
    uptime: float | None
    latency_p50: float | None
    latency_p95: float | None
    latency_max: float | None


class ResultHistory(Answer):
    target: str
    step: Literal["minute", "hour"]
    from_: Time = Field(alias="from")
    to: Time
    buckets: list[Bucket]
    truncated: bool


class Backup(Answer):
    name: str
    path: str
    created_at: Time
    size: int


class BackupList(Answer):
    directory: str
    backups: list[Backup]


class BackupMade(Backup):
    seconds: float
    deleted: list[str] = Field(description="Archives removed by retention")


class TemplateSummary(Answer):
    name: str
    version: int
    description: str | None
    params: dict[str, Any]
    targets: int
    source: Literal["builtin", "config", "file"]
    file: str | None = None


class TemplateList(Answer):
    templates: list[TemplateSummary]


class TemplateDefinition(BaseModel):
    """A template as written (docs/templates.md): ``name``, ``version``, ``params``,
    ``targets``..."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: int | None = None
    description: str | None = None
    params: dict[str, Any] | None = None
    targets: list[dict[str, Any]] | None = None


class TemplateExpanded(Answer):
    template: TemplateSummary
    targets: list[dict[str, Any]]


class TemplateCreated(Answer):
    template: dict[str, Any]
    file: str
    reloaded: bool
