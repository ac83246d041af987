"""The Alertmanager webhook receiver: ``POST /api/v1/alertmanager/webhook`` takes the
payload an Alertmanager's ``webhook_configs`` sends (version 4), so an existing
Alertmanager can forward its notifications to pudimd::

    receivers:
      - name: pudimd
        webhook_configs:
          - url: http://pudimd.example:9797/api/v1/alertmanager/webhook
            send_resolved: true

Each alert of the payload is posted to pudimd's alert store with its labels,
annotations, ``startsAt`` and ``generatorURL`` as they are (the same labels make the same
alert, whichever way it comes in):

- a *resolved* alert ends at its ``endsAt`` (now if it has none, its start if it is
  earlier);
- a *firing* alert ends at its ``endsAt`` when one is given and in the future; an
  Alertmanager sends firing alerts with no end (``0001-01-01T00:00:00Z``) and repeats
  them only every ``repeat_interval`` of its route (4h by default), so such an alert is
  held firing for ``firing_timeout`` (4h15m unless the daemon says otherwise) after each
  notification, rather than pudimd's ``resolve_timeout`` (meant for Prometheus, which
  re-sends every evaluation): keep ``send_resolved: true`` on the Alertmanager side, and
  its resolved notification ends the alert at once.

The whole payload is checked before any alert is taken: ``version`` must be ``"4"`` and
``alerts`` a list of objects with ``status`` (``firing`` or ``resolved``), ``labels`` (at
least one), ``startsAt`` and optional ``endsAt`` (RFC 3339), ``annotations`` and
``generatorURL``; anything else is answered 400 with the reason, as plain text (the
sending Alertmanager logs it), nothing changes, and ``pudimd_alerts_invalid_total``
counts it.

The receiver is served on the daemon's listener, open like ``/api/v2`` is: an
Alertmanager that can reach it can post alerts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pudimd.alerting.alert import PostableAlert
from pudimd.api._amjson import BadRequest, label_set, read_json, read_time, string_field

if TYPE_CHECKING:
    from pudimd.alerting.engine import Alerting
    from pudimd.daemon import Daemon

__all__ = ["FIRING_TIMEOUT", "PATH", "parse_payload", "webhook_routes"]

PATH = "/api/v1/alertmanager/webhook"

FIRING_TIMEOUT = 4 * 3600 + 15 * 60
"""How long a forwarded firing alert without an end stays firing after its last
notification: Alertmanager's default ``repeat_interval`` (4h) plus room for its
``group_interval`` ticks (5m by default)."""


def parse_payload(data: Any, now: float, firing_timeout: float | None) -> list[PostableAlert]:
    """The alerts of a webhook payload (version 4), ready to post.  ``firing_timeout``:
    see the module's documentation (None: the store's ``resolve_timeout``).  Raises
    BadRequest saying what is wrong."""
    if not isinstance(data, dict):
        raise BadRequest(f"expected Alertmanager's webhook payload (a JSON object), got {data!r}")
    version = data.get("version")
    if version != "4":
        raise BadRequest(f'unsupported webhook payload version {version!r} (expected "4")')
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise BadRequest("alerts must be a list")
    posted: list[PostableAlert] = []
    for index, item in enumerate(alerts):
        try:
            posted.append(_alert(item, now, firing_timeout))
        except BadRequest as exc:
            raise BadRequest(f"alert {index}: {exc}") from None
    return posted


def _alert(data: Any, now: float, firing_timeout: float | None) -> PostableAlert:
    if not isinstance(data, dict):
        raise BadRequest(f"expected an object, got {data!r}")
    status = data.get("status")
    if status not in ("firing", "resolved"):
        raise BadRequest(f'status must be "firing" or "resolved", got {status!r}')
    if data.get("labels") is None:
        raise BadRequest("labels is required")
    labels = label_set(data["labels"], "labels")
    if not labels:
        raise BadRequest("at least one label pair required")
    annotations = label_set(data.get("annotations"), "annotations")
    starts = read_time(data.get("startsAt"), "startsAt")
    if starts is None:
        raise BadRequest("startsAt is required")
    ends = read_time(data.get("endsAt"), "endsAt")
    if status == "resolved":
        # an end before the start can only be clock trouble upstream: it ended, at once
        ends = max(ends if ends is not None else now, starts)
    elif ends is None or ends <= now:
        # firing: whatever end it had has passed or was never set (see the module's doc)
        ends = None if firing_timeout is None else now + firing_timeout
    return PostableAlert(
        labels=labels,
        annotations=annotations,
        starts_at=starts,
        ends_at=ends,
        generator_url=string_field(data, "generatorURL"),
    )


class _WebhookReceiver:
    def __init__(self, daemon: Daemon, firing_timeout: float | None) -> None:
        self.daemon = daemon
        self.firing_timeout = firing_timeout

    async def handle(self, request: web.Request) -> web.StreamResponse:
        alerting: Alerting | None = self.daemon.alerting
        if alerting is None:
            return web.Response(status=503, text="pudimd's alerting is not running\n")
        try:
            alerts = parse_payload(await read_json(request), time.time(), self.firing_timeout)
        except BadRequest as exc:
            alerting.metrics.invalid.inc()
            return web.Response(status=400, text=f"{exc}\n")
        if alerts:
            await alerting.post(alerts)
        return web.Response()


def webhook_routes(
    daemon: Daemon, *, firing_timeout: float | None = FIRING_TIMEOUT
) -> list[web.RouteDef]:
    """The webhook receiver's route for ``daemon`` (see the module's documentation)."""
    return [web.post(PATH, _WebhookReceiver(daemon, firing_timeout).handle)]
