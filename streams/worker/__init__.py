"""The worker (``driftline worker``): the Faust app, topics, tables and thin agents, and
the processors that turn message batches into rows, checkpoints and alerts."""
