"""Assemble the worker app: topics, tables and agents on one :class:`faust.App`."""

from __future__ import annotations

import dataclasses
import importlib

import faust

from streams.agents import AGENT_MODULES
from streams.app import build_app
from streams.feature_windows import FeatureWindowProcessor
from streams.services import WorkerServices
from streams.settings import Settings
from streams.tables import declare_window_states
from streams.telemetry_windows import TelemetryWindowProcessor
from streams.topics import declare_topics


@dataclasses.dataclass(frozen=True)
class Worker:
    app: faust.App
    feature_windows: FeatureWindowProcessor
    telemetry: TelemetryWindowProcessor


def create_worker(settings: Settings) -> Worker:
    if settings.broker_flavor == "tansu":
        from streams.embedded.tansu_compat import install

        install()
    app = build_app(settings)
    topics = declare_topics(app, settings)
    window_states = declare_window_states(app)
    services = WorkerServices(settings)
    agents = [importlib.import_module(name) for name in AGENT_MODULES]
    track_feature_windows, join_labels, track_telemetry = agents
    processor = track_feature_windows.attach(app, settings, topics, window_states, services)
    join_labels.attach(app, settings, topics, services, processor)
    telemetry = track_telemetry.attach(app, settings, topics, window_states, services)
    return Worker(app=app, feature_windows=processor, telemetry=telemetry)
