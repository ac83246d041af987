"""Fakes of the SaaS endpoints the chat and paging notifiers post to (Slack, Discord, Teams
Workflows, PagerDuty Events API v2): aiohttp servers on loopback that validate every payload
against the vendor's documented required fields and limits, and answer as the vendor does
(including its error answers).  Each validator is a plain function, so a test can also
show it refusing a payload.

Sources of the rules: Slack "Sending messages using incoming webhooks", ``chat.postMessage``,
the Block Kit reference (block limits, the button element) and "Legacy: Attaching
interactive message buttons" (attachment actions); Discord "Execute Webhook" and the embed
limits; Microsoft's Workflows webhook (Adaptive Card message envelope, 28 KB message limit,
``Action.OpenUrl``; Teams shows at most 6 card actions);
PagerDuty Events API v2 "Send an alert event" (field limits, 512 KB event limit).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

__all__ = [
    "DISCORD_EMBED_TOTAL",
    "PAGERDUTY_EVENT_LIMIT",
    "TEAMS_MESSAGE_LIMIT",
    "Fake",
    "Hit",
    "discord_errors",
    "discord_fake",
    "pagerduty_errors",
    "pagerduty_fake",
    "post_raw",
    "slack_error",
    "slack_fake",
    "teams_errors",
    "teams_fake",
]

# --- Slack -------------------------------------------------------------------------------

SLACK_TEXT_LIMIT = 40_000
SLACK_MAX_BLOCKS = 50
SLACK_MAX_ATTACHMENTS = 100
SLACK_HEADER_LIMIT = 150
SLACK_SECTION_TEXT_LIMIT = 3000
SLACK_SECTION_FIELDS = 10
SLACK_FIELD_TEXT_LIMIT = 2000
SLACK_CONTEXT_ELEMENTS = 10
SLACK_BLOCK_ID_LIMIT = 255
SLACK_ALT_TEXT_LIMIT = 2000
SLACK_IMAGE_URL_LIMIT = 3000
SLACK_FOOTER_LIMIT = 300
SLACK_ACTIONS_ELEMENTS = 25
SLACK_BUTTON_TEXT_LIMIT = 75
SLACK_BUTTON_URL_LIMIT = 3000
SLACK_ACTION_ID_LIMIT = 255
SLACK_BUTTON_STYLES = ("primary", "danger")
SLACK_ATTACHMENT_ACTIONS = 5
"""Legacy attachment actions (interactive message buttons): at most 5 per attachment."""
SLACK_ATTACHMENT_BUTTON_STYLES = ("default", "primary", "danger")
_SLACK_COLOR = re.compile(r"^(good|warning|danger|#?[0-9a-fA-F]{6})$")
_SLACK_BLOCK_TYPES = {
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "rich_text",
    "section",
    "video",
}

# --- Discord -----------------------------------------------------------------------------

DISCORD_CONTENT_LIMIT = 2000
DISCORD_MAX_EMBEDS = 10
DISCORD_EMBED_TOTAL = 6000
DISCORD_TITLE_LIMIT = 256
DISCORD_DESCRIPTION_LIMIT = 4096
DISCORD_MAX_FIELDS = 25
DISCORD_FIELD_NAME_LIMIT = 256
DISCORD_FIELD_VALUE_LIMIT = 1024
DISCORD_FOOTER_LIMIT = 2048
DISCORD_AUTHOR_LIMIT = 256
DISCORD_USERNAME_LIMIT = 80

# --- Teams -------------------------------------------------------------------------------

TEAMS_MESSAGE_LIMIT = 28 * 1024
TEAMS_CARD_TYPE = "application/vnd.microsoft.card.adaptive"
_TEAMS_VERSION = re.compile(r"^1\.[0-6]$")
_TEAMS_ELEMENTS = {
    "ActionSet",
    "Column",
    "ColumnSet",
    "Container",
    "FactSet",
    "Image",
    "ImageSet",
    "RichTextBlock",
    "Table",
    "TextBlock",
}
_TEAMS_ACTIONS = {"Action.OpenUrl", "Action.ShowCard", "Action.ToggleVisibility", "Action.Execute"}
TEAMS_MAX_ACTIONS = 6
"""Teams shows at most 6 actions of a card's ``actions`` (its clients cut the rest)."""
TEAMS_ACTION_STYLES = ("default", "positive", "destructive")

# --- PagerDuty ---------------------------------------------------------------------------

