"""One configuration checked as :func:`harness.sweep` checks it: :func:`check_config`.

``spec_factory(**config)`` gives the spec (a spec layer or a loss spec), the input shape (in
the code's declared layout) and the configuration's check options; ``make_layer(**config)``
the user's code in any calling style (a layer, a loss, a network, a loss model: see
:mod:`harness.sweep_styles`), built with the global random generators seeded from the
sweep's seed; the check for that style judges it. Anything the user's code raises that the
check does not turn into a verdict becomes an "error" report; a spec that rejects the
configuration raises SpecError (the search in :mod:`harness.sweeper` skips it); a setup that
is wrong raises :class:`~harness.sweep_styles.UsageError` (the search stops and says so).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from .adapters.replay import kept_random_state
from .faults import codes_fault
from .results import LayerResult, Report
from .spec import Layer, Loss
from .sweep_result import _name, format_config

SpecFactory = Callable[..., Any]
MakeLayer = Callable[..., Any]


def _error_report(spec: Layer | Loss, seed: int, message: str) -> Report:
    return Report(
        seed=seed,
        layers=[
            LayerResult(
                name=spec.name if isinstance(spec, Layer) else "(loss)",
                kind=type(spec).__name__,
                verdict="error",
                dtype="float64",
                message=message,
                error_side="setup",
            )
        ],
    )


def evaluate(
    make: MakeLayer, spec_factory: SpecFactory, cfg: Mapping[str, Any], seed: int, check_kwargs: Mapping[str, Any]
) -> tuple[str | None, Report]:
    """(the calling style, the Report) of configuration ``cfg``: ``make(**cfg)`` checked
    against ``spec_factory(**cfg)`` by the check for its style (:mod:`harness.sweep_styles`).
    ``make`` raising, or the user's code raising or returning garbage inside the check, is a
    report whose verdict is ``error`` (style None when ``make`` raised). Raises SpecError when
    the spec rejects the configuration, :class:`~harness.sweep_styles.UsageError` when the
    setup is wrong (what ``make`` returned, a declaration, an option, the factory's answer)."""
    from .frames import user_frame
    from .sweep_styles import read_factory, run_check, style_of, translated

    point = read_factory(spec_factory, cfg)
    # layers that draw their weights from the global RNGs (np.random.randn) see the same
    # state inside the sweep (hypothesis reseeds them per example) and in check_config
    with _global_rngs(seed):
        try:
            obj = make(**cfg)
        except Exception as e:
            return None, _error_report(point.spec, seed, f"{_name(make)}({format_config(cfg)}) raised {user_frame(e)}")
        style = style_of(obj, point, check_kwargs)
        try:
            return style, run_check(style, obj, point, seed, check_kwargs)
        except Exception as e:
            meant = translated(e)
            if meant is e and codes_fault(e):  # the user's code's fault, escaped the check: its verdict
                return style, _error_report(point.spec, seed, user_frame(e))
            if meant is e:
                raise
            raise meant from e


@contextmanager
def _global_rngs(seed: int) -> Iterator[None]:
    """``random`` and ``numpy.random`` seeded from ``seed`` inside, restored after."""
    with kept_random_state():
        random.seed(seed)
        np.random.seed(seed % 2**32)
        yield


def check_config(
    make_layer: MakeLayer, spec_factory: SpecFactory, config: Mapping[str, Any], *, seed: int = 0, **check_kwargs: Any
) -> Report:
    """Check one configuration as :func:`sweep` does: ``make_layer(**config)`` (a layer, a
    loss, a network or a loss model) against ``spec_factory(**config)`` with the check for its
    calling style (``seed`` and ``check_kwargs`` passed on). Returns the Report; raises
    SpecError when the spec rejects the configuration, and
    :class:`~harness.sweep_styles.UsageError` (a ValueError) when the setup is wrong."""
    return evaluate(make_layer, spec_factory, config, seed, check_kwargs)[1]


__all__ = ["MakeLayer", "SpecFactory", "check_config"]
