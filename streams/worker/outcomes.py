"""Business outcomes in the worker: join reports with their predictions, and write the
per-window ``outcomes`` rows.

Outcome reports travel on the labels topic (keyed by model), so they take turns with the
partition's predictions under the label join's lock and inherit its exactness: per outcome
name, a report is a label whose value is a number, and the label join
(:func:`driftline.models.quality.label_join.join`) decides what pairs, waits, expires, is a
duplicate or a correction. Everything written replaces by key (see
:mod:`driftline.sinks.outcome_store`), so a replay after a crash changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from driftline.models.events.wire import EventBlock
from driftline.models.outcomes.compare import Summary
from driftline.models.partition import PartitionModels
from driftline.models.quality.label_join import JoinResult, Key, Label, join
from driftline.sinks.clickhouse import SinkBatch
from driftline.sinks.label_store import LabelStore
from driftline.sinks.outcome_store import OutcomeStore, OutcomeSums, outcome_row
from driftline.sinks.performance_store import PerformanceStore, WindowKey
from driftline.streams.settings import Settings
from driftline.streams.worker.label_join import PER_MESSAGE, LabelJoinStats, awaited

#: Per (model, version, window start): outcome name -> its sums over the window.
WindowSums = dict[WindowKey, dict[str, OutcomeSums]]


class OutcomeJoinStats(LabelJoinStats):
    def __init__(self) -> None:
        super().__init__()
        #: Outcome values that were not numbers or booleans: dropped, the rest kept.
        self.invalid_values = 0


class OutcomeJoiner:
    def __init__(self, settings: Settings, store: OutcomeStore, labels: LabelStore) -> None:
        self.settings = settings
        self.store = store
        self.labels = labels
        self.stats = OutcomeJoinStats()
        #: Requests with a report waiting for its prediction: (model, request id) -> names.
        self._waiting: defaultdict[Key, set[str]] = defaultdict(set)

    async def start(self) -> None:
        result = await self.store.client.query(
            "SELECT model, request_id, outcome"
            f" FROM {self.store.database}.waiting_outcomes FINAL")
        for model, request_id, name in result.result_rows:
            self._waiting[(model, request_id)].add(name)

    def ttl_ms(self, model: str) -> int:
        return int(self.settings.for_model(model, "outcome_ttl_seconds")) * 1000

    def early_ttl_ms(self, model: str) -> int:
        return int(self.settings.for_model(model, "early_label_ttl_seconds")) * 1000

    async def on_predictions(self, blocks: Sequence[EventBlock],
                             clock: Mapping[str, int] | None = None) -> set[WindowKey]:
        """Pair stored predictions (the label join stores them first) with reports that
        were waiting for them; the windows whose outcomes changed."""
        if not self._waiting:
            return set()
        ready = [p for b in blocks if b.kind == "prediction" and b.request_id
                 for p in awaited(b, self._waiting)]
        if not ready:
            return set()
        keys = [p.key for p in ready]
        waiting, stored = await self.store.waiting(keys), await self.store.reports(
            keys, self.settings.window_ms)
        touched: set[WindowKey] = set()
        for name in sorted({name for _, _, name in waiting}):
            named = _named(waiting, name)
            result = join(ready, [], window_ms=self.settings.window_ms, ttl_ms=self.ttl_ms,
                          stored_labels=named, stored_pairs=_named(stored, name),
                          early_ttl_ms=self.early_ttl_ms, clock=clock)
            await self._write(name, result, [named[key] for key in result.settled])
            touched |= result.touched
        return touched

    async def on_reports(self, blocks: Sequence[tuple[int, EventBlock]]
                         ) -> tuple[set[WindowKey], dict[str, set[str]]]:
        """Join a partition's outcome messages (offset, block; offset order). Returns the
        windows whose outcomes changed and the names each model reported."""
        reports: defaultdict[str, list[Label]] = defaultdict(list)
        names: defaultdict[str, set[str]] = defaultdict(set)
        for offset, block in blocks:
            self.stats.invalid_values += sum(map(len, block.invalid.values()))
            for name, values in (block.outcomes or {}).items():
                reports[name] += [
                    Label(block.model, rid, t, value, offset * PER_MESSAGE + i)
                    for i, (rid, t, value) in enumerate(zip(block.request_id, block.event_time,
                                                            values, strict=True))
                    if value is not None]
                names[block.model].add(name)
        keys = list({label.key for group in reports.values() for label in group})
        if not keys:
            return set(), dict(names)
        window_ms = self.settings.window_ms
        predictions = await self.labels.predictions(keys)
        waiting, stored = await self.store.waiting(keys), await self.store.reports(keys,
                                                                                   window_ms)
        touched: set[WindowKey] = set()
        for name, labels in sorted(reports.items()):
            result = join([], labels, window_ms=window_ms, ttl_ms=self.ttl_ms,
                          stored_predictions=predictions, stored_labels=_named(waiting, name),
                          stored_pairs=_named(stored, name))
            await self._write(name, result, [])
            touched |= result.touched
            self.stats.labels += len(labels)
        return touched, dict(names)

    async def _write(self, name: str, result: JoinResult, settled: list[Label]) -> None:
        await self.store.put_reports(name, result.labeled)
        await self.store.put_waiting(name, result.waiting, settled)
        for label in result.waiting:
            self._waiting[label.key].add(name)
        for key in {*result.settled, *(pair.prediction.key for pair in result.labeled)}:
            names = self._waiting.get(key)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._waiting[key]
        self.stats.count(result)


class OutcomeTracker:
    """Computes and writes the ``outcomes`` rows of windows."""

    def __init__(self, settings: Settings, store: OutcomeStore,
                 performance: PerformanceStore) -> None:
        self.settings = settings
        self.store = store
        self.performance = performance
        self.windows_written = 0

    async def compute(self, windows: Iterable[WindowKey],
                      predicted: Mapping[WindowKey, int] | None = None,
                      names: Mapping[str, Sequence[str]] | None = None
                      ) -> tuple[list[tuple[Any, ...]], WindowSums]:
        """Rows and sums of ``windows``: an outcome's row where it has reports, and for
        each of the model's ``names`` (zeros) where the window's predictions are known."""
        by_version: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
        for model, version, start in sorted(set(windows)):
            by_version[(model, version)].append(start)
        known = dict(predicted or {})
        rows: list[tuple[Any, ...]] = []
        sums: WindowSums = {}
        for (model, version), starts in by_version.items():
            found = await self.store.sums(model, version, starts)
            missing = [s for s in starts if (model, version, s) not in known]
            counts = (await self.performance.predicted_counts(model, version, missing)
                      if missing else {})
            ttl_ms = int(self.settings.for_model(model, "outcome_ttl_seconds")) * 1000
            for start in starts:
                key = (model, version, start)
                n_predicted = known.get(key, counts.get(start))
                window = dict(found.get(start, {}))
                if n_predicted is not None:
                    window.update((name, OutcomeSums()) for name in (names or {}).get(model, ())
                                  if name not in window)
                sums[key] = window
                rows += [outcome_row(key, self.settings.window_ms, name, window[name],
                                     n_predicted, ttl_ms) for name in sorted(window)]
        return rows, sums

    async def refresh(self, windows: Iterable[WindowKey]) -> None:
        """Rewrite the rows of ``windows`` from their reports."""
        rows, _ = await self.compute(windows)
        await self.store.put(rows)
        self.windows_written += len(rows)


async def judge_due(tracker: OutcomeTracker, models: PartitionModels, stalled: Collection[str],
                    closing: Mapping[WindowKey, int], touched: Collection[WindowKey],
                    batch: SinkBatch) -> set[str]:
    """``outcomes`` rows of windows closing now (with their predictions) or ``touched`` by
    reports, and the verdicts of windows now due, into ``batch``. Returns the models whose
    state this changed."""
    names = {model: state.outcomes.names[model] for model, state in models.states.items()
             if state.outcomes.names.get(model)}
    due = [window for state in models.states.values()
           for window in state.outcomes.due(state.windows.event_time, stalled)]
    predicted = {key: n for key, n in closing.items() if key[0] in names}
    predicted.update({(d.model, d.version, d.window_start): d.n_predicted for d in due})
    if not (predicted or touched):
        return set()
    rows, sums = await tracker.compute({*predicted, *touched}, predicted, names)
    batch.outcomes += rows
    windows: defaultdict[tuple[str, int], dict[str, dict[str, Summary]]] = defaultdict(dict)
    for d in due:
        found = sums[(d.model, d.version, d.window_start)]
        windows[(d.model, d.window_start)][d.version] = {
            name: Summary(d.n_predicted, found[name].total, found[name].sum_squares)
            for name in names[d.model] if name in found}
    for (model, start), versions in sorted(windows.items()):
        comparisons, alerts = models.states[model].outcomes.judge(model, start, versions)
        batch.outcome_comparisons += comparisons
        batch.alerts += alerts
    return {d.model for d in due}


def _named(stored: Mapping[tuple[str, str, str], Any], name: str) -> dict[Key, Any]:
    """The entries of one outcome name, keyed by (model, request id) as the join keys them."""
    return {(model, rid): value for (model, rid, n), value in stored.items() if n == name}


__all__ = ["OutcomeJoiner", "OutcomeTracker", "judge_due"]
