"""Blackbox metrics as Prometheus text (format 0.0.4), and the ``debug=true`` page.

Families are sorted by name and samples by label values, floats are written the way Go's
``strconv.FormatFloat(v, 'g', -1, 64)`` writes them, so the output reads like
blackbox_exporter's, byte for byte where the values agree.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from decimal import Decimal

from pudimd.blackbox import Metric

__all__ = ["CONTENT_TYPE", "debug_page", "format_value", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def format_value(value: float) -> str:
    """``value`` as Go's shortest ``%g``: ``200``, ``0.0016``, ``1.44541248e+09``."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-4 <= magnitude < 1e6:
        # Go and Python agree here: shortest round-trip digits, no exponent (repr switches
        # to an exponent below 1e-4 as Go does, and above 1e16 where Go already has at 1e6)
        return str(int(value)) if value.is_integer() else repr(value)
    return _format_digits(value)


@functools.lru_cache(maxsize=4096)  # the big values (hashes, timestamps) repeat per target
def _format_digits(value: float) -> str:
    """Go's shortest ``%g`` spelled out from the shortest round-trip digits (any finite,
    non-zero value; :func:`format_value` takes a faster road where it can)."""
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    exp = len(digits) + exponent - 1  # decimal exponent of the first digit
    minus = "-" if sign else ""
    if exp < -4 or exp >= 6:  # Go switches to %e at these exponents
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{minus}0.{'0' * (-exp - 1)}{text}"
    if len(text) <= exp + 1:
        return f"{minus}{text}{'0' * (exp + 1 - len(text))}"
    return f"{minus}{text[: exp + 1]}.{text[exp + 1 :]}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


@functools.lru_cache(maxsize=256)
def _header(name: str, help_text: str, kind: str) -> str:
    return f"# HELP {name} {_escape_help(help_text)}\n# TYPE {name} {kind}\n"


def render(metrics: Iterable[Metric]) -> str:
    """The samples as exposition text: one ``# HELP``/``# TYPE`` per family (the first
    sample's), families by name, samples by label values; a repeated sample keeps the
    first value."""
    families: dict[str, list[Metric]] = {}
    for metric in metrics:
        families.setdefault(metric.name, []).append(metric)
    out: list[str] = []
    for name in sorted(families):
        samples = families[name]
        head = samples[0]
        out.append(_header(name, head.help, head.type))
        if len(samples) == 1 and not head.labels:  # most families: one unlabelled sample
            out.append(f"{name} {format_value(head.value)}\n")
            continue
        seen: set[tuple[tuple[str, str], ...]] = set()
        keyed = [(tuple(sorted(m.labels.items())), m) for m in samples]
        keyed.sort(key=lambda item: [v for _k, v in item[0]])
        for key, metric in keyed:
            if key in seen:
                continue
            seen.add(key)
            if key:
                labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in key)
                out.append(f"{name}{{{labels}}} {format_value(metric.value)}\n")
            else:
                out.append(f"{name} {format_value(metric.value)}\n")
    return "".join(out)


def debug_page(logs: Iterable[str], metrics: Iterable[Metric], module_yaml: str) -> str:
    """blackbox's ``debug=true`` layout: the probe's log lines, the metrics, the module."""
    log_text = "".join(f"{line}\n" for line in logs)
    return (
        f"Logs for the probe:\n{log_text}"
        f"\n\n\nMetrics that would have been returned:\n{render(metrics)}"
        f"\n\n\nModule configuration:\n{module_yaml}"
    )
