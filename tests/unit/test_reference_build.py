"""Reference profiles from training data, checked against numpy as the oracle."""

from __future__ import annotations

import argparse
import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rich.console import Console

from driftline.models import state_codec
from driftline.models.drift.monitor import _profile
from driftline.models.drift.reference import (
    MAX_REST_CATEGORIES,
    CategoricalReference,
    NumericReference,
    ReferenceProfile,
)
from driftline.models.drift.reference_build import (
    build_profile,
    category_label,
    category_labels,
    frame_columns,
    load_columns,
    profile_from_frame,
)
from driftline.models.windows.accumulators import NumericAccumulator, edges_from_sample
from driftline.models.windows.feature_windows import QUANTILE_LEVELS
from driftline.streams.cli import add_reference_parser
from driftline.streams.reference.profiles import build_command
from driftline.streams.settings import Settings

T0 = 1_764_230_400_000


def build(columns: dict[str, Any], **options: Any) -> ReferenceProfile:
    return build_profile("fraud", "v1", columns, created_at_ms=T0, **options)


def numeric(profile: ReferenceProfile, name: str) -> NumericReference:
    feature = profile.features[name]
    assert isinstance(feature, NumericReference)
    return feature


def categorical(profile: ReferenceProfile, name: str) -> CategoricalReference:
    feature = profile.features[name]
    assert isinstance(feature, CategoricalReference)
    return feature


def histogram(edges: tuple[float, ...], values: np.ndarray) -> list[int]:
    bins = np.searchsorted(np.array(edges), values, side="right")
    return np.bincount(bins, minlength=len(edges) + 1).tolist()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 2_000
    amount = rng.lognormal(3.0, 1.2, n)
    amount[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "amount": amount,
        "age": rng.integers(18, 90, n),
        "n_items": rng.integers(1, 5, n),
        "is_new": rng.random(n) < 0.3,
        "country": rng.choice(np.array(["DE", "FR", "US", "IT", None], dtype=object), n,
                              p=[0.4, 0.3, 0.2, 0.05, 0.05]),
        "merchant": [f"m{i}" for i in rng.integers(0, 500, n)],
        "request_id": [f"r{i}" for i in range(n)],
    })


# -- numeric ----------------------------------------------------------------------


def test_numeric_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(10.0, 3.0, 5_000)
    x[::50] = np.nan
    x[1::97] = np.inf
    feature = numeric(build({"x": x}, coarse_bins=10, fine_bins=100), "x")
    present = x[np.isfinite(x)]
    assert (feature.count, feature.missing_count) == (x.size, x.size - present.size)
    assert feature.edges == tuple(edges_from_sample(present, 10).tolist())
    assert feature.fine_edges == tuple(edges_from_sample(present, 100).tolist())
    assert list(feature.counts) == histogram(feature.edges, present)
    assert list(feature.fine_counts) == histogram(feature.fine_edges, present)
    assert feature.counts[0] == feature.counts[-1] == 0  # reference values are never outside
    expected = np.quantile(present, QUANTILE_LEVELS, method="lower")
    assert feature.quantiles == tuple(expected.tolist())
    assert feature.mean == pytest.approx(present.mean(), rel=1e-12)
    assert feature.std == pytest.approx(present.std(), rel=1e-12)
    assert (feature.min, feature.max) == (present.min(), present.max())


def test_reference_counts_are_what_the_worker_counts_on_the_same_edges() -> None:
    x = np.random.default_rng(5).exponential(2.0, 3_000)
    feature = numeric(build({"x": x}), "x")
    for edges, counts in ((feature.edges, feature.counts),
                          (feature.fine_edges, feature.fine_counts)):
        acc = NumericAccumulator(np.array(edges)).update(x)
        assert acc.summary(QUANTILE_LEVELS).bin_counts.tolist() == list(counts)


