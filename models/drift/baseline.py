"""A production baseline: a reference profile made from a version's own closed windows.

For teams with no training data at hand: the first N windows a version served (``fixed``)
or always the N windows before the current one (``rolling``) stand in for a training
reference. Windows of a version share their frozen edges, so their histograms add bin by
bin into the baseline's; moments merge exactly (pooled mean and variance); quantiles are
the mean of the windows' quantiles (approximate, and not used by any score).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from driftline.models.drift.reference import (
    MAX_REST_CATEGORIES,
    CategoricalReference,
    NumericReference,
    ReferenceProfile,
)
from driftline.models.windows.feature_windows import FeatureWindowRow


def baseline_profile(model: str, version: str, windows: Sequence[Sequence[FeatureWindowRow]],
                     top_k: int = 20) -> ReferenceProfile:
    """Merge closed windows (each a list of feature rows) into one baseline profile."""
    by_feature: dict[str, list[FeatureWindowRow]] = {}
    for rows in windows:
        for row in rows:
            by_feature.setdefault(row.feature, []).append(row)
    features: dict[str, NumericReference | CategoricalReference] = {}
    for name, rows in by_feature.items():
        merged = (_numeric(rows) if rows[0].kind == "numeric" else _categorical(rows, top_k))
        if merged is not None:
            features[name] = merged
    created = max((row.window_end for rows in windows for row in rows), default=0)
    return ReferenceProfile(model, version, "baseline", created, features)


def _numeric(rows: list[FeatureWindowRow]) -> NumericReference | None:
    # Only windows binned on the same edges add up; the latest edges are the version's.
    edges, fine = rows[-1].bin_edges, rows[-1].fine_bin_edges
    rows = [r for r in rows if r.kind == "numeric" and r.bin_edges == edges
            and r.fine_bin_edges == fine and r.count > r.missing_count]
    if not rows or not edges or not fine:
        return None
    present = [r.count - r.missing_count for r in rows]
    n = sum(present)
    mean = sum(p * r.mean for p, r in zip(present, rows, strict=True)) / n
    # Pooled population variance: within-window spread plus spread of the window means.
    m2 = sum(p * (r.variance + (r.mean - mean) ** 2) for p, r in zip(present, rows, strict=True))
    quantiles = tuple(sum(q) / len(rows) for q in zip(*(r.quantiles for r in rows), strict=True))
    return NumericReference(
        edges=edges, counts=_sum(r.bin_counts for r in rows), fine_edges=fine,
        fine_counts=_sum(r.fine_bin_counts for r in rows), count=sum(r.count for r in rows),
        missing_count=sum(r.missing_count for r in rows), mean=mean,
        std=math.sqrt(max(m2 / n, 0.0)), min=min(r.min for r in rows),
        max=max(r.max for r in rows), quantiles=quantiles)


def _categorical(rows: list[FeatureWindowRow], top_k: int) -> CategoricalReference | None:
    rows = [r for r in rows if r.kind == "categorical"]
    if not rows:
        return None
    counts: dict[str, int] = {}
    for row in rows:
        tracked = row.tracked_counts or dict(zip(row.categories, row.category_counts,
                                                 strict=True))
        for category, n in tracked.items():
            counts[category] = counts.get(category, 0) + n
    ranked = sorted((item for item in counts.items() if item[1]),
                    key=lambda item: (-item[1], item[0]))[:top_k + MAX_REST_CATEGORIES]
    top = ranked[:top_k]
    total = sum(r.count for r in rows)
    missing = sum(r.missing_count for r in rows)
    kept = sum(n for _, n in top)
    return CategoricalReference(categories=tuple(c for c, _ in top),
                                counts=tuple(n for _, n in top),
                                other_count=total - missing - kept, count=total,
                                missing_count=missing, rest=tuple(c for c, _ in ranked[top_k:]))


def _sum(histograms: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(int(sum(column)) for column in zip(*histograms, strict=True))
