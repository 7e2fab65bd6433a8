"""Build a :class:`~driftline.models.drift.reference.ReferenceProfile` from training data, column by
column.

Per column, a value is *missing* when it is None, NaN or ±inf (infinities count as missing
as in :class:`~driftline.models.windows.accumulators.NumericAccumulator` and the publisher). A
column is

* **categorical** when it holds strings, or numbers with at most ``categorical_max_distinct``
  distinct values (KS on tied data is unreliable; see the field notes). The categories of
  numbers are their :func:`category_label`; the worker labels window values with the same
  function. The ``top_k`` categories are kept (by count, ties by name), the rest is counted
  in ``other_count`` and named in ``rest`` (up to ``MAX_REST_CATEGORIES``, the most
  frequent first), so a window's tail values are not taken for new ones;
* **numeric** otherwise: frozen equal-frequency ``edges`` (``coarse_bins``) and percentile
  ``fine_edges`` (``fine_bins``) from
  :func:`~driftline.models.windows.accumulators.edges_from_sample`, their histograms
  (``np.searchsorted(edges, x, side="right")``, under- and overflow bins included: both are empty
  for the reference itself), mean, population std, min, max and the exact quantiles at
  :data:`~driftline.models.windows.feature_windows.QUANTILE_LEVELS` (``method="lower"``);
* **skipped** when every value is missing: there is no distribution to freeze, and a
  numeric reference without values would need NaN statistics, which JSON cannot carry.

Booleans are numbers (0 and 1), as the publisher sends them.

>>> rng = np.random.default_rng(7)
>>> profile = build_profile("fraud", "v1", {
...     "amount": rng.lognormal(3.0, 1.0, 1_000),
...     "country": np.array(["DE", "FR", None, "DE"] * 250, dtype=object),
...     "n_items": rng.integers(1, 4, 1_000),
...     "unused": [None] * 1_000}, coarse_bins=4, created_at_ms=1764230400000)
>>> sorted(profile.features)
['amount', 'country', 'n_items']
>>> amount = profile.features["amount"]
>>> amount.kind, amount.counts, len(amount.fine_edges)
('numeric', (0, 249, 250, 250, 251, 0), 101)
>>> country = profile.features["country"]
>>> country.categories, country.counts, country.missing_count
(('DE', 'FR'), (500, 250), 250)
>>> profile.features["n_items"].categories
('3', '2', '1')
"""

from __future__ import annotations

import heapq
import importlib
import math
import numbers
import os
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from driftline.models.drift.reference import (
    MAX_REST_CATEGORIES,
    CategoricalReference,
    FeatureReference,
    NumericReference,
    ReferenceProfile,
    ReferenceSource,
    category_label,
    category_labels,
)
from driftline.models.windows.accumulators import edges_from_sample, sorted_histogram
from driftline.models.windows.feature_windows import QUANTILE_LEVELS

__all__ = [
    "build_profile",
    "category_label",
    "category_labels",
    "frame_columns",
    "load_columns",
    "profile_from_frame",
]

_Floats = npt.NDArray[np.float64]
_Objects = npt.NDArray[np.object_]
_Kind = Literal["numeric", "categorical"]
#: Past this magnitude, moments are computed on scaled values so squares cannot overflow.
_SCALE_ABOVE = 1e150
_NUMBER_TYPES = (numbers.Real, Decimal, np.bool_)


def build_profile(
    model: str,
    version: str,
    columns: Mapping[str, Any],
    *,
    source: ReferenceSource = "training",
    coarse_bins: int = 10,
    fine_bins: int = 100,
    top_k: int = 20,
    categorical_max_distinct: int = 20,
    created_at_ms: int | None = None,
) -> ReferenceProfile:
    """Profile every column (array-like of one value per row) of a reference sample.

    Columns whose values are all missing are left out of the profile (see the module
    docstring). ``created_at_ms`` defaults to now.
    """
    if coarse_bins < 1 or fine_bins < 1:
        raise ValueError(f"bins must be >= 1, got coarse {coarse_bins}, fine {fine_bins}")
    if top_k < 0 or categorical_max_distinct < 0:
        raise ValueError("top_k and categorical_max_distinct must be >= 0")
    features: dict[str, FeatureReference] = {}
    for name, raw in columns.items():
        kind, values = _prepared(name, raw)
        feature = (_categorical(values, top_k) if kind == "categorical"
                   else _numeric(values, coarse_bins, fine_bins, top_k, categorical_max_distinct))
        if feature is not None:
            features[name] = feature
    if created_at_ms is None:
        created_at_ms = time.time_ns() // 1_000_000
    return ReferenceProfile(model, version, source, created_at_ms, features)


