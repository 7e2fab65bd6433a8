"""The label join's rules, one case each, and its independence from arrival order."""

from __future__ import annotations

import itertools
from typing import TypeVar

from driftline.models.quality.label_join import Label, LabeledPrediction, Prediction, join

T = TypeVar("T")
W = 60_000
DAY = 86_400_000


def ttl(model: str) -> int:
    return DAY


def p(rid: str, t: int = 30_000, value: str = "fraud") -> Prediction:
    return Prediction("m", "v1", rid, t, value)


def lab(rid: str, value: str = "fraud", t: int = 90_000, rev: int = 0) -> Label:
    return Label("m", rid, t, value, revision=rev)


def test_label_after_prediction_pairs_in_the_window_of_the_prediction() -> None:
    result = join([], [lab("a", t=5 * W)], window_ms=W, ttl_ms=ttl,
                  stored_predictions={("m", "a"): p("a", t=W + 5)})
    (row,) = result.labeled
    assert (row.window_start, row.delay_seconds, row.label.label) == (W, (4 * W - 5) / 1000,
                                                                       "fraud")


def test_label_before_prediction_waits_then_pairs() -> None:
    first = join([], [lab("a")], window_ms=W, ttl_ms=ttl)
    assert first.labeled == [] and [label.request_id for label in first.waiting] == ["a"]
    second = join([p("a")], [], window_ms=W, ttl_ms=ttl,
                  stored_labels={("m", "a"): first.waiting[0]})
    assert [row.request_id for row in second.labeled] == ["a"]
    assert second.settled == [("m", "a")] and second.waiting == []


def test_a_duplicate_label_counts_once_and_a_correction_replaces() -> None:
    first = join([p("a")], [lab("a", "fraud", rev=1)], window_ms=W, ttl_ms=ttl)
    stored = {("m", "a"): first.labeled[0]}
    again = join([], [lab("a", "fraud", rev=2)], window_ms=W, ttl_ms=ttl,
                 stored_predictions={("m", "a"): p("a")}, stored_pairs=stored)
    assert (again.labeled, again.duplicates) == ([], 1)
    fixed = join([], [lab("a", "ok", rev=3)], window_ms=W, ttl_ms=ttl,
                 stored_predictions={("m", "a"): p("a")}, stored_pairs=stored)
    assert [r.label.label for r in fixed.labeled] == ["ok"]
    assert [r.label.label for r in fixed.retracted] == ["fraud"]


def test_an_older_label_replayed_after_a_correction_changes_nothing() -> None:
    first = join([p("a")], [lab("a", "ok", rev=5)], window_ms=W, ttl_ms=ttl)
    replay = join([], [lab("a", "fraud", rev=1)], window_ms=W, ttl_ms=ttl,
                  stored_predictions={("m", "a"): p("a")},
                  stored_pairs={("m", "a"): first.labeled[0]})
    assert (replay.labeled, replay.retracted, replay.duplicates) == ([], [], 1)


def test_a_label_past_the_time_to_live_is_expired_not_paired() -> None:
    result = join([p("a", t=0)], [lab("a", t=DAY + 1)], window_ms=W, ttl_ms=ttl)
    # Kept to be counted (n_expired_labels), never used for metrics.
    assert ([pair.expired for pair in result.labeled], result.expired) == ([True], 1)


