"""Alertmanager's configuration fields, level by level, to tell a field pudimd does not
support (yet) from a typo.

Collected from Alertmanager's ``config`` package (up to 0.28 and its main branch) and from
``prometheus/common``'s HTTP client settings.  Only the levels pudimd's models have are
listed below a receiver; an integration pudimd lacks is refused whole at the receiver.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence

__all__ = ["am_fields", "extra_field_reason", "unknown_field"]

TOP = frozenset(
    {
        "global",
        "route",
        "receivers",
        "inhibit_rules",
        "time_intervals",
        "mute_time_intervals",
        "templates",
        "tracing",
    }
)

GLOBAL = frozenset(
    {
        "resolve_timeout",
        "http_config",
        "jira_api_url",
        "smtp_from",
        "smtp_hello",
        "smtp_smarthost",
        "smtp_auth_username",
        "smtp_auth_password",
        "smtp_auth_password_file",
        "smtp_auth_secret",
        "smtp_auth_secret_file",
        "smtp_auth_identity",
        "smtp_require_tls",
        "smtp_tls_config",
        "smtp_force_implicit_tls",
        "slack_api_url",
        "slack_api_url_file",
        "slack_app_token",
        "slack_app_token_file",
        "slack_app_url",
        "pagerduty_url",
        "opsgenie_api_url",
        "opsgenie_api_key",
        "opsgenie_api_key_file",
        "wechat_api_url",
        "wechat_api_secret",
        "wechat_api_secret_file",
        "wechat_api_corp_id",
        "victorops_api_url",
        "victorops_api_key",
        "victorops_api_key_file",
        "telegram_api_url",
        "telegram_bot_token",
        "telegram_bot_token_file",
        "webex_api_url",
        "rocketchat_api_url",
        "rocketchat_token",
        "rocketchat_token_file",
        "rocketchat_token_id",
        "rocketchat_token_id_file",
        "mattermost_webhook_url",
        "mattermost_webhook_url_file",
    }
)

ROUTE = frozenset(
    {
        "receiver",
        "group_by",
        "continue",
        "match",
        "match_re",
        "matchers",
        "group_wait",
        "group_interval",
        "repeat_interval",
        "mute_time_intervals",
        "active_time_intervals",
        "routes",
    }
)

INHIBIT_RULE = frozenset(
    {
        "name",
        "source_match",
        "source_match_re",
        "source_matchers",
        "target_match",
        "target_match_re",
        "target_matchers",
        "equal",
    }
)

_COMMON = frozenset({"send_resolved", "http_config"})

INTEGRATIONS: dict[str, frozenset[str]] = {
    "discord_configs": _COMMON
    | {"webhook_url", "webhook_url_file", "content", "title", "message", "username", "avatar_url"},
    "email_configs": frozenset(
        {
            "send_resolved",
            "to",
            "from",
            "hello",
            "smarthost",
            "auth_username",
            "auth_password",
            "auth_password_file",
            "auth_secret",
            "auth_secret_file",
            "auth_identity",
            "headers",
            "html",
            "text",
            "require_tls",
            "tls_config",
            "force_implicit_tls",
            "threading",
        }
    ),
    "jira_configs": _COMMON
    | {
        "api_url",
        "project",
        "summary",
        "description",
        "labels",
        "priority",
        "issue_type",
        "reopen_transition",
        "resolve_transition",
        "wont_fix_resolution",
        "reopen_duration",
        "fields",
    },
    "msteams_configs": _COMMON | {"webhook_url", "webhook_url_file", "title", "summary", "text"},
    "msteamsv2_configs": _COMMON | {"webhook_url", "webhook_url_file", "title", "text"},
    "opsgenie_configs": _COMMON
    | {
        "api_key",
        "api_key_file",
        "api_url",
        "message",
        "description",
        "source",
        "details",
        "entity",
        "responders",
        "actions",
        "tags",
        "note",
        "priority",
        "update_alerts",
    },
    "pagerduty_configs": _COMMON
    | {
        "service_key",
        "service_key_file",
        "routing_key",
        "routing_key_file",
        "url",
        "client",
        "client_url",
        "description",
        "details",
        "images",
        "links",
        "source",
        "severity",
        "class",
        "component",
        "group",
        "timeout",
    },
    "pushover_configs": _COMMON
    | {
        "user_key",
        "user_key_file",
        "token",
        "token_file",
        "title",
        "message",
        "url",
        "url_title",
        "device",
        "sound",
        "priority",
        "retry",
        "expire",
        "ttl",
        "html",
        "monospace",
    },
    "rocketchat_configs": _COMMON
    | {
        "api_url",
        "token_id",
        "token_id_file",
        "token",
        "token_file",
        "channel",
        "color",
        "title",
        "title_link",
        "text",
        "fields",
        "short_fields",
        "emoji",
        "icon_url",
        "image_url",
        "thumb_url",
        "link_names",
        "actions",
    },
    "slack_configs": _COMMON
    | {
        "api_url",
        "api_url_file",
        "app_token",
        "app_token_file",
        "app_url",
        "channel",
        "username",
        "color",
        "title",
        "title_link",
        "pretext",
        "text",
        "message_text",
        "fields",
        "short_fields",
        "footer",
        "fallback",
        "callback_id",
        "icon_emoji",
        "icon_url",
        "image_url",
        "thumb_url",
        "link_names",
        "mrkdwn_in",
        "actions",
        "update_message",
        "timeout",
    },
    "sns_configs": _COMMON
    | {
        "api_url",
        "sigv4",
        "topic_arn",
        "phone_number",
        "target_arn",
        "subject",
        "message",
        "attributes",
        "use_aws_http_client",
    },
    "telegram_configs": _COMMON
    | {
        "api_url",
        "bot_token",
        "bot_token_file",
        "chat_id",
        "message_thread_id",
        "message",
        "disable_notifications",
        "parse_mode",
    },
    "victorops_configs": _COMMON
    | {
        "api_key",
        "api_key_file",
        "api_url",
        "routing_key",
        "message_type",
        "state_message",
        "entity_display_name",
        "monitoring_tool",
        "custom_fields",
    },
    "webex_configs": _COMMON | {"api_url", "message", "room_id"},
    "webhook_configs": _COMMON | {"url", "url_file", "max_alerts", "timeout"},
    "wechat_configs": _COMMON
    | {
        "api_secret",
        "api_secret_file",
        "corp_id",
        "message",
        "api_url",
        "to_user",
        "to_party",
        "to_tag",
        "agent_id",
        "message_type",
    },
}

RECEIVER = frozenset({"name", "incidentio_configs", "mattermost_configs", *INTEGRATIONS})

HTTP_CONFIG = frozenset(
    {
        "basic_auth",
        "authorization",
        "oauth2",
        "bearer_token",
        "bearer_token_file",
        "tls_config",
        "proxy_url",
        "no_proxy",
        "proxy_from_environment",
        "proxy_connect_header",
        "follow_redirects",
        "enable_http2",
        "http_headers",
    }
)
TLS_CONFIG = frozenset(
    {
        "ca",
        "ca_file",
        "ca_ref",
        "cert",
        "cert_file",
        "cert_ref",
        "key",
        "key_file",
        "key_ref",
        "server_name",
        "insecure_skip_verify",
        "min_version",
        "max_version",
    }
)
_BLOCKS: dict[str, frozenset[str]] = {
    "http_config": HTTP_CONFIG,
    "tls_config": TLS_CONFIG,
    "smtp_tls_config": TLS_CONFIG,
    "basic_auth": frozenset(
        {"username", "username_file", "username_ref", "password", "password_file", "password_ref"}
    ),
    "authorization": frozenset({"type", "credentials", "credentials_file", "credentials_ref"}),
    "oauth2": frozenset(
        {
            "client_id",
            "client_secret",
            "client_secret_file",
            "client_secret_ref",
            "scopes",
            "token_url",
            "endpoint_params",
            "tls_config",
            "proxy_url",
            "no_proxy",
            "proxy_from_environment",
            "proxy_connect_header",
        }
    ),
}
"""Blocks that are the same wherever they appear (keyed by the field holding them)."""

_NAMED_INTERVAL = frozenset({"name", "time_intervals"})
_INTERVAL = frozenset({"times", "weekdays", "days_of_month", "months", "years", "location"})
_TIME_RANGE = frozenset({"start_time", "end_time"})
_LEVELS: dict[tuple[str, ...], frozenset[str]] = {
    (): TOP,
    ("global",): GLOBAL,
    ("receivers",): RECEIVER,
    ("inhibit_rules",): INHIBIT_RULE,
    **{(kind,): _NAMED_INTERVAL for kind in ("time_intervals", "mute_time_intervals")},
    **{(kind, "time_intervals"): _INTERVAL for kind in ("time_intervals", "mute_time_intervals")},
    **{
        (kind, "time_intervals", "times"): _TIME_RANGE
        for kind in ("time_intervals", "mute_time_intervals")
    },
    **{("receivers", key): fields for key, fields in INTEGRATIONS.items()},
    ("receivers", "email_configs", "threading"): frozenset({"enabled", "thread_by_date"}),
    ("receivers", "pagerduty_configs", "images"): frozenset({"src", "alt", "href"}),
    ("receivers", "pagerduty_configs", "links"): frozenset({"href", "text"}),
    ("receivers", "slack_configs", "fields"): frozenset({"title", "value", "short"}),
    ("receivers", "slack_configs", "actions"): frozenset(
        {"type", "text", "url", "style", "name", "value", "confirm"}
    ),
    ("receivers", "slack_configs", "actions", "confirm"): frozenset(
        {"text", "title", "ok_text", "dismiss_text"}
    ),
}


def am_fields(path: Sequence[str | int]) -> frozenset[str]:
    """The fields Alertmanager accepts in the mapping at ``path`` of its configuration
    (list indexes may be left in); empty where Alertmanager has no such mapping."""
    names = tuple(part for part in path if isinstance(part, str))
    if names and names[-1] in _BLOCKS:
        return _BLOCKS[names[-1]]
    if names[:1] == ("route",) and all(name == "routes" for name in names[1:]):
        return ROUTE
    return _LEVELS.get(names, frozenset())


def unknown_field(name: str, known: Collection[str]) -> str:
    """``unknown field 'x'`` with the closest of ``known`` as a suggestion."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field {name!r}{hint}"


def extra_field_reason(name: str, path: Sequence[str | int], known: Collection[str]) -> str:
    """Why field ``name`` of the mapping at ``path`` (in Alertmanager's layout) is refused,
    ``known`` being the fields pudimd takes there: an Alertmanager field pudimd does not
    support yet, or a typo (with a suggestion from both sets)."""
    fields = am_fields(path)
    if name in fields:
        return f"{name!r} is not supported by pudimd (yet)"
    return unknown_field(name, {*known, *fields})
