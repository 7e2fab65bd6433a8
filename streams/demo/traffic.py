"""Synthetic inference traffic: several models and versions, numeric and categorical
features, and a distribution shift injected part-way, sent through the real publisher.

Most predictions get a label later, as in production: after a delay of seconds to minutes
of event time (log-normal; the churn model's labels come slower), some never. Labels are
published when their event time comes, interleaved with newer predictions. During the
shift fraud-detector v2's predictions also get worse: its labels stop following its score.
Later the churn model's service slows down (3x latency, some timeouts) for a while, and
its feature store with it: ``account_days`` comes back empty for 40 % of its requests (a
data-quality incident: missing far more often than in its baseline).

The fraud detector's two versions serve side by side, and the shop reports each request's
business outcome a little later: whether the customer ``completed`` the purchase (an
approved one does, a blocked one does not) and its ``revenue``. In the shift v2 blocks far
more customers than v1: a challenger doing worse than its champion.

Event time is simulated: ``windows`` windows of event time are replayed as fast as the
publisher takes them (or at ``events_per_second``), so a run of seconds fills many windows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import time
from collections.abc import Awaitable, Callable

import numpy as np

from driftline.streams.publisher import AsyncPublisher

COUNTRIES = np.array(["DE", "FR", "US", "GB", "IN", "BR", "JP", "NG"], dtype=object)
DEVICES = np.array(["ios", "android", "web"], dtype=object)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    model: str
    version: str
    share: float  # of all traffic
    shifted: bool  # gets the injected shift


MODELS = (
    ModelSpec("fraud-detector", "v1", 0.35, shifted=False),
    ModelSpec("fraud-detector", "v2", 0.35, shifted=True),
    ModelSpec("churn-predictor", "2026.11", 0.30, shifted=False),
)
#: Median label delay (event time, seconds) per model, and the share never labelled.
LABEL_DELAY_SECONDS = {"fraud-detector": 40.0, "churn-predictor": 150.0}
UNLABELLED_SHARE = 0.15
#: The model whose requests report business outcomes, and their median delay (seconds).
OUTCOME_MODEL = "fraud-detector"
OUTCOME_DELAY_SECONDS = 20.0
#: The model whose service slows down part-way.
SLOW_MODEL = "churn-predictor"


@dataclasses.dataclass(frozen=True)
class TrafficPlan:
    windows: int = 10
    events_per_window: int = 5_000
    window_ms: int = 60_000
    #: The shift starts at this fraction of the run (0.6 → from window 6 of 10) ...
    shift_at: float = 0.6
    #: ... and ends here (1.0: it lasts to the end).
    shift_until: float = 1.0
    #: The churn model's service is slow in this part of the run (fractions, as above).
    slow_at: float = 0.64
    slow_until: float = 0.79
    seed: int = 7
    start_ms: int | None = None
    events_per_second: float | None = None
    tick_ms: int = 5_000
    straggler_share: float = 0.002

    @property
    def total_events(self) -> int:
        return self.windows * self.events_per_window


def features_for(spec: ModelSpec, n: int, shifted: bool,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Feature columns for ``n`` events; after the shift, amount and country move."""
    amount = rng.lognormal(3.0 + (0.8 if shifted else 0.0), 0.6, n)
    weights = np.array([0.25, 0.2, 0.2, 0.1, 0.1, 0.07, 0.05, 0.03])
    if shifted:
        weights = np.array([0.1, 0.1, 0.15, 0.05, 0.1, 0.1, 0.05, 0.35])
    columns: dict[str, np.ndarray] = {
        "amount": amount,
        "age": rng.normal(41.0, 12.0, n).round(),
        "account_days": rng.exponential(400.0, n),
        "items": rng.poisson(3.0, n).astype(np.float64),
        "country": rng.choice(COUNTRIES, n, p=weights),
        "device": rng.choice(DEVICES, n, p=[0.45, 0.4, 0.15]),
    }
    # Some missing values, as in real traffic.
    columns["age"][rng.random(n) < 0.02] = np.nan
    return columns