def test_huge_values_keep_finite_moments() -> None:
    x = np.array([-1.7e308, 1.7e308] * 20 + list(range(30)), dtype=np.float64)
    feature = numeric(build({"x": x}), "x")
    scale = 1.7e308  # x.std() itself overflows
    assert feature.mean == pytest.approx(scale * np.mean(x / scale), abs=1e295)
    assert feature.std == pytest.approx(scale * np.std(x / scale), rel=1e-12)


# -- categorical ------------------------------------------------------------------


@pytest.mark.parametrize(("value", "label"), [
    ("DE", "DE"), ("", ""), (3, "3"), (3.0, "3"), (-2.0, "-2"), (-0.0, "0"), (True, "1"),
    (False, "0"), (np.int8(7), "7"), (np.uint64(2**63), "9.223372036854776e+18"),
    (0.5, "0.5"), (0.1, "0.1"), (1e16, "1e+16"), (2.0**53 - 1, "9007199254740991"),
    (2.0**53, "9007199254740992.0"), (2.5e-7, "2.5e-07"), (np.float32(0.1), "0.10000000149011612"),
])
def test_category_label(value: Any, label: str) -> None:
    assert category_label(value) == label


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), -np.inf])
def test_missing_values_have_no_category_label(value: Any) -> None:
    with pytest.raises(ValueError, match="missing"):
        category_label(value)


def test_category_labels_agree_with_category_label() -> None:
    x = np.array([1.0, 2.5, np.nan, 1.0, -np.inf, 3.0, 0.0, -0.0])
    assert category_labels(x).tolist() == ["1", "2.5", None, "1", None, "3", "0", "0"]
    assert category_labels(np.array([np.nan])).tolist() == [None]
    assert category_labels(np.array([], dtype=np.float64)).tolist() == []


def test_low_cardinality_numeric_is_categorical() -> None:
    values = np.array([1, 2, 2, 3, 3, 3, 10] * 10, dtype=np.int64)
    profile = build({"ints": values, "floats": values.astype(np.float64),
                     "flags": values > 2, "limit": np.arange(21.0)},
                    categorical_max_distinct=20)
    ints = categorical(profile, "ints")
    assert ints == categorical(profile, "floats")
    assert ints.categories == ("3", "2", "1", "10")
    assert ints.counts == (30, 20, 10, 10)
    assert (ints.other_count, ints.count, ints.missing_count) == (0, 70, 0)
    assert categorical(profile, "flags").categories == ("1", "0")
    assert profile.features["limit"].kind == "numeric"  # 21 distinct values > 20
    limit = build({"limit": np.arange(21.0)}, categorical_max_distinct=21)
    assert limit.features["limit"].kind == "categorical"
    assert build({"x": values}, categorical_max_distinct=0).features["x"].kind == "numeric"


def test_low_cardinality_labels_match_window_labels() -> None:
    values = np.array([0.25, 1.0, 7.0, np.nan, 1.0])
    feature = categorical(build({"x": values}), "x")
    window = [v for v in category_labels(values).tolist() if v is not None]
    assert set(window) == set(feature.categories)


def test_top_k_and_other_are_exact() -> None:
    rng = np.random.default_rng(2)
    values = rng.choice([f"c{i:03d}" for i in range(200)], 10_000).astype(object)
    values[::7] = None
    values[1::13] = np.nan  # pandas' missing marker in string columns
    feature = categorical(build({"c": values}, top_k=20), "c")
    present = [v for v in values.tolist() if isinstance(v, str)]
    names, counts = np.unique(np.array(present), return_counts=True)
    ranked = sorted(zip(names.tolist(), counts.tolist(), strict=True),
                    key=lambda item: (-item[1], item[0]))[:20]
    assert feature.categories == tuple(c for c, _ in ranked)
    assert feature.counts == tuple(n for _, n in ranked)
    assert feature.other_count == len(present) - sum(feature.counts)
    assert (feature.count, feature.missing_count) == (values.size, values.size - len(present))


