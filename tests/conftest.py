"""Hypothesis profiles: "ci" (the default, used by the README's `pytest`) runs the full
counts each property test asks for; "dev" runs a quarter of them for quick iteration
(`HYPOTHESIS_PROFILE=dev pytest`)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]  # the plugin's own tests run pytest inside pytest

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("ci", **_common)
settings.register_profile("dev", max_examples=25, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def scaled(n: int) -> int:
    """Example count for a property test: ``n`` under "ci", a quarter under "dev"."""
    return n if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else max(5, n // 4)

# `trigrad check` prints a plain progress line every 10 s when stderr is not a terminal (CI
# logs); a loaded test machine would then add lines to outputs that tests compare exactly
os.environ.setdefault("TRIGRAD_PROGRESS_EVERY", "1e9")
