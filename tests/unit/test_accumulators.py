"""Properties of the window accumulators, and one contract every accumulator keeps."""

from __future__ import annotations

import inspect
import math
import pickle
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from driftline.models.windows.accumulators import (
    CategoricalAccumulator,
    NumericAccumulator,
    NumericSummary,
    edges_from_sample,
    update_rows,
)
from driftline.models.windows.sketch import QuantileSketch

LEVELS = (0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0)
FAST = settings(max_examples=60, deadline=None)
BOUND = 1e6

_FINITE = st.floats(-BOUND, BOUND)
_NUMERIC = st.one_of(_FINITE, _FINITE, _FINITE, st.just(math.nan))
numeric_arrays = hnp.arrays(np.float64, st.integers(0, 150), elements=_NUMERIC)
edge_arrays = st.lists(st.floats(-BOUND, BOUND), min_size=1, max_size=12, unique=True).map(
    lambda xs: np.array(sorted(xs))
)
_CATEGORY = st.one_of(st.sampled_from(["a", "b", "c", "é", "", "zz"]), st.just(None))
category_arrays = st.lists(_CATEGORY, max_size=80).map(lambda xs: np.array(xs, dtype=object))


def splits(values: np.ndarray, data: st.DataObject) -> list[np.ndarray]:
    cuts = data.draw(st.lists(st.integers(0, len(values)), max_size=4).map(sorted))
    return np.split(values, cuts)


def json_round_trip(state: dict[str, Any]) -> Any:
    return orjson.loads(orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY))


def moment_tolerance(values: np.ndarray) -> dict[str, float]:
    present = values[np.isfinite(values)]
    scale = float(np.max(np.abs(present))) if present.size else 1.0
    return {"rel": 1e-9, "abs": 1e-9 * max(scale, 1.0) ** 2}


def assert_summaries_equal(a: NumericSummary, b: NumericSummary, **tolerance: float) -> None:
    assert (a.count, a.missing_count) == (b.count, b.missing_count)
    np.testing.assert_array_equal(a.bin_counts, b.bin_counts)
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    np.testing.assert_array_equal([a.min, a.max], [b.min, b.max])
    for name in ("mean", "variance"):
        x, y = getattr(a, name), getattr(b, name)
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, **tolerance), name