def profile_from_frame(model: str, version: str, frame: Any, *,
                       exclude: Collection[str] = (), **options: Any) -> ReferenceProfile:
    """:func:`build_profile` of a pandas DataFrame, numpy structured array or dict of arrays.

    ``options`` are the keyword arguments of :func:`build_profile`.
    """
    return build_profile(model, version, frame_columns(frame, exclude=exclude), **options)


def frame_columns(frame: Any, *, exclude: Collection[str] = ()) -> dict[str, npt.NDArray[Any]]:
    """The columns of a DataFrame, structured array or mapping, as numpy arrays."""
    if _is_pandas(frame):
        return {str(n): _pandas_column(frame[n]) for n in frame.columns if str(n) not in exclude}
    if isinstance(frame, np.ndarray):
        if frame.dtype.names is None:
            raise TypeError("a numpy array needs named fields (a structured array)")
        return {n: frame[n] for n in frame.dtype.names if n not in exclude}
    if isinstance(frame, Mapping):
        return {str(n): _as_array(v) for n, v in frame.items() if str(n) not in exclude}
    raise TypeError(f"expected a DataFrame, structured array or mapping, not {type(frame)}")


def load_columns(path: str | os.PathLike[str], *,
                 exclude: Collection[str] = ()) -> dict[str, npt.NDArray[Any]]:
    """Read a CSV, Parquet or JSON-lines file (by its suffix) into numpy columns.

    Suffixes: ``.csv`` (``.csv.gz``, ... as pandas reads them), ``.parquet`` / ``.pq``,
    ``.jsonl`` / ``.ndjson``. In JSON lines a key absent from a row is a missing value.
    """
    path = Path(path)
    name = path.name.lower()
    if ".csv" in Path(name).suffixes:
        pd = importlib.import_module("pandas")
        frame = pd.read_csv(path, usecols=lambda c: c not in exclude, low_memory=False)
        return frame_columns(frame)
    if name.endswith((".parquet", ".pq")):
        return _parquet_columns(path, exclude)
    if name.endswith((".jsonl", ".ndjson")):
        return _jsonl_columns(path, exclude)
    raise ValueError(f"{path}: unknown format; use .csv, .parquet/.pq or .jsonl/.ndjson")


# -- features ---------------------------------------------------------------------


def _numeric(values: _Floats, coarse_bins: int, fine_bins: int, top_k: int,
             categorical_max_distinct: int) -> FeatureReference | None:
    present = np.sort(values[np.isfinite(values)])
    if present.size == 0:
        return None
    missing = values.size - present.size
    distinct = 1 + int(np.count_nonzero(present[1:] != present[:-1]))
    if distinct <= categorical_max_distinct:
        counts: Counter[str] = Counter()
        for value, n in zip(*np.unique(present, return_counts=True), strict=True):
            counts[category_label(float(value))] += int(n)
        return _ranked(counts, top_k, values.size, missing)
    edges = edges_from_sample(present, coarse_bins)
    fine_edges = edges_from_sample(present, fine_bins)
    mean, std = _moments(present)
    return NumericReference(
        edges=_floats(edges), counts=_sorted_histogram(present, edges),
        fine_edges=_floats(fine_edges), fine_counts=_sorted_histogram(present, fine_edges),
        count=values.size, missing_count=missing, mean=mean, std=std,
        min=float(present[0]), max=float(present[-1]),
        quantiles=_floats(np.quantile(present, QUANTILE_LEVELS, method="lower")))


def _categorical(values: _Objects, top_k: int) -> CategoricalReference | None:
    counts = Counter(values.tolist())
    missing = counts.pop(None, 0)
    if missing == values.size:
        return None
    return _ranked(counts, top_k, values.size, missing)


def _ranked(counts: Counter[str], top_k: int, count: int, missing: int) -> CategoricalReference:
    ranked = heapq.nsmallest(top_k + MAX_REST_CATEGORIES, counts.items(),
                             key=lambda item: (-item[1], item[0]))
    top = ranked[:top_k]
    kept = sum(n for _, n in top)
    return CategoricalReference(
        categories=tuple(c for c, _ in top), counts=tuple(n for _, n in top),
        other_count=count - missing - kept, count=count, missing_count=missing,
        rest=tuple(c for c, _ in ranked[top_k:]))


