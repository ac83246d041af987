"""The OpenAPI 3.1 document of ``/api/v1``, generated from one table of the operations
(:data:`OPERATIONS`) and the pydantic models of their bodies (:mod:`pudimd.api.schemas`),
served at ``GET /api/v1/openapi.json`` with a page reading it at ``GET /api/v1/docs``.

A test walks the application's routes and this table both ways, so neither can gain an
operation the other lacks.  ``/api/v2`` (Alertmanager's own API), ``/metrics``,
``/probe`` and ``/-/*`` are not part of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pudimd import __version__
from pudimd.api import schemas as s
from pudimd.api.problems import CONTENT_TYPE as PROBLEM

__all__ = [
    "OPERATIONS",
    "Body",
    "Operation",
    "Param",
    "Reply",
    "build_spec",
]

JSON = "application/json"
YAML = "application/yaml"
TEXT = "text/plain"
HTML = "text/html"


@dataclass(frozen=True)
class Param:
    """A query, path or header parameter."""

    name: str
    where: Literal["query", "path", "header"] = "query"
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    description: str = ""
    required: bool = False

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "schema": self.schema,
        }
        if self.description:
            out["description"] = self.description
        if self.schema.get("type") == "array":
            out["explode"] = True
            out["style"] = "form"
        return out


@dataclass(frozen=True)
class Body:
    """A request body: ``model`` for the JSON types, plain text for the others."""

    model: type[BaseModel] | None
    content: tuple[str, ...] = (JSON,)
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """A successful answer: its status, body model (None: no body) and content types."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    content: tuple[str, ...] = (JSON,)
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One operation of ``/api/v1``.  ``route`` is the application's route path when it
    differs from ``path`` (one route serving several actions); ``errors`` the statuses
    answered with a problem document (401, 403 and 429 are added unless ``public``)."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    replies: tuple[Reply, ...]
    params: tuple[Param, ...] = ()
    body: Body | None = None
    errors: tuple[int, ...] = ()
    public: bool = False
    route: str | None = None
    description: str = ""
    error_content: tuple[str, ...] = (PROBLEM,)

    @property
    def route_path(self) -> str:
        return self.route or self.path


# -- parameters used by several operations ------------------------------------------------

_STR: dict[str, Any] = {"type": "string"}
_NAME: dict[str, Any] = {"type": "string", "minLength": 1}
_BOOL: dict[str, Any] = {"type": "boolean"}
_ID: dict[str, Any] = {"type": "integer", "minimum": 1}

DRY_RUN = Param("dry_run", schema=_BOOL, description="Validate only; change nothing")
IF_MATCH = Param(
    "If-Match",
    "header",
    description="The ETag read (of the item or of the whole file): 409 when it changed",
)
MESSAGE = Param("X-Pudimd-Message", "header", description="The config version's message")
FORMAT = Param("format", schema={"enum": ["yaml", "json"]}, description="Answer as YAML or JSON")
LIMIT = Param("limit", schema={"type": "integer", "minimum": 1, "maximum": 10_000})
SINCE = Param("since", description="RFC 3339 time")
UNTIL = Param("until", description="RFC 3339 time")
INTERFACE = Param(
    "X-Pudimd-Interface",
    "header",
    schema={"enum": ["api", "cli", "web", "link"]},
    description="The interface recorded with the action (default api)",
)
ETAG = ("ETag",)
WRITE = (DRY_RUN, IF_MATCH, MESSAGE)
EDIT_ERRORS = (400, 409, 413, 422)

_CONFIG_BODY = Body(
    s.ConfigJSON,
    (YAML, TEXT, JSON),
    description='The config as YAML text, or JSON: the parsed config or {"config": TEXT}',
)