def test_ties_are_broken_by_name() -> None:
    feature = categorical(build({"c": ["b", "a", "c", "b", "a", "c", "d"]}, top_k=2), "c")
    assert (feature.categories, feature.counts, feature.other_count) == (("a", "b"), (2, 2), 3)


def test_top_k_zero_counts_everything_as_other() -> None:
    feature = categorical(build({"c": ["a", "b", None]}, top_k=0), "c")
    assert (feature.categories, feature.other_count, feature.missing_count) == ((), 2, 1)


# -- missing, kinds, errors -------------------------------------------------------


def test_missing_values_in_every_spelling() -> None:
    profile = build({"x": [1.5, None, float("nan"), 2.5, float("-inf")] * 10,
                     "c": np.array(["a", None, np.nan, "b", "a"] * 10, dtype=object)},
                    categorical_max_distinct=0)
    x = numeric(profile, "x")
    assert (x.count, x.missing_count, x.present, x.min, x.max) == (50, 30, 20, 1.5, 2.5)
    c = categorical(profile, "c")
    assert (c.count, c.missing_count, c.categories, c.counts) == (50, 20, ("a", "b"), (20, 10))


def test_all_missing_columns_are_skipped() -> None:
    profile = build({"none": [None] * 5, "nan": np.full(5, np.nan), "empty": np.array([]),
                     "mixed_missing": [None, float("nan"), None, np.inf, None], "x": [1.0] * 5})
    assert list(profile.features) == ["x"]


def test_constant_column() -> None:
    feature = numeric(build({"x": np.full(100, 4.0)}, categorical_max_distinct=0), "x")
    assert feature.edges == (4.0, np.nextafter(4.0, np.inf))
    assert (feature.counts, feature.std, feature.quantiles) == ((0, 100, 0), 0.0, (4.0,) * 7)