PAGERDUTY_EVENT_LIMIT = 512_000
PAGERDUTY_SUMMARY_LIMIT = 1024
PAGERDUTY_DEDUP_KEY_LIMIT = 255
PAGERDUTY_ROUTING_KEY_LENGTH = 32
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class Hit:
    """One request a fake received, and how it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    errors: list[str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Fake:
    """A running fake: its base ``url``, what it received (``hits``), and knobs a test sets
    to make it answer otherwise."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    token: str = "xoxb-fake-bot-token"
    """Slack: the bot token ``chat.postMessage`` accepts."""
    rate_limited: int = 0
    """Discord: refuse this many next requests with 429."""
    retry_after: float = 1.5
    retry_after_header: bool = True
    """Discord: send ``Retry-After`` besides the JSON ``retry_after``."""
    webhook_token: str = "token-abc"
    """Discord: the token part of the one webhook that exists (others answer 404)."""
    incidents: dict[str, str] = field(default_factory=dict)
    """PagerDuty: dedup_key -> ``triggered``, ``acknowledged`` or ``resolved``."""

    @property
    def accepted(self) -> list[Any]:
        """The JSON payloads the fake accepted, in order."""
        return [hit.json() for hit in self.hits if 200 <= hit.status < 300]

    @property
    def last(self) -> Hit:
        assert self.hits, "the fake received no request"
        return self.hits[-1]


Answer = tuple[web.Response, list[str]]
"""What a fake's handler returns: the response, and why it refused the request (if it
did)."""
Handler = Callable[[Fake, web.Request, bytes], Answer]


@asynccontextmanager
async def _serve(routes: dict[str, Handler]) -> AsyncIterator[Fake]:
    fake = Fake()

    def endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            response, errors = handler(fake, request, body)
            fake.hits.append(
                Hit(request.path_qs, dict(request.headers), body, response.status, errors)
            )
            return response

        return handle

    app = web.Application(client_max_size=4 * 1024 * 1024)
    for path, handler in routes.items():
        app.router.add_post(path, endpoint(handler))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield fake
    finally:
        await runner.cleanup()


def _answer(status: int, errors: list[str] | None = None, **kwargs: Any) -> Answer:
    return web.Response(status=status, **kwargs), errors or []


def _json_answer(
    status: int, data: Any, errors: list[str] | None = None, headers: dict[str, str] | None = None
) -> Answer:
    return _answer(
        status, errors, text=json.dumps(data), content_type="application/json", headers=headers
    )


async def post_raw(
    url: str,
    payload: Any = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """POST ``payload`` as JSON (or raw ``data``) to ``url``, as a client that does not
    check its payload would; return the answer's status and text."""
    import aiohttp

    sent = dict(headers or {})
    if data is None:
        data = json.dumps(payload).encode()
        sent.setdefault("Content-Type", "application/json")
    async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=sent) as answer:
        return answer.status, await answer.text()


