"""Match predictions with labels that arrive late, early, twice, or corrected.

The worker keeps what waits (predictions without a label, labels without a prediction)
in storage it looks up per batch; this module only decides, given one batch of each and
what the lookups returned, which labelled predictions to write, which earlier ones a
correction replaces, which labels must wait, and what is counted as duplicate or expired.

Rules, per (model, request id):

* a label pairs with the prediction of that request id, whichever arrived first;
* a label more than the model's time-to-live (event time) after its prediction does
  not pair: it is kept as *expired* (counted, not used), and the prediction stays
  unlabeled;
* a label waiting for its prediction waits at most the early-label time-to-live of the
  model's event time (``clock``): a prediction that comes later finds it expired;
* the same label again is a duplicate and changes nothing; a different label later in
  the log (higher ``revision``) is a correction: the earlier pair is retracted and the new
  one written; a label met again at the revision of the stored one is a replay, unless it
  says something else (then the log restarted and it is newer: a correction);
* a label with no prediction yet waits (the caller stores it and offers it again when
  the prediction arrives).

Revisions order labels within one log. Where a label topic's offsets restart, a
correction of a label stored before that lands at a lower revision than it looks like an
older label replayed after a crash, and is counted as a duplicate: telling the two apart
needs revisions that carry the log's generation above the offset.

>>> p = Prediction("m", "v1", "r1", 60_000, "fraud")
>>> later = Label("m", "r1", 3_600_000, "ok", revision=7)
>>> result = join([p], [later], window_ms=60_000, ttl_ms=lambda model: 86_400_000)
>>> [(row.request_id, row.window_start, row.label.label, row.delay_seconds)
...  for row in result.labeled]
[('r1', 60000, 'ok', 3540.0)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Key = tuple[str, str]  # (model, request id)


@dataclasses.dataclass(frozen=True)
class Prediction:
    model: str
    version: str
    request_id: str
    event_time: int
    prediction: Any = None
    score: float | None = None
    probabilities: Mapping[str, float] | None = None

    @property
    def key(self) -> Key:
        return (self.model, self.request_id)


@dataclasses.dataclass(frozen=True)
class Label:
    model: str
    request_id: str
    event_time: int
    label: Any
    #: Where the label sits in the log (its offset): the later of two labels wins. Stored
    #: with the label, apart from the table's write version, which only keeps what the
    #: join wrote last.
    revision: int = 0

    @property
    def key(self) -> Key:
        return (self.model, self.request_id)


@dataclasses.dataclass(frozen=True)
class LabeledPrediction:
    """A prediction with its label, attributed to the window of the prediction."""

    prediction: Prediction
    label: Label
    window_start: int
    #: The label came after the time-to-live: stored to be counted, left out of metrics.
    expired: bool = False

    @property
    def request_id(self) -> str:
        return self.prediction.request_id

    @property
    def delay_seconds(self) -> float:
        return (self.label.event_time - self.prediction.event_time) / 1000


@dataclasses.dataclass
class JoinResult:
    labeled: list[LabeledPrediction] = dataclasses.field(default_factory=list)
    #: Pairs a correction replaces: subtract them from the window's counts.
    retracted: list[LabeledPrediction] = dataclasses.field(default_factory=list)
    #: Labels whose prediction has not arrived: store them until it does (or they expire).
    waiting: list[Label] = dataclasses.field(default_factory=list)
    #: Stored waiting labels that found their prediction: remove them from storage.
    settled: list[Key] = dataclasses.field(default_factory=list)
    duplicates: int = 0
    expired: int = 0
    #: Labels met again after a crash (same revision as the stored pair): nothing changes,
    #: but their window must be rewritten (the crash may have come before it was).
    replayed: list[LabeledPrediction] = dataclasses.field(default_factory=list)

    @property
    def touched(self) -> set[tuple[str, str, int]]:
        """(model, version, window start) of every window whose labels this batch changed."""
        return {(p.prediction.model, p.prediction.version, p.window_start)
                for p in (*self.labeled, *self.retracted, *self.replayed)}


def join(predictions: Sequence[Prediction], labels: Sequence[Label], *, window_ms: int,
         ttl_ms: Callable[[str], int], stored_predictions: Mapping[Key, Prediction] | None = None,
         stored_labels: Mapping[Key, Label] | None = None,
         stored_pairs: Mapping[Key, LabeledPrediction] | None = None,
         early_ttl_ms: Callable[[str], int] | None = None,
         clock: Mapping[str, int] | None = None) -> JoinResult:
    """Decide one batch; ``stored_*`` are the lookups of this batch's request ids.

    ``clock``: each model's event time as the batch's predictions arrive, against which
    waiting labels expire after ``early_ttl_ms``.
    """
    known = dict(stored_predictions or {})
    known.update((p.key, p) for p in predictions)
    pairs: dict[Key, LabeledPrediction] = dict(stored_pairs or {})
    waiting: dict[Key, Label] = dict(stored_labels or {})
    result = JoinResult()
    for label in sorted(labels, key=lambda item: item.revision):
        _apply(label, known.get(label.key), pairs, waiting, result, window_ms, ttl_ms)
    for prediction in predictions:  # labels that were waiting for these predictions
        if prediction.key in waiting:
            label = waiting.pop(prediction.key)
            now = (clock or {}).get(prediction.model)
            if (early_ttl_ms is not None and now is not None
                    and now - label.event_time > early_ttl_ms(prediction.model)):
                result.expired += 1  # waited too long for its prediction
                continue
            _apply(label, prediction, pairs, waiting, result, window_ms, ttl_ms)
    stored = stored_labels or {}
    result.waiting = [label for key, label in waiting.items() if stored.get(key) != label]
    result.settled = [key for key in stored if key not in waiting]
    return result


def _apply(label: Label, prediction: Prediction | None, pairs: dict[Key, LabeledPrediction],
           waiting: dict[Key, Label], result: JoinResult, window_ms: int,
           ttl_ms: Callable[[str], int]) -> None:
    if prediction is None:
        earlier = waiting.get(label.key)
        if earlier is not None and _same(earlier.label, label.label):
            result.duplicates += 1
        elif earlier is None or earlier.revision <= label.revision:
            waiting[label.key] = label
        return
    start = prediction.event_time - prediction.event_time % window_ms
    earlier_pair = pairs.get(label.key)
    if earlier_pair is not None and _replay(earlier_pair.label, label):
        result.replayed.append(earlier_pair)
        return
    if label.event_time - prediction.event_time > ttl_ms(label.model):
        result.expired += 1
        if earlier_pair is None:  # kept, to be counted; a counted label is never replaced
            pairs[label.key] = LabeledPrediction(prediction, label, start, expired=True)
            result.labeled.append(pairs[label.key])
        return
    if earlier_pair is not None and not earlier_pair.expired:
        if (_same(earlier_pair.label.label, label.label)
                or earlier_pair.label.revision > label.revision):
            result.duplicates += 1
            return
        result.retracted.append(earlier_pair)
    pair = LabeledPrediction(prediction, label, start)
    pairs[label.key] = pair
    result.labeled.append(pair)


def _replay(stored: Label, label: Label) -> bool:
    """The same message read again: same place in the log, same content. A different label
    at the same place comes from a log whose offsets restarted, so it is the newer one."""
    return (stored.revision == label.revision and stored.event_time == label.event_time
            and _same(stored.label, label.label))


def _same(stored: Any, label: Any) -> bool:
    """Storage keeps labels as text: 1 read back is "1"."""
    return stored == label or str(stored) == str(label)
