"""Hypothesis profiles: "ci" (the default, used by the README's `pytest`) runs the full
counts each property test asks for; "dev" runs a quarter of them for quick iteration
(`HYPOTHESIS_PROFILE=dev pytest`).

The `slow` marker (registered in pyproject.toml, deselected by the default run, selected by
`pytest -m slow`): `seeds` splits a seed loop into a default part and a slow rest, `budget`
runs a property test with a few examples by default and with its full count under slow.
`seed_list` does the same for a parametrized seed.

Memory: JAX keeps one compiled kernel per operation and shape for the life of the process
(~4 GB over the whole run, measured); `_bound_jax_caches` drops them whenever the process
has grown 600 MB past where it stood after the last drop, and hands the freed memory back to
the system (glibc keeps it otherwise). Each drop costs the next tests a recompile, so not
after every test."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# the command-line tests start fresh children, as without a warm server (tests/test_server.py
# starts its own), and JAX's compilation cache goes to a folder of this run, not the home's;
# TRIGRAD_SERVER=1 in the environment runs the command-line tests through the server instead
os.environ.setdefault("TRIGRAD_SERVER", "0")
os.environ.setdefault("TRIGRAD_CACHE_DIR", tempfile.mkdtemp(prefix="trigrad-cache-"))

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
    return pytest.mark.parametrize(
        name,
        [
            pytest.param(range(quick), id=f"seeds0-{quick - 1}"),
            pytest.param(range(quick, n), id=f"seeds{quick}-{n - 1}", marks=slow),
        ],
    )


def budget(quick: int, full: int, name: str = "examples") -> pytest.MarkDecorator:
    """Parametrize ``name`` with ``quick`` (the default run) and ``scaled(full)`` (marked
    slow): an example count for a property test that builds its @given inside."""
    return pytest.mark.parametrize(
        name,
        [
            pytest.param(min(quick, scaled(full)), id="quick"),
            pytest.param(scaled(full), id="full", marks=slow),
        ],
    )


def seed_list(n: int, quick: int = 2) -> list:
    """Seeds ``0 .. n-1`` for ``parametrize("seed", ...)``: the first ``quick`` in the default
    run, the rest marked slow."""
    return [*range(quick), *(pytest.param(s, marks=slow) for s in range(quick, n))]


def _rss_mb() -> float:
    """This process's resident memory (MB); infinite where /proc is missing (then every
    test drops the caches)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("inf")


def _malloc_trim() -> None:
    """Return freed heap pages to the system (glibc's malloc_trim; a no-op elsewhere)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


_JAX_GROWTH_MB = 600.0
_jax_floor = [_rss_mb()]  # the memory after the last drop


@pytest.fixture(autouse=True)
def _bound_jax_caches() -> Iterator[None]:
    """Drop JAX's compiled kernels after a test once the process has grown _JAX_GROWTH_MB
    past the last drop. Only if JAX was imported: importing it here would break the tests
    that `import harness` loads no framework."""
    yield
    jax = sys.modules.get("jax")
    rss = _rss_mb()
    if jax is not None and (rss == float("inf") or rss > _jax_floor[0] + _JAX_GROWTH_MB):
        jax.clear_caches()
        gc.collect()
        _malloc_trim()
        _jax_floor[0] = _rss_mb()


# `trigrad check` prints a plain progress line every 10 s when stderr is not a terminal (CI
# logs); a loaded test machine would then add lines to outputs that tests compare exactly
os.environ.setdefault("TRIGRAD_PROGRESS_EVERY", "1e9")


def _x64() -> bool | None:
    """JAX's global x64 switch, None while JAX is not imported (or still importing)."""
    config = getattr(sys.modules.get("jax"), "config", None)
    return None if config is None else bool(config.read("jax_enable_x64"))


@pytest.fixture(autouse=True)
def _jax_x64_left_as_found() -> Iterator[None]:
    """No test (nor trigrad, nor a docs block run in-process) leaves JAX's global x64 switch
    changed: later tests' jax arrays would silently become float64 (a docs example once
    switched it on, and a float32 jax layer far down the run came out float64)."""
    before = _x64()
    yield
    after = _x64()
    assert before is None or after == before, f"jax_enable_x64 changed from {before} to {after}"
    assert before is not None or not after, "jax_enable_x64 switched on by a test that imported jax"