@pytest.mark.parametrize(("column", "match"), [
    (["a", 1.5, "b"], "mixes strings and numbers"),
    ([{"nested": 1}, None], "unsupported values"),
    (np.array(["2026-01-01"], dtype="datetime64[D]"), "unsupported dtype"),
    (np.zeros((2, 2)), "one-dimensional"),
])
def test_unsupported_columns_are_refused(column: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build({"bad": column})


@pytest.mark.parametrize("options", [{"coarse_bins": 0}, {"fine_bins": 0}, {"top_k": -1},
                                     {"categorical_max_distinct": -1}])
def test_bad_options_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        build({"x": [1.0, 2.0]}, **options)


def test_created_at_defaults_to_now() -> None:
    profile = build_profile("m", "v", {"x": [1.0]})
    assert abs(profile.created_at_ms - pd.Timestamp.now("UTC").value // 1_000_000) < 60_000


# -- inputs -----------------------------------------------------------------------


def test_frames_arrays_and_mappings_give_one_profile(frame: pd.DataFrame) -> None:
    from_frame = profile_from_frame("fraud", "v1", frame, exclude={"request_id"},
                                    created_at_ms=T0)
    assert "request_id" not in from_frame.features
    assert from_frame.features["is_new"].kind == "categorical"
    assert from_frame.features["age"].kind == "numeric"
    numbers = frame[["amount", "age", "n_items"]]
    structured = numbers.to_records(index=False)
    assert (profile_from_frame("fraud", "v1", structured, created_at_ms=T0)
            == profile_from_frame("fraud", "v1", numbers, created_at_ms=T0)
            == profile_from_frame("fraud", "v1", {c: numbers[c].tolist() for c in numbers},
                                  created_at_ms=T0))
    with pytest.raises(TypeError):
        frame_columns(np.zeros(3))


def test_pandas_extension_dtypes() -> None:
    frame = pd.DataFrame({
        "ints": pd.array([1, None, 3, 4] * 10, dtype="Int64"),
        "flags": pd.array([True, None, False, True] * 10, dtype="boolean"),
        "text": pd.array(["a", None, "b", "a"] * 10, dtype="string"),
        "cat": pd.Categorical(["x", "y", None, "x"] * 10),
    })
    profile = profile_from_frame("m", "v", frame, created_at_ms=T0)
    assert categorical(profile, "ints").categories == ("1", "3", "4")
    assert categorical(profile, "flags").categories == ("1", "0")
    assert categorical(profile, "text").counts == (20, 10)
    assert categorical(profile, "cat").missing_count == 10


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_file_round_trip(frame: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    else:
        with path.open("wb") as out:
            for row in frame.to_dict(orient="records"):
                out.write(orjson.dumps({k: v for k, v in row.items() if v == v}) + b"\n")
    columns = load_columns(path, exclude={"request_id"})
    assert list(columns) == [c for c in frame.columns if c != "request_id"]
    from_file = build_profile("fraud", "v1", columns, created_at_ms=T0)
    expected = profile_from_frame("fraud", "v1", frame, exclude={"request_id"},
                                  created_at_ms=T0)
    assert from_file == expected


def test_parquet_dictionary_and_timestamp_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.pq"
    frame = pd.DataFrame({"cat": pd.Categorical(["x", None, "y", "x"]),
                          "at": pd.date_range("2026-01-01", periods=4, tz="UTC")})
    frame.to_parquet(path)
    columns = load_columns(path, exclude={"at"})
    assert columns["cat"].tolist() == ["x", None, "y", "x"]  # nulls survive the dictionary
    with pytest.raises(ValueError, match="'at' holds unsupported values"):
        build(load_columns(path))


def test_jsonl_missing_keys_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.ndjson"
    path.write_bytes(b'{"x": 1.5, "c": "a"}\n\n{"x": null}\n{"c": "b", "x": 2.5}\n')
    columns = load_columns(path)
    assert columns["c"].tolist() == ["a", None, "b"]
    assert categorical(build(columns), "x").missing_count == 1
    path.write_bytes(b'{"x": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"rows\.ndjson:2"):
        load_columns(path)


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        load_columns(tmp_path / "data.xlsx")


def test_profile_json_round_trip(frame: pd.DataFrame) -> None:
    profile = profile_from_frame("fraud", "v1", frame, created_at_ms=T0)
    data = profile.to_json()
    assert ReferenceProfile.from_json(data) == profile
    assert ReferenceProfile.from_json(data).profile_id == profile.profile_id


def zipf_sample(n: int, categories: int, seed: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, categories + 1)
    return np.random.default_rng(seed).choice(
        [f"k{i:02d}" for i in range(categories)], n, p=weights / weights.sum())


def test_a_long_tailed_reference_names_its_rest_most_frequent_first() -> None:
    values = zipf_sample(20_000, 50, seed=1)
    feature = build({"c": values}, top_k=20).features["c"]
    assert isinstance(feature, CategoricalReference)
    named, counts = np.unique(values, return_counts=True)
    ranked = [c for _, c in sorted(zip(-counts, named.tolist(), strict=True))]
    assert feature.categories == tuple(ranked[:20])
    assert feature.rest == tuple(ranked[20:]) and len(feature.rest) == 30
    assert feature.seen == frozenset(named.tolist())
    many = build({"c": np.array([f"id{i}" for i in range(3_000)])}, top_k=5).features["c"]
    assert isinstance(many, CategoricalReference)
    assert len(many.rest) == MAX_REST_CATEGORIES and many.other_count == 2_995


def test_a_rest_survives_json_and_checkpoints_and_old_profiles_keep_their_id() -> None:
    profile = build({"c": zipf_sample(5_000, 50, seed=2)}, top_k=10)
    assert ReferenceProfile.from_json(profile.to_json()) == profile
    assert ReferenceProfile.from_state(state_codec.decode(state_codec.encode(
        profile.to_state()))) == profile
    # A profile published before rests were kept has no "rest": it loads with none, and
    # its JSON, so its id (which checkpoints and windows remember), is what it was.
    doc = orjson.loads(profile.to_json())
    del doc["features"]["c"]["rest"]
    old = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    loaded = ReferenceProfile.from_json(old)
    assert loaded.features["c"].rest == () and loaded.to_json() == old  # type: ignore[union-attr]


def test_profile_checkpoint_state_round_trip(frame: pd.DataFrame) -> None:
    """In a checkpoint record a profile is arrays; it comes back equal, with the same id,
    and its JSON (the form records of earlier versions hold) still loads in a monitor."""
    profile = profile_from_frame("fraud", "v1", frame, created_at_ms=T0)
    back = ReferenceProfile.from_state(state_codec.decode(state_codec.encode(
        profile.to_state())))
    assert back == profile
    assert back.profile_id == profile.profile_id
    assert _profile(profile.to_json().decode()) == profile


# -- properties -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(values=hnp.arrays(np.float64, st.integers(0, 300),
                         elements=st.floats(allow_nan=True, allow_infinity=True)),
       coarse=st.integers(1, 12), fine=st.integers(1, 120), max_distinct=st.integers(0, 6))
def test_counts_add_up_and_edges_increase(values: np.ndarray, coarse: int, fine: int,
                                          max_distinct: int) -> None:
    profile = build({"x": values}, coarse_bins=coarse, fine_bins=fine,
                    categorical_max_distinct=max_distinct)
    present = int(np.isfinite(values).sum())
    if present == 0:
        assert not profile.features
        return
    feature = profile.features["x"]
    assert (feature.count, feature.present) == (values.size, present)
    if isinstance(feature, NumericReference):
        for edges, counts in ((feature.edges, feature.counts),
                              (feature.fine_edges, feature.fine_counts)):
            assert all(b > a for a, b in itertools.pairwise(edges))
            assert len(counts) == len(edges) + 1 and sum(counts) == present
            assert list(counts) == histogram(edges, values[np.isfinite(values)])
        assert np.isfinite([feature.mean, feature.std]).all()
        assert feature.min <= feature.quantiles[0] <= feature.quantiles[-1] <= feature.max
    else:
        assert sum(feature.counts) + feature.other_count == present
    assert ReferenceProfile.from_json(profile.to_json()) == profile


# -- the build command ------------------------------------------------------------


def test_build_command(frame: pd.DataFrame, tmp_path: Path) -> None:
    data = tmp_path / "train.parquet"
    frame.assign(unused=np.nan).to_parquet(data)
    parser = argparse.ArgumentParser()
    add_reference_parser(parser.add_subparsers())
    out = tmp_path / "ref.json"
    args = parser.parse_args(["reference", "build", "--model", "fraud", "--version", "v1",
                              "--input", str(data), "--exclude", "request_id,label",
                              "--exclude", "merchant", "--out", str(out), "--top-k", "3"])
    text = io.StringIO()
    console = Console(file=text, width=200)
    assert args.command(args, Settings(), console) == 0
    profile = ReferenceProfile.from_json(out.read_bytes())
    assert set(profile.features) == {"amount", "age", "n_items", "is_new", "country"}
    assert categorical(profile, "country").categories == ("DE", "FR", "US")
    assert len(numeric(profile, "amount").edges) == Settings().histogram_bins + 1
    shown = text.getvalue()
    assert "country" in shown and "DE (" in shown and "10 bins" in shown
    assert "skipped (every value missing): unused" in shown
    assert "--exclude names no column: label\n" in shown


def test_build_command_default_output_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           ) -> None:
    data = tmp_path / "t.csv"
    data.write_text("x\n1\n2\n")
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(model="a/b", version="v 1", input=data, exclude=[], out=None,
                              bins=None, fine_bins=None, top_k=None, categorical_max_distinct=20)
    assert build_command(args, Settings(), Console(file=io.StringIO())) == 0
    assert ReferenceProfile.from_json((tmp_path / "a_b-v_1.reference.json").read_bytes())