def _fp_action(action: str, summary: str) -> Operation:
    return Operation(
        "post",
        f"/api/v1/alerts/{{fingerprint}}/{action}",
        f"alert_{action}",
        summary,
        "alerts",
        (Reply(200, "The alert after the action", s.AlertView),),
        params=(Param("fingerprint", "path", _NAME), INTERFACE),
        body=Body(s.ActionBody, required=False),
        errors=(400, 404, 409, 422, 503),
        route="/api/v1/alerts/{fingerprint}/{action}",
    )


def _escalation(action: str, summary: str, body: Body | None, reply: Reply) -> Operation:
    return Operation(
        "post",
        f"/api/v1/escalations/{{id}}/{action}",
        f"escalation_{action}",
        summary,
        "alerts",
        (reply,),
        params=(Param("id", "path", _NAME), INTERFACE),
        body=body,
        errors=(400, 404, 503),
        route="/api/v1/escalations/{id}/{action}",
    )


def _named(noun: str, plural: str, listing: type[BaseModel]) -> list[Operation]:
    base = f"/api/v1/{plural}"
    item = f"{base}/{{name}}"
    name = Param("name", "path", _NAME)
    return [
        Operation(
            "get", base, f"list_{plural}", f"Every {noun}", "alerting", (Reply(200, "", listing),)
        ),
        Operation(
            "get",
            item,
            f"get_{noun}",
            f"One {noun} as written",
            "alerting",
            (Reply(200, f"The {noun}", s.NamedItem, headers=ETAG),),
            params=(name,),
            errors=(404,),
        ),
        Operation(
            "put",
            item,
            f"put_{noun}",
            f"Create or replace a {noun}",
            "alerting",
            (
                Reply(200, "Replaced", s.NamedItem, headers=ETAG),
                Reply(201, "Created", s.NamedItem, headers=ETAG),
            ),
            params=(name, *WRITE),
            body=Body(s.NamedItem),
            errors=EDIT_ERRORS,
        ),
        Operation(
            "delete",
            item,
            f"delete_{noun}",
            f"Remove a {noun}",
            "alerting",
            (Reply(204, "Removed"),),
            params=(name, *WRITE),
            errors=(404, *EDIT_ERRORS),
        ),
    ]


