"""Faust tables: durable, changelog-backed state that survives a worker restart."""

from __future__ import annotations

import faust
from faust.types import TableT


def declare_window_states(app: faust.App) -> TableT[bytes, bytes]:
    """One checkpoint per source partition of the predictions topic.

    Key ``b"partition-N"``, value the bytes of a
    :class:`driftline.models.windows.feature_windows.PartitionWindows`. Written at most once per
    checkpoint interval per partition, never per event.
    """
    # bytes key and value type mean the "raw" codec: we serialise the state ourselves.
    return app.Table("window_states", key_type=bytes, value_type=bytes,
                     help="Open feature windows and applied offset per source partition")
