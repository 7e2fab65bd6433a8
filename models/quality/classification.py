"""Classification counts for one window, exact under signed (retracting) adds.

Every number held is an integer: counts, and fixed-point sums of bounded floats
(``round(value * 2**24)``, the ``*_fx24`` columns). Integer sums are exact and
associative, so retractions (``sign=-1``) cancel exactly and SQL ``sum()`` /
``sumForEach()`` in any order gives the same state as adding every batch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from driftline.models.quality.regression import checked_sign

__all__ = ["FIXED_POINT_BITS", "LOG_LOSS_CLIP", "ClassificationCounts"]

FIXED_POINT_BITS = 24
"""``*_fx24`` columns hold ``round(value * 2**24)``. A log-loss term is at most
``-log(1e-15) < 34.6``, so an Int64 sum has room for 1.5e10 rows at the clip."""
LOG_LOSS_CLIP = 1e-15
"""Probabilities of the true class are clipped below at this value for log loss."""
_SCALE = 1 << FIXED_POINT_BITS

_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.int64]
_Objects = npt.NDArray[Any]


_ATTRIBUTES = {
    "count": "_count",
    "other_agree_count": "_other_agree",
    "confusion": "_confusion",
    "log_loss_sum_fx24": "_log_loss_fx",
    "log_loss_count": "_log_loss_count",
    "score_positive": "_score_pos",
    "score_negative": "_score_neg",
    "calibration_count": "_calib_count",
    "calibration_confidence_fx24": "_calib_conf_fx",
    "calibration_correct": "_calib_correct",
}
"""Column name -> attribute: the layout of :meth:`ClassificationCounts.to_columns`."""


def _fixed(values: _Floats) -> _Ints:
    return np.rint(np.ldexp(values, FIXED_POINT_BITS)).astype(np.int64)


def _bins(values: _Floats, n_bins: int) -> _Ints:
    """Equal-width bin ``floor(v * n_bins)`` of values in [0, 1]; 1.0 joins the last bin."""
    return np.minimum(np.floor(values * n_bins).astype(np.int64), n_bins - 1)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def binned_auc(positives: Sequence[int], negatives: Sequence[int]) -> float | None:
    """ROC AUC from per-bin positive and negative counts (bins in increasing score).

    The trapezoid over the ROC curve with one point per bin edge, which equals the
    Mann–Whitney U statistic with every pair in the same bin counted as a tie
    (1/2): the exact AUC of the scores rounded down to their bin's lower edge.
    Versus the raw scores, the error is at most ``Σ_b pos_b·neg_b / (2·P·N)``.
    None when there are no positives or no negatives.

    Examples
    --------
    >>> binned_auc([0, 1, 3], [2, 1, 1])
    0.8125
    """
    total_pos, total_neg = sum(positives), sum(negatives)
    if total_pos <= 0 or total_neg <= 0:
        return None
    below = twice_wins = 0
    for pos, neg in zip(positives, negatives, strict=True):
        twice_wins += pos * (2 * below + neg)
        below += neg
    return twice_wins / (2 * total_pos * total_neg)


class ClassificationCounts:
    """Additive confusion, log-loss, ROC and calibration counts of a classifier.

    Labels are compared as text (``astype(str)``: ``str(value)`` for objects) with
    ``classes``; any other value goes to one "other" slot (index ``len(classes)``)
    of the confusion matrix, and ``other_agree_count`` counts rows where such true
    and predicted values are equal, so accuracy matches a plain ``y_true == y_pred``.

    Probabilities (``proba`` columns in the order of ``classes``, or for two
    classes ``score`` = P(``classes[1]``)) feed, per row without NaN:

    - log loss ``-log(max(p_true, 1e-15))``, not renormalised; rows whose label
      is "other" are left out;
    - per class, one-vs-rest histograms of ``p_c`` on ``n_score_bins`` equal bins
      of [0, 1] (bin ``floor(p·B)``, 1.0 in the last): positives and negatives;
    - calibration bins of the top-class confidence ``max_c p_c`` (``floor(p·C)``):
      count, Σ confidence, Σ correct, where correct means the argmax class (ties:
      the first) equals the label.

    Fixed-point sums round each term to ``2**-24``, so log loss and ECE are within
    ``2**-25`` of their float values; counts are exact.

    Examples
    --------
    >>> rng = np.random.default_rng(5)
    >>> y = rng.choice(["fraud", "ok"], size=200, p=[0.2, 0.8])
    >>> score = np.clip(0.55 + 0.3 * (y == "ok") + rng.normal(0, 0.2, 200), 0, 1)
    >>> pred = np.where(score >= 0.5, "ok", "fraud")
    >>> counts = ClassificationCounts(("fraud", "ok")).add(y, pred, score=score)
    >>> m = counts.metrics()
    >>> m["accuracy"], m["recall.fraud"], round(m["roc_auc"], 4), round(m["ece"], 4)
    (0.865, 0.4444444444444444, 0.8728, 0.0867)
    >>> counts.add(y[:3], pred[:3], score=score[:3], sign=-1).count
    197
    """

    def __init__(self, classes: Sequence[str], n_score_bins: int = 50,
                 n_calibration_bins: int = 10) -> None:
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be at least 2 distinct names, got {classes!r}")
        if not all(isinstance(c, str) for c in classes):
            raise ValueError("classes must be strings (labels are compared as str(value))")
        if n_score_bins < 1 or n_calibration_bins < 1:
            raise ValueError("n_score_bins and n_calibration_bins must be >= 1")
        self.classes = tuple(classes)
        self.n_score_bins = n_score_bins
        self.n_calibration_bins = n_calibration_bins
        names = np.array(self.classes, dtype=np.str_)
        self._order = np.argsort(names, kind="stable")
        self._sorted = names[self._order]
        self._reset()

    def _reset(self) -> None:
        k, b, c = len(self.classes), self.n_score_bins, self.n_calibration_bins
        self._count = 0
        self._other_agree = 0
        self._confusion: _Ints = np.zeros((k + 1) ** 2, dtype=np.int64)
        self._log_loss_fx = 0
        self._log_loss_count = 0
        self._score_pos: _Ints = np.zeros(k * b, dtype=np.int64)
        self._score_neg: _Ints = np.zeros(k * b, dtype=np.int64)
        self._calib_count: _Ints = np.zeros(c, dtype=np.int64)
        self._calib_conf_fx: _Ints = np.zeros(c, dtype=np.int64)
        self._calib_correct: _Ints = np.zeros(c, dtype=np.int64)

    @property
    def count(self) -> int:
        """Number of labeled rows (signed adds included)."""
        return self._count

    @property
    def confusion_matrix(self) -> _Ints:
        """``(k+1, k+1)`` counts, rows true and columns predicted; index ``k`` is "other"."""
        k = len(self.classes)
        return self._confusion.reshape(k + 1, k + 1).copy()

    def _codes(self, values: _Objects) -> tuple[npt.NDArray[np.str_], _Ints]:
        text = np.asarray(values).ravel()
        if text.dtype.kind != "U":
            text = text.astype(np.str_)  # str(value) for objects; ~60 ns a row
        at = np.minimum(np.searchsorted(self._sorted, text), len(self.classes) - 1)
        codes = np.where(self._sorted[at] == text, self._order[at], len(self.classes))
        return text, codes.astype(np.int64)

    def _probabilities(self, proba: _Floats | None, score: _Floats | None,
                       n: int) -> _Floats | None:
        k = len(self.classes)
        if proba is not None and score is not None:
            raise ValueError("pass proba or score, not both")
        if score is not None:
            if k != 2:
                raise ValueError("score is for two classes; pass proba")
            s = np.asarray(score, dtype=np.float64)
            if s.shape != (n,):
                raise ValueError(f"expected {n} scores, got shape {s.shape}")
            probs = np.column_stack([1.0 - s, s])
        elif proba is not None:
            probs = np.asarray(proba, dtype=np.float64)
        else:
            return None
        if probs.shape != (n, k):
            raise ValueError(f"expected {n} rows of {k} probabilities, got shape {probs.shape}")
        known = probs[~np.isnan(probs)]
        if not np.all((known >= 0.0) & (known <= 1.0)):
            raise ValueError("probabilities must lie in [0, 1] (NaN marks a row without them)")
        return probs

    def add(self, y_true: _Objects, y_pred: _Objects, *, proba: _Floats | None = None,
            score: _Floats | None = None, sign: int = 1) -> Self:
        """Add (``sign=1``) or retract (``sign=-1``) a batch of labeled predictions.

        ``proba`` is ``(n, len(classes))``; for two classes ``score`` may give
        P(``classes[1]``) instead. Rows with a NaN probability count in the
        confusion matrix only.
        """
        sign = checked_sign(sign)
        true_text, true_codes = self._codes(y_true)
        pred_text, pred_codes = self._codes(y_pred)
        if true_codes.shape != pred_codes.shape:
            raise ValueError(f"y_true has {true_codes.size} rows but y_pred has {pred_codes.size}")
        probs = self._probabilities(proba, score, true_codes.size)
        k = len(self.classes)
        pairs = np.bincount(true_codes * (k + 1) + pred_codes, minlength=(k + 1) ** 2)
        self._confusion += sign * pairs
        self._other_agree += sign * int(np.count_nonzero(
            (true_codes == k) & (true_text == pred_text)))
        self._count += sign * true_codes.size
        if probs is not None:
            scored = ~np.isnan(probs).any(axis=1)
            self._add_probabilities(probs[scored], true_codes[scored], sign)
        return self

    def _add_probabilities(self, probs: _Floats, codes: _Ints, sign: int) -> None:
        k, b, c = len(self.classes), self.n_score_bins, self.n_calibration_bins
        rows = np.flatnonzero(codes < k)
        terms = -np.log(np.maximum(probs[rows, codes[rows]], LOG_LOSS_CLIP))
        self._log_loss_fx += sign * int(_fixed(terms).sum())
        self._log_loss_count += sign * rows.size
        cells = _bins(probs, b) + b * np.arange(k)
        positive = codes[:, None] == np.arange(k)
        self._score_pos += sign * np.bincount(cells[positive], minlength=k * b)
        self._score_neg += sign * np.bincount(cells[~positive], minlength=k * b)
        top = probs.argmax(axis=1)
        confidence = probs[np.arange(top.size), top]
        calib = _bins(confidence, c)
        self._calib_count += sign * np.bincount(calib, minlength=c)
        self._calib_correct += sign * np.bincount(calib[top == codes], minlength=c)
        np.add.at(self._calib_conf_fx, calib, sign * _fixed(confidence))

    def merge(self, other: ClassificationCounts) -> Self:
        """Add ``other`` (same classes and bins) into these counts."""
        if self._config() != other._config():
            raise ValueError("cannot merge counts with different classes or bins")
        for attribute in _ATTRIBUTES.values():
            setattr(self, attribute, getattr(self, attribute) + getattr(other, attribute))
        return self

    def _config(self) -> tuple[tuple[str, ...], int, int]:
        return self.classes, self.n_score_bins, self.n_calibration_bins

    def _auc(self, index: int) -> float | None:
        cells = slice(index * self.n_score_bins, (index + 1) * self.n_score_bins)
        return binned_auc(self._score_pos[cells].tolist(), self._score_neg[cells].tolist())

    def metrics(self) -> dict[str, float | None]:
        """Accuracy, per-class and macro precision/recall/F1, log loss, ROC AUC, ECE, counts.

        ``precision.<c> = tp/(tp+fp)``, ``recall.<c> = tp/(tp+fn)``,
        ``f1.<c> = 2tp/(2tp+fp+fn)``, each None when its denominator is zero; the
        ``*_macro`` keys average the defined per-class values (sklearn's
        ``zero_division=np.nan``). ``roc_auc`` is ``roc_auc.<classes[1]>`` for two
        classes, else the mean of the defined one-vs-rest AUCs (see
        :func:`binned_auc` for their error). ``ece = Σ_b |Σconf_b - Σcorrect_b| / N``.
        """
        k, n = len(self.classes), self._count
        matrix = self._confusion.reshape(k + 1, k + 1)
        tp, predicted, actual = np.diag(matrix)[:k], matrix.sum(axis=0), matrix.sum(axis=1)
        out: dict[str, float | None] = {
            "count": n, "accuracy": _ratio(int(tp.sum()) + self._other_agree, n)}
        per_class: dict[str, list[float | None]] = {
            "precision": [], "recall": [], "f1": [], "roc_auc": []}
        for i, name in enumerate(self.classes):
            t = int(tp[i])
            values = (_ratio(t, int(predicted[i])), _ratio(t, int(actual[i])),
                      _ratio(2 * t, int(predicted[i] + actual[i])), self._auc(i))
            for metric, value in zip(per_class, values, strict=True):
                per_class[metric].append(value)
                out[f"{metric}.{name}"] = value
        for metric in ("precision", "recall", "f1"):
            out[f"{metric}_macro"] = _mean_defined(per_class[metric])
        out["roc_auc"] = per_class["roc_auc"][1] if k == 2 else _mean_defined(per_class["roc_auc"])
        out["log_loss"] = _ratio(self._log_loss_fx, self._log_loss_count * _SCALE)
        scored = int(self._calib_count.sum())
        gaps = np.abs(self._calib_conf_fx - self._calib_correct * _SCALE)
        out["ece"] = _ratio(int(gaps.sum()), scored * _SCALE)
        out.update({"scored_count": scored, "log_loss_count": self._log_loss_count,
                    "other_true_count": int(matrix[k].sum()),
                    "other_pred_count": int(matrix[:, k].sum())})
        return out

    def to_columns(self) -> dict[str, int | list[int]]:
        """Flat, additive columns; ints (Int64) add with ``sum()``, lists
        (Array(Int64)) with ``sumForEach()``. With ``k`` classes, ``B`` score bins
        and ``C`` calibration bins:

        - ``count``, ``other_agree_count``, ``log_loss_count``: int;
        - ``log_loss_sum_fx24``: int, ``Σ round(term·2**24)``;
        - ``confusion``: ``(k+1)²`` ints, row-major ``[true][pred]``, "other" last;
        - ``score_positive``, ``score_negative``: ``k·B`` ints, class-major
          (class ``i``, bin ``j`` at ``i·B + j``);
        - ``calibration_count``, ``calibration_correct``,
          ``calibration_confidence_fx24``: ``C`` ints.
        """
        columns: dict[str, int | list[int]] = {}
        for name, attribute in _ATTRIBUTES.items():
            value = getattr(self, attribute)
            columns[name] = value.tolist() if isinstance(value, np.ndarray) else int(value)
        return columns

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], classes: Sequence[str],
                     n_score_bins: int = 50, n_calibration_bins: int = 10) -> Self:
        """Rebuild from :meth:`to_columns` output (or its SQL sums) and the same config."""
        counts = cls(classes, n_score_bins, n_calibration_bins)
        for name, attribute in _ATTRIBUTES.items():
            current = getattr(counts, attribute)
            if isinstance(current, np.ndarray):
                value = np.asarray(columns[name], dtype=np.int64)
                if value.shape != current.shape:
                    raise ValueError(f"{name} has {value.size} values, expected {current.size}")
                setattr(counts, attribute, value.copy())
            else:
                setattr(counts, attribute, int(columns[name]))
        return counts

