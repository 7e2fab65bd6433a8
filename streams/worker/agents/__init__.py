"""Agents, one per module. :data:`AGENT_MODULES` lists them so a test can import each
(Faust's autodiscovery would swallow an import error)."""

AGENT_MODULES = ("streams.agents.track_feature_windows", "streams.agents.join_labels",
                 "streams.agents.track_telemetry")
