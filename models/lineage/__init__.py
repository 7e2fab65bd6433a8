"""Pipeline runs as OpenLineage reports them: the run-event decoder."""
