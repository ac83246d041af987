"""What a check produces (:class:`ProbeResult`) and what pudimd remembers of a target
between checks (:class:`TargetState`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ProbeResult", "TargetState"]


@dataclass(slots=True)
class ProbeResult:
    """The outcome of one check.

    Probe plugins return one from ``check()``; the scheduler fills in ``timestamp`` and,
    when the probe left it at zero, ``duration``.

    - ``success``: the target is up.
    - ``duration``: seconds the whole check took.
    - ``message``: a short human-readable reason, mostly useful on failure.
    - ``status``: the protocol's own status (an HTTP status code, a DNS rcode...), or None.
    - ``phases``: seconds spent per phase (``dns``, ``connect``, ``tls``, ``first_byte``,
      ``transfer``...), for the phases the probe knows about.
    - ``metrics``: extra numeric facts (``content_length``, ``cert_expiry_seconds``...).
    - ``timestamp``: Unix time the check started.
    """

    success: bool
    duration: float = 0.0
    message: str = ""
    status: int | str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    timestamp: float = 0.0

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

    def record(self, result: ProbeResult) -> None:
        """Fold one result into the state."""
        self.last = result
        self.checks += 1
        if result.success:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
        else:
            self.failures += 1
            self.consecutive_failures += 1
            self.consecutive_successes = 0