OPERATIONS: tuple[Operation, ...] = (
    # -- auth ------------------------------------------------------------------------------
    Operation(
        "post",
        "/api/v1/login",
        "login",
        "Sign in: sets the session cookie",
        "auth",
        (Reply(200, "Signed in; the cookie is set", s.LoginResult),),
        body=Body(s.LoginBody),
        errors=(400, 401, 429),
        public=True,
    ),
    Operation("post", "/api/v1/logout", "logout", "End the session", "auth", (Reply(204, ""),)),
    Operation("get", "/api/v1/whoami", "whoami", "The caller", "auth", (Reply(200, "", s.Whoami),)),
    Operation(
        "get",
        "/api/v1/tokens",
        "list_tokens",
        "API tokens (not revoked, or all)",
        "auth",
        (Reply(200, "", s.TokenList),),
        params=(Param("revoked", schema=_BOOL, description="Include revoked tokens"),),
    ),
    Operation(
        "post",
        "/api/v1/tokens",
        "create_token",
        "A new API token, its secret shown once",
        "auth",
        (Reply(201, "Created", s.TokenCreated),),
        body=Body(s.TokenCreate),
        errors=(400,),
    ),
    Operation(
        "delete",
        "/api/v1/tokens/{id}",
        "revoke_token",
        "Revoke a token",
        "auth",
        (Reply(204, "Revoked"),),
        params=(Param("id", "path", _ID),),
        errors=(400, 404),
    ),
    Operation(
        "get",
        "/api/v1/audit",
        "audit_log",
        "The audit log, newest first",
        "auth",
        (Reply(200, "", s.AuditPage),),
        params=(LIMIT, Param("cursor", description="next_cursor of the page before")),
        errors=(400,),
    ),
    # -- targets ---------------------------------------------------------------------------
    Operation(
        "get",
        "/api/v1/targets",
        "list_targets",
        "Targets by name, a page at a time (or every target as a document with format)",
        "targets",
        (
            Reply(
                200,
                "A page (JSON), or with format every target as an importable document",
                s.TargetListing,
                (JSON, YAML),
                ETAG,
            ),
        ),
        params=(
            Param("limit", schema={"type": "integer", "minimum": 1, "maximum": 1000}),
            Param("cursor", description="next_cursor of the page before"),
            Param("probe"),
            Param(
                "label",
                schema={"type": "array", "items": {"type": "string", "pattern": "^[^=]+=.*$"}},
                description="KEY=VALUE (repeatable)",
            ),
            Param("q", description="In the name or the target"),
            Param("health", schema={"enum": ["up", "down", "degraded", "unknown"]}),
            FORMAT,
        ),
        errors=(400,),
    ),
    Operation(
        "post",
        "/api/v1/targets",
        "create_target",
        "Create a target",
        "targets",
        (Reply(201, "Created", s.TargetView, headers=(*ETAG, "Location")),),
        params=WRITE,
        body=Body(s.Target),
        errors=EDIT_ERRORS,
    ),
    Operation(
        "post",
        "/api/v1/targets/bulk",
        "bulk_targets",
        "Create, replace and delete targets together (all or nothing)",
        "targets",
        (Reply(200, "Applied", s.BulkResult, headers=ETAG),),
        params=WRITE,
        body=Body(s.BulkChange),
        errors=(404, *EDIT_ERRORS),
    ),
    Operation(
        "post",
        "/api/v1/targets/import",
        "import_targets",
        "Import targets: merge (create or replace by name) or replace all",
        "targets",
        (Reply(200, "Applied", s.BulkResult, headers=ETAG),),
        params=(Param("mode", schema={"enum": ["merge", "replace"]}), *WRITE),
        body=Body(s.TargetExport, (JSON, YAML)),
        errors=(404, *EDIT_ERRORS),
    ),
    Operation(
        "get",
        "/api/v1/targets/{name}",
        "get_target",
        "One target as written, with its live status",
        "targets",
        (Reply(200, "", s.TargetView, headers=ETAG),),
        params=(Param("name", "path", _NAME),),
        errors=(404,),
    ),
    Operation(
        "put",
        "/api/v1/targets/{name}",
        "replace_target",
        "Replace a target",
        "targets",
        (Reply(200, "Replaced", s.TargetView, headers=ETAG),),
        params=(Param("name", "path", _NAME), *WRITE),
        body=Body(s.Target),
        errors=(404, *EDIT_ERRORS),
    ),
    Operation(
        "patch",
        "/api/v1/targets/{name}",
        "patch_target",
        "Change a target with a JSON merge patch (RFC 7396)",
        "targets",
        (Reply(200, "Changed", s.TargetView, headers=ETAG),),
        params=(Param("name", "path", _NAME), *WRITE),
        body=Body(s.NamedItem, ("application/merge-patch+json", JSON)),
        errors=(404, *EDIT_ERRORS),
    ),
    Operation(
        "delete",
        "/api/v1/targets/{name}",
        "delete_target",
        "Remove a target",
        "targets",
        (Reply(204, "Removed"),),
        params=(Param("name", "path", _NAME), *WRITE),
        errors=(404, *EDIT_ERRORS),
    ),
    Operation(
        "get",
        "/api/v1/targets/{name}/uptime",
        "target_uptime",
        "Checks, failures and uptime over 24h, 7d, 30d and 90d",
        "reports",
        (Reply(200, "", s.UptimeReport),),
        params=(Param("name", "path", _NAME), UNTIL),
        errors=(400, 404, 503),
    ),
    # -- the whole config ------------------------------------------------------------------
    Operation(
        "get",
        "/api/v1/config",
        "get_config",
        "The config file as it is on disk (YAML), or parsed (JSON)",
        "config",
        (
            Reply(
                200, "The file (YAML), or parsed with format=json", s.ConfigJSON, (YAML, JSON), ETAG
            ),
        ),
        params=(FORMAT,),
        errors=(400,),
    ),
    Operation(
        "put",
        "/api/v1/config",
        "put_config",
        "Replace the whole config file (validated, written atomically, applied)",
        "config",
        (Reply(200, "Written (or, with dry_run, valid)", s.ConfigWritten, headers=ETAG),),
        params=WRITE,
        body=_CONFIG_BODY,
        errors=EDIT_ERRORS,
    ),
    Operation(
        "post",
        "/api/v1/validate",
        "validate_config",
        "Dry run of a whole config or of a targets bulk change",
        "config",
        (Reply(200, "Valid", s.Valid),),
        body=Body(
            s.ConfigJSON, (YAML, TEXT, JSON), description="A config, or {create, update, delete}"
        ),
        errors=(400, 413, 422),
    ),
    Operation(
        "get",
        "/api/v1/export",
        "export_config",
        "The whole config (secrets included)",
        "config",
        (Reply(200, "", s.ConfigJSON, (YAML, JSON), ETAG),),
        params=(FORMAT,),
        errors=(400,),
    ),
    Operation(
        "post",
        "/api/v1/import",
        "import_config",
        "Replace the whole config (like PUT /api/v1/config)",
        "config",
        (Reply(200, "Written", s.ConfigWritten, headers=ETAG),),
        params=WRITE,
        body=_CONFIG_BODY,
        errors=EDIT_ERRORS,
    ),
    Operation(
        "get",
        "/api/v1/config/versions",
        "list_versions",
        "Config versions, newest first (without their text)",
        "config",
        (Reply(200, "", s.VersionList),),
        params=(LIMIT, Param("before", schema=_ID, description="Versions before this id")),
        errors=(400, 503),
    ),
    Operation(
        "get",
        "/api/v1/config/versions/{id}",
        "get_version",
        "One config version with its text",
        "config",
        (Reply(200, "", s.Version),),
        params=(Param("id", "path", _ID),),
        errors=(400, 404, 503),
    ),
    Operation(
        "get",
        "/api/v1/config/diff",
        "diff_versions",
        "Unified diff between two versions (text, or JSON with Accept: application/json)",
        "config",
        (Reply(200, "The diff", s.Diff, (TEXT, JSON)),),
        params=(
            Param("from", schema=_ID, required=True),
            Param("to", schema=_ID, description="Default: the current version"),
        ),
        errors=(400, 404, 503),
    ),
    Operation(
        "post",
        "/api/v1/config/rollback/{id}",
        "rollback_config",
        "Write a version's text back to the config file and reload",
        "config",
        (Reply(200, "Rolled back", s.RollbackResult),),
        params=(Param("id", "path", _ID),),
        body=Body(s.RollbackBody, required=False),
        errors=(400, 404, 503),
    ),
    # -- alerting config -------------------------------------------------------------------
    *_named("receiver", "receivers", s.ReceiverList),
    *_named("rule", "rules", s.RuleList),
    Operation(
        "get",
        "/api/v1/routes",
        "get_routes",
        "The route tree",
        "alerting",
        (Reply(200, "", s.RouteTree, headers=ETAG),),
    ),
    Operation(
        "put",
        "/api/v1/routes",
        "put_routes",
        "Replace the route tree",
        "alerting",
        (Reply(200, "Replaced", s.RouteTree, headers=ETAG),),
        params=WRITE,
        body=Body(s.NamedItem),
        errors=EDIT_ERRORS,
    ),
    Operation(
        "get",
        "/api/v1/silences",
        "list_silences",
        "Silences (Alertmanager's order)",
        "alerting",
        (Reply(200, "", s.SilenceList),),
        params=(
            Param(
                "filter",
                schema={"type": "array", "items": {"type": "string"}},
                description='Matchers (name="value"), repeatable',
            ),
        ),
        errors=(400, 503),
    ),
    Operation(
        "post",
        "/api/v1/silences",
        "post_silence",
        "Create a silence, or update one (with its id)",
        "alerting",
        (Reply(200, "Updated", s.SilenceCreated), Reply(201, "Created", s.SilenceCreated)),
        body=Body(s.PostableSilence),
        errors=(400, 404, 413, 422, 503),
    ),
    Operation(
        "get",
        "/api/v1/silences/{id}",
        "get_silence",
        "One silence",
        "alerting",
        (Reply(200, "", s.SilenceView),),
        params=(Param("id", "path", _NAME),),
        errors=(404, 503),
    ),
    Operation(
        "delete",
        "/api/v1/silences/{id}",
        "expire_silence",
        "Expire a silence",
        "alerting",
        (Reply(204, "Expired"),),
        params=(Param("id", "path", _NAME),),
        errors=(404, 422, 503),
    ),
    # -- alerts and on-call ----------------------------------------------------------------
    Operation(
        "get",
        "/api/v1/alerts/{fingerprint}",
        "get_alert",
        "One alert: labels, state, acknowledgement, assignee",
        "alerts",
        (Reply(200, "", s.AlertView),),
        params=(Param("fingerprint", "path", _NAME),),
        errors=(404, 503),
    ),
    Operation(
        "get",
        "/api/v1/alerts/{fingerprint}/history",
        "alert_history",
        "An alert's timeline and the notifications of its groups",
        "alerts",
        (Reply(200, "", s.AlertHistory),),
        params=(Param("fingerprint", "path", _NAME),),
        errors=(404, 503),
    ),
    _fp_action("ack", "Acknowledge (until or for, comment)"),
    _fp_action("unack", "Take the acknowledgement back"),
    _fp_action("assign", "Assign to user:NAME or team:NAME"),
    _fp_action("comment", "Comment"),
    _fp_action("resolve", "Resolve by hand"),
    _fp_action("snooze", "Acknowledge until or for"),
    Operation(
        "get",
        "/api/v1/history",
        "search_history",
        "Timeline events by target, fingerprint and time",
        "alerts",
        (Reply(200, "", s.EventList),),
        params=(Param("target"), Param("fingerprint"), SINCE, UNTIL, LIMIT),
        errors=(400, 503),
    ),
    Operation(
        "get",
        "/api/v1/escalations",
        "list_escalations",
        "Escalations in progress",
        "alerts",
        (Reply(200, "", s.EscalationList),),
        errors=(503,),
    ),
    _escalation("escalate", "Notify the next level now", None, Reply(200, "", s.EscalationView)),
    _escalation("stop", "Stop the escalation", None, Reply(200, "", s.EscalationView)),
    _escalation(
        "notify",
        "Override: notify these targets now",
        Body(s.EscalationNotifyBody),
        Reply(200, "", s.EscalationNotified),
    ),
    Operation(
        "get",
        "/api/v1/oncall",
        "on_call",
        "Who is on call in each schedule, now or at",
        "oncall",
        (Reply(200, "", s.OnCallNow),),
        params=(Param("at", description="RFC 3339 time"),),
        errors=(400, 503),
    ),
    Operation(
        "get",
        "/api/v1/oncall/schedules/{name}",
        "get_schedule",
        "A schedule's shifts",
        "oncall",
        (Reply(200, "", s.ScheduleView),),
        params=(
            Param("name", "path", _NAME),
            Param("from", description="RFC 3339 time (default now)"),
            Param("days", schema={"type": "number", "exclusiveMinimum": 0, "maximum": 366}),
        ),
        errors=(400, 404, 503),
    ),
    # -- reports ---------------------------------------------------------------------------
    Operation(
        "get",
        "/api/v1/reports/response",
        "response_report",
        "MTTA and MTTR of the episodes that fired in [since, until]",
        "reports",
        (Reply(200, "", s.ResponseReport),),
        params=(SINCE, UNTIL),
        errors=(400, 503),
    ),
    Operation(
        "get",
        "/api/v1/history/receivers/{name}",
        "receiver_history",
        "Timeline events of the alerts routed to a receiver",
        "reports",
        (Reply(200, "", s.ReceiverHistory),),
        params=(Param("name", "path", _NAME), SINCE, UNTIL, LIMIT),
        errors=(400, 404, 503),
    ),
    # -- notifications ---------------------------------------------------------------------
    Operation(
        "post",
        "/api/v1/notify/test",
        "notify_test",
        "A test notification to a receiver through the real path",
        "alerting",
        (Reply(200, "The outcome of each integration", s.TestNotification),),
        params=(Param("receiver", schema=_STR, required=True),),
        errors=(404, 503),
    ),
    Operation(
        "post",
        "/api/v1/alertmanager/webhook",
        "alertmanager_webhook",
        "An Alertmanager's webhook notification (version 4)",
        "alerting",
        (Reply(200, "Taken", None),),
        body=Body(s.WebhookPayload),
        errors=(400, 503),
        error_content=(TEXT,),
        public=True,
        description="Open like /api/v2 unless auth.alertmanager_api says otherwise; "
        "refusals are plain text (the sending Alertmanager logs them).",
    ),
    Operation(
        "get",
        "/api/v1/actions/{token}",
        "action_link_page",
        "What a signed action link does (changes nothing)",
        "alerts",
        (Reply(200, "A page, or JSON when asked for", s.ActionLinkPage, (HTML, JSON)),),
        params=(Param("token", "path", _NAME),),
        errors=(400, 403, 404, 409),
        error_content=(HTML, PROBLEM),
        public=True,
    ),
    Operation(
        "post",
        "/api/v1/actions/{token}",
        "action_link_act",
        "Do what a signed action link says",
        "alerts",
        (Reply(200, "The alert after the change (a page, or JSON)", s.AlertView, (HTML, JSON)),),
        params=(Param("token", "path", _NAME),),
        body=Body(s.ActionLinkBody, (JSON, "application/x-www-form-urlencoded"), required=False),
        errors=(400, 403, 404, 409),
        error_content=(HTML, PROBLEM),
        public=True,
    ),
    # -- templates -------------------------------------------------------------------------
    Operation(
        "get",
        "/api/v1/templates",
        "list_templates",
        "Every template the running config may use",
        "templates",
        (Reply(200, "", s.TemplateList),),
    ),
    Operation(
        "get",
        "/api/v1/templates/{name}",
        "get_template",
        "One template's definition (newest version, or version)",
        "templates",
        (Reply(200, "", s.TemplateDefinition, (JSON, YAML)),),
        params=(
            Param("name", "path", _NAME),
            Param("version", schema={"type": "integer"}),
            FORMAT,
        ),
        errors=(400, 404),
    ),
    Operation(
        "post",
        "/api/v1/templates/expand",
        "expand_template",
        "The targets a using target expands to, validated",
        "templates",
        (Reply(200, "", s.TemplateExpanded),),
        body=Body(s.NamedItem, description="A using target: {use, params, name, ...}"),
        errors=(400, 413, 422),
    ),
    Operation(
        "post",
        "/api/v1/templates",
        "import_template",
        "Import a template into templates_dir, then reload",
        "templates",
        (Reply(201, "Written and reloaded", s.TemplateCreated),),
        body=Body(s.TemplateDefinition, (JSON, YAML)),
        errors=(400, 413, 422),
    ),
    # -- operations ------------------------------------------------------------------------
    Operation(
        "get",
        "/api/v1/status",
        "status",
        "Whether pudimd is well: config, checks, plugins, lateness, database, alerting",
        "system",
        (Reply(200, "", s.Status),),
    ),
    Operation(
        "get",
        "/api/v1/results",
        "list_results",
        "Stored check results, newest first, a page at a time",
        "results",
        (Reply(200, "", s.ResultPage),),
        params=(
            Param("target"),
            Param("from", description="RFC 3339 time or Unix seconds"),
            Param("to", description="RFC 3339 time or Unix seconds"),
            LIMIT,
            Param("cursor", description="next_cursor of the page before"),
        ),
        errors=(400, 503),
    ),
    Operation(
        "get",
        "/api/v1/results/history",
        "results_history",
        "Rollups of a target's results, oldest first",
        "results",
        (Reply(200, "", s.ResultHistory),),
        params=(
            Param("target", required=True),
            Param("step", schema={"enum": ["minute", "hour"]}),
            Param("from", description="RFC 3339 time or Unix seconds"),
            Param("to", description="RFC 3339 time or Unix seconds"),
            LIMIT,
        ),
        errors=(400, 503),
    ),
    Operation(
        "get",
        "/api/v1/events",
        "events_sse",
        "The live event stream as Server-Sent Events",
        "system",
        (Reply(200, "One data: line of JSON per event", None, ("text/event-stream",)),),
        params=(
            Param("types", description="Comma-separated: result, alert, reload"),
            Param("target", description="Comma-separated target names"),
            Param("last_event_id", schema={"type": "integer", "minimum": 0}),
            Param("Last-Event-ID", "header", schema={"type": "integer", "minimum": 0}),
        ),
        errors=(400, 503),
    ),
    Operation(
        "get",
        "/api/v1/events/ws",
        "events_websocket",
        "The live event stream over a WebSocket",
        "system",
        (Reply(101, "Switching to the WebSocket protocol"),),
        params=(
            Param("types", description="Comma-separated: result, alert, reload"),
            Param("target", description="Comma-separated target names"),
            Param("last_event_id", schema={"type": "integer", "minimum": 0}),
        ),
        errors=(400, 503),
    ),
    Operation(
        "get",
        "/api/v1/backups",
        "list_backups",
        "Backup archives, newest first",
        "system",
        (Reply(200, "", s.BackupList),),
        errors=(503,),
    ),
    Operation(
        "post",
        "/api/v1/backups",
        "create_backup",
        "Make a backup now and apply retention",
        "system",
        (Reply(201, "Made", s.BackupMade),),
        errors=(500, 503),
    ),
)
"""Every operation of ``/api/v1``."""

