"""Business outcomes compared: a window against its baseline, a challenger against the champion.

Outcomes (converted 0/1, revenue) are reported per prediction, and per version and window
only additive sums are kept: predictions, total and sum of squares (:class:`Summary`). Every
statistic here is a function of those three numbers.

* :func:`baseline_test`: one window of a version against its own baseline windows, by
  Welch's z-test (the normal approximation of Welch's t, close at hundreds of values).
* :class:`ChallengerTest`: a challenger against the champion, looked at after every window.
  A fixed-sample test read at every look rejects a true null far more often than its level
  says. The mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis and
  Walsh, "Always valid inference: continuous monitoring of A/B tests" (Operations Research
  70(3), 2022; arXiv:1512.04922) does not: with ``d`` the difference of the means, ``V =
  s_A²/n_A + s_B²/n_B`` its plug-in variance and a normal mixture ``N(0, τ²)`` over the true
  difference ``θ``, the likelihood ratio ::

      Λ = sqrt(V / (V + τ²)) · exp(τ² d² / (2 V (V + τ²)))

  is a martingale under ``θ = 0`` (for normal data of known variance), so by Ville's
  inequality ``P(Λ ever ≥ 1/α) ≤ α``. The always-valid p-value is the running minimum of
  ``1/Λ``; inverting the test at every ``θ`` gives a confidence sequence ::

      |d - θ| < sqrt(2 V (V + τ²) / τ² · log(sqrt((V + τ²) / V) / α))

  that holds at all looks at once with probability ``1 - α``, so the intersection of the
  intervals seen so far is valid too.

Nothing here returns NaN: an empty summary has mean 0.0, and a look that cannot be judged
(too few values, no variance) gives p-value 1.0 and an unbounded interval.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Self

import numpy as np
import numpy.typing as npt

__all__ = [
    "ChallengerTest",
    "Change",
    "Comparison",
    "Interval",
    "Summary",
    "baseline_test",
    "confidence_radius",
    "mixture_log_likelihood_ratio",
]

_CANCELLATION = 1e-10
"""A variance below this share of the mean square is rounding noise of ``Σx² - n·mean²``."""
_MEANS_EQUAL = 1e-9
"""Relative tolerance under which two means of constant samples count as equal."""


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """Outcome sums of some predictions: windows (and versions' windows) merge by ``+``.

    ``total`` sums the reported values (an unreported outcome counts as 0) and
    ``sum_squares`` their squares; ``Summary()`` is the empty summary, so
    ``sum(windows, Summary())`` merges a list.

    Examples
    --------
    >>> s = Summary.from_values([0.0, 1.0, 1.0, 0.0]) + Summary(1, 1.0, 1.0)
    >>> s
    Summary(n=5, total=3.0, sum_squares=3.0)
    >>> s.mean, round(s.variance, 12)
    (0.6, 0.3)
    """

    n: int = 0
    total: float = 0.0
    sum_squares: float = 0.0

    def __post_init__(self) -> None:
        if self.n < 0 or not self.sum_squares >= 0.0 or not math.isfinite(self.total) \
                or not math.isfinite(self.sum_squares):
            raise ValueError(f"not a summary: {self!r}")

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> Self:
        """The summary of the outcome values of some predictions."""
        x = np.asarray(values, dtype=np.float64).ravel()
        return cls(int(x.size), float(x.sum()), float(np.dot(x, x)))

    def __add__(self, other: Summary) -> Summary:
        if not isinstance(other, Summary):
            return NotImplemented
        return Summary(self.n + other.n, self.total + other.total,
                       self.sum_squares + other.sum_squares)

    @property
    def mean(self) -> float:
        """The mean outcome; 0.0 for no predictions (nothing reported)."""
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The unbiased sample variance; 0.0 below two values.

        ``Σx² - n·mean²`` cancels when the spread is tiny against the mean: a result
        within ``_CANCELLATION`` of the mean square (a coefficient of variation under
        1e-5) is what the sums cannot tell from a constant, and is 0.0.
        """
        if self.n < 2:
            return 0.0
        centred = self.sum_squares - self.total * self.mean
        if centred <= _CANCELLATION * self.sum_squares:
            return 0.0
        return centred / (self.n - 1)


class Change(NamedTuple):
    """A window's mean outcome against its baseline's (see :func:`baseline_test`)."""

    difference: float
    """Window mean minus baseline mean."""
    relative_change: float | None
    """``difference / |baseline mean|``; None when the baseline mean is 0."""
    z: float
    """Welch's statistic (±inf when neither side varies and the means differ)."""
    p_value: float
    """Two-sided, from the normal distribution."""


def baseline_test(window: Summary, baseline: Summary) -> Change:
    """One window of a version against the version's own baseline: Welch's z-test.

    Degenerate cases are defined rather than divided by zero: with an empty side there
    is nothing to compare (p = 1); a side of a single value has no variance of its own
    and borrows the other side's, so one odd prediction is not read as a certain change;
    when neither side varies (all-zero against all-zero), equal means give p = 1 and
    different means p = 0. Small counts of a rare outcome (a few conversions) are where
    the normal approximation is poor: gate on a minimum count before alerting.

    Examples
    --------
    >>> change = baseline_test(Summary(1000, 40.0, 40.0), Summary(60000, 3000.0, 3000.0))
    >>> round(change.relative_change, 3), round(change.p_value, 3)
    (-0.2, 0.11)
    >>> baseline_test(Summary(50, 0.0, 0.0), Summary(500, 0.0, 0.0)).p_value
    1.0
    """
    if window.n == 0 or baseline.n == 0:
        return Change(0.0, None, 0.0, 1.0)
    difference = window.mean - baseline.mean
    relative = difference / abs(baseline.mean) if baseline.mean != 0.0 else None
    var_w, var_b = window.variance, baseline.variance
    if window.n < 2:
        var_w = var_b
    if baseline.n < 2:
        var_b = var_w
    se = math.sqrt(var_w / window.n + var_b / baseline.n)
    if se == 0.0:
        if math.isclose(window.mean, baseline.mean, rel_tol=_MEANS_EQUAL):
            return Change(difference, relative, 0.0, 1.0)
        return Change(difference, relative, math.copysign(math.inf, difference), 0.0)
    z = difference / se
    return Change(difference, relative, z, _two_sided_p(z))


def _two_sided_p(z: float) -> float:
    # erfc keeps the tail's relative precision where 1 - cdf would round to 0.
    return math.erfc(abs(z) / math.sqrt(2.0))


class Interval(NamedTuple):
    """A closed interval; ``±inf`` ends where nothing bounds it yet."""

    lower: float
    upper: float

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper

    def scaled(self, by: float) -> Interval:
        """Both ends divided by ``by > 0`` (absolute to relative bounds)."""
        return Interval(self.lower / by, self.upper / by)


_UNBOUNDED = Interval(-math.inf, math.inf)


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    """One look of :class:`ChallengerTest`: the challenger's mean outcome against the champion's.

    Relative figures divide by ``|champion mean|`` as measured (its own uncertainty is not
    in the bounds) and are None when that mean is 0.
    """

    difference: float
    """Challenger mean minus champion mean."""
    champion_mean: float
    interval: Interval
    """This look's always-valid interval for the true difference (unbounded if not ``ready``)."""
    running: Interval
    """The intersection of every look's interval: valid too, and never wider."""
    p_value: float
    """Always-valid p-value of "no difference": the minimum over looks, never rising."""
    ready: bool
    """Whether this look was judged (enough values on both sides, some variance)."""
    restarted: bool = False
    """The intersection would have been empty, so ``running`` restarted at ``interval``."""

    @property
    def relative_difference(self) -> float | None:
        return self.difference / abs(self.champion_mean) if self.champion_mean else None

    @property
    def relative_interval(self) -> Interval | None:
        return self.interval.scaled(abs(self.champion_mean)) if self.champion_mean else None

    @property
    def relative_running(self) -> Interval | None:
        return self.running.scaled(abs(self.champion_mean)) if self.champion_mean else None


def mixture_log_likelihood_ratio(difference: float, variance: float, tau2: float) -> float:
    """``log Λ`` of the normal-mixture SPRT of "difference 0" (``variance``, ``tau2`` > 0)."""
    total = variance + tau2
    return 0.5 * math.log(variance / total) + tau2 * difference**2 / (2.0 * variance * total)


def confidence_radius(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the confidence sequence: the ``θ`` with ``Λ(d - θ) < 1/α``."""
    total = variance + tau2
    return math.sqrt(2.0 * variance * total / tau2
                     * (0.5 * math.log(total / variance) - math.log(alpha)))


class ChallengerTest:
    """Champion against challenger, always valid however often it is looked at.

    Call :meth:`update` after each window with the *cumulative* summaries of both versions
    over the same windows. Between calls the test keeps its state (the running minimum
    p-value, the running intersection of intervals and the mixture scale), which
    :meth:`to_dict` and :meth:`from_dict` checkpoint as plain JSON-able data.

    Parameters
    ----------
    alpha
        Level of the intervals, ``1 - alpha`` coverage over all looks at once.
    relative_effect
        The effect worth detecting, as a share of the champion's mean: sets the mixture
        scale ``τ = relative_effect · |champion mean|`` (see :meth:`_mixture_tau`).
    tau
        The mixture scale on the outcome's own scale, overriding ``relative_effect``.
    min_samples
        Looks before both versions have this many predictions are not judged (p = 1): the
        plug-in variance and the normal approximation need a fair sample, and for a 5 %
        conversion rate 500 predictions hold about 25 conversions.

    Examples
    --------
    >>> test = ChallengerTest()
    >>> test.update(Summary(400, 20.0, 20.0), Summary(400, 16.0, 16.0)).ready
    False
    >>> seen = test.update(Summary(20000, 1000.0, 1000.0), Summary(20000, 800.0, 800.0))
    >>> round(seen.relative_difference, 2), seen.p_value < 0.05, seen.running.upper < 0
    (-0.2, True, True)
    """

    def __init__(self, alpha: float = 0.05, relative_effect: float = 0.05,
                 tau: float | None = None, min_samples: int = 500) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        if not relative_effect > 0.0:
            raise ValueError(f"relative_effect must be positive, got {relative_effect!r}")
        if tau is not None and not (tau > 0.0 and math.isfinite(tau)):
            raise ValueError(f"tau must be positive and finite, got {tau!r}")
        if min_samples < 2:
            raise ValueError(f"min_samples must be at least 2, got {min_samples!r}")
        self.alpha = alpha
        self.relative_effect = relative_effect
        self.min_samples = min_samples
        self._tau = tau
        self._p_value = 1.0
        self._running = _UNBOUNDED
        self._looks = 0
        self._restarts = 0
        self._seen = (0, 0)

    @property
    def tau(self) -> float | None:
        """The mixture scale in use; None until the first judged look sets it."""
        return self._tau

    @property
    def p_value(self) -> float:
        return self._p_value

    @property
    def running(self) -> Interval:
        return self._running

    @property
    def looks(self) -> int:
        """Looks judged so far."""
        return self._looks

    @property
    def restarts(self) -> int:
        """Times the running intersection came up empty and restarted (see :meth:`update`)."""
        return self._restarts

    def update(self, champion: Summary, challenger: Summary) -> Comparison:
        """Judge the cumulative summaries after one more window.

        The running intersection of intervals is valid as long as the true difference stays
        put. If it comes up empty, the data contradict that (the difference moved, say after
        a traffic shift) or a ``1 - alpha`` event happened; rather than report an empty or
        stale interval, it restarts at this look's interval, which is valid on its own, and
        the look is marked ``restarted``. The p-value keeps its minimum: any look where it
        fell below ``alpha`` was already evidence against "no difference".
        """
        if champion.n < self._seen[0] or challenger.n < self._seen[1]:
            raise ValueError("summaries must be cumulative: a version's count went down "
                             f"from {self._seen} to {(champion.n, challenger.n)}")
        self._seen = (champion.n, challenger.n)
        difference = challenger.mean - champion.mean
        variance = champion.variance / max(champion.n, 1) \
            + challenger.variance / max(challenger.n, 1)
        tau = self._mixture_tau(champion)
        if min(champion.n, challenger.n) < self.min_samples or variance == 0.0 or tau is None:
            return Comparison(difference, champion.mean, _UNBOUNDED, self._running,
                              self._p_value, ready=False)
        self._tau = tau  # fixed from here on: the mixture must not follow the data it tests
        tau2 = tau * tau
        log_lr = mixture_log_likelihood_ratio(difference, variance, tau2)
        self._p_value = min(self._p_value, math.exp(-log_lr) if log_lr > 0.0 else 1.0)
        radius = confidence_radius(variance, tau2, self.alpha)
        interval = Interval(difference - radius, difference + radius)
        running = Interval(max(self._running.lower, interval.lower),
                           min(self._running.upper, interval.upper))
        restarted = running.lower > running.upper
        if restarted:
            running = interval
            self._restarts += 1
        self._running = running
        self._looks += 1
        return Comparison(difference, champion.mean, interval, running, self._p_value,
                          ready=True, restarted=restarted)

    def _mixture_tau(self, champion: Summary) -> float | None:
        """The mixture's scale: given, set at an earlier look, or set now from the champion.

        The mSPRT detects soonest an effect of about ``τ`` (the mixture likelihood ratio
        at a true difference ``δ`` peaks at ``τ² = δ² - V``, so ``τ ≈ δ`` once ``V`` is
        small), and Johari et al. match the mixture to the effects that plausibly occur.
        Model changes move business outcomes by a few percent of their level, so ``τ`` is
        ``relative_effect`` (5 % by default) of the champion's mean; the test still detects
        larger effects, only a little later than a mixture matched to them. With the
        champion's mean at 0 its standard deviation sets the scale; with no spread either
        there is nothing to scale by yet (None: the look waits). The scale is fixed at the
        first judged look and checkpointed; a mixture that moved with the data would no
        longer be a fixed prior, and Ville's inequality would not apply.
        """
        if self._tau is not None:
            return self._tau
        scale = abs(champion.mean) or math.sqrt(champion.variance)
        return self.relative_effect * scale if scale > 0.0 else None

    def to_dict(self) -> dict[str, Any]:
        """Settings and state as plain JSON-able data (no inf: open ends are None)."""
        lower, upper = self._running
        return {
            "alpha": self.alpha, "relative_effect": self.relative_effect,
            "min_samples": self.min_samples, "tau": self._tau, "p_value": self._p_value,
            "running": [None if math.isinf(lower) else lower,
                        None if math.isinf(upper) else upper],
            "looks": self._looks, "restarts": self._restarts, "seen": list(self._seen),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Restore :meth:`to_dict` output."""
        try:
            test = cls(float(data["alpha"]), float(data["relative_effect"]),
                       None if data["tau"] is None else float(data["tau"]),
                       int(data["min_samples"]))
            lower, upper = data["running"]
            test._running = Interval(-math.inf if lower is None else float(lower),
                                     math.inf if upper is None else float(upper))
            test._p_value = float(data["p_value"])
            test._looks, test._restarts = int(data["looks"]), int(data["restarts"])
            champion_n, challenger_n = data["seen"]
            test._seen = (int(champion_n), int(challenger_n))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a ChallengerTest state: {e!r}") from None
        if not 0.0 <= test._p_value <= 1.0:
            raise ValueError(f"not a ChallengerTest state: p-value {test._p_value!r}")
        return test
