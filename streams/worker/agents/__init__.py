"""Agents, one per module. :data:`AGENT_MODULES` lists them so a test can import each
(Faust's autodiscovery would swallow an import error)."""

AGENT_MODULES = (
    "driftline.streams.worker.agents.track_feature_windows",
    "driftline.streams.worker.agents.join_labels",
    "driftline.streams.worker.agents.track_telemetry",
    "driftline.streams.worker.agents.deliver_alerts",
    "driftline.streams.worker.agents.track_pipelines",
    "driftline.streams.worker.agents.track_service_chains",
)
