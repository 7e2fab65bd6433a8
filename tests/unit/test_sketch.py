"""Properties of the DDSketch-style QuantileSketch."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from driftline.models.windows.sketch import QuantileSketch

LEVELS = np.linspace(0.0, 1.0, 41)
FAST = settings(max_examples=60, deadline=None)

# Magnitudes a sketch indexes (zero aside): normal floats, signs mixed, huge range.
_MAGNITUDE = st.floats(min_value=1e-300, max_value=1e300)
_VALUE = st.one_of(_MAGNITUDE, _MAGNITUDE.map(lambda x: -x), st.just(0.0))
values_arrays = hnp.arrays(np.float64, st.integers(1, 200), elements=_VALUE)
moderate_arrays = hnp.arrays(
    np.float64,
    st.integers(1, 200),
    elements=st.one_of(st.floats(-1e6, -1e-6), st.floats(1e-6, 1e6), st.just(0.0)),
)


def exact_quantiles(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The documented definition: the value of rank floor(q * (n - 1))."""
    ranks = np.floor((values.size - 1) * levels).astype(np.intp)
    return np.sort(values)[ranks]


def assert_within(estimates: np.ndarray, exact: np.ndarray, accuracy: float) -> None:
    error = np.abs(estimates - exact)
    assert np.all(error <= accuracy * np.abs(exact) * (1 + 1e-9)), (estimates, exact)


def splits(values: np.ndarray, data: st.DataObject) -> list[np.ndarray]:
    cuts = data.draw(st.lists(st.integers(0, values.size), max_size=4).map(sorted))
    return np.split(values, cuts)


def assert_states_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def test_exact_definition_is_numpy_lower() -> None:
    values = np.random.default_rng(0).normal(size=101)
    np.testing.assert_array_equal(
        exact_quantiles(values, LEVELS), np.quantile(values, LEVELS, method="lower")
    )


@FAST
@given(values_arrays, st.sampled_from([0.005, 0.01, 0.05]))
def test_quantiles_within_relative_accuracy(values: np.ndarray, accuracy: float) -> None:
    sketch = QuantileSketch(accuracy, max_bins=200_000).update(values)
    assert sketch.count == values.size
    assert_within(sketch.quantiles(LEVELS), exact_quantiles(values, LEVELS), accuracy)


@FAST
@given(moderate_arrays)
def test_default_sketch_accurate_on_twelve_decades(values: np.ndarray) -> None:
    sketch = QuantileSketch().update(values)
    assert_within(sketch.quantiles(LEVELS), exact_quantiles(values, LEVELS), 0.01)


@FAST
@given(values_arrays)
def test_quantiles_are_monotone_and_within_range(values: np.ndarray) -> None:
    estimates = QuantileSketch(max_bins=64).update(values).quantiles(LEVELS)
    assert np.all(estimates[1:] >= estimates[:-1])
    assert values.min() <= estimates[0] and estimates[-1] <= values.max()


@pytest.mark.parametrize("value", [-1e300, -3.5, 0.0, 1e-300, 2.0, 1.7e308])
def test_single_value_is_exact(value: float) -> None:
    sketch = QuantileSketch().update(np.array([value]))
    np.testing.assert_array_equal(sketch.quantiles(LEVELS), np.full(LEVELS.size, value))


def test_empty_sketch_gives_nan() -> None:
    sketch = QuantileSketch().update(np.array([]))
    assert sketch.count == 0
    assert np.isnan(sketch.quantiles([0.0, 0.5, 1.0])).all()


def test_subnormals_count_as_zero() -> None:
    sketch = QuantileSketch().update(np.array([5e-324, -1e-310, 0.0, 1.0]))
    assert sketch.to_state()["zero_count"] == 3
    assert sketch.quantiles([0.5]).tolist() == [0.0]


@FAST
@given(values_arrays, st.sampled_from([8, 2048]), st.data())
def test_merge_equals_sketch_of_concatenation(
    values: np.ndarray, max_bins: int, data: st.DataObject
) -> None:
    whole = QuantileSketch(max_bins=max_bins).update(values)
    batched = QuantileSketch(max_bins=max_bins)
    merged = QuantileSketch(max_bins=max_bins)
    for part in splits(values, data):
        batched.update(part)
        merged.merge(QuantileSketch(max_bins=max_bins).update(part))
    assert_states_equal(batched.to_state(), whole.to_state())
    assert_states_equal(merged.to_state(), whole.to_state())


@FAST
@given(values_arrays, values_arrays, values_arrays)
def test_merge_is_associative(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    def sketch(values: np.ndarray) -> QuantileSketch:
        return QuantileSketch(max_bins=16).update(values)

    left = sketch(a).merge(sketch(b)).merge(sketch(c))
    right = sketch(a).merge(sketch(b).merge(sketch(c)))
    assert_states_equal(left.to_state(), right.to_state())


@FAST
@given(st.one_of(values_arrays, st.just(np.array([]))))
def test_state_round_trips_through_json_and_pickle(values: np.ndarray) -> None:
    sketch = QuantileSketch(0.02, max_bins=32).update(values)
    encoded = orjson.dumps(sketch.to_state(), option=orjson.OPT_SERIALIZE_NUMPY)
    for restored in (
        QuantileSketch.from_state(orjson.loads(encoded)),
        pickle.loads(pickle.dumps(sketch)),
    ):
        assert_states_equal(restored.to_state(), sketch.to_state())
        np.testing.assert_array_equal(restored.quantiles(LEVELS), sketch.quantiles(LEVELS))


def test_state_is_bounded_on_a_huge_range() -> None:
    rng = np.random.default_rng(1)
    magnitudes = np.exp(rng.uniform(np.log(1e-300), np.log(1e300), 1_000_000))
    values = magnitudes * rng.choice([-1.0, 1.0], magnitudes.size)
    sketch = QuantileSketch(max_bins=2048)
    for part in np.array_split(values, 7):
        sketch.update(part)
    state = sketch.to_state()
    assert len(state["positive_counts"]) <= 2048
    assert len(state["negative_counts"]) <= 2048
    assert sketch.count == values.size
    # The top 2048 buckets span ~17.8 decades of 600: the highest ~3 % stay accurate,
    # and so do the most negative ones.
    levels = np.array([0.0, 0.005, 0.995, 0.999, 1.0])
    assert_within(sketch.quantiles(levels), exact_quantiles(values, levels), 0.01)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_values(bad: float) -> None:
    sketch = QuantileSketch().update(np.array([1.0]))
    with pytest.raises(ValueError, match="finite"):
        sketch.update(np.array([2.0, bad]))
    assert sketch.count == 1


def test_merge_rejects_other_accuracy() -> None:
    with pytest.raises(ValueError, match="relative accuracy"):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))


@pytest.mark.parametrize("levels", [[-0.1], [1.5], [float("nan")]])
def test_rejects_levels_outside_unit_interval(levels: list[float]) -> None:
    with pytest.raises(ValueError, match="levels"):
        QuantileSketch().update(np.array([1.0])).quantiles(levels)


@pytest.mark.parametrize("kwargs", [{"relative_accuracy": 0.0}, {"max_bins": 0}])
def test_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        QuantileSketch(**kwargs)
