"""One configuration checked as :func:`harness.sweep` checks it: :func:`check_config`.

``spec_factory(**config)`` gives the spec layer and the input shape (in the code's declared
layout), ``make_layer(**config)`` the user's layer, built with the global random generators
seeded from the sweep's seed; :func:`harness.check_layer` judges it. Anything the user's code
raises that check_layer does not turn into a verdict becomes an "error" report; a spec that
rejects the configuration raises SpecError (the search in :mod:`harness.sweeper` skips it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from .adapters.inputs import canonical_shape, read_shape, refusal
from .adapters.layouts import CANONICAL, Layout
from .adapters.replay import kept_random_state
from .results import LayerResult, Report
from .spec import Layer
from .sweep_result import _name, format_config

SpecFactory = Callable[..., Any]
MakeLayer = Callable[..., Any]


def _spec_of(spec_factory: SpecFactory, cfg: Mapping[str, Any]) -> tuple[Layer, tuple[int, ...]]:
    """``spec_factory(**cfg)`` as (spec layer, input shape in the code's layout), checked by
    shape inference in either data order (:func:`_check` checks the code's own); raises
    SpecError when the spec rejects the configuration, TypeError when the factory returns
    something else."""
    value = spec_factory(**cfg)
    if isinstance(value, Mapping):
        value = (value.get("spec"), value.get("input_shape"))
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Layer)):
        raise TypeError(
            f"{_name(spec_factory)}() must return (spec layer, input shape) or "
            f"{{'spec': ..., 'input_shape': ...}}, got {type(value).__name__}"
        )
    spec, shape = value[0], tuple(value[1])
    if refusal(spec, canonical_shape(shape, "NHWC")) is not None:
        spec.output_shape(shape)  # fits read neither way: the NCHW reading's refusal
    return spec, shape


def _error_report(spec: Layer, seed: int, message: str) -> Report:
    return Report(
        seed=seed,
        layers=[
            LayerResult(
                name=spec.name,
                kind=type(spec).__name__,
                verdict="error",
                dtype="float64",
                message=message,
                error_side="setup",
            )
        ],
    )


def _check(
    make_layer: MakeLayer,
    spec: Layer,
    shape: tuple[int, ...],
    cfg: Mapping[str, Any],
    seed: int,
    check_kwargs: Mapping[str, Any],
) -> Report:
    """Check ``make_layer(**cfg)`` against ``spec``; anything the user's code raises that
    check_layer does not turn into a verdict becomes an "error" report; SpecError when the
    input shape does not fit the spec in the code's declared layout."""
    from .adapters.layer import WrappedLayer
    from .check import check_layer
    from .frames import user_frame

    # layers that draw their weights from the global RNGs (np.random.randn) see the same
    # state inside the sweep (hypothesis reseeds them per example) and in check_config
    with _global_rngs(seed):
        try:
            layer = make_layer(**cfg)
        except Exception as e:
            return _error_report(spec, seed, f"{_name(make_layer)}({format_config(cfg)}) raised {user_frame(e)}")
        # read in the code's declared data layout as check_layer reads it; not fitting: SpecError, a rejection
        layout = layer.layout if isinstance(layer, WrappedLayer) else check_kwargs.get("layout", CANONICAL)
        read_shape(shape, spec, layout if isinstance(layout, Layout) else CANONICAL)
        try:
            return check_layer(layer, spec, input_shape=shape, seed=seed, **check_kwargs)
        except Exception as e:  # e.g. an AdapterError: the layer's parameters do not fit this spec
            return _error_report(spec, seed, user_frame(e))


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
    """Check one configuration as :func:`sweep` does: ``make_layer(**config)`` against
    ``spec_factory(**config)`` = (spec layer, input shape) with :func:`harness.check_layer`
    (``seed`` and ``check_kwargs`` passed on). Returns the Report; raises SpecError when
    the spec rejects the configuration."""
    spec, shape = _spec_of(spec_factory, config)
    return _check(make_layer, spec, shape, config, seed, check_kwargs)


__all__ = ["MakeLayer", "SpecFactory", "check_config"]
