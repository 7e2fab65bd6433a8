"""Outcome statistics against numpy and scipy, and the mSPRT's guarantees by simulation.

The simulations draw whole runs at once with numpy (per-window sums, not raw values, where
their distribution is exact) and feed them to :class:`ChallengerTest` look by look, as the
worker would. Run this file as a script to print the figures the assertions bound.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from driftline.models.outcomes.compare import (
    ChallengerTest,
    Summary,
    baseline_test,
    confidence_radius,
    mixture_log_likelihood_ratio,
)

Floats = npt.NDArray[np.float64]
ALPHA = 0.05
RUNS, WINDOWS = 200, 100
#: Runs of the null simulations whose share rejecting may exceed alpha: about two standard
#: errors of a share of 0.05 over 200 runs.
TOLERANCE = 0.03

values = st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), max_size=50)


# Summary ------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(values, values)
def test_adding_summaries_is_summarising_the_concatenation(a: list[float], b: list[float]) -> None:
    merged = Summary.from_values(a) + Summary.from_values(b)
    both = np.array(a + b, dtype=np.float64)
    assert merged.n == both.size
    scale = float(np.dot(both, both)) + 1.0
    assert merged.total == pytest.approx(both.sum(), abs=1e-12 * scale)
    assert merged.sum_squares == pytest.approx(np.dot(both, both), rel=1e-12)
    assert merged.mean == (pytest.approx(both.mean(), abs=1e-9 * math.sqrt(scale))
                           if both.size else 0.0)
    if both.size >= 2:
        # What the sums cannot resolve (cancellation in Σx² - n·mean²) is floored at 0.
        assert merged.variance == pytest.approx(np.var(both, ddof=1), abs=1e-9 * scale / both.size)


def test_summaries_merge_with_sum_and_guard_small_counts() -> None:
    windows = [Summary.from_values(w) for w in np.array_split(np.arange(10.0), 4)]
    assert sum(windows, Summary()) == Summary.from_values(np.arange(10.0))
    assert Summary().mean == 0.0 and Summary().variance == 0.0
    assert Summary.from_values([3.0]).variance == 0.0
    # A constant with no exact binary form: rounding leaves Σx² - n·mean² a hair off 0.
    assert Summary.from_values(np.full(1000, 0.1)).variance == 0.0
    assert Summary.from_values([0.0, 1.0]).variance == 0.5


@pytest.mark.parametrize("bad", [(-1, 0.0, 0.0), (1, 1.0, -1.0), (1, math.nan, 1.0),
                                 (1, 1.0, math.inf)])
def test_a_summary_rejects_impossible_sums(bad: tuple[int, float, float]) -> None:
    with pytest.raises(ValueError, match="not a summary"):
        Summary(*bad)


# baseline_test ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_baseline_test_is_welch_with_a_normal_tail(seed: int) -> None:
    rng = np.random.default_rng(seed)
    if seed % 2:
        window, baseline = rng.binomial(1, 0.045, 3000), rng.binomial(1, 0.05, 60000)
    else:
        window, baseline = rng.normal(51.0, 25.0, 2000), rng.normal(50.0, 20.0, 40000)
    change = baseline_test(Summary.from_values(window), Summary.from_values(baseline))
    welch = stats.ttest_ind(window, baseline, equal_var=False)
    from_stats = stats.ttest_ind_from_stats(window.mean(), window.std(ddof=1), window.size,
                                            baseline.mean(), baseline.std(ddof=1),
                                            baseline.size, equal_var=False)
    assert change.z == pytest.approx(welch.statistic, rel=1e-9)
    assert change.z == pytest.approx(from_stats.statistic, rel=1e-9)
    # t with thousands of degrees of freedom against the normal: equal to ~1e-3.
    assert change.p_value == pytest.approx(from_stats.pvalue, abs=2e-3)
    assert change.difference == pytest.approx(window.mean() - baseline.mean(), abs=1e-12)
    assert change.relative_change == pytest.approx(
        (window.mean() - baseline.mean()) / abs(baseline.mean()), rel=1e-9)


def test_baseline_test_defines_the_degenerate_cases() -> None:
    zeros = Summary.from_values(np.zeros(50))
    assert baseline_test(zeros, Summary.from_values(np.zeros(500))) == (0.0, None, 0.0, 1.0)
    ones = Summary.from_values(np.ones(500))
    differ = baseline_test(zeros, ones)
    assert (differ.p_value, differ.z, differ.relative_change) == (0.0, -math.inf, -1.0)
    constant = Summary.from_values(np.full(500, 0.1))
    assert baseline_test(Summary.from_values(np.full(50, 0.1)), constant).p_value == 1.0
    assert baseline_test(Summary(), ones).p_value == 1.0
    assert baseline_test(ones, Summary()).p_value == 1.0
    # One prediction has no variance of its own: it borrows the baseline's and is no
    # evidence; counted as a constant, it would have been "certain" (p ~ 1e-150).
    rates = Summary.from_values(np.random.default_rng(0).binomial(1, 0.05, 60000))
    assert baseline_test(Summary.from_values([0.0]), rates).p_value > 0.5
    assert baseline_test(Summary.from_values([0.0]), Summary.from_values([1.0])).p_value == 0.0


# ChallengerTest: the formulas ---------------------------------------------------------------

@pytest.mark.parametrize(("d", "v", "tau2"), [(0.0, 1.0, 1.0), (0.01, 8e-5, 6e-6),
                                              (-3.0, 0.5, 4.0), (0.2, 1e-4, 1e-2)])
def test_the_mixture_ratio_is_the_marginal_of_the_normal_mixture(
        d: float, v: float, tau2: float) -> None:
    # Under the mixture θ ~ N(0, τ²) the estimate is N(0, V + τ²); under θ = 0, N(0, V).
    oracle = (stats.norm.logpdf(d, scale=math.sqrt(v + tau2))
              - stats.norm.logpdf(d, scale=math.sqrt(v)))
    assert mixture_log_likelihood_ratio(d, v, tau2) == pytest.approx(oracle, rel=1e-9, abs=1e-12)
    # The interval's ends are where the ratio against θ crosses 1/α.
    radius = confidence_radius(v, tau2, ALPHA)
    assert mixture_log_likelihood_ratio(radius, v, tau2) == pytest.approx(-math.log(ALPHA))


# ChallengerTest: simulations ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Arm:
    """Cumulative sums of one version over ``windows`` windows of ``per_window`` predictions."""

    per_window: int
    total: Floats  # (runs, windows)
    sum_squares: Floats

    def summary(self, run: int, window: int) -> Summary:
        return Summary(self.per_window * (window + 1), float(self.total[run, window]),
                       float(self.sum_squares[run, window]))

    def mean_and_variance(self) -> tuple[Floats, Floats]:
        n = self.per_window * np.arange(1, self.total.shape[1] + 1)
        mean = self.total / n
        return mean, (self.sum_squares - self.total * mean) / (n - 1)


def conversions(rng: np.random.Generator, rate: float, per_window: int,
                runs: int = RUNS, windows: int = WINDOWS) -> Arm:
    total = rng.binomial(per_window, rate, (runs, windows)).cumsum(axis=1).astype(np.float64)
    return Arm(per_window, total, total.copy())  # 0/1 values: squares are the values


def revenue(rng: np.random.Generator, mean: float, sd: float, per_window: int,
            runs: int = RUNS, windows: int = WINDOWS) -> Arm:
    # A normal sample's sum and centred sum of squares are independent: N(nμ, nσ²) and
    # σ²·χ²(n - 1), so each window's exact sums come without drawing its values.
    total = rng.normal(per_window * mean, math.sqrt(per_window) * sd, (runs, windows))
    centred = sd**2 * rng.chisquare(per_window - 1, (runs, windows))
    squares = centred + total**2 / per_window
    return Arm(per_window, total.cumsum(axis=1), squares.cumsum(axis=1))


@dataclasses.dataclass(frozen=True)
class Looks:
    """What :class:`ChallengerTest` said at each look of each run, as (runs, windows) arrays."""

    p_value: Floats
    lower: Floats  # this look's interval
    upper: Floats
    running_lower: Floats
    running_upper: Floats
    restarts: npt.NDArray[np.int64]  # per run

    def first(self, hit: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """The first window (1-based) where ``hit`` holds, per run; 0 where it never does."""
        return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)


def watch(champion: Arm, challenger: Arm, **options: float) -> Looks:
    runs, windows = champion.total.shape
    out = np.empty((5, runs, windows))
    restarts = np.zeros(runs, dtype=np.int64)
    for run in range(runs):
        test = ChallengerTest(alpha=ALPHA, **options)  # type: ignore[arg-type]
        for window in range(windows):
            seen = test.update(champion.summary(run, window), challenger.summary(run, window))
            out[:, run, window] = (seen.p_value, *seen.interval, *seen.running)
        restarts[run] = test.restarts
    return Looks(*out, restarts=restarts)


def naive_z_rejects(champion: Arm, challenger: Arm) -> npt.NDArray[np.bool_]:
    """Per run: a fixed-sample Welch z-test at level alpha, read after every window."""
    (mean_a, var_a), (mean_b, var_b) = champion.mean_and_variance(), challenger.mean_and_variance()
    n = champion.per_window * np.arange(1, champion.total.shape[1] + 1)
    z = (mean_b - mean_a) / np.sqrt(var_a / n + var_b / n)
    return np.asarray((np.abs(z) > stats.norm.isf(ALPHA / 2)).any(axis=1))


NULLS = {
    "conversion 5 %": lambda rng: (conversions(rng, 0.05, 500), conversions(rng, 0.05, 500)),
    "revenue N(50, 20)": lambda rng: (revenue(rng, 50.0, 20.0, 500),
                                      revenue(rng, 50.0, 20.0, 500)),
}


def null_rates(name: str, seed: int = 7) -> tuple[float, float]:
    """Shares of runs that ever reject "no difference" when there is none: mSPRT, naive."""
    champion, challenger = NULLS[name](np.random.default_rng(seed))
    looks = watch(champion, challenger)
    ever = (looks.p_value < ALPHA).any(axis=1)
    # The running interval excludes 0 exactly when the p-value has fallen below alpha.
    excludes = ((looks.running_lower > 0) | (looks.running_upper < 0)).any(axis=1)
    assert np.array_equal(ever, excludes)
    return float(ever.mean()), float(naive_z_rejects(champion, challenger).mean())


@pytest.mark.parametrize("name", NULLS)
def test_under_the_null_the_msprt_rarely_ever_rejects_and_peeking_often_does(name: str) -> None:
    msprt, naive = null_rates(name)
    assert msprt <= ALPHA + TOLERANCE
    # The same data read by a fixed-sample test after each of 100 windows: several times alpha.
    assert naive >= 4 * ALPHA


WORSE = 0.8 * 0.05  # a challenger converting 20 % less than the champion's 5 %
DETECT_RUNS, DETECT_WINDOWS = 100, 60


def detection(seed: int = 11) -> tuple[npt.NDArray[np.int64], Looks]:
    """Per run, the first window where the challenger is judged worse (0 if never)."""
    rng = np.random.default_rng(seed)
    champion = conversions(rng, 0.05, 1000, DETECT_RUNS, DETECT_WINDOWS)
    challenger = conversions(rng, WORSE, 1000, DETECT_RUNS, DETECT_WINDOWS)
    looks = watch(champion, challenger)
    worse = (looks.p_value < ALPHA) & (looks.running_upper < 0)
    return looks.first(worse), looks


def test_a_challenger_20_percent_worse_is_caught_within_a_few_dozen_windows() -> None:
    first, looks = detection()
    assert (first > 0).all()
    # Measured: median 13 windows (13,000 per arm), 90th percentile 20, slowest 30; a
    # fixed-sample test with 90 % power would need about 9 (and could not be peeked at).
    assert np.median(first) <= 15
    assert np.percentile(first, 90) <= 22
    assert first.max() <= 35
    assert not (looks.running_lower > 0).any()  # never judged better


def test_the_intervals_cover_the_true_difference_at_every_look() -> None:
    _, looks = detection()
    truth = WORSE - 0.05
    misses = ((looks.lower > truth) | (looks.upper < truth)).any(axis=1)
    assert misses.mean() <= ALPHA + TOLERANCE
    final = (looks.running_lower[:, -1] <= truth) & (truth <= looks.running_upper[:, -1])
    assert final.mean() >= 1 - ALPHA
    assert (looks.restarts == 0).mean() >= 1 - ALPHA


# ChallengerTest: guards and state -----------------------------------------------------------

def test_below_the_minimum_sample_there_is_no_verdict() -> None:
    test = ChallengerTest(min_samples=1000)
    seen = test.update(Summary(999, 999.0, 999.0), Summary(5000, 0.0, 0.0))
    assert not seen.ready and seen.p_value == 1.0 and seen.interval == (-math.inf, math.inf)
    assert seen.relative_difference == -1.0 and test.tau is None and test.looks == 0
    # Enough values but nothing varies (no conversions yet on either side): still waiting.
    assert not test.update(Summary(1000, 0.0, 0.0), Summary(5000, 0.0, 0.0)).ready


def test_tau_is_set_once_from_the_champion_or_given() -> None:
    test = ChallengerTest(relative_effect=0.1)
    test.update(Summary(1000, 50.0, 50.0), Summary(1000, 50.0, 50.0))
    assert test.tau == pytest.approx(0.1 * 0.05)
    test.update(Summary(2000, 200.0, 200.0), Summary(2000, 100.0, 100.0))
    assert test.tau == pytest.approx(0.1 * 0.05)  # not moved by the champion's new mean
    given_tau = ChallengerTest(tau=0.01)
    given_tau.update(Summary(1000, 50.0, 50.0), Summary(1000, 50.0, 50.0))
    assert given_tau.tau == 0.01
    # A champion at mean 0 scales by its standard deviation.
    centred = ChallengerTest(relative_effect=0.1)
    centred.update(Summary(1000, 0.0, 4000.0), Summary(1000, 10.0, 4000.0))
    assert centred.tau == pytest.approx(0.1 * math.sqrt(4000.0 / 999))


def test_an_empty_intersection_restarts_at_the_current_interval() -> None:
    test = ChallengerTest(tau=0.01)
    first = test.update(Summary(10000, 500.0, 500.0), Summary(10000, 300.0, 300.0))
    assert first.running.upper < 0
    # The challenger turns around: cumulatively now well above the champion.
    seen = test.update(Summary(100000, 5000.0, 5000.0), Summary(100000, 7000.0, 7000.0))
    assert seen.interval.lower > first.running.upper  # disjoint from everything so far
    assert seen.restarted and seen.running == seen.interval and test.restarts == 1
    assert seen.p_value <= first.p_value  # the p-value never rises


def test_counts_must_not_go_down() -> None:
    test = ChallengerTest()
    test.update(Summary(600, 30.0, 30.0), Summary(600, 30.0, 30.0))
    with pytest.raises(ValueError, match="cumulative"):
        test.update(Summary(500, 30.0, 30.0), Summary(700, 30.0, 30.0))


def test_the_checkpoint_round_trip_changes_nothing() -> None:
    rng = np.random.default_rng(3)
    champion, challenger = conversions(rng, 0.05, 300, 1, 30), conversions(rng, 0.045, 300, 1, 30)
    for cut in (0, 1, 2, 15):  # before any look, before the first judged one, and later
        kept, restored = ChallengerTest(), ChallengerTest()
        for window in range(cut):
            kept.update(champion.summary(0, window), challenger.summary(0, window))
            restored.update(champion.summary(0, window), challenger.summary(0, window))
        text = json.dumps(restored.to_dict(), allow_nan=False)
        restored = ChallengerTest.from_dict(json.loads(text))
        assert restored.to_dict() == kept.to_dict()
        for window in range(cut, 30):
            assert (restored.update(champion.summary(0, window), challenger.summary(0, window))
                    == kept.update(champion.summary(0, window), challenger.summary(0, window)))
        assert restored.to_dict() == kept.to_dict()


@pytest.mark.parametrize("broken", [{"alpha": 2.0}, {"tau": "wide"}, {"p_value": 2.0},
                                    {"running": 1}, {"seen": [1]}, {"looks": None}])
def test_a_broken_checkpoint_is_a_value_error(broken: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="ChallengerTest state"):
        ChallengerTest.from_dict(ChallengerTest().to_dict() | broken)
    with pytest.raises(ValueError, match="ChallengerTest state"):
        ChallengerTest.from_dict({})


if __name__ == "__main__":
    for name in NULLS:
        msprt, naive = null_rates(name)
        print(f"null, {name}, {RUNS} runs x {WINDOWS} looks of 500 per arm: "
              f"mSPRT ever rejects {msprt:.3f}, naive z-test at every look {naive:.3f}")
    first, _ = detection()
    print(f"20 % worse on 5 %, 1000 per arm per window, {DETECT_RUNS} runs: detected in "
          f"{(first > 0).mean():.0%}; windows to detection median {np.median(first):g}, "
          f"90th percentile {np.percentile(first, 90):g}, max {first.max()}")
