"""The distinct-request sketch: close to the exact count, exact where a set would be
(idempotent, order-free, merge is union), and a hash that does not change between
processes or with the batch an id arrives in."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.models.windows.distinct import DistinctCounter, M, request_hashes

ids = st.lists(st.text(min_size=1, max_size=40), max_size=400)


def sketch(values: list[str]) -> DistinctCounter:
    counter = DistinctCounter()
    counter.add(values)
    return counter


@settings(max_examples=200, deadline=None)
@given(ids)
def test_small_sets_are_counted_almost_exactly(values: list[str]) -> None:
    exact = len(set(values))
    assert abs(sketch(values).estimate() - exact) <= max(1.0, 0.05 * exact)


@pytest.mark.parametrize("n", [2_000, 20_000, 200_000])
def test_large_sets_are_within_the_stated_error(n: int) -> None:
    errors = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        values = [f"{seed}-{i}" for i in rng.permutation(n)]
        values += values[: n // 10]  # a tenth repeated: distinct stays n
        errors.append(sketch(values).estimate() / n - 1)
    assert abs(float(np.mean(errors))) < 0.01  # unbiased
    assert float(np.std(errors)) < 2 * 1.04 / np.sqrt(M)  # ~1.6 % standard error


@settings(max_examples=100, deadline=None)
@given(ids, ids)
def test_repeats_order_and_merge_change_nothing_a_set_would_not(a: list[str],
                                                                 b: list[str]) -> None:
    both = sketch(a + b)
    merged = sketch(a)
    merged.merge(sketch(b))
    again = sketch(a + b)
    again.add(b + a)  # every id again, in another order
    assert np.array_equal(both.registers, merged.registers)
    assert np.array_equal(both.registers, again.registers)
    assert np.array_equal(both.registers, sketch(list(reversed(a + b))).registers)


def test_an_id_hashes_the_same_in_any_batch_and_any_process() -> None:
    alone = request_hashes(["r-1"])[0]
    assert request_hashes(["r-1", "a-much-longer-request-id-" * 5])[0] == alone
    code = ("from driftline.models.windows.distinct import request_hashes;"
            "print(int(request_hashes(['r-1', 'ü-2'])[0]), int(request_hashes(['ü-2'])[0]))")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2")}
    assert outputs == {f"{int(alone)} {int(request_hashes(['ü-2'])[0])}\n"}


def test_registers_round_trip_and_wrong_sizes_are_refused() -> None:
    counter = sketch([f"r{i}" for i in range(1000)])
    assert DistinctCounter(counter.registers).estimate() == counter.estimate()
    with pytest.raises(ValueError, match="4096 registers"):
        DistinctCounter(np.zeros(10, dtype=np.uint8))
    assert DistinctCounter().estimate() == 0.0
