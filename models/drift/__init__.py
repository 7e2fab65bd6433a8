"""Drift: reference profiles and baselines, scores against them, river detectors, and the
per-partition monitor that turns closed windows into judged scores."""
