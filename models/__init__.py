"""The pure computation: what flows through driftline and what is computed from it.

Nothing here does I/O, and nothing imports a Kafka or ClickHouse client; only
:mod:`driftline.models.events.records` imports faust. One concern per subpackage:

- :mod:`~driftline.models.events`: the wire forms and their decoder;
- :mod:`~driftline.models.windows`: event-time windows, accumulators, the quantile sketch;
- :mod:`~driftline.models.drift`: references, baselines, drift scores, river detectors;
- :mod:`~driftline.models.alerting`: rules, judging, FDR, incidents, the alert document;
- :mod:`~driftline.models.quality`: the delayed-label join and per-window performance;
- :mod:`~driftline.models.data_quality`: data-quality checks, silence;
- :mod:`~driftline.models.outcomes`: business outcomes, champion vs challenger;
- :mod:`~driftline.models.telemetry`: GPU/host samples and windows, service health;
- :mod:`~driftline.models.lineage`: OpenLineage run events of pipelines;
- :mod:`~driftline.models.traces`: OpenTelemetry spans of service chains;
- :mod:`~driftline.models.registry`: model versions and deployments;
- :mod:`~driftline.models.partition`: everything one worker keeps for one partition.
"""
