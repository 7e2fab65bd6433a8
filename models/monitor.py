"""Model health per partition: drift scores of closed windows, alert rules, incidents."""

from __future__ import annotations

import dataclasses
from typing import Literal

Verdict = Literal["ok", "warning", "critical", "not_evaluated"]


@dataclasses.dataclass(frozen=True)
class DriftScoreRow:
    """One metric of one feature of one closed window: a row of ``drift_scores``."""

    model: str
    version: str
    feature: str
    window_start: int
    window_end: int
    metric: str
    value: float
    p_value: float | None
    error_bound: float | None
    n_reference: int
    n_window: int
    threshold: float | None
    verdict: Verdict
    reference_source: str
    reference_id: str

    @property
    def model_version(self) -> str:
        return self.version