_STATUS_TEXT = {
    400: "Bad request: a parameter or the body is malformed",
    401: "Missing or invalid credentials",
    403: "The credentials may not do this (role, scope, CSRF header, address)",
    404: "Not found",
    409: "Conflict: If-Match no longer matches, the name is taken, or the state forbids it",
    413: "The body is too large",
    422: "The change does not validate; nothing was changed",
    429: "Too many requests (Retry-After)",
    500: "The server failed to do it",
    503: "The part of pudimd that answers is not running",
}

_TAGS = (
    ("auth", "Sign-in, API tokens and the audit log (docs/security.md)"),
    ("targets", "Targets, edited through the config file"),
    ("config", "The whole config file, its versions and rollbacks"),
    ("alerting", "Receivers, rules, routes, silences and notifications"),
    ("alerts", "Alerts, the actions on them, escalations and action links"),
    ("oncall", "Who is on call"),
    ("reports", "Uptime and response reports"),
    ("templates", "Target templates (docs/templates.md)"),
    ("results", "Stored check results"),
    ("system", "Status, live events and backups"),
)


def _role(op: Operation) -> str:
    from pudimd.auth import policy

    if op.public:
        return "No credentials needed."
    rule = policy.rule_for(op.route_path)
    role = rule.read if policy.is_read(op.method) else rule.write
    return f"Minimum role: **{role}** (scope `{rule.resource}`)."


