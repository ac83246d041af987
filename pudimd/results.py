"""What a check produces (:class:`ProbeResult`) and what pudimd remembers of a target
between checks (:class:`TargetState`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ProbeResult", "TargetState"]


@dataclass(slots=True)
class ProbeResult:
    """The outcome of one check.

    Probe plugins return one from ``check()``; the scheduler fills in ``timestamp`` and,
    when the probe left it at zero, ``duration``.

    - ``success``: the target is up.
    - ``degraded``: the target works but is unhealthy (a Nagios WARNING, a ``degraded_if``
      condition that holds); only meaningful with ``success``.
    - ``duration``: seconds the whole check took.
    - ``message``: a short human-readable reason, mostly useful on failure.
    - ``status``: the protocol's own status (an HTTP status code, a DNS rcode...), or None.
    - ``phases``: seconds spent per phase (``dns``, ``connect``, ``tls``, ``first_byte``,
      ``transfer``...), for the phases the probe knows about.
    - ``metrics``: extra numeric facts (``content_length``, ``cert_expiry_seconds``...).
    - ``values``: facts that conditions can test, by placeholder name without brackets:
      ``BODY`` (bytes as read, or str; decoded and parsed as JSON only when a condition
      reads it), ``IP`` (str), ``CONNECTED`` (bool), ``CERTIFICATE_EXPIRATION`` (seconds
      left, float), ``DNS_RCODE`` (str), ``HEADERS`` (dict, lower-case names)...
      ``STATUS`` and ``RESPONSE_TIME`` come from ``status`` and ``duration`` (in
      milliseconds) and need not be repeated; a placeholder not in ``values`` falls back to
      ``metrics`` in lower case (``[CONTENT_LENGTH]``).
    - ``timestamp``: Unix time the check started.
    - ``condition``: the target's condition that failed (or, with ``degraded``, the
      ``degraded_if`` condition that held), as written; ``message`` then says it with the
      value seen (``condition [STATUS] (404) == 200 failed``).  Set by the scheduler.
    """

    success: bool
    duration: float = 0.0
    message: str = ""
    status: int | str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    timestamp: float = 0.0
    degraded: bool = False
    condition: str | None = None

    @classmethod
    def failure(cls, message: str, **kwargs: object) -> ProbeResult:
        """A failed result with ``message`` as its reason."""
        return cls(success=False, message=message, **kwargs)  # type: ignore[arg-type]


@dataclass(slots=True)
class TargetState:
    """Live state of one target, kept across checks and across reloads that leave it
    unchanged."""

    last: ProbeResult | None = None
    checks: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    degraded: int = 0
    consecutive_degraded: int = 0

    @property
    def health(self) -> str:
        """``up``, ``degraded`` or ``down`` after the last check; ``unknown`` before one.

        ``consecutive_successes`` counts degraded checks too (the target works);
        ``degraded``/``consecutive_degraded`` count them apart."""
        last = self.last
        if last is None:
            return "unknown"
        if not last.success:
            return "down"
        return "degraded" if last.degraded else "up"

    def record(self, result: ProbeResult) -> None:
        """Fold one result into the state."""
        self.last = result
        self.checks += 1
        if result.success:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if result.degraded:
                self.degraded += 1
                self.consecutive_degraded += 1
            else:
                self.consecutive_degraded = 0
        else:
            self.failures += 1
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            self.consecutive_degraded = 0
