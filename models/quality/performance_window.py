"""One prediction window's model quality, from its labelled predictions.

The worker reads a window's labelled predictions back from storage (each request id once,
with its latest label) and :func:`summarize` turns them into a :class:`WindowPerformance`:
the metrics and the additive counts of a ``performance`` row, plus the error and loss
streams, in prediction-time order, that the performance detectors consume. Computing a
window from all its pairs, rather than adding each label as it comes, makes the row
exact whatever order, duplication or correction the labels came in, and a rewrite of
the same window replaces the last one.

Task: a model is treated as a regressor when every label and every prediction of the
window is a number and the labels take more than :data:`MAX_CLASSES_AS_NUMBERS` distinct
values (the rule the reference builder uses for features); else as a classifier. Set it
per model to avoid a window of few distinct targets flipping a regressor to a classifier.

A score without class probabilities is the probability of the *positive class*: the
configured one; else "1"/"true" when the classes are 0/1 or false/true; else the class
predicted most often when the score is at least 0.5.

>>> pairs = PairColumns.from_rows([
...     (1_000, "fraud", "fraud", 0.9, {}, 30.0), (2_000, "ok", "fraud", 0.2, {}, 60.0),
...     (3_000, "ok", "ok", 0.1, {}, 90.0), (4_000, "fraud", "ok", 0.7, {}, 3_600.0)])
>>> perf = summarize(pairs)
>>> perf.task, perf.positive_class, perf.metrics["accuracy"], perf.errors.tolist()
('classification', 'fraud', 0.5, [0.0, 1.0, 0.0, 1.0])
>>> sorted(perf.true_count.items()), perf.confusion["ok -> fraud"]
([('fraud', 2), ('ok', 2)], 1)
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from driftline.models.quality.performance import (
    MAX_ABS_VALUE,
    ClassificationCounts,
    DelayHistogram,
    RegressionSums,
)

__all__ = ["MAX_CLASSES", "MAX_CLASSES_AS_NUMBERS", "PairColumns", "Task", "WindowPerformance",
           "infer_task", "summarize"]

Task = Literal["classification", "regression"]
#: More distinct numeric labels than this in a window: a regressor.
MAX_CLASSES_AS_NUMBERS = 20
#: Classes tracked by name per window; rarer ones count together as "other".
MAX_CLASSES = 50
#: Per-row log loss fed to the loss detector is capped here (p = 4.5e-5), so one
#: confidently wrong prediction cannot dominate the stream.
MAX_ROW_LOSS = 10.0
_DELAY_QUANTILES = (0.5, 0.9, 0.99)
#: Name of the confusion slot for missing predictions and classes beyond MAX_CLASSES.
OTHER = "(other)"
_MISSING = "\x00(no prediction)"  # numpy drops trailing NULs: keep one inside
_POSITIVE_NAMES = {frozenset({"0", "1"}): "1", frozenset({"false", "true"}): "true",
                   frozenset({"False", "True"}): "True"}
_Floats = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class PairColumns:
    """A window's labelled predictions as columns, ordered by prediction time."""

    prediction_time: npt.NDArray[np.int64]
    prediction: Sequence[str | None]
    label: Sequence[str]
    score: _Floats
    probabilities: Sequence[Mapping[str, float]]
    delay_seconds: _Floats

    def __len__(self) -> int:
        return len(self.label)

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, str | None, str, float | None,
                                            Mapping[str, float], float]]) -> PairColumns:
        """From ``(prediction_time, prediction, label, score, probabilities, delay)`` rows."""
        ordered = sorted(rows, key=lambda row: row[0])
        return cls(np.array([r[0] for r in ordered], dtype=np.int64),
                   [r[1] for r in ordered], [r[2] for r in ordered],
                   np.array([np.nan if r[3] is None else r[3] for r in ordered], dtype=np.float64),
                   [r[4] for r in ordered],
                   np.array([r[5] for r in ordered], dtype=np.float64))

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[Any]]) -> PairColumns:
        """From query result columns of those names, sorted here by prediction time."""
        times = np.asarray(columns["prediction_time"], dtype=np.int64)
        # Ties in time are broken by request id, so read order never matters.
        order = (np.lexsort((np.asarray(columns["request_id"], dtype=np.str_), times))
                 if columns.get("request_id") else np.argsort(times, kind="stable"))
        pick = order.tolist()
        score = np.array([np.nan if s is None else s for s in columns["score"]], dtype=np.float64)
        return cls(times[order], [columns["prediction"][i] for i in pick],
                   [columns["label"][i] for i in pick], score[order] if score.size else score,
                   [columns["probabilities"][i] for i in pick],
                   np.asarray(columns["delay_seconds"], dtype=np.float64)[order])


