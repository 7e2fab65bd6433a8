"""Telemetry: the agent's sample, GPU/host windows, and the infrastructure and service
monitors."""
