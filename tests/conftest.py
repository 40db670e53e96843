"""Hypothesis profiles: "ci" (the default, used by the README's `pytest`) runs the full
counts each property test asks for; "dev" runs a quarter of them for quick iteration
(`HYPOTHESIS_PROFILE=dev pytest`).

The `slow` marker (registered in pyproject.toml, deselected by the default run, selected by
`pytest -m slow`): `seeds` splits a seed loop into a default part and a slow rest, `budget`
runs a property test with a few examples by default and with its full count under slow.
Memory: JAX caches one compiled kernel per operation and shape, so every module's are
dropped when it ends (a run over many generated shapes otherwise keeps gigabytes)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]  # the plugin's own tests run pytest inside pytest

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("ci", **_common)
settings.register_profile("dev", max_examples=25, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def scaled(n: int) -> int:
    """Example count for a property test: ``n`` under "ci", a quarter under "dev"."""
    return n if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else max(5, n // 4)


slow = pytest.mark.slow


def seeds(n: int, quick: int = 2, name: str = "seeds") -> pytest.MarkDecorator:
    """Parametrize ``name`` with ``range(quick)`` (the default run) and ``range(quick, n)``
    (marked slow): the two runs together cover all ``n`` seeds, each seed once."""
    return pytest.mark.parametrize(name, [
        pytest.param(range(quick), id=f"seeds0-{quick - 1}"),
        pytest.param(range(quick, n), id=f"seeds{quick}-{n - 1}", marks=slow),
    ])


def budget(quick: int, full: int, name: str = "examples") -> pytest.MarkDecorator:
    """Parametrize ``name`` with ``quick`` (the default run) and ``scaled(full)`` (marked
    slow): an example count for a property test that builds its @given inside."""
    return pytest.mark.parametrize(name, [
        pytest.param(min(quick, scaled(full)), id="quick"),
        pytest.param(scaled(full), id="full", marks=slow),
    ])


@pytest.fixture(autouse=True, scope="module")
def _drop_jax_caches() -> Iterator[None]:
    """After each module, drop JAX's compiled kernels (only if JAX was imported: importing it
    here would break the tests that `import harness` loads no framework)."""
    yield
    jax = sys.modules.get("jax")
    if jax is not None:
        jax.clear_caches()

# `trigrad check` prints a plain progress line every 10 s when stderr is not a terminal (CI
# logs); a loaded test machine would then add lines to outputs that tests compare exactly
os.environ.setdefault("TRIGRAD_PROGRESS_EVERY", "1e9")