@dataclasses.dataclass
class WindowPerformance:
    """Metrics and additive counts of one window's labelled predictions.

    The ``*_count``/``sum_*`` fields add across windows (``sum``, ``sumMap``,
    ``sumForEach`` in SQL), so a metric over any time range can be computed from stored
    rows; ``metrics`` are this window's values.
    """

    task: Task
    n_labeled: int
    metrics: dict[str, float | None]
    delay: DelayHistogram
    delay_sum_seconds: float
    #: 1.0 for a wrong prediction, 0.0 for a right one (classification) in prediction-time
    #: order; for a regressor, the absolute error.
    errors: _Floats
    #: Per-row loss: log loss (capped) where probabilities were sent, else ``errors``.
    losses: _Floats
    positive_class: str = ""
    correct_count: int = 0
    true_count: dict[str, int] = dataclasses.field(default_factory=dict)
    predicted_count: dict[str, int] = dataclasses.field(default_factory=dict)
    true_positive: dict[str, int] = dataclasses.field(default_factory=dict)
    confusion: dict[str, int] = dataclasses.field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    log_loss_sum: float = 0.0
    log_loss_count: int = 0
    score_positive: list[int] = dataclasses.field(default_factory=list)
    score_negative: list[int] = dataclasses.field(default_factory=list)
    calibration_count: list[int] = dataclasses.field(default_factory=list)
    calibration_correct: list[int] = dataclasses.field(default_factory=list)
    calibration_confidence_sum: list[float] = dataclasses.field(default_factory=list)
    regression_sums: dict[str, float] = dataclasses.field(default_factory=dict)
    ape_count: int = 0

    def delay_quantiles(self) -> dict[str, float | None]:
        values = self.delay.quantiles(_DELAY_QUANTILES)
        return {f"delay_p{round(q * 100)}_seconds": v
                for q, v in zip(_DELAY_QUANTILES, values, strict=True)}


def infer_task(labels: Sequence[str], predictions: Sequence[str | None]) -> Task:
    """Regression when all values are finite numbers and labels take many values."""
    if len(set(labels)) <= MAX_CLASSES_AS_NUMBERS:
        return "classification"
    present = [p for p in predictions if p is not None]
    if np.isfinite(_floats(labels)).all() and np.isfinite(_floats(present)).all():
        return "regression"
    return "classification"


def _floats(values: Sequence[str | None]) -> _Floats:
    """Numbers from text; NaN for anything else (a regressor's unusable row)."""
    try:
        out = np.array(values, dtype=np.float64)  # None becomes NaN
    except (TypeError, ValueError):  # text that is no number: row by row, for bad data only
        out = np.array([_float_or_nan(v) for v in values], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out[~(np.abs(out) <= MAX_ABS_VALUE)] = np.nan
    return out


def _float_or_nan(value: str | None) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def summarize(pairs: PairColumns, task: Task | None = None,
              positive_class: str | None = None) -> WindowPerformance:
    """The window's performance; ``task`` and ``positive_class`` None are inferred."""
    delays = DelayHistogram().add(pairs.delay_seconds)
    task = task or infer_task(pairs.label, pairs.prediction)
    if task == "regression":
        return _regression(pairs, delays)
    return _classification(pairs, delays, positive_class)


def _classification(pairs: PairColumns, delays: DelayHistogram,
                    positive_class: str | None) -> WindowPerformance:
    labels = np.array(pairs.label, dtype=np.str_) if len(pairs) else np.array([], np.str_)
    # A missing prediction is wrong whatever the label: NUL never is a label's text.
    predicted = np.array([_MISSING if p is None else p for p in pairs.prediction],
                         dtype=np.str_)
    classes, positive = _classes(pairs, positive_class)
    counts = ClassificationCounts(classes)
    proba, score = _probability_inputs(pairs, classes, positive)
    counts.add(labels, predicted, proba=proba, score=score)
    metrics = counts.metrics()
    errors = (labels != predicted).astype(np.float64)
    columns = counts.to_columns()
    k, scale = len(classes), float(1 << 24)
    confusion = np.asarray(columns["confusion"]).reshape(k + 1, k + 1)
    names = [*classes, OTHER]
    pos_index = classes.index(positive) if positive in classes else None
    bins = counts.n_score_bins
    score_rows = (slice(pos_index * bins, (pos_index + 1) * bins) if pos_index is not None
                  else slice(0, 0))
    return WindowPerformance(
        task="classification", n_labeled=len(pairs), metrics=metrics, delay=delays,
        delay_sum_seconds=float(pairs.delay_seconds.sum()), errors=errors,
        losses=_row_losses(labels, proba, score, classes, errors),
        positive_class=positive or "",
        correct_count=int(np.count_nonzero(labels == predicted)),
        true_count=_named(names, confusion.sum(axis=1)),
        predicted_count=_named(names, confusion.sum(axis=0)),
        true_positive=_named(classes, np.diag(confusion)[:k]),
        confusion={f"{names[t]} -> {names[p]}": int(confusion[t, p])
                   for t, p in zip(*np.nonzero(confusion), strict=True)},
        per_class={m: {c: v for c in classes if (v := metrics[f"{m}.{c}"]) is not None}
                   for m in ("precision", "recall", "f1", "roc_auc")},
        log_loss_sum=int(columns["log_loss_sum_fx24"]) / scale,  # type: ignore[arg-type]
        log_loss_count=int(columns["log_loss_count"]),  # type: ignore[arg-type]
        score_positive=list(columns["score_positive"][score_rows]),  # type: ignore[index]
        score_negative=list(columns["score_negative"][score_rows]),  # type: ignore[index]
        calibration_count=list(columns["calibration_count"]),  # type: ignore[arg-type]
        calibration_correct=list(columns["calibration_correct"]),  # type: ignore[arg-type]
        calibration_confidence_sum=[
            v / scale for v in columns["calibration_confidence_fx24"]],  # type: ignore[union-attr]
    )


def _named(names: Sequence[str], values: npt.NDArray[np.int64]) -> dict[str, int]:
    return {name: int(v) for name, v in zip(names, values, strict=True) if v}


def _classes(pairs: PairColumns, configured: str | None) -> tuple[tuple[str, ...], str | None]:
    """The window's classes (at least two) and the positive class a bare score is for."""
    seen = Counter(pairs.label)
    seen.update(p for p in pairs.prediction if p is not None)
    for row in pairs.probabilities:
        seen.update(dict.fromkeys(row, 0))
    names = [c for c, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))][:MAX_CLASSES]
    positive = (configured or next((p for pair, p in _POSITIVE_NAMES.items()  # {"0"} too
                                    if names and pair.issuperset(names)), None)
                or _predicted_when_high(pairs))
    for name in (positive, "(none)", "(none 2)"):  # at least two distinct names
        if len(names) < 2 and name is not None and name not in names:
            names.append(name)
    names.sort()
    if positive in names and len(names) == 2:  # ClassificationCounts: score = P(classes[1])
        names = [n for n in names if n != positive] + [positive]
    return tuple(names), positive


