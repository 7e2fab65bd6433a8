"""Data quality of one closed window of one model version, feature by feature.

:func:`window_checks` compares each feature of a closed window with the version's reference
(its training profile, or its production baseline: the one drift is judged against) and
returns one :class:`Check` per feature and check:

``invalid_share``
    The share of the window's events whose value was dropped for its type: a string in a
    numeric feature, a number in a categorical one, a list or an object, a score that is
    not a number (see :attr:`driftline.models.events.wire.EventBlock.invalid`). Needs no
    reference: healthy traffic has none.
``missing_increase``
    The share of the window's events without a value (null, or the key left out of the
    message) minus the reference's missing share: features that are often missing are
    fine, a feature going missing more often than it used to is the signal.
``out_of_range_increase``
    Numeric features: the share of the window's values outside the reference's observed
    range (below its lowest or at or above its highest percentile edge) minus the
    reference's own share there (none for a training profile; a baseline's edges come
    from its first values). A unit change, a sentinel such as -999, a clipped sensor.
``absent``
    1 when a feature of the reference sent no value at all in the window: it stopped
    arriving, or was renamed. Judged on the values the reference says to expect (its
    present share × the window's events), so a feature that is usually null is not called
    absent on a quiet window.
``unexpected``
    1 when a feature the reference does not know arrives: the schema changed (the model's
    outputs are exempt: a training profile need not hold them). 0 for a feature that had
    an incident and has gone, so the incident resolves.

The model's outputs (``output.*``) are checked like features; the service's own measures
(``service.*``) only for invalid values (their health is the service monitor's).

``out_of_declared_range`` (:func:`declared_range_checks`)
    Numeric features whose rules declare ``range = [low, high]``: the share of the
    window's values outside it, counted exactly as they arrive.

Per version and window, under the pseudo-feature ``(timeliness)`` (:func:`timeliness_checks`):
``event_delay_{p50,p95,max}_seconds`` (broker time - event time: how long events took to
reach Kafka), ``processing_delay_{p50,p95,max}_seconds`` (read time - broker time: how long
they waited for the worker; the wall clock, so a replay measures its own) and
``late_share`` (events of the version that arrived after their own window had closed, since
its previous window closed, over those and this window's events). Under ``(volume)``
(:func:`volume_checks`): ``volume_drop`` (1 - this window's events over the mean of the
version's previous windows) and ``volume_spike`` (that ratio itself).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from driftline.models.drift.reference import NumericReference, ReferenceProfile
from driftline.models.events.wire import OUTPUT, SERVICE
from driftline.models.windows.feature_windows import FeatureWindowRow

__all__ = ["TIMELINESS", "VOLUME", "Check", "declared_range_checks", "timeliness_checks",
           "volume_checks", "window_checks"]

#: The pseudo-features of a version's own checks: parentheses keep them apart from any
#: feature a model sends.
TIMELINESS = "(timeliness)"
VOLUME = "(volume)"
#: The pseudo-feature of a version the model registry does not know.
REGISTRY = "(registry)"
_DELAY_LEVELS = ("p50", "p95", "max")


@dataclasses.dataclass(frozen=True)
class Check:
    """One check of one feature in one window.

    ``events`` is what the check looked at (the window's events; for a range, the values
    present), ``affected`` how many of them had the problem; ``observed`` is their share and
    ``expected`` the reference's, so ``value`` (what the rules judge) is ``observed`` for
    a share and ``observed - expected`` for an increase. ``n`` gates the rule's
    ``min_count``: the values the check rests on.
    """

    feature: str
    check: str
    value: float
    observed: float
    expected: float | None
    events: int
    affected: int
    n: int


def window_checks(window: Sequence[FeatureWindowRow], reference: ReferenceProfile | None,
                  gone: Iterable[str] = ()) -> list[Check]:
    """The checks of one closed window (all rows of one version and window start).

    ``gone``: features that had a data-quality incident and sent nothing in this window; an
    unexpected one among them is checked as 0 so that its incident can resolve.
    """
    if not window:
        return []
    events = max(row.window_events or row.count for row in window)
    checks: list[Check] = []
    seen: set[str] = set()
    for row in window:
        seen.add(row.feature)
        checks.append(Check(row.feature, "invalid_share", row.invalid_count / events,
                            row.invalid_count / events, None, events, row.invalid_count,
                            events))
        if reference is None or row.feature.startswith(SERVICE):
            continue
        feature = reference.features.get(row.feature)
        present = row.present
        if feature is None:
            # A training profile need not hold the model's outputs: not a schema change.
            if not row.feature.startswith(OUTPUT):
                checks.append(Check(row.feature, "unexpected", 1.0, 1.0, 0.0, events, present,
                                    events))
            continue
        expected_missing = feature.missing_count / feature.count if feature.count else 0.0
        missing = max(events - present - row.invalid_count, 0)
        checks.append(Check(row.feature, "missing_increase",
                            missing / events - expected_missing, missing / events,
                            expected_missing, events, missing, events))
        checks.append(_absent(row.feature, present, events, expected_missing))
        if (isinstance(feature, NumericReference) and row.kind == "numeric"
                and row.fine_bin_counts and row.fine_bin_edges == feature.fine_edges
                and present and feature.present):
            outside = row.fine_bin_counts[0] + row.fine_bin_counts[-1]
            expected = (feature.fine_counts[0] + feature.fine_counts[-1]) / feature.present
            checks.append(Check(row.feature, "out_of_range_increase",
                                outside / present - expected, outside / present, expected,
                                present, outside, present))
    if reference is not None:
        for name, feature in reference.features.items():
            if name not in seen and not name.startswith(SERVICE):
                expected_missing = feature.missing_count / feature.count if feature.count else 0.0
                checks.append(_absent(name, 0, events, expected_missing))
        checks += [Check(name, "unexpected", 0.0, 0.0, 0.0, events, 0, events)
                   for name in sorted(set(gone) - seen - set(reference.features))]
    return checks


def _absent(feature: str, present: int, events: int, expected_missing: float) -> Check:
    # The values the reference says to expect: a feature null 99 % of the time is not
    # absent from a window of 50 events, and min_count gates on this.
    expected_values = round((1.0 - expected_missing) * events)
    value = 1.0 if present == 0 else 0.0
    return Check(feature, "absent", value, value, 0.0, events, events if value else 0,
                 expected_values)


def timeliness_checks(window: Sequence[FeatureWindowRow]) -> list[Check]:
    """Delays and the late share of one closed window (all rows of one version)."""
    if not window:
        return []
    first = window[0]
    events = max(row.window_events or row.count for row in window)
    checks = [Check(TIMELINESS, f"{what}_{level}_seconds", ms / 1000, ms / 1000, None, events,
                    0, events)
              for what, summary in (("event_delay", first.event_delay_ms),
                                    ("processing_delay", first.processing_delay_ms))
              for level, ms in zip(_DELAY_LEVELS, summary, strict=False)]
    arrived = events + first.late_arrivals
    share = first.late_arrivals / arrived if arrived else 0.0
    checks.append(Check(TIMELINESS, "late_share", share, share, None, arrived,
                        first.late_arrivals, arrived))
    return checks


def volume_checks(events: int, previous: Sequence[int]) -> list[Check]:
    """This window's events against the mean of the version's previous windows (none
    until there are some); ``n`` is that mean, so a quiet version is not judged."""
    if not previous:
        return []
    mean = sum(previous) / len(previous)
    ratio = events / mean if mean else 0.0
    return [Check(VOLUME, "volume_drop", 1.0 - ratio, ratio, 1.0, events, 0, round(mean)),
            Check(VOLUME, "volume_spike", ratio, ratio, 1.0, events, 0, round(mean))]


def duplicate_checks(events: int, distinct: int | None) -> list[Check]:
    """``duplicate_share``: events whose request id another event of the version's window
    already had, by the window's distinct-id sketch (about 1.6 % error, so shares within
    a few points of 0 are noise; a window of no ids is not checked)."""
    if distinct is None or not events:
        return []
    duplicates = max(0, events - distinct)
    share = duplicates / events
    return [Check(VOLUME, "duplicate_share", share, share, None, events, duplicates, events)]


def registry_checks(registered: bool | None, events: int) -> list[Check]:
    """``unregistered_version`` (pseudo-feature ``(registry)``): 1 while predictions come
    from a version its model's registry does not know; none for a model without one."""
    if registered is None:
        return []
    value = 0.0 if registered else 1.0
    return [Check(REGISTRY, "unregistered_version", value, value, None, events,
                  0 if registered else events, events)]


def declared_range_checks(window: Sequence[FeatureWindowRow],
                          declared: Callable[[str], bool]) -> list[Check]:
    """``out_of_declared_range``: the share of a feature's values outside the range its
    rules declare, for each feature of the window that has one."""
    checks = []
    for row in window:
        if declared(row.feature):
            present = row.present
            share = row.outside_range_count / present if present else 0.0
            checks.append(Check(row.feature, "out_of_declared_range", share, share, None,
                                present, row.outside_range_count, present))
    return checks
