from __future__ import annotations

import math
import random

import pytest

from pudimd.store.sketch import Sketch


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@pytest.mark.parametrize("q", [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0])
@pytest.mark.parametrize(
    "distribution",
    [
        lambda rng: rng.lognormvariate(-3, 1.5),  # latencies: ms to seconds, long tail
        lambda rng: rng.uniform(0.001, 10.0),
        lambda rng: rng.expovariate(20.0),
    ],
)
def test_quantiles_are_within_relative_accuracy(distribution: object, q: float) -> None:
    rng = random.Random(42)
    values = [distribution(rng) for _ in range(20_000)]  # type: ignore[operator]
    sketch = Sketch(accuracy=0.01)
    for value in values:
        sketch.add(value)
    exact = exact_quantile(values, q)
    assert sketch.quantile(q) == pytest.approx(exact, rel=0.0101)


def test_merged_sketches_answer_like_one_sketch_of_all_values() -> None:
    rng = random.Random(7)
    parts = [[rng.lognormvariate(-2, 1) for _ in range(1000)] for _ in range(5)]
    merged = Sketch()
    for part in parts:
        sketch = Sketch()
        for value in part:
            sketch.add(value)
        merged.merge(sketch)
    everything = [v for part in parts for v in part]
    assert merged.count == len(everything)
    assert merged.min == min(everything)
    assert merged.max == max(everything)
    for q in (0.5, 0.95, 0.99):
        assert merged.quantile(q) == pytest.approx(exact_quantile(everything, q), rel=0.0101)


def test_small_samples_give_the_value_of_the_rank() -> None:
    sketch = Sketch()
    for ms in range(1, 101):
        sketch.add(ms / 1000)
    assert sketch.quantile(0.5) == pytest.approx(0.050, rel=0.01)
    assert sketch.quantile(0.95) == pytest.approx(0.095, rel=0.01)
    assert sketch.quantile(1.0) == 0.1
    assert sketch.quantile(0.0) == 0.001


def test_zero_negative_and_nan_values() -> None:
    sketch = Sketch()
    sketch.add(0.0)
    sketch.add(-1.0)
    sketch.add(float("nan"))
    sketch.add(2.0)
    assert sketch.count == 3
    assert sketch.zeros == 2
    assert sketch.quantile(0.0) == 0.0
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(1.0) == 2.0


def test_serialization_round_trips() -> None:
    sketch = Sketch()
    for value in (0.0, 0.001, 0.002, 0.5, 3.0, 3.0):
        sketch.add(value)
    copy = Sketch.from_json(sketch.to_json())
    assert copy.bins == sketch.bins
    assert (copy.count, copy.zeros, copy.min, copy.max) == (6, 1, 0.0, 3.0)
    assert copy.quantile(0.5) == sketch.quantile(0.5)
    empty = Sketch.from_json(Sketch().to_json())
    assert empty.count == 0


def test_serialized_form_is_small() -> None:
    sketch = Sketch()
    rng = random.Random(1)
    for _ in range(10_000):
        sketch.add(rng.lognormvariate(-3, 0.5))
    assert len(sketch.to_json()) < 2500


@pytest.mark.parametrize("text", ["", "{}", "[1]", '{"a": 2, "z": 0, "b": []}', "not json"])
def test_garbage_is_not_a_sketch(text: str) -> None:
    with pytest.raises(ValueError, match="not a serialized sketch"):
        Sketch.from_json(text)


def test_empty_sketch_has_no_quantile() -> None:
    with pytest.raises(ValueError, match="empty"):
        Sketch().quantile(0.5)


def test_sketches_of_different_accuracy_do_not_merge() -> None:
    with pytest.raises(ValueError, match="accuracy"):
        Sketch(0.01).merge(Sketch(0.02))
