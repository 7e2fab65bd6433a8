"""The programs, one subpackage each, and what they share (settings, Kafka options, CLI).

- :mod:`~driftline.streams.publisher`: in serving code, publishes predictions and labels;
- :mod:`~driftline.streams.worker`: the Faust worker (``driftline worker``);
- :mod:`~driftline.streams.agent`: the GPU/host telemetry agent (``driftline agent``);
- :mod:`~driftline.streams.reference`: reference profiles (``driftline reference``);
- :mod:`~driftline.streams.embedded`: the embedded broker and ClickHouse (``driftline embedded``);
- :mod:`~driftline.streams.demo`: the main job and synthetic traffic (``driftline demo``);
- :mod:`~driftline.streams.ui`: the read-only web page (``driftline ui``).
"""
