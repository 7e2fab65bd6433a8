"""What flows through driftline: events in, window aggregates out, and the pure computation
on them. Nothing here does I/O; only :mod:`models.records` imports faust."""