_STRUCTURED = (
    JSON,
    YAML,
    PROBLEM,
    "application/merge-patch+json",
    "application/x-www-form-urlencoded",
)


def _media(model_ref: dict[str, Any] | None, content: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in content:
        if kind in _STRUCTURED and model_ref is not None:
            out[kind] = {"schema": model_ref}  # YAML carries the same data as JSON
        else:
            out[kind] = {"schema": {"type": "string"}}
    return out


def _component_schemas() -> tuple[dict[tuple[Any, str], Any], dict[str, Any]]:
    requests = {op.body.model for op in OPERATIONS if op.body is not None and op.body.model}
    answers = {r.model for op in OPERATIONS for r in op.replies if r.model is not None}
    answers.add(s.Problem)
    pairs: list[tuple[type[BaseModel], Any]] = [
        *((m, "validation") for m in sorted(requests, key=lambda m: m.__name__)),
        *((m, "serialization") for m in sorted(answers, key=lambda m: m.__name__)),
    ]
    refs, defs = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    return {key: ref for key, ref in refs.items()}, defs.get("$defs", {})


def _operation(op: Operation, refs: dict[tuple[Any, str], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "description": " ".join(x for x in (op.description, _role(op)) if x),
    }
    params = [p.spec() for p in op.params]
    if not op.public and op.method not in ("get", "head"):
        params.append({"$ref": "#/components/parameters/CsrfToken"})
    if params:
        out["parameters"] = params
    if op.body is not None:
        ref = refs.get((op.body.model, "validation")) if op.body.model else None
        body: dict[str, Any] = {
            "required": op.body.required,
            "content": _media(ref, op.body.content),
        }
        if op.body.description:
            body["description"] = op.body.description
        out["requestBody"] = body
    responses: dict[str, Any] = {}
    for reply in op.replies:
        entry: dict[str, Any] = {"description": reply.description or "OK"}
        if reply.model is not None or reply.content != (JSON,):
            ref = refs.get((reply.model, "serialization")) if reply.model else None
            if reply.status not in (101, 204):
                entry["content"] = _media(ref, reply.content)
        if reply.headers:
            entry["headers"] = {
                name: {"$ref": f"#/components/headers/{name}"} for name in reply.headers
            }
        responses[str(reply.status)] = entry
    errors = set(op.errors) | (set() if op.public else {401, 403, 429})
    problem = {"$ref": "#/components/schemas/Problem"}
    for status in sorted(errors):
        content = _media(problem, op.error_content)
        responses[str(status)] = {"description": _STATUS_TEXT[status], "content": content}
    out["responses"] = responses
    if op.public:
        out["security"] = []
    return out


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``/api/v1``."""
    from pudimd.auth.sessions import COOKIE

    refs, defs = _component_schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "pudimd API",
            "version": __version__,
            "description": (
                "The REST API of pudimd (docs/api.md). Errors are RFC 9457 problem "
                "documents (application/problem+json). Alertmanager's API v2 is served "
                "at /api/v2 and described by Alertmanager's own spec."
            ),
            "license": {"name": "see the project"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": text} for name, text in _TAGS],
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (pudimd tokens create)",
                },
                "cookieAuth": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": COOKIE,
                    "description": "The session of POST /api/v1/login; writes also need "
                    "the X-CSRF-Token header",
                },
            },
            "parameters": {
                "CsrfToken": {
                    "name": "X-CSRF-Token",
                    "in": "header",
                    "required": False,
                    "description": "The csrf_token of the sign-in, on writes with the "
                    "session cookie (not needed with a bearer token)",
                    "schema": {"type": "string"},
                }
            },
            "headers": {
                "ETag": {
                    "description": "The version read: send it back as If-Match",
                    "schema": {"type": "string"},
                },
                "Location": {"description": "The new resource", "schema": {"type": "string"}},
            },
        },
    }


# -- serving ------------------------------------------------------------------------------
