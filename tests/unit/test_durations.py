from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from pudimd.durations import Duration, PositiveDuration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        (45, 45),
        ("1.5s", 1.5),
        ("2", 2),
    ],
)
def test_parse_duration_accepts_prometheus_forms(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["5x", "", "m5", "1h 30m", "-5s", True, "5 minutes"])
def test_parse_duration_rejects_garbage(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for text in ["250ms", "30s", "1h30m", "1d2h", "0s"]:
        assert format_duration(parse_duration(text)) == text


def test_positive_duration_refuses_zero_and_negative() -> None:
    adapter = TypeAdapter(PositiveDuration)
    with pytest.raises(ValidationError, match="greater than zero"):
        adapter.validate_python("0s")
    with pytest.raises(ValidationError, match="negative"):
        adapter.validate_python("-1s")
    assert TypeAdapter(Duration).validate_python("0s") == timedelta(0)


def test_duration_serializes_as_config_text() -> None:
    assert TypeAdapter(Duration).dump_json(timedelta(minutes=5)) == b'"5m"'
