"""A model gone silent while the rest of its partition flows, decided from event time.

Messages are keyed by model, so the models of one partition share its order. The
partition's event time is the latest event time of any model's prediction there; a model
whose own latest event is ``silent_windows`` windows (rule ``silent_windows`` of the
pseudo-feature ``(silence)``, 5 by default) behind it has gone silent. Nothing but the
messages decides it, so a replay reproduces it, whatever the batching:

* silence is an event-time gap: a model's return is recognised at its first message after
  a gap of at least the threshold, measured against the partition's event time just
  before that message;
* the ``open`` alert describes the gap (from the first window after the model's last
  event), not the moment it was noticed; if a batch holds both the gap and the return,
  ``open`` and ``resolved`` go out together, as a batch ending inside the gap would have
  sent them one after the other.

A partition holding one model never calls it silent: with nothing else flowing, no data
says whether it should have spoken.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping

from driftline.models.alerting.alerts import Alert, alert_id
from driftline.models.alerting.rules import RulesConfig

__all__ = ["SILENCE", "SilenceWatch", "Silent"]

#: The pseudo-feature of a model's silence (its dedup key ends with it).
SILENCE = "(silence)"
_METRIC = "silent_windows"


@dataclasses.dataclass
class Silent:
    """What a model's checkpoint keeps of its silence: the last event before the gap, and
    the version that sent it; ``since`` None while the model is not silent."""

    since: int | None = None
    version: str = ""


class SilenceWatch:
    """Opens and resolves silence incidents for the models of one partition."""

    def __init__(self, rules: RulesConfig, window_ms: int) -> None:
        self.rules = rules
        self.window_ms = window_ms

    def threshold_windows(self, model: str) -> float | None:
        rule = self.rules.rule(model, SILENCE, _METRIC)
        if rule is None or not rule.enabled:
            return None
        return rule.bound(None)

    def returns(self, messages: Iterable[tuple[str, str, int, int]],
                last_events: Mapping[str, tuple[int, str]]) -> dict[str, tuple[int, int, str]]:
        """Models that came back after a gap: model -> (last event before it, first event
        after it, the version that sent the one before).

        ``messages``: (model, version, first event time, last event time) of each fresh
        prediction message in offset order; ``last_events``: each model's latest event
        and its version before them.
        """
        last = dict(last_events)
        partition = max((t for t, _ in last.values()), default=None)
        back: dict[str, tuple[int, int, str]] = {}
        for model, version, first, latest in messages:
            before = last.get(model)
            threshold = self.threshold_windows(model)
            if (before is not None and partition is not None and threshold is not None
                    and model not in back
                    and partition - before[0] >= threshold * self.window_ms):
                back[model] = (before[0], first, before[1])
            if before is None or latest >= before[0]:
                last[model] = (latest, version)
            partition = latest if partition is None else max(partition, latest)
        return back

    def judge(self, model: str, state: Silent, last_event: int, version: str,
              partition_time: int, came_back: tuple[int, int, str] | None) -> list[Alert]:
        """The alerts of one model after a batch; ``state`` is updated in place."""
        alerts: list[Alert] = []
        threshold = self.threshold_windows(model)
        if threshold is None:
            return alerts
        if came_back is not None:
            before, first, silent_version = came_back
            if state.since is None:
                alerts.append(self._alert(model, silent_version, before, threshold, None))
            alerts.append(self._alert(model, silent_version, before, threshold, first))
            state.since, state.version = None, ""
        if state.since is None and partition_time - last_event >= threshold * self.window_ms:
            state.since, state.version = last_event, version
            alerts.append(self._alert(model, version, last_event, threshold, None))
        return alerts

    def _alert(self, model: str, version: str, before: int, threshold: float,
               back_at: int | None) -> Alert:
        w = self.window_ms
        start = before - before % w + w  # the first window without its events
        end = start + round(threshold * w) if back_at is None else back_at - back_at % w
        key = ":".join(p.replace("%", "%25").replace(":", "%3A")
                       for p in ("data_quality", model, version, SILENCE))
        rule = self.rules.rule(model, SILENCE, _METRIC)
        severity = (rule.severity(threshold) if rule is not None else None) or "warning"
        since = f"{datetime.datetime.fromtimestamp(start / 1000, datetime.UTC):%Y-%m-%d %H:%M} UTC"
        head = f"{model} {'v' if version[:1].isdigit() else ''}{version}: "
        if back_at is None:
            summary = (f"{head}model silent: no predictions for {threshold:g} windows of "
                       f"event time since {since} while its partition's other models went on")
        else:
            back = datetime.datetime.fromtimestamp(back_at / 1000, datetime.UTC)
            summary = f"{head}predictions again at {back:%H:%M} UTC; silent since {since}"
        return Alert(alert_id(key, start), key, "open" if back_at is None else "resolved",
                     severity, model, version, SILENCE, _METRIC, threshold, threshold,
                     start, end, start, end, summary)
