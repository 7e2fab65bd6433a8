"""Faust tables: durable, changelog-backed state that survives a worker restart."""

from __future__ import annotations

import faust
from faust.types import TableT

from driftline.streams.worker.checkpoint import RECORD_LIMIT

#: The changelog topic's settings, not the broker's defaults: compacted (only the latest
#: record of a key is needed to recover), and records up to :data:`RECORD_LIMIT` accepted
#: (headroom for the record batch's own framing).
CHANGELOG_CONFIG = {
    "cleanup.policy": "compact",
    "max.message.bytes": str(RECORD_LIMIT + 64 * 1024),
}


def declare_window_states(app: faust.App) -> TableT[bytes, bytes]:
    """The checkpoints of the source partitions, keyed by what they hold.

    Predictions partition N: ``b"partition-N/<model>"``, one record per model (its
    :class:`~driftline.models.partition.PartitionState`), written when a batch changed it,
    and ``b"partition-N"``, how far the partition got. Telemetry partition N:
    ``b"telemetry-N"``. Values are :mod:`~driftline.models.state_codec` records.
    """
    # bytes key and value type mean the "raw" codec: we serialise the state ourselves.
    return app.Table("window_states", key_type=bytes, value_type=bytes,
                     extra_topic_configs=CHANGELOG_CONFIG,
                     help="Checkpoints of the source partitions: one record per model")
