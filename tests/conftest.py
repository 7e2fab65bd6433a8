"""Test-wide settings: hypothesis without per-example deadlines (CI machines are shared
and slow), and with a fixed seed on CI so a run there is reproducible."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("driftline", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "driftline")
