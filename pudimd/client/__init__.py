"""A Python client of pudimd's HTTP API: :class:`AsyncClient` (asyncio, aiohttp) and
:class:`Client` (blocking), with typed answers (:mod:`pudimd.client.models`), one pooled
session each, a timeout per attempt, and retries with exponential backoff and full jitter on
connection errors, 429 and 5xx, honouring ``Retry-After`` (see
:mod:`pudimd.client._transport` for exactly what is retried: an action is never sent twice
when it may have reached the daemon).

Errors are :class:`PudimdError`: :class:`ApiError` (and :class:`NotFound`,
:class:`Conflict`, :class:`Unauthorized`, :class:`Forbidden`) when the daemon answered with
an error, :class:`ConnectionFailed` (and :class:`TimedOut`) when it did not answer.
"""

from __future__ import annotations

from pudimd.client._async import AsyncClient
from pudimd.client._sync import Client
from pudimd.client.errors import (
    ApiError,
    Conflict,
    ConnectionFailed,
    FieldError,
    Forbidden,
    NotFound,
    PudimdError,
    TimedOut,
    Unauthorized,
)
from pudimd.client.models import (
    Acknowledgement,
    Alert,
    AlertHistory,
    BulkResult,
    ConfigVersion,
    DeliveryAttempt,
    Event,
    GettableAlert,
    Notification,
    OnCall,
    Status,
    Target,
    TargetPage,
)

__all__ = [
    "Acknowledgement",
    "Alert",
    "AlertHistory",
    "ApiError",
    "AsyncClient",
    "BulkResult",
    "Client",
    "ConfigVersion",
    "Conflict",
    "ConnectionFailed",
    "DeliveryAttempt",
    "Event",
    "FieldError",
    "Forbidden",
    "GettableAlert",
    "NotFound",
    "Notification",
    "OnCall",
    "PudimdError",
    "Status",
    "Target",
    "TargetPage",
    "TimedOut",
    "Unauthorized",
]