def test_the_outcome_does_not_depend_on_the_order_of_arrival() -> None:
    preds = [p(r) for r in "abc"]
    labels = [lab("a", "ok", rev=1), lab("b", rev=2), lab("a", "fraud", rev=3)]
    outcomes = set()
    for order in itertools.permutations([*preds, *labels]):
        stored_predictions: dict[tuple[str, str], Prediction] = {}
        stored_labels: dict[tuple[str, str], Label] = {}
        pairs: dict[tuple[str, str], LabeledPrediction] = {}
        for item in order:  # one message at a time, as the worker may see them
            batch_p = [item] if isinstance(item, Prediction) else []
            batch_l = [item] if isinstance(item, Label) else []
            key = item.key
            result = join(batch_p, batch_l, window_ms=W, ttl_ms=ttl,
                          stored_predictions=_only(stored_predictions, key),
                          stored_labels=_only(stored_labels, key),
                          stored_pairs=_only(pairs, key))
            stored_predictions.update((x.key, x) for x in batch_p)
            for settled in result.settled:
                stored_labels.pop(settled, None)
            stored_labels.update((w.key, w) for w in result.waiting)
            pairs.update((r.prediction.key, r) for r in result.labeled)
        outcomes.add(tuple(sorted((k[1], v.label.label) for k, v in pairs.items())))
    assert outcomes == {(("a", "fraud"), ("b", "fraud"))}


def _only(stored: dict[tuple[str, str], T], key: tuple[str, str]) -> dict[tuple[str, str], T]:
    """What the worker's lookup returns: the stored rows of this batch's request ids."""
    return {key: stored[key]} if key in stored else {}


def test_a_label_met_again_after_a_crash_is_a_replay_not_a_duplicate() -> None:
    first = join([p("a")], [lab("a", rev=7)], window_ms=W, ttl_ms=ttl)
    replay = join([], [lab("a", rev=7)], window_ms=W, ttl_ms=ttl,
                  stored_predictions={("m", "a"): p("a")},
                  stored_pairs={("m", "a"): first.labeled[0]})
    assert (replay.labeled, replay.duplicates) == ([], 0)
    assert replay.replayed == first.labeled
    assert replay.touched == {("m", "v1", 0)}  # its window is rewritten


def test_an_expired_label_is_kept_but_a_counted_one_is_never_replaced_by_one() -> None:
    late = join([], [lab("a", t=DAY + 40_000, rev=1)], window_ms=W, ttl_ms=ttl,
                stored_predictions={("m", "a"): p("a")})
    assert [pair.expired for pair in late.labeled] == [True] and late.expired == 1
    counted = join([p("b")], [lab("b", rev=1)], window_ms=W, ttl_ms=ttl)
    after = join([], [lab("b", "ok", t=DAY + 40_000, rev=2)], window_ms=W, ttl_ms=ttl,
                 stored_predictions={("m", "b"): p("b")},
                 stored_pairs={("m", "b"): counted.labeled[0]})
    assert (after.labeled, after.retracted, after.expired) == ([], [], 1)


def test_a_label_waits_for_its_prediction_only_the_early_time_to_live() -> None:
    waiting = join([], [lab("a", t=90_000)], window_ms=W, ttl_ms=ttl).waiting[0]

    def arrive(clock: int) -> tuple[int, int, list[tuple[str, str]]]:
        result = join([p("a")], [], window_ms=W, ttl_ms=ttl,
                      stored_labels={("m", "a"): waiting}, early_ttl_ms=lambda model: 3_600_000,
                      clock={"m": clock})
        return len(result.labeled), result.expired, result.settled

    assert arrive(90_000 + 3_600_000) == (1, 0, [("m", "a")])  # just in time
    assert arrive(90_001 + 3_600_000) == (0, 1, [("m", "a")])  # expired, and removed


def test_time_to_live_is_per_model() -> None:
    from driftline.streams.settings import Settings

    settings = Settings.from_env({"DRIFTLINE_LABEL_TTL_SECONDS": "3600",
                                  "DRIFTLINE_OUTCOME_TTL_SECONDS": "3600",
                                  "DRIFTLINE_MODELS": '{"fraud": {"label_ttl_seconds": 86400}}'})
    assert settings.for_model("fraud", "label_ttl_seconds") == 86_400
    assert settings.for_model("ctr", "label_ttl_seconds") == 3_600
    assert settings.label_retention_days == 2  # a day past the longest time-to-live
    chargebacks = Settings.from_env({"DRIFTLINE_MODELS": '{"fraud": {"outcome_ttl_seconds": '
                                                          '7776000}}'})
    assert chargebacks.label_retention_days == 91  # outcomes wait for predictions too
