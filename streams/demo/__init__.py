"""``driftline demo`` and ``driftline traffic``: synthetic traffic and telemetry through
the real publisher, on the embedded stack."""
