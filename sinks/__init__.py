"""Where results land: the ClickHouse schema and writers (tables, labels, performance,
telemetry)."""