def _load(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^https?://[^/\s]+", value) is not None


# --- Slack -------------------------------------------------------------------------------


def _slack_text_object(obj: Any, where: str, limit: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where}: must be a text object (plain_text or mrkdwn)"]
    if plain_only and obj["type"] != "plain_text":
        return [f"{where}: must be plain_text"]
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        return [f"{where}.text: must be a non-empty string"]
    if len(text) > limit:
        return [f"{where}.text: {len(text)} characters, more than {limit}"]
    return []


def _slack_image(block: Any, where: str) -> list[str]:
    errors = []
    if not isinstance(block.get("image_url"), str) or not block["image_url"]:
        errors.append(f"{where}.image_url: required")
    elif len(block["image_url"]) > SLACK_IMAGE_URL_LIMIT:
        errors.append(f"{where}.image_url: longer than {SLACK_IMAGE_URL_LIMIT}")
    alt = block.get("alt_text")
    if not isinstance(alt, str) or not alt or len(alt) > SLACK_ALT_TEXT_LIMIT:
        errors.append(f"{where}.alt_text: required, at most {SLACK_ALT_TEXT_LIMIT} characters")
    return errors


def slack_block_errors(blocks: Any) -> list[str]:
    """What is wrong with a Block Kit ``blocks`` list (empty when valid)."""
    if not isinstance(blocks, list):
        return ["blocks: must be an array"]
    errors: list[str] = []
    if len(blocks) > SLACK_MAX_BLOCKS:
        errors.append(f"blocks: {len(blocks)} blocks, more than {SLACK_MAX_BLOCKS}")
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict) or block.get("type") not in _SLACK_BLOCK_TYPES:
            errors.append(f"{where}: unknown block type")
            continue
        block_id = block.get("block_id")
        if block_id is not None and (
            not isinstance(block_id, str) or len(block_id) > SLACK_BLOCK_ID_LIMIT
        ):
            errors.append(f"{where}.block_id: at most {SLACK_BLOCK_ID_LIMIT} characters")
        kind = block["type"]
        if kind == "header":
            errors += _slack_text_object(
                block.get("text"), f"{where}.text", SLACK_HEADER_LIMIT, plain_only=True
            )
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"{where}: a section needs text or fields")
            if "text" in block:
                errors += _slack_text_object(
                    block["text"], f"{where}.text", SLACK_SECTION_TEXT_LIMIT
                )
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= SLACK_SECTION_FIELDS:
                    errors.append(f"{where}.fields: 1 to {SLACK_SECTION_FIELDS} text objects")
                else:
                    for number, item in enumerate(fields):
                        errors += _slack_text_object(
                            item, f"{where}.fields[{number}]", SLACK_FIELD_TEXT_LIMIT
                        )
            accessory = block.get("accessory")
            if accessory is not None:
                if not isinstance(accessory, dict) or accessory.get("type") != "image":
                    errors.append(f"{where}.accessory: only image accessories are checked")
                else:
                    errors += _slack_image(accessory, f"{where}.accessory")
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= SLACK_CONTEXT_ELEMENTS:
                errors.append(f"{where}.elements: 1 to {SLACK_CONTEXT_ELEMENTS} elements")
            else:
                for number, element in enumerate(elements):
                    name = f"{where}.elements[{number}]"
                    if isinstance(element, dict) and element.get("type") == "image":
                        errors += _slack_image(element, name)
                    elif isinstance(element, dict):
                        errors += _slack_text_object(
                            {"type": element.get("type"), "text": element.get("text")},
                            name,
                            SLACK_SECTION_TEXT_LIMIT,
                        )
                    else:
                        errors.append(f"{name}: must be an object")
        elif kind == "image":
            errors += _slack_image(block, where)
        elif kind == "actions":
            errors += _slack_actions_block(block, where)
    return errors


def _slack_actions_block(block: dict[str, Any], where: str) -> list[str]:
    """An ``actions`` block: 1 to 25 elements; buttons checked (text, url, action_id unique
    in the block, style)."""
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= SLACK_ACTIONS_ELEMENTS:
        return [f"{where}.elements: 1 to {SLACK_ACTIONS_ELEMENTS} elements"]
    errors: list[str] = []
    seen: set[str] = set()
    for number, element in enumerate(elements):
        name = f"{where}.elements[{number}]"
        if not isinstance(element, dict) or element.get("type") != "button":
            errors.append(f"{name}: only buttons are checked")
            continue
        errors += _slack_text_object(
            element.get("text"), f"{name}.text", SLACK_BUTTON_TEXT_LIMIT, plain_only=True
        )
        url = element.get("url")
        if url is not None and (not _is_http_url(url) or len(url) > SLACK_BUTTON_URL_LIMIT):
            errors.append(f"{name}.url: a URL of at most {SLACK_BUTTON_URL_LIMIT} characters")
        action_id = element.get("action_id")
        if action_id is not None:
            if not isinstance(action_id, str) or len(action_id) > SLACK_ACTION_ID_LIMIT:
                errors.append(f"{name}.action_id: at most {SLACK_ACTION_ID_LIMIT} characters")
            elif action_id in seen:
                errors.append(f"{name}.action_id: {action_id!r} is not unique in the block")
            else:
                seen.add(action_id)
        if "style" in element and element["style"] not in SLACK_BUTTON_STYLES:
            errors.append(f"{name}.style: primary or danger")
    return errors


