"""Rewrite the ``performance`` rows of windows whose labels changed, and compute the
windows the partition's :class:`~driftline.models.quality.monitor.PerformanceMonitor` judges.

Both go through :meth:`PerformanceTracker.compute`: read the windows' labelled predictions
(one query per model version), summarise each window
(:func:`driftline.models.quality.performance_window.summarize`) and build its row. The cost is a
read of each changed window's labelled predictions, once per batch of labels (at most one per
``DRIFTLINE_CHECKPOINT_SECONDS``), not per label.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from driftline.models.quality.performance_window import WindowPerformance, summarize
from driftline.sinks.performance_store import PerformanceStore, WindowKey, performance_row
from driftline.streams.settings import Settings

log = logging.getLogger(__name__)


class PerformanceTracker:
    def __init__(self, settings: Settings, store: PerformanceStore) -> None:
        self.settings = settings
        self.store = store
        self.windows_written = 0

    async def compute(self, windows: Iterable[WindowKey],
                      predicted: Mapping[WindowKey, int] | None = None
                      ) -> tuple[list[tuple[Any, ...]], dict[WindowKey, WindowPerformance]]:
        """Rows and summaries of ``windows``; ``predicted`` gives known prediction counts
        (others are read from ``feature_windows``: a window still open has none yet)."""
        by_version: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
        for model, version, start in sorted(set(windows)):
            by_version[(model, version)].append(start)
        known = dict(predicted or {})
        rows: list[tuple[Any, ...]] = []
        summaries: dict[WindowKey, WindowPerformance] = {}
        for (model, version), starts in by_version.items():
            pairs = await self.store.pairs(model, version, starts)
            missing = [s for s in starts if (model, version, s) not in known]
            counts = await self.store.predicted_counts(model, version, missing) if missing else {}
            task = self.settings.for_model(model, "task")
            positive = self.settings.for_model(model, "positive_class")
            ttl_ms = self.settings.for_model(model, "label_ttl_seconds") * 1000
            for start in starts:
                key = (model, version, start)
                columns, expired = pairs[start]
                summary = summarize(columns, task, positive)
                summaries[key] = summary
                rows.append(performance_row(key, self.settings.window_ms, summary,
                                            known.get(key, counts.get(start)), expired, ttl_ms))
        return rows, summaries

    async def refresh(self, windows: Iterable[WindowKey]) -> None:
        """Rewrite the rows of ``windows`` from their labelled predictions."""
        rows, _ = await self.compute(windows)
        await self.store.put(rows)
        self.windows_written += len(rows)