async def send_traffic(publisher: AsyncPublisher, plan: TrafficPlan,
                       on_progress: Callable[[int], None] | None = None,
                       on_tick: Callable[[int, bool], Awaitable[None]] | None = None) -> int:
    """Publish the plan's events in event-time order; return how many were accepted.

    The publisher is flushed after every ``tick_ms`` of event time, as a live service's
    linger would do: simulated time runs thousands of times faster than the wall clock,
    and an envelope must not span more event time than the worker's allowed lateness.
    ``on_tick(event_time, slow)`` runs once per tick (the demo sends telemetry there).
    """
    rng = np.random.default_rng(plan.seed)
    start_ms = plan.start_ms if plan.start_ms is not None else _aligned_start(plan)
    shifted = range(int(plan.windows * plan.shift_at), int(plan.windows * plan.shift_until))
    slow = range(int(plan.windows * plan.slow_at), int(plan.windows * plan.slow_until))
    accepted = 0
    began = time.monotonic()
    # Heaps of (time, model, request, label or outcomes), published when their time comes.
    labels: list[tuple[int, str, str, str]] = []
    outcomes: list[tuple[int, str, str, dict[str, float]]] = []
    for window in range(plan.windows):
        window_start = start_ms + window * plan.window_ms
        batches = [_WindowTraffic(spec, int(plan.events_per_window * spec.share),
                                  spec.shifted and window in shifted, rng, window_start,
                                  plan.window_ms, plan.straggler_share,
                                  slow=spec.model == SLOW_MODEL and window in slow)
                   for spec in MODELS]
        for tick in range(window_start, window_start + plan.window_ms, plan.tick_ms):
            for batch in batches:
                accepted += batch.publish(publisher, tick, tick + plan.tick_ms, f"{window}",
                                          labels, outcomes)
            while labels and labels[0][0] < tick + plan.tick_ms:
                label_time, model, request_id, label = heapq.heappop(labels)
                publisher.log_label(model, request_id, label, event_time_ms=label_time)
            while outcomes and outcomes[0][0] < tick + plan.tick_ms:
                at, model, request_id, reported = heapq.heappop(outcomes)
                publisher.log_outcome(model, request_id, reported, event_time_ms=at)
            await publisher.flush()
            if on_tick is not None:
                await on_tick(tick, window in slow)
            if on_progress is not None:
                on_progress(accepted)
            await _pace(plan, accepted, began)
    return accepted


class _WindowTraffic:
    """One model version's events of one window, published a tick at a time."""

    def __init__(self, spec: ModelSpec, n: int, shifted: bool, rng: np.random.Generator,
                 window_start: int, window_ms: int, straggler_share: float,
                 slow: bool = False) -> None:
        self.spec = spec
        self.send_at = np.sort(window_start + rng.integers(0, window_ms, n))
        # A few stragglers (a slow replica, a retry) carry an event time from long ago.
        stragglers = rng.random(n) < straggler_share
        self.event_time = np.where(stragglers, self.send_at - 2 * window_ms, self.send_at)
        self.features = features_for(spec, n, shifted, rng)
        if slow:  # the feature store times out too: account_days goes missing
            self.features["account_days"][rng.random(n) < 0.4] = np.nan
        self.scores = rng.beta(2.0, 5.0 if not shifted else 3.0, n)
        self.latency = rng.gamma(4.0, 5.0, n) * (3.0 if slow else 1.0)
        self.status = np.where(rng.random(n) < (0.04 if slow else 0.003), "timeout", "ok")
        # The truth follows the score closely (about 95 % accuracy), but not during the
        # shift: the model has not seen that traffic, and gets about 70 % right.
        noise = rng.normal(0.0, 0.35 if shifted else 0.07, n)
        self.truth = (self.scores + noise > 0.5).astype(int)
        median = LABEL_DELAY_SECONDS.get(spec.model, 60.0) * 1000
        self.label_delay = rng.lognormal(np.log(median), 0.8, n).astype(np.int64)
        self.labelled = rng.random(n) >= UNLABELLED_SHARE
        self.outcome_delay = rng.lognormal(np.log(OUTCOME_DELAY_SECONDS * 1000), 0.5,
                                           n).astype(np.int64)

    def publish(self, publisher: AsyncPublisher, start: int, end: int, tag: str,
                labels: list[tuple[int, str, str, str]],
                outcomes: list[tuple[int, str, str, dict[str, float]]]) -> int:
        """Publish the predictions sent in [start, end); queue their labels on ``labels``
        and their business outcomes on ``outcomes``."""
        lo, hi = np.searchsorted(self.send_at, [start, end])
        names = list(self.features)
        accepted = 0
        for i in range(lo, hi):
            features = {name: self.features[name][i] for name in names}
            request_id = f"{self.spec.model}-{self.spec.version}-{tag}-{i}"
            event_time = int(self.event_time[i])
            accepted += publisher.log_prediction(
                self.spec.model, self.spec.version, request_id, features,
                prediction=int(self.scores[i] > 0.5), score=float(self.scores[i]),
                latency_ms=float(self.latency[i]), status=str(self.status[i]),
                event_time_ms=event_time)
            if self.labelled[i]:
                heapq.heappush(labels, (event_time + int(self.label_delay[i]), self.spec.model,
                                        request_id, str(self.truth[i])))
            if self.spec.model == OUTCOME_MODEL:  # approved customers complete the purchase
                completed = self.scores[i] <= 0.5
                revenue = round(float(self.features["amount"][i]), 2) if completed else 0.0
                heapq.heappush(outcomes, (event_time + int(self.outcome_delay[i]),
                                          self.spec.model, request_id,
                                          {"completed": float(completed), "revenue": revenue}))
        return accepted


async def _pace(plan: TrafficPlan, sent: int, began: float) -> None:
    if plan.events_per_second:
        ahead = sent / plan.events_per_second - (time.monotonic() - began)
        if ahead > 0:
            await asyncio.sleep(ahead)
    else:
        await asyncio.sleep(0)  # let the publisher's background task send


def _aligned_start(plan: TrafficPlan) -> int:
    # End the simulated run "now", on a window boundary, so timestamps look like today's.
    now = int(time.time() * 1000)
    end = now - now % plan.window_ms
    return end - plan.windows * plan.window_ms