def _slack_attachment_actions(actions: Any, where: str) -> list[str]:
    """Legacy attachment actions: at most 5, each a button with a text; a link button has
    a URL."""
    if not isinstance(actions, list):
        return [f"{where}.actions: must be an array"]
    if len(actions) > SLACK_ATTACHMENT_ACTIONS:
        return [f"{where}.actions: more than {SLACK_ATTACHMENT_ACTIONS} actions"]
    errors: list[str] = []
    for number, action in enumerate(actions):
        name = f"{where}.actions[{number}]"
        if not isinstance(action, dict) or action.get("type") != "button":
            errors.append(f"{name}: only buttons are checked")
            continue
        text = action.get("text")
        if not isinstance(text, str) or not text.strip():
            errors.append(f"{name}.text: required")
        if "url" in action and not _is_http_url(action["url"]):
            errors.append(f"{name}.url: not a URL")
        if "url" not in action and not action.get("name"):
            errors.append(f"{name}: a button without url needs a name (and callback_id)")
        if "style" in action and action["style"] not in SLACK_ATTACHMENT_BUTTON_STYLES:
            errors.append(f"{name}.style: default, primary or danger")
    return errors


def slack_attachment_errors(attachments: Any) -> tuple[str, list[str]]:
    """The Slack error code and what is wrong with ``attachments`` (``""`` when valid)."""
    if not isinstance(attachments, list):
        return "invalid_attachments", ["attachments: must be an array"]
    if len(attachments) > SLACK_MAX_ATTACHMENTS:
        return "too_many_attachments", [f"more than {SLACK_MAX_ATTACHMENTS} attachments"]
    errors: list[str] = []
    for index, item in enumerate(attachments):
        where = f"attachments[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{where}: must be an object")
            continue
        for key in (
            "fallback",
            "color",
            "pretext",
            "title",
            "title_link",
            "text",
            "image_url",
            "thumb_url",
            "footer",
            "callback_id",
        ):
            if key in item and not isinstance(item[key], str):
                errors.append(f"{where}.{key}: must be a string")
        if not any(item.get(key) for key in ("fallback", "text", "pretext", "title", "fields")):
            errors.append(f"{where}: has no fallback, text, pretext, title nor fields")
        color = item.get("color")
        if isinstance(color, str) and color and not _SLACK_COLOR.match(color):
            errors.append(f"{where}.color: {color!r} is not good, warning, danger or a hex color")
        footer = item.get("footer")
        if isinstance(footer, str) and len(footer) > SLACK_FOOTER_LIMIT:
            errors.append(f"{where}.footer: longer than {SLACK_FOOTER_LIMIT} characters")
        text = item.get("text")
        if isinstance(text, str) and len(text) > SLACK_TEXT_LIMIT:
            errors.append(f"{where}.text: longer than {SLACK_TEXT_LIMIT} characters")
        fields = item.get("fields", [])
        if not isinstance(fields, list):
            errors.append(f"{where}.fields: must be an array")
        else:
            for number, fld in enumerate(fields):
                if (
                    not isinstance(fld, dict)
                    or not isinstance(fld.get("title", ""), str)
                    or not isinstance(fld.get("value", ""), str)
                    or not isinstance(fld.get("short", False), bool)
                ):
                    errors.append(f"{where}.fields[{number}]: title, value (strings), short")
        mrkdwn_in = item.get("mrkdwn_in", [])
        if not isinstance(mrkdwn_in, list) or not all(isinstance(x, str) for x in mrkdwn_in):
            errors.append(f"{where}.mrkdwn_in: must be an array of strings")
        if "blocks" in item:
            errors += slack_block_errors(item["blocks"])
        if "actions" in item:
            errors += _slack_attachment_actions(item["actions"], where)
    return ("invalid_attachments" if errors else ""), errors


def slack_error(message: Any) -> tuple[str, list[str]]:
    """The error code Slack answers for ``message`` (``""`` when it is valid) and why."""
    if not isinstance(message, dict):
        return "invalid_payload", ["the body is not a JSON object"]
    for key in ("text", "channel", "username", "icon_emoji", "icon_url"):
        if key in message and not isinstance(message[key], str):
            return "invalid_payload", [f"{key}: must be a string"]
    if "link_names" in message and not isinstance(message["link_names"], bool | int):
        return "invalid_payload", ["link_names: must be a boolean"]
    text = message.get("text")
    blocks = message.get("blocks")
    attachments = message.get("attachments")
    if not (isinstance(text, str) and text.strip()) and not blocks and not attachments:
        return "no_text", ["text, blocks and attachments are all missing"]
    if isinstance(text, str) and len(text) > SLACK_TEXT_LIMIT:
        return "msg_too_long", [f"text is longer than {SLACK_TEXT_LIMIT} characters"]
    if blocks is not None:
        errors = slack_block_errors(blocks)
        if errors:
            return "invalid_blocks", errors
    if attachments is not None:
        code, errors = slack_attachment_errors(attachments)
        if code:
            return code, errors
    return "", []