def test_modules_import_no_client_library() -> None:
    code = (
        "import sys, driftline.models.windows.sketch, driftline.models.windows.accumulators\n"
        "bad = ('faust', 'mode', 'aiokafka', 'kafka', 'clickhouse_connect', 'chdb')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- NumericAccumulator ---------------------------------------------------------------


@FAST
@given(numeric_arrays, edge_arrays)
def test_numeric_agrees_with_numpy(values: np.ndarray, edges: np.ndarray) -> None:
    summary = NumericAccumulator(edges).update(values).summary(LEVELS)
    present = values[~np.isnan(values)]
    assert summary.count == values.size
    assert summary.missing_count == values.size - present.size
    expected_bins = np.bincount(
        np.searchsorted(edges, present, side="right"), minlength=edges.size + 1
    )
    np.testing.assert_array_equal(summary.bin_counts, expected_bins)
    assert summary.bin_counts.dtype == np.int64 and summary.bin_counts.size == edges.size + 1
    if present.size == 0:
        assert all(
            math.isnan(x) for x in (summary.mean, summary.variance, summary.min, summary.max)
        )
        assert np.isnan(summary.quantiles).all()
        return
    tolerance = moment_tolerance(values)
    assert summary.mean == pytest.approx(np.mean(present), **tolerance)
    assert summary.variance == pytest.approx(np.var(present), **tolerance)
    assert (summary.min, summary.max) == (present.min(), present.max())
    np.testing.assert_array_equal(
        summary.quantiles, QuantileSketch().update(present).quantiles(LEVELS)
    )


@FAST
@given(st.data(), st.integers(1, 6), st.integers(0, 60))
def test_rows_update_is_each_row_on_its_own(data: st.DataObject, rows: int, n: int) -> None:
    """A window's numeric features are updated as one matrix: each accumulator ends as
    if it had been given its own row, whatever the other rows hold (missing or not)."""
    matrix = data.draw(hnp.arrays(np.float64, (rows, n), elements=_NUMERIC))
    edges = [data.draw(edge_arrays) for _ in range(rows)]
    fine = [data.draw(st.one_of(st.just(None), edge_arrays)) for _ in range(rows)]
    together = [NumericAccumulator(e, fine_edges=f) for e, f in zip(edges, fine, strict=True)]
    alone = [NumericAccumulator(e, fine_edges=f) for e, f in zip(edges, fine, strict=True)]
    for accs in (together, alone):  # earlier values too: the update adds to a state
        update_rows(accs, matrix[:, : n // 2])
    update_rows(together, matrix[:, n // 2 :])
    for acc, row in zip(alone, matrix[:, n // 2 :], strict=True):
        acc.update(row)
    for a, b, row in zip(together, alone, matrix, strict=True):
        assert_summaries_equal(a.summary(LEVELS), b.summary(LEVELS), **moment_tolerance(row))
        np.testing.assert_array_equal(a.summary(LEVELS).fine_bin_counts,
                                      b.summary(LEVELS).fine_bin_counts)
        present = row[np.isfinite(row)]
        expected_fine = (np.bincount(np.searchsorted(a.fine_edges, present, side="right"),
                                     minlength=a.fine_edges.size + 1) if a.fine_edges.size
                         else np.zeros(1, dtype=np.int64))
        np.testing.assert_array_equal(a.summary(LEVELS).fine_bin_counts, expected_fine)


def test_bin_layout_is_underflow_regular_overflow() -> None:
    acc = NumericAccumulator(np.array([0.0, 1.0, 2.0]))
    acc.update(np.array([-5.0, 0.0, 0.5, 1.0, 1.999, 2.0, 7.0]))
    np.testing.assert_array_equal(acc.summary([]).bin_counts, [1, 2, 2, 2])


@FAST
@given(numeric_arrays, edge_arrays, st.data())
def test_numeric_batching_and_merging_agree(
    values: np.ndarray, edges: np.ndarray, data: st.DataObject
) -> None:
    whole = NumericAccumulator(edges).update(values)
    batched = NumericAccumulator(edges)
    merged = NumericAccumulator(edges)
    for part in splits(values, data):
        batched.update(part)
        merged.merge(NumericAccumulator(edges).update(part))
    tolerance = moment_tolerance(values)
    assert_summaries_equal(batched.summary(LEVELS), whole.summary(LEVELS), **tolerance)
    assert_summaries_equal(merged.summary(LEVELS), whole.summary(LEVELS), **tolerance)


def test_moments_are_numerically_stable() -> None:
    values = 1e9 + np.random.default_rng(3).normal(size=10_000)
    acc = NumericAccumulator(np.array([0.0]))
    for part in np.array_split(values, 100):
        acc.merge(NumericAccumulator(np.array([0.0])).update(part))
    assert acc.summary([]).variance == pytest.approx(np.var(values), rel=1e-6)


@FAST
@given(numeric_arrays, edge_arrays)
def test_numeric_state_round_trips_through_json(values: np.ndarray, edges: np.ndarray) -> None:
    acc = NumericAccumulator(edges, relative_accuracy=0.02).update(values)
    restored = NumericAccumulator.from_state(json_round_trip(acc.to_state()))
    assert_summaries_equal(restored.summary(LEVELS), acc.summary(LEVELS), rel=0.0, abs=0.0)
    np.testing.assert_array_equal(restored.edges, acc.edges)


def test_infinities_count_as_missing() -> None:
    acc = NumericAccumulator(np.array([0.0])).update(np.array([np.inf, -np.inf, np.nan, 2.0]))
    summary = acc.summary([0.5])
    assert (summary.count, summary.missing_count, summary.mean, summary.max) == (4, 3, 2.0, 2.0)
    np.testing.assert_array_equal(summary.bin_counts, [0, 1])


def test_extreme_values_do_not_raise() -> None:
    big = np.finfo(np.float64).max
    acc = NumericAccumulator(np.array([-1e300, 1e300])).update(np.array([big, -big, 1.0, big]))
    summary = acc.summary([0.0, 1.0])
    assert (summary.min, summary.max) == (-big, big)
    assert summary.quantiles.tolist() == [-big, big]
    np.testing.assert_array_equal(summary.bin_counts, [1, 1, 2])
    NumericAccumulator.from_state(json_round_trip(acc.to_state()))  # non-finite moments


def test_empty_summary_is_defined() -> None:
    for acc in (NumericAccumulator(np.array([1.0, 2.0])), NumericAccumulator(np.array([]))):
        summary = acc.update(np.array([np.nan])).summary(LEVELS)
        assert (summary.count, summary.missing_count) == (1, 1)
        assert math.isnan(summary.mean) and math.isnan(summary.variance)
        assert math.isnan(summary.min) and math.isnan(summary.max)
        assert np.isnan(summary.quantiles).all() and not summary.bin_counts.any()


def test_summary_is_read_only() -> None:
    summary = NumericAccumulator(np.array([0.0])).update(np.array([1.0])).summary([0.5])
    with pytest.raises(ValueError):
        summary.bin_counts[0] = 5
    with pytest.raises(AttributeError):
        summary.count = 3  # type: ignore[misc]


@pytest.mark.parametrize("edges", [[1.0, 1.0], [2.0, 1.0], [0.0, np.inf], [[0.0, 1.0]]])
def test_rejects_bad_edges(edges: list[Any]) -> None:
    with pytest.raises(ValueError, match="edges"):
        NumericAccumulator(np.array(edges))


def test_merge_rejects_other_edges() -> None:
    with pytest.raises(ValueError, match="edges"):
        NumericAccumulator(np.array([0.0])).merge(NumericAccumulator(np.array([1.0])))


@FAST
@given(numeric_arrays, edge_arrays)
def test_set_edges_matches_edges_from_the_start(values: np.ndarray, edges: np.ndarray) -> None:
    late = NumericAccumulator(np.array([])).update(values)
    assert late.summary([]).bin_counts.tolist() == [np.count_nonzero(~np.isnan(values))]
    late.set_edges(edges, values[::-1])
    early = NumericAccumulator(edges).update(values)
    assert_summaries_equal(late.summary(LEVELS), early.summary(LEVELS), rel=0.0, abs=0.0)
    with pytest.raises(ValueError, match="already"):
        late.set_edges(edges, values)


def test_set_edges_rejects_values_not_added() -> None:
    acc = NumericAccumulator(np.array([])).update(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="finite values"):
        acc.set_edges(np.array([0.0]), np.array([1.0]))


# -- edges_from_sample ----------------------------------------------------------------


@FAST
@given(
    hnp.arrays(np.float64, st.integers(1, 200), elements=st.floats(allow_nan=False)),
    st.integers(1, 30),
)
def test_edges_are_finite_increasing_and_cover_the_sample(values: np.ndarray, n_bins: int) -> None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        with pytest.raises(ValueError):
            edges_from_sample(values, n_bins)
        return
    edges = edges_from_sample(values, n_bins)
    assert edges.dtype == np.float64 and np.isfinite(edges).all()
    assert 2 <= edges.size <= n_bins + 1 and np.all(edges[1:] > edges[:-1])
    bins = np.searchsorted(edges, finite, side="right")
    if finite.max() < np.finfo(np.float64).max:  # no finite float above the largest one
        assert bins.min() >= 1 and bins.max() <= edges.size - 1


def test_edges_are_equal_frequency() -> None:
    sample = np.random.default_rng(5).normal(size=10_000)
    edges = edges_from_sample(sample, n_bins=10)
    counts = NumericAccumulator(edges).update(sample).summary([]).bin_counts
    assert counts[0] == counts[-1] == 0
    assert np.all(np.abs(counts[1:-1] - 1_000) <= 1)


@pytest.mark.parametrize("value", [0.0, -7.25, 1e300, np.finfo(np.float64).max])
def test_constant_sample_gives_two_edges(value: float) -> None:
    edges = edges_from_sample(np.full(50, value), n_bins=10)
    assert edges.size == 2 and np.isfinite(edges).all() and edges[0] < edges[1]
    assert value in edges


def test_edges_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        edges_from_sample(np.array([1.0]), 0)
    with pytest.raises(ValueError, match="finite"):
        edges_from_sample(np.array([np.nan, np.inf]), 3)


# -- CategoricalAccumulator -----------------------------------------------------------


@FAST
@given(category_arrays, st.data())
def test_categorical_agrees_with_counter_under_any_batching(
    values: np.ndarray, data: st.DataObject
) -> None:
    expected = Counter(v for v in values.tolist() if v is not None)
    whole = CategoricalAccumulator().update(values)
    batched = CategoricalAccumulator()
    merged = CategoricalAccumulator()
    for part in splits(values, data):
        batched.update(part)
        merged.merge(CategoricalAccumulator().update(part))
    for acc in (whole, batched, merged):
        assert acc.category_counts == dict(expected)
        assert (acc.count, acc.missing_count, acc.untracked_count) == (
            values.size,
            values.size - sum(expected.values()),
            0,
        )


@FAST
@given(category_arrays, st.integers(0, 3), st.integers(0, 8), st.data())
def test_categorical_cap_keeps_totals_exact(
    values: np.ndarray, max_tracked: int, k: int, data: st.DataObject
) -> None:
    true_counts = Counter(v for v in values.tolist() if v is not None)
    acc = CategoricalAccumulator(max_tracked)
    for part in splits(values, data):
        acc.merge(CategoricalAccumulator(max_tracked).update(part))
    tracked = acc.category_counts
    assert len(tracked) <= max_tracked
    assert all(n <= true_counts[c] for c, n in tracked.items())
    assert sum(tracked.values()) + acc.untracked_count == sum(true_counts.values())
    categories, counts, other = acc.top_k(k)
    assert len(categories) == counts.size == min(k, len(tracked))
    assert int(counts.sum()) + other == acc.count - acc.missing_count


def test_cap_admits_frequent_categories_first() -> None:
    acc = CategoricalAccumulator(max_tracked=2)
    acc.update(np.array(["c", "a", "b", "b", "c", "c"], dtype=object))
    assert acc.category_counts == {"c": 3, "b": 2} and acc.untracked_count == 1
    acc.update(np.array(["a", "b"], dtype=object))
    assert acc.category_counts == {"c": 3, "b": 3} and acc.untracked_count == 2


def test_categorical_accepts_numpy_string_arrays() -> None:
    acc = CategoricalAccumulator().update(np.array(["b", "a", "b"]))
    acc.update(np.array([], dtype=object))
    assert acc.category_counts == {"a": 1, "b": 2} and acc.count == 3
    assert all(type(c) is str for c in acc.to_state()["categories"])


def test_top_k_orders_by_count_then_name() -> None:
    acc = CategoricalAccumulator().update(np.array([*"bbaaccd", None], dtype=object))
    categories, counts, other = acc.top_k(3)
    assert (categories, counts.tolist(), other) == (["a", "b", "c"], [2, 2, 2], 1)
    assert counts.dtype == np.int64
    for top, k in ((acc.top_k(0), 7), (CategoricalAccumulator().top_k(5), 0)):
        assert (top[0], top[1].size, top[2]) == ([], 0, k)


@FAST
@given(category_arrays, st.integers(0, 4))
def test_categorical_state_round_trips_through_json(values: np.ndarray, max_tracked: int) -> None:
    acc = CategoricalAccumulator(max_tracked).update(values)
    restored = CategoricalAccumulator.from_state(json_round_trip(acc.to_state()))
    assert restored.category_counts == acc.category_counts
    assert (restored.count, restored.missing_count, restored.untracked_count) == (
        acc.count,
        acc.missing_count,
        acc.untracked_count,
    )
    assert restored.max_tracked == max_tracked


# -- the contract every accumulator keeps ----------------------------------------------


def _numeric_batch(rng: np.random.Generator) -> np.ndarray:
    values = rng.normal(size=int(rng.integers(0, 300))) * 10
    values[rng.random(values.size) < 0.1] = np.nan
    return values


def _categorical_batch(rng: np.random.Generator) -> np.ndarray:
    choices = np.array(["x", "y", "z", None, "w"], dtype=object)
    return rng.choice(choices, size=int(rng.integers(0, 300)))


def _sketch_batch(rng: np.random.Generator) -> np.ndarray:
    return rng.lognormal(size=int(rng.integers(0, 300))) * rng.choice([-1.0, 0.0, 1.0])


Factory = Callable[[], Any]
Batch = Callable[[np.random.Generator], np.ndarray]
CONTRACT: list[tuple[type, Factory, Batch]] = [
    (QuantileSketch, lambda: QuantileSketch(max_bins=64), _sketch_batch),
    (NumericAccumulator, lambda: NumericAccumulator(np.array([-5.0, 0.0, 5.0])), _numeric_batch),
    # Past its cap, which categories a CategoricalAccumulator tracks depends on arrival
    # order, so associativity is only promised below the cap (5 categories here).
    (CategoricalAccumulator, lambda: CategoricalAccumulator(max_tracked=5), _categorical_batch),
]
contract = pytest.mark.parametrize(
    ("cls", "factory", "batch"), CONTRACT, ids=[cls.__name__ for cls, _, _ in CONTRACT]
)


def assert_states_close(a: Any, b: Any, path: str = "state") -> None:
    """Exact for ints, strings and arrays; floats to 1e-12 relative (merge order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_states_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-12, nan_ok=True), path
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)


def _filled(factory: Factory, batch: Batch, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    acc = factory()
    for _ in range(3):
        assert acc.update(batch(rng)) is acc
    return acc


@contract
@pytest.mark.parametrize("seed", range(5))
def test_contract_pickle_round_trip(cls: type, factory: Factory, batch: Batch, seed: int) -> None:
    acc = _filled(factory, batch, seed)
    restored = pickle.loads(pickle.dumps(acc))
    assert type(restored) is cls
    assert_states_close(restored.to_state(), acc.to_state())
    restored_from_json = cls.from_state(json_round_trip(acc.to_state()))
    assert_states_close(restored_from_json.to_state(), acc.to_state())


@contract
@pytest.mark.parametrize("seed", range(5))
def test_contract_merge_is_associative(
    cls: type, factory: Factory, batch: Batch, seed: int
) -> None:
    def filled(offset: int) -> Any:
        return _filled(factory, batch, 10 * seed + offset)

    left = filled(0).merge(filled(1)).merge(filled(2))
    right = filled(0).merge(filled(1).merge(filled(2)))
    assert_states_close(left.to_state(), right.to_state())
    empty = factory()
    assert empty.merge(filled(0)) is empty
    assert_states_close(empty.to_state(), filled(0).to_state())


@contract
def test_contract_defaults_not_mutable(cls: type, factory: Factory, batch: Batch) -> None:
    for parameter in inspect.signature(cls).parameters.values():
        default = parameter.default
        immutable = int | float | str | tuple | None
        assert default is inspect.Parameter.empty or isinstance(default, immutable)
    first, second = factory(), factory()
    first.update(batch(np.random.default_rng(0)))
    assert_states_close(second.to_state(), factory().to_state())
    state = first.to_state()
    for value in state.values():  # to_state hands out copies
        if isinstance(value, np.ndarray) and value.size:
            value[...] = 0
    assert_states_close(first.to_state(), _filled_once(factory, batch))


def _filled_once(factory: Factory, batch: Batch) -> Any:
    return factory().update(batch(np.random.default_rng(0))).to_state()


def test_fine_histogram_counts_on_its_own_edges_and_survives_merge_and_state() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=500)
    fine = np.quantile(x, np.linspace(0, 1, 21))
    a = NumericAccumulator(np.array([-1.0, 1.0]), fine_edges=fine).update(x[:200])
    b = NumericAccumulator(np.array([-1.0, 1.0]), fine_edges=fine).update(x[200:])
    merged = a.merge(b)
    expected = np.bincount(np.searchsorted(fine, x, side="right"), minlength=fine.size + 1)
    assert merged.summary([0.5]).fine_bin_counts.tolist() == expected.tolist()
    again = NumericAccumulator.from_state(orjson.loads(orjson.dumps(
        merged.to_state(), option=orjson.OPT_SERIALIZE_NUMPY)))
    assert again.summary([0.5]).fine_bin_counts.tolist() == expected.tolist()


def test_set_edges_can_add_a_fine_histogram() -> None:
    x = np.array([0.1, 0.5, 0.9, 2.0])
    acc = NumericAccumulator(np.empty(0)).update(x)
    acc.set_edges(np.array([0.0, 1.0]), x, fine_edges=np.array([0.0, 0.5, 1.0]))
    s = acc.summary([0.5])
    assert s.bin_counts.tolist() == [0, 3, 1]
    assert s.fine_bin_counts.tolist() == [0, 1, 2, 1]


def test_reference_categories_are_always_tracked_and_hidden_when_unseen() -> None:
    acc = CategoricalAccumulator(max_tracked=3, tracked=["ref_a", "ref_b"])
    acc.update(np.array(["x", "y", "z", "ref_b"], dtype=object))
    assert acc.category_counts["ref_b"] == 1 and acc.category_counts["ref_a"] == 0
    assert acc.untracked_count == 2  # only one slot was left for new categories
    assert acc.top_k(5)[0] == ["ref_b", "x"]
