"""Inhibition rules: while an alert matching a rule's source matchers fires, alerts matching
its target matchers with the same values for every ``equal`` label are muted (Alertmanager's
semantics; an alert never inhibits itself)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Self

from pydantic import Field, model_validator

from pudimd.alerting.alert import Alert
from pudimd.alerting.matchers import Matcher, MatcherList, from_legacy, matches_all
from pudimd.settings import StrictModel

__all__ = ["InhibitRuleConfig", "Inhibitor"]


class InhibitRuleConfig(StrictModel):
    """One entry of ``inhibit_rules``."""

    source_matchers: MatcherList = Field(default_factory=list)
    target_matchers: MatcherList = Field(default_factory=list)
    source_match: dict[str, str] | None = Field(None, description="Deprecated: source_matchers")
    source_match_re: dict[str, str] | None = Field(None, description="Deprecated: source_matchers")
    target_match: dict[str, str] | None = Field(None, description="Deprecated: target_matchers")
    target_match_re: dict[str, str] | None = Field(None, description="Deprecated: target_matchers")
    equal: list[str] = Field(
        default_factory=list, description="Labels whose values source and target must share"
    )

    @model_validator(mode="after")
    def _legacy(self) -> Self:
        source = from_legacy(self.source_match, self.source_match_re)
        target = from_legacy(self.target_match, self.target_match_re)
        if source:
            object.__setattr__(self, "source_matchers", [*self.source_matchers, *source])
        if target:
            object.__setattr__(self, "target_matchers", [*self.target_matchers, *target])
        return self


@dataclass(frozen=True, slots=True)
class _Rule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


class Inhibitor:
    """Answers "which firing alerts inhibit this one?" from an index rebuilt with
    :meth:`update` whenever the set of firing alerts changes."""

    def __init__(self, rules: Iterable[InhibitRuleConfig]) -> None:
        self._rules = [
            _Rule(tuple(r.source_matchers), tuple(r.target_matchers), tuple(r.equal)) for r in rules
        ]
        # per rule: equal-label values -> fingerprints of firing source alerts
        self._sources: list[dict[tuple[str, ...], list[str]]] = [{} for _ in self._rules]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def update(self, firing: Iterable[Alert]) -> None:
        """Index the currently firing (unresolved) alerts as potential sources."""
        self._sources = [{} for _ in self._rules]
        if not self._rules:
            return
        for alert in firing:
            for rule, index in zip(self._rules, self._sources, strict=True):
                if matches_all(rule.source, alert.labels):
                    key = tuple(alert.labels.get(name, "") for name in rule.equal)
                    index.setdefault(key, []).append(alert.fingerprint)

    def inhibited_by(self, fingerprint: str, labels: Mapping[str, str]) -> list[str]:
        """Fingerprints of the firing alerts inhibiting the alert with ``labels``."""
        found: list[str] = []
        for rule, index in zip(self._rules, self._sources, strict=True):
            if not index or not matches_all(rule.target, labels):
                continue
            key = tuple(labels.get(name, "") for name in rule.equal)
            for source in index.get(key, ()):
                if source != fingerprint and source not in found:
                    found.append(source)
        return found