def _slack_webhook(fake: Fake, request: web.Request, body: bytes) -> Answer:
    message = _load(body)
    if message is None:
        return _answer(400, ["the body is not JSON"], text="invalid_payload")
    code, errors = slack_error(message)
    if code:
        return _answer(400, errors, text=code)
    return _answer(200, text="ok", content_type="text/html")


_slack_ts = itertools.count(1)


def _slack_post_message(fake: Fake, request: web.Request, body: bytes) -> Answer:
    # The Web API answers 200 with {"ok": false, "error": ...} for every refusal.
    auth = request.headers.get("Authorization", "")
    if not auth:
        return _json_answer(200, {"ok": False, "error": "not_authed"}, ["no token"])
    if auth != f"Bearer {fake.token}":
        return _json_answer(200, {"ok": False, "error": "invalid_auth"}, ["wrong token"])
    message = _load(body)
    if message is None:
        return _json_answer(200, {"ok": False, "error": "invalid_json"}, ["not JSON"])
    channel = message.get("channel") if isinstance(message, dict) else None
    if not isinstance(channel, str) or not channel.strip():
        return _json_answer(200, {"ok": False, "error": "channel_not_found"}, ["no channel"])
    code, errors = slack_error(message)
    if code:
        return _json_answer(200, {"ok": False, "error": code}, errors)
    ts = f"1795428000.{next(_slack_ts):06d}"
    return _json_answer(200, {"ok": True, "channel": "C0FAKE", "ts": ts, "message": message})


def slack_fake() -> AbstractAsyncContextManager[Fake]:
    """A fake Slack: incoming webhooks under ``/services/...`` (answer ``ok``, or 400 with
    the error code) and ``/api/chat.postMessage`` (needs ``Bearer <fake.token>`` and a
    ``channel``; answers ``{"ok": ..., "ts": ...}``)."""
    return _serve(
        {
            "/services/{tail:.*}": _slack_webhook,
            "/api/chat.postMessage": _slack_post_message,
        }
    )


# --- Discord -----------------------------------------------------------------------------


def _discord_embed_errors(embed: Any, where: str) -> tuple[list[str], int]:
    if not isinstance(embed, dict):
        return [f"{where}: must be an object"], 0
    errors: list[str] = []
    total = 0
    for key, limit in (("title", DISCORD_TITLE_LIMIT), ("description", DISCORD_DESCRIPTION_LIMIT)):
        if key in embed:
            value = embed[key]
            if not isinstance(value, str):
                errors.append(f"{where}.{key}: must be a string")
                continue
            total += len(value)
            if len(value) > limit:
                errors.append(f"{where}.{key}: must be {limit} or fewer in length")
    if "url" in embed and not _is_http_url(embed["url"]):
        errors.append(f"{where}.url: not a well formed URL")
    if "timestamp" in embed:
        try:
            datetime.fromisoformat(str(embed["timestamp"]).replace("Z", "+00:00"))
        except ValueError:
            errors.append(f"{where}.timestamp: not an ISO8601 timestamp")
    if "color" in embed:
        color = embed["color"]
        if not isinstance(color, int) or isinstance(color, bool) or not 0 <= color <= 0xFFFFFF:
            errors.append(f"{where}.color: must be an integer from 0 to 16777215")
    if "footer" in embed:
        footer = embed["footer"]
        text = footer.get("text") if isinstance(footer, dict) else None
        if not isinstance(text, str) or not text:
            errors.append(f"{where}.footer.text: this field is required")
        else:
            total += len(text)
            if len(text) > DISCORD_FOOTER_LIMIT:
                errors.append(f"{where}.footer.text: must be {DISCORD_FOOTER_LIMIT} or fewer")
    if "author" in embed:
        author = embed["author"]
        name = author.get("name") if isinstance(author, dict) else None
        if not isinstance(name, str) or not name:
            errors.append(f"{where}.author.name: this field is required")
        else:
            total += len(name)
            if len(name) > DISCORD_AUTHOR_LIMIT:
                errors.append(f"{where}.author.name: must be {DISCORD_AUTHOR_LIMIT} or fewer")
    fields = embed.get("fields", [])
    if not isinstance(fields, list):
        errors.append(f"{where}.fields: must be an array")
        fields = []
    if len(fields) > DISCORD_MAX_FIELDS:
        errors.append(f"{where}.fields: must be {DISCORD_MAX_FIELDS} or fewer in length")
    for number, item in enumerate(fields):
        name = f"{where}.fields[{number}]"
        if not isinstance(item, dict):
            errors.append(f"{name}: must be an object")
            continue
        for key, limit in (
            ("name", DISCORD_FIELD_NAME_LIMIT),
            ("value", DISCORD_FIELD_VALUE_LIMIT),
        ):
            value = item.get(key)
            if not isinstance(value, str) or not value.strip():
                errors.append(f"{name}.{key}: this field is required")
                continue
            total += len(value)
            if len(value) > limit:
                errors.append(f"{name}.{key}: must be {limit} or fewer in length")
        if "inline" in item and not isinstance(item["inline"], bool):
            errors.append(f"{name}.inline: must be a boolean")
    return errors, total


