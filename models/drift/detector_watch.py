"""river detectors on a model version's streams, their hits turned into per-window scores.

Two kinds of stream per model version, both as z-scores against the version's reference
(ADWIN's and PageHinkley's thresholds assume unit scale):

* ``output.score``: every event's score, in message order (capped per message, evenly
  spaced, so a replay feeds exactly the same values);
* ``feature.<name>.mean``: each closed window's mean of a numeric feature.

A hit is remembered against the window of the event (or the window) where it fired. When
that window closes, each detector of each stream becomes a score of value 1.0 (fired in
this window) or 0.0, judged by the same alert rules as every other metric.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

from driftline.models.alerting.evaluation import Score
from driftline.models.drift.detectors import (
    SCORE_STREAM,
    DetectorBank,
    DetectorSpec,
    feature_mean_stream,
)
from driftline.models.drift.reference import NumericReference, ReferenceProfile
from driftline.models.events.wire import EventBlock
from driftline.models.windows.feature_windows import FeatureWindowRow

#: Per event, thousands a minute: PageHinkley's threshold at 200, not 50, keeps stationary
#: score streams quiet (50 gave ~0.6 false alarms per 100k values on skewed scores; 200
#: none in 500k) and still catches a 0.7 sd shift within ~600 values.
SCORE_SPECS = (DetectorSpec.of("adwin"), DetectorSpec.of("page_hinkley", threshold=200.0),
               DetectorSpec.of("kswin"))
#: One value per window: the detectors must be able to fire after a few values (ADWIN
#: checks every value, PageHinkley may fire from the third), and a window mean's z-score
#: is nearly noise-free, so PageHinkley tolerates 0.1 sd and fires at a cumulated 1 sd.
MEAN_SPECS = (DetectorSpec.of("adwin", clock=1, grace_period=3, min_window_length=2),
              DetectorSpec.of("page_hinkley", delta=0.1, threshold=1.0, min_instances=3),
              DetectorSpec.of("kswin", window_size=30, stat_size=10))


class DetectorWatch:
    """Detector banks and pending hits of the model versions on one partition.

    ``detectors`` picks which of each stream's detectors run; ``streams`` which streams
    ("score", "feature_means") are watched at all.
    """

    def __init__(self, window_ms: int,
                 detectors: Sequence[str] = ("adwin", "page_hinkley"),
                 streams: Sequence[str] = ("score", "feature_means")) -> None:
        self.window_ms = window_ms
        self.score_specs = tuple(s for s in SCORE_SPECS if s.kind in detectors)
        self.mean_specs = tuple(s for s in MEAN_SPECS if s.kind in detectors)
        self.watch_score = "score" in streams and bool(self.score_specs)
        self.watch_means = "feature_means" in streams and bool(self.mean_specs)
        # (model, version, "score" | "means") -> bank
        self._banks: dict[tuple[str, str, str], DetectorBank] = {}
        # (model, version, window start) -> {(feature, detector)} that fired in it
        self._hits: dict[tuple[str, str, int], set[tuple[str, str]]] = {}

    def observe_block(self, block: EventBlock, reference: ReferenceProfile | None) -> None:
        """Feed one message's scores, in order; remember where a detector fired."""
        ref = reference.features.get(SCORE_STREAM) if reference is not None else None
        if not self.watch_score or block.score is None or not _usable(ref):
            return
        assert isinstance(ref, NumericReference)
        values = np.asarray(block.score, dtype=np.float64)
        bank = self._bank(block.model, block.version, "score")
        for hit in bank.update(SCORE_STREAM, (values - ref.mean) / ref.std):
            t = block.event_time[hit.index]
            self._remember(block.model, block.version, t - t % self.window_ms,
                           SCORE_STREAM, hit.detector)

    def close_window(self, window: Sequence[FeatureWindowRow],
                     reference: ReferenceProfile) -> list[Score]:
        """Feed the window's feature means; one score per stream and detector of the window."""
        first = window[0]
        for row in window:
            ref = reference.features.get(row.feature)
            # The score has its per-event stream; its window mean would say it twice.
            if (self.watch_means and row.kind == "numeric" and row.feature != SCORE_STREAM
                    and row.count > row.missing_count and _usable(ref)):
                assert isinstance(ref, NumericReference)
                z = (row.mean - ref.mean) / ref.std
                means = self._bank(first.model, first.version, "means")
                for hit in means.update(feature_mean_stream(row.feature), [z]):
                    self._remember(first.model, first.version, first.window_start,
                                   row.feature, hit.detector)
        fired = self._hits.pop((first.model, first.version, first.window_start), set())
        self._forget_before(first.model, first.version, first.window_start)
        counts = {row.feature: row.count - row.missing_count for row in window}
        scores = []
        for kind in ("score", "means"):
            bank = self._banks.get((first.model, first.version, kind))
            if bank is None:
                continue
            for stream in bank.streams:
                feature = SCORE_STREAM if kind == "score" else stream[len("feature."):-5]
                ref_feature = reference.features.get(feature)
                n_reference = ref_feature.present if ref_feature is not None else 0
                scores += [Score(first.model, first.version, feature, spec.kind,
                                 1.0 if (feature, spec.kind) in fired else 0.0, None,
                                 n_reference, counts.get(feature, 0)) for spec in bank.specs]
        return scores

    def _bank(self, model: str, version: str, kind: str) -> DetectorBank:
        bank = self._banks.get((model, version, kind))
        if bank is None:
            specs = self.score_specs if kind == "score" else self.mean_specs
            bank = self._banks[(model, version, kind)] = DetectorBank(specs)
        return bank

    def _remember(self, model: str, version: str, start: int, feature: str, kind: str) -> None:
        self._hits.setdefault((model, version, start), set()).add((feature, kind))

    def _forget_before(self, model: str, version: str, start: int) -> None:
        # Hits of events that were late for their window never get a window to close.
        for key in [k for k in self._hits if k[:2] == (model, version) and k[2] < start]:
            del self._hits[key]

    def to_state(self) -> dict[str, object]:
        return {"banks": [[m, v, k, base64.b64encode(b.to_bytes()).decode()]
                          for (m, v, k), b in self._banks.items()],
                "hits": [[m, v, s, sorted(h)] for (m, v, s), h in self._hits.items()]}

    def load_state(self, state: dict[str, list[list[object]]]) -> None:
        for model, version, kind, data in state["banks"]:
            assert isinstance(data, str)
            self._banks[(str(model), str(version), str(kind))] = DetectorBank.from_bytes(
                base64.b64decode(data))
        for model, version, start, hits in state["hits"]:
            assert isinstance(hits, list) and isinstance(start, int)
            self._hits[(str(model), str(version), start)] = {(str(f), str(k)) for f, k in hits}


def _usable(ref: object) -> bool:
    return isinstance(ref, NumericReference) and ref.std > 0 and ref.present > 0
