"""Alerting: rules from ``driftline.toml``, judging a window, FDR control, incidents, and
the alert document."""
