"""The Faust app, its topics, tables and agents, and the producers that feed it."""