def discord_errors(message: Any) -> tuple[int, list[str]]:
    """Discord's error code for an Execute Webhook body (0 when valid) and why:
    ``50006`` for an empty message, ``50035`` (Invalid Form Body) for the rest."""
    if not isinstance(message, dict):
        return 50035, ["the body is not a JSON object"]
    errors: list[str] = []
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        errors.append("content: must be a string")
    elif isinstance(content, str) and len(content) > DISCORD_CONTENT_LIMIT:
        errors.append(f"content: must be {DISCORD_CONTENT_LIMIT} or fewer in length")
    username = message.get("username")
    if username is not None:
        if not isinstance(username, str) or not 1 <= len(username) <= DISCORD_USERNAME_LIMIT:
            errors.append(f"username: must be between 1 and {DISCORD_USERNAME_LIMIT} in length")
        elif "discord" in username.lower() or "clyde" in username.lower():
            errors.append("username: cannot contain 'discord' or 'clyde'")
    if "avatar_url" in message and not _is_http_url(message["avatar_url"]):
        errors.append("avatar_url: not a well formed URL")
    embeds = message.get("embeds", [])
    if not isinstance(embeds, list):
        errors.append("embeds: must be an array")
        embeds = []
    if len(embeds) > DISCORD_MAX_EMBEDS:
        errors.append(f"embeds: must be {DISCORD_MAX_EMBEDS} or fewer in length")
    total = 0
    for index, embed in enumerate(embeds):
        found, size = _discord_embed_errors(embed, f"embeds[{index}]")
        errors += found
        total += size
    if total > DISCORD_EMBED_TOTAL:
        errors.append(f"embeds: embed size exceeds maximum size of {DISCORD_EMBED_TOTAL}")
    if errors:
        return 50035, errors
    if not (isinstance(content, str) and content.strip()) and not embeds:
        return 50006, ["Cannot send an empty message"]
    return 0, []


def _discord_webhook(fake: Fake, request: web.Request, body: bytes) -> Answer:
    if request.match_info["token"] != fake.webhook_token:
        return _json_answer(404, {"message": "Unknown Webhook", "code": 10015}, ["no webhook"])
    if fake.rate_limited > 0:
        fake.rate_limited -= 1
        headers = {}
        if fake.retry_after_header:
            headers["Retry-After"] = str(math.ceil(fake.retry_after))
        answer = {
            "message": "You are being rate limited.",
            "retry_after": fake.retry_after,
            "global": False,
        }
        return _json_answer(429, answer, ["rate limited"], headers)
    if request.content_type != "application/json":
        return _json_answer(
            400, {"code": 50109, "message": "The request body contains invalid JSON."}, ["not JSON"]
        )
    code, errors = discord_errors(_load(body))
    if code == 50006:
        return _json_answer(400, {"code": code, "message": errors[0]}, errors)
    if code:
        detail = {
            "errors": {"_errors": [{"code": "BASE_TYPE_INVALID", "message": e} for e in errors]}
        }
        return _json_answer(400, {"code": code, "message": "Invalid Form Body", **detail}, errors)
    return _answer(204)


def discord_fake() -> AbstractAsyncContextManager[Fake]:
    """A fake Discord: Execute Webhook at ``/api/webhooks/<id>/<fake.webhook_token>`` (204,
    or 400 with Discord's error JSON; 429 with ``retry_after`` while ``fake.rate_limited``;
    404 for any other token)."""
    return _serve({"/api/webhooks/{id}/{token}": _discord_webhook})


# --- Teams -------------------------------------------------------------------------------


