"""Which role a request to ``/api/v1`` needs: one table mapping path prefixes to a
resource name, the role that may read it (``GET``/``HEAD``) and the role that may change
it (any other method).

Roles are ordered ``viewer`` < ``operator`` < ``admin``.  A token or user with scopes may
only touch the resources its scopes name: ``alerts`` (read and write) or ``alerts:read``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pudimd.auth.tokens import ROLES, Role

__all__ = [
    "EXEMPT",
    "POLICY",
    "Rule",
    "allowed",
    "is_exempt",
    "is_read",
    "rule_for",
    "scope_allows",
]


@dataclass(frozen=True, slots=True)
class Rule:
    """What the paths under ``prefix`` are and who may use them."""

    prefix: str
    resource: str
    read: Role
    write: Role


_V1 = "/api/v1/"

POLICY: Final[tuple[Rule, ...]] = (
    Rule("targets", "targets", "viewer", "operator"),
    Rule("validate", "config", "viewer", "operator"),  # checks a config, changes nothing
    Rule("export", "config", "admin", "admin"),  # the whole config, secrets included
    Rule("import", "config", "admin", "admin"),
    Rule("config", "config", "viewer", "admin"),
    Rule("receivers", "config", "viewer", "admin"),
    Rule("routes", "config", "viewer", "admin"),
    Rule("rules", "config", "viewer", "admin"),
    Rule("templates", "templates", "viewer", "admin"),
    Rule("silences", "silences", "viewer", "operator"),
    Rule("alerts", "alerts", "viewer", "operator"),
    Rule("escalations", "alerts", "viewer", "operator"),
    Rule("notify", "notify", "viewer", "operator"),
    Rule("results", "results", "viewer", "admin"),
    Rule("history", "history", "viewer", "admin"),
    Rule("status", "status", "viewer", "admin"),
    Rule("events", "events", "viewer", "admin"),
    Rule("oncall", "oncall", "viewer", "admin"),
    Rule("reports", "reports", "viewer", "admin"),
    Rule("backups", "backups", "admin", "admin"),
    Rule("tokens", "tokens", "admin", "admin"),
    Rule("audit", "audit", "admin", "admin"),
    Rule("whoami", "session", "viewer", "viewer"),
    Rule("logout", "session", "viewer", "viewer"),
)
"""Every /api/v1 resource; the first rule whose prefix is the path's first segment wins."""

_BY_SEGMENT: Final[dict[str, Rule]] = {rule.prefix: rule for rule in POLICY}

DEFAULT: Final[Rule] = Rule("", "api", "viewer", "admin")
"""A path no rule names: anyone may read it, only an admin may change it."""

EXEMPT: Final[tuple[str, ...]] = (
    "/api/v1/openapi.json",
    "/api/v1/docs",
    "/api/v1/login",
    "/api/v1/actions/",  # signed action links carry their own signature
    "/api/v1/alertmanager/webhook",  # Alertmanager's notifications: auth.alertmanager_api
)
"""Paths that need no token (a prefix ending in ``/`` covers what is under it)."""

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_RANK = {role: rank for rank, role in enumerate(ROLES)}

ALWAYS = "session"
"""The resource every credential may use whatever its scopes (who am I, sign out)."""


def is_read(method: str) -> bool:
    """Whether ``method`` only reads."""
    return method.upper() in _SAFE


def is_exempt(path: str) -> bool:
    """Whether ``path`` is served without credentials."""
    for prefix in EXEMPT:
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return True
        if path.startswith(prefix + "/"):
            return True
    return False


def rule_for(path: str) -> Rule:
    """The rule covering ``path`` (an /api/v1 path)."""
    rest = path[len(_V1) :] if path.startswith(_V1) else ""
    segment = rest.split("/", 1)[0]
    return _BY_SEGMENT.get(segment, DEFAULT)


def scope_allows(scopes: tuple[str, ...], resource: str, read: bool) -> bool:
    """Whether ``scopes`` (empty: everything) cover ``resource`` for reading or writing."""
    if not scopes or resource == ALWAYS:
        return True
    return resource in scopes or (read and f"{resource}:read" in scopes)


def allowed(role: Role, scopes: tuple[str, ...], method: str, path: str) -> bool:
    """Whether a principal of ``role`` with ``scopes`` may send ``method`` to ``path``."""
    rule = rule_for(path)
    read = is_read(method)
    needed = rule.read if read else rule.write
    if _RANK[role] < _RANK[needed]:
        return False
    return scope_allows(scopes, rule.resource, read)


def resources() -> list[str]:
    """Every resource name a scope may name."""
    return sorted({rule.resource for rule in POLICY} | {DEFAULT.resource})