def _sorted_histogram(ascending: _Floats, edges: _Floats) -> tuple[int, ...]:
    return tuple(sorted_histogram(ascending, edges).tolist())


def _moments(ascending: _Floats) -> tuple[float, float]:
    scale = max(abs(float(ascending[0])), abs(float(ascending[-1])))
    if scale <= _SCALE_ABOVE:
        return float(ascending.mean()), float(ascending.std())
    scaled = ascending / scale
    return float(scaled.mean()) * scale, float(scaled.std()) * scale


def _floats(array: _Floats) -> tuple[float, ...]:
    return tuple(float(x) for x in array.tolist())


# -- column conversion ------------------------------------------------------------


def _prepared(name: str, raw: Any) -> tuple[_Kind, npt.NDArray[Any]]:
    """``("numeric", float64 array)`` or ``("categorical", object array, None = missing)``."""
    values = _as_array(raw)
    if values.ndim != 1:
        raise ValueError(f"column {name!r} must be one-dimensional, got shape {values.shape}")
    if values.dtype.kind in "biuf":
        return "numeric", values.astype(np.float64, copy=False)
    if values.dtype.kind == "U":
        return "categorical", values.astype(object)
    if values.dtype.kind == "O":
        return _object_column(name, values)
    raise ValueError(f"column {name!r} has unsupported dtype {values.dtype}: "
                     "exclude it (ids, timestamps) or convert it to numbers or strings")


def _object_column(name: str, values: _Objects) -> tuple[_Kind, npt.NDArray[Any]]:
    items = values.tolist()
    types = set(map(type, items)) - {type(None)}
    if types <= {str}:  # the common case: already what the worker compares with
        return "categorical", values
    strings = {t for t in types if issubclass(t, str)}
    others = types - strings
    if others and not all(issubclass(t, _NUMBER_TYPES) for t in others):
        shown = ", ".join(sorted(t.__name__ for t in others))
        raise ValueError(f"column {name!r} holds unsupported values ({shown}): exclude it "
                         "or convert it to numbers or strings")
    if not strings:
        return "numeric", np.array([math.nan if v is None else float(v) for v in items],
                                   dtype=np.float64)
    if others:  # strings with NaN as the missing marker (pandas, CSV) are fine; numbers not
        if any(not isinstance(v, str) and v is not None and _finite(v) for v in items):
            raise ValueError(f"column {name!r} mixes strings and numbers: one kind per "
                             "feature, as the worker accepts")
        items = [v if isinstance(v, str) else None for v in items]
    return "categorical", np.fromiter((None if v is None else str(v) for v in items),
                                      dtype=object, count=len(items))


def _finite(value: Any) -> bool:
    return math.isfinite(float(value))


def _as_array(raw: Any) -> npt.NDArray[Any]:
    if _is_pandas(raw):
        return _pandas_column(raw)
    if isinstance(raw, np.ndarray):
        return raw
    items = list(raw)
    return np.fromiter(items, dtype=object, count=len(items))


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.partition(".")[0] == "pandas"


def _pandas_column(series: Any) -> npt.NDArray[Any]:
    pd = importlib.import_module("pandas")  # optional: only DataFrames bring it in
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or (pd.api.types.is_numeric_dtype(dtype)
                                             and not pd.api.types.is_complex_dtype(dtype)):
        return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(series.astype(object).to_numpy(dtype=object, na_value=None))


def _parquet_columns(path: Path, exclude: Collection[str]) -> dict[str, npt.NDArray[Any]]:
    pa = importlib.import_module("pyarrow")  # optional: only Parquet input brings it in
    pq = importlib.import_module("pyarrow.parquet")

    names = [n for n in pq.read_schema(path).names if n not in exclude]
    table = pq.read_table(path, columns=names)
    out: dict[str, npt.NDArray[Any]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            out[name] = column.cast(pa.float64(), safe=False).to_numpy()
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            out[name] = column.to_numpy(zero_copy_only=False)  # object, None where null
        else:  # dictionaries (their to_numpy drops nulls), decimals, nested and time types
            out[name] = _as_array(column.to_pylist())
    return out


def _jsonl_columns(path: Path, exclude: Collection[str]) -> dict[str, npt.NDArray[Any]]:
    rows: list[dict[str, Any]] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = orjson.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object per line")
            rows.append(row)
    names: Iterable[str] = dict.fromkeys(k for row in rows for k in row)
    return {n: np.fromiter((row.get(n) for row in rows), dtype=object, count=len(rows))
            for n in names if n not in exclude}