def _teams_element_errors(element: Any, where: str) -> list[str]:
    if not isinstance(element, dict) or element.get("type") not in _TEAMS_ELEMENTS:
        return [f"{where}: unknown element type"]
    kind = element["type"]
    if kind == "TextBlock":
        if not isinstance(element.get("text"), str):
            return [f"{where}.text: required string"]
    elif kind == "FactSet":
        facts = element.get("facts")
        if not isinstance(facts, list) or not facts:
            return [f"{where}.facts: required non-empty array"]
        for number, fact in enumerate(facts):
            if not (
                isinstance(fact, dict)
                and isinstance(fact.get("title"), str)
                and isinstance(fact.get("value"), str)
            ):
                return [f"{where}.facts[{number}]: title and value strings required"]
    elif kind == "Container":
        items = element.get("items")
        if not isinstance(items, list):
            return [f"{where}.items: required array"]
        return [
            e
            for n, item in enumerate(items)
            for e in _teams_element_errors(item, f"{where}.items[{n}]")
        ]
    return []


def teams_errors(body: bytes) -> tuple[int, list[str]]:
    """The HTTP status a Teams Workflows webhook answers for ``body`` (202 when valid) and
    why."""
    if len(body) > TEAMS_MESSAGE_LIMIT:
        return 413, [f"the message is {len(body)} bytes, more than {TEAMS_MESSAGE_LIMIT}"]
    message = _load(body)
    if not isinstance(message, dict):
        return 400, ["the body is not a JSON object"]
    errors: list[str] = []
    if message.get("type") != "message":
        errors.append("type: must be 'message'")
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return 400, [*errors, "attachments: required non-empty array"]
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        if not isinstance(attachment, dict):
            errors.append(f"{where}: must be an object")
            continue
        if attachment.get("contentType") != TEAMS_CARD_TYPE:
            errors.append(f"{where}.contentType: must be {TEAMS_CARD_TYPE}")
        if attachment.get("contentUrl") is not None and not isinstance(
            attachment["contentUrl"], str
        ):
            errors.append(f"{where}.contentUrl: must be null or a string")
        card = attachment.get("content")
        if not isinstance(card, dict):
            errors.append(f"{where}.content: required object")
            continue
        if card.get("type") != "AdaptiveCard":
            errors.append(f"{where}.content.type: must be AdaptiveCard")
        if not isinstance(card.get("version"), str) or not _TEAMS_VERSION.match(card["version"]):
            errors.append(f"{where}.content.version: must be 1.0 to 1.6")
        if "$schema" in card and not isinstance(card["$schema"], str):
            errors.append(f"{where}.content.$schema: must be a string")
        body_items = card.get("body")
        if not isinstance(body_items, list) or not body_items:
            errors.append(f"{where}.content.body: required non-empty array")
        else:
            for number, element in enumerate(body_items):
                errors += _teams_element_errors(element, f"{where}.content.body[{number}]")
        actions = card.get("actions", [])
        if not isinstance(actions, list) or len(actions) > TEAMS_MAX_ACTIONS:
            errors.append(f"{where}.content.actions: at most {TEAMS_MAX_ACTIONS} actions")
            actions = []
        for number, action in enumerate(actions):
            name = f"{where}.content.actions[{number}]"
            if not isinstance(action, dict) or action.get("type") not in _TEAMS_ACTIONS:
                errors.append(f"{name}: unknown action type")
                continue
            if action["type"] == "Action.OpenUrl" and not _is_http_url(action.get("url")):
                errors.append(f"{name}.url: required URL")
            if "title" in action and not isinstance(action["title"], str):
                errors.append(f"{name}.title: must be a string")
            if action.get("style", "default") not in TEAMS_ACTION_STYLES:
                errors.append(f"{name}.style: default, positive or destructive")
        msteams = card.get("msteams")
        if msteams is not None and (
            not isinstance(msteams, dict) or msteams.get("width", "Full").lower() != "full"
        ):
            errors.append(f"{where}.content.msteams: width can only be Full")
    return (400 if errors else 202), errors


def _teams_webhook(fake: Fake, request: web.Request, body: bytes) -> Answer:
    status, errors = teams_errors(body)
    if status == 413:
        return _json_answer(
            413, {"error": {"code": "RequestEntityTooLarge", "message": errors[0]}}, errors
        )
    if status != 202:
        message = "; ".join(errors)
        return _json_answer(
            400, {"error": {"code": "InvalidRequestContent", "message": message}}, errors
        )
    return _answer(202)


