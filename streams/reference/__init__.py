"""``driftline reference``: publish reference profiles, and follow the live ones."""
