"""State records: whatever a state's ``to_state()`` holds comes back equal (arrays with
their dtype), far smaller than the JSON it replaces, and foreign bytes are refused."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from driftline.models.state_codec import StateFormatError, decode, encode

_INTS = st.sampled_from([np.int64, np.int32, np.uint8, np.uint64, np.int16])
_ARRAYS = st.one_of(
    hnp.arrays(_INTS, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=20)),
    hnp.arrays(st.sampled_from([np.float64, np.float32]),
               hnp.array_shapes(min_dims=1, max_dims=1, min_side=0, max_side=50),
               elements=st.floats(allow_nan=True, width=32)),
)
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                    st.floats(allow_nan=False), st.text(max_size=10), _ARRAYS)
_TREES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=5)),
    max_leaves=30)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b) and type(a) is type(b)


@given(_TREES)
def test_every_tree_comes_back_equal(tree: Any) -> None:
    assert _same(tree, decode(encode(tree)))


@given(hnp.arrays(np.int64, st.integers(0, 200), elements=st.integers(-2**40, 2**40)))
def test_integer_arrays_come_back_as_int64_whatever_they_were_stored_as(counts: Any) -> None:
    back = decode(encode({"counts": counts}))["counts"]
    assert back.dtype == np.int64 and np.array_equal(back, counts)
    back[:1] = 7  # writable, like the array it replaces


def test_a_histogram_record_is_far_smaller_than_its_json() -> None:
    rng = np.random.default_rng(1)
    state = [{"edges": np.linspace(-3, 3, 101), "counts": rng.poisson(5, 102),
              "sketch": np.bincount(rng.integers(0, 400, 2000), minlength=900)}
             for _ in range(25)]
    as_json = orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY)
    assert len(encode(state)) * 2 < len(as_json)


@pytest.mark.parametrize("data", [b"", b"{}", b'{"windows": []}', b"DLS1not zlib"])
def test_foreign_bytes_are_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(StateFormatError):
        decode(data)


def test_an_array_that_recurs_is_stored_once_and_comes_back_as_copies() -> None:
    edges = np.linspace(-3.0, 3.0, 101)
    windows = [{"edges": edges.copy(), "counts": np.arange(i, i + 102)} for i in range(50)]
    once = len(encode({"edges": edges}))
    assert len(encode(windows)) < len(encode([w["counts"] for w in windows])) + 2 * once
    back = decode(encode(windows))
    back[0]["edges"][0] = 99.0
    assert back[1]["edges"][0] == -3.0 and back[1]["edges"].flags.writeable
