"""The model registry on Kafka: publish model versions and deployments, follow them."""

from driftline.streams.registry.registry import (
    RegistryStore,
    publish_deployment,
    publish_model_version,
    publish_records,
)

__all__ = ["RegistryStore", "publish_deployment", "publish_model_version", "publish_records"]