def _predicted_when_high(pairs: PairColumns) -> str | None:
    high = pairs.score >= 0.5
    votes = Counter(p for p, h in zip(pairs.prediction, high, strict=True) if h and p is not None)
    return min(votes, key=lambda c: (-votes[c], c)) if votes else None


def _probability_inputs(pairs: PairColumns, classes: tuple[str, ...],
                        positive: str | None) -> tuple[_Floats | None, _Floats | None]:
    if any(pairs.probabilities):
        proba = np.array([[row.get(c, np.nan) if row else np.nan for c in classes]
                          for row in pairs.probabilities], dtype=np.float64)
        return proba.reshape(len(pairs), len(classes)), None
    if len(classes) == 2 and positive == classes[1] and np.isfinite(pairs.score).any():
        return None, np.clip(pairs.score, 0.0, 1.0)
    return None, None


def _row_losses(labels: npt.NDArray[np.str_], proba: _Floats | None, score: _Floats | None,
                classes: tuple[str, ...], errors: _Floats) -> _Floats:
    if proba is None and score is None:
        return errors
    if proba is None:
        assert score is not None
        p_true = np.where(labels == classes[1], score, 1.0 - score)
    else:
        index = {c: i for i, c in enumerate(classes)}
        codes = np.array([index.get(str(label), -1) for label in labels], dtype=np.int64)
        p_true = np.where(codes >= 0, proba[np.arange(len(labels)), np.maximum(codes, 0)], 0.0)
    with np.errstate(divide="ignore"):
        loss = np.minimum(-np.log(p_true), MAX_ROW_LOSS)
    return np.where(np.isnan(loss), errors, loss)


def _regression(pairs: PairColumns, delays: DelayHistogram) -> WindowPerformance:
    y = _floats(pairs.label)
    pred = _floats(pairs.prediction)
    # A missing, non-numeric or non-finite value leaves the row out of the metrics.
    usable = np.isfinite(y) & np.isfinite(pred)
    sums = RegressionSums().add(y[usable], pred[usable])
    columns = sums.to_columns()
    scale = float(2**64)
    errors = np.where(usable, np.abs(pred - y), np.nan)
    return WindowPerformance(
        task="regression", n_labeled=len(pairs), metrics=sums.metrics(), delay=delays,
        delay_sum_seconds=float(pairs.delay_seconds.sum()), errors=errors, losses=errors,
        regression_sums={name: int(columns[f"sum_{name}_fx64"]) / scale
                         for name in ("error", "abs_error", "sq_error", "target", "sq_target",
                                      "ape")},
        ape_count=int(columns["ape_count"]))