def teams_fake() -> AbstractAsyncContextManager[Fake]:
    """A fake Teams Workflows webhook at ``/workflows/<id>/triggers/manual/paths/invoke``
    (any path under ``/workflows/``): 202, 400 for an invalid card, 413 over 28 KB."""
    return _serve({"/workflows/{tail:.*}": _teams_webhook})


# --- PagerDuty ---------------------------------------------------------------------------


def _pagerduty_timestamp_ok(value: Any) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def pagerduty_errors(event: Any) -> list[str]:
    """What PagerDuty's Events API v2 finds wrong with ``event`` (empty when valid)."""
    if not isinstance(event, dict):
        return ["Event object is invalid"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != PAGERDUTY_ROUTING_KEY_LENGTH:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in PAGERDUTY_ACTIONS:
        errors.append(
            "'event_action' is invalid (must be one of the following: 'trigger', "
            "'acknowledge' or 'resolve')"
        )
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not dedup):
        errors.append("'dedup_key' must be a non-empty string")
    elif isinstance(dedup, str) and len(dedup) > PAGERDUTY_DEDUP_KEY_LIMIT:
        errors.append(f"'dedup_key' is longer than {PAGERDUTY_DEDUP_KEY_LIMIT} characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append(f"'dedup_key' is required for {action} events")
    payload = event.get("payload")
    if payload is None:
        if action == "trigger":
            errors.append("'payload' is missing or blank")
    elif not isinstance(payload, dict):
        errors.append("'payload' must be an object")
    else:
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors.append("'payload.summary' is missing or blank")
        elif len(summary) > PAGERDUTY_SUMMARY_LIMIT:
            errors.append(f"'payload.summary' is longer than {PAGERDUTY_SUMMARY_LIMIT}")
        source = payload.get("source")
        if not isinstance(source, str) or not source.strip():
            errors.append("'payload.source' is missing or blank")
        if payload.get("severity") not in PAGERDUTY_SEVERITIES:
            errors.append(
                "'payload.severity' is invalid (must be one of the following: 'critical', "
                "'warning', 'error' or 'info')"
            )
        if "timestamp" in payload and not _pagerduty_timestamp_ok(payload["timestamp"]):
            errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp")
        for name in ("component", "group", "class"):
            if name in payload and not isinstance(payload[name], str):
                errors.append(f"'payload.{name}' must be a string")
    for name in ("client", "client_url"):
        if name in event and not isinstance(event[name], str):
            errors.append(f"'{name}' must be a string")
    for number, image in enumerate(event.get("images", [])):
        if not isinstance(image, dict) or not isinstance(image.get("src"), str) or not image["src"]:
            errors.append(f"'images[{number}].src' is missing or blank")
    for number, link in enumerate(event.get("links", [])):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str) or not link["href"]:
            errors.append(f"'links[{number}].href' is missing or blank")
    return errors


_pagerduty_keys = itertools.count(1)


def _pagerduty_enqueue(fake: Fake, request: web.Request, body: bytes) -> Answer:
    invalid = {"status": "invalid event", "message": "Event object is invalid"}
    if len(body) > PAGERDUTY_EVENT_LIMIT:
        errors = [f"Event is {len(body)} bytes, more than the 512 KB limit"]
        return _json_answer(400, {**invalid, "errors": errors}, errors)
    if request.content_type != "application/json":
        errors = ["Content-Type must be application/json"]
        return _json_answer(400, {**invalid, "errors": errors}, errors)
    event = _load(body)
    errors = pagerduty_errors(event)
    if errors:
        return _json_answer(400, {**invalid, "errors": errors}, errors)
    dedup = event.get("dedup_key") or f"fake-{next(_pagerduty_keys)}"
    state = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved"}
    if event["event_action"] == "trigger" or dedup in fake.incidents:
        fake.incidents[dedup] = state[event["event_action"]]
    answer = {"status": "success", "message": "Event processed", "dedup_key": dedup}
    return _json_answer(202, answer)


def pagerduty_fake() -> AbstractAsyncContextManager[Fake]:
    """A fake PagerDuty Events API v2 at ``/v2/enqueue``: 202 ``{"status": "success",
    "message": "Event processed", "dedup_key": ...}`` or 400 ``{"status": "invalid event",
    "errors": [...]}``; ``fake.incidents`` follows each dedup key's state."""
    return _serve({"/v2/enqueue": _pagerduty_enqueue})
