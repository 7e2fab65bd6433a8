"""driftline: streaming drift, delayed-label quality and telemetry monitoring for ML models.

The public API, importable from ``driftline`` itself. Each name is imported on first use,
so ``from driftline import Publisher`` loads the publisher and nothing else (no Faust, no
ClickHouse client, no pandas): the base install is what serving code needs to publish.

>>> from driftline import Publisher, Settings
>>> Publisher.__module__
'driftline.streams.publisher._sync'

The repository's root is this package: ``models/`` (the pure computation, by concern),
``streams/`` (one subpackage per program) and ``sinks/`` (ClickHouse) are its subpackages.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from driftline.models.alerting.alerts import Alert
    from driftline.models.alerting.rules import Severity
    from driftline.models.drift.reference import (
        CategoricalReference,
        NumericReference,
        ReferenceProfile,
    )
    from driftline.models.drift.reference_build import (
        build_profile,
        load_columns,
        profile_from_frame,
    )
    from driftline.models.events.records import LabelEvent, PredictionEvent
    from driftline.models.registry.records import Deployment, ModelVersion
    from driftline.models.telemetry.sample import TelemetrySample
    from driftline.streams.publisher import AsyncPublisher, Publisher, PublisherStats
    from driftline.streams.reference.profiles import (
        ReferenceStore,
        publish_profile,
        publish_profiles,
    )
    from driftline.streams.registry import publish_deployment, publish_model_version
    from driftline.streams.settings import Settings

try:
    __version__ = version("driftline")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

#: Public name -> (module, extra it needs beyond the base install, or None).
_EXPORTS: dict[str, tuple[str, str | None]] = {
    # Serving code: publish predictions and labels.
    "Publisher": ("driftline.streams.publisher", None),
    "AsyncPublisher": ("driftline.streams.publisher", None),
    "PublisherStats": ("driftline.streams.publisher", None),
    "Settings": ("driftline.streams.settings", None),
    # Training pipelines: build a reference profile, publish it.
    "ReferenceProfile": ("driftline.models.drift.reference", None),
    "NumericReference": ("driftline.models.drift.reference", None),
    "CategoricalReference": ("driftline.models.drift.reference", None),
    "build_profile": ("driftline.models.drift.reference_build", None),
    "profile_from_frame": ("driftline.models.drift.reference_build", None),
    "load_columns": ("driftline.models.drift.reference_build", None),
    "publish_profile": ("driftline.streams.reference.profiles", "reference"),
    "publish_profiles": ("driftline.streams.reference.profiles", "reference"),
    "ReferenceStore": ("driftline.streams.reference.profiles", "reference"),
    # Training and deploy pipelines: register model versions and their deployments.
    "ModelVersion": ("driftline.models.registry.records", None),
    "Deployment": ("driftline.models.registry.records", None),
    "publish_model_version": ("driftline.streams.registry", None),
    "publish_deployment": ("driftline.streams.registry", None),
    # Consumers of the alert and telemetry topics.
    "Alert": ("driftline.models.alerting.alerts", None),
    "Severity": ("driftline.models.alerting.rules", None),
    "TelemetrySample": ("driftline.models.telemetry.sample", None),
    # Faust producers that want typed events.
    "PredictionEvent": ("driftline.models.events.records", "worker"),
    "LabelEvent": ("driftline.models.events.records", "worker"),
}

__all__ = [
    "Alert",
    "AsyncPublisher",
    "CategoricalReference",
    "Deployment",
    "LabelEvent",
    "ModelVersion",
    "NumericReference",
    "PredictionEvent",
    "Publisher",
    "PublisherStats",
    "ReferenceProfile",
    "ReferenceStore",
    "Settings",
    "Severity",
    "TelemetrySample",
    "__version__",
    "build_profile",
    "load_columns",
    "profile_from_frame",
    "publish_deployment",
    "publish_model_version",
    "publish_profile",
    "publish_profiles",
]


def __getattr__(name: str) -> Any:
    try:
        module_name, extra = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'driftline' has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is None or (exc.name or "").startswith("driftline"):
            raise
        raise ModuleNotFoundError(
            f"driftline.{name} needs {exc.name!r}, which the base install leaves out: "
            f"pip install 'driftline[{extra}]'", name=exc.name) from exc
    value = getattr(module, name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
