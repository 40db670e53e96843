"""One corpus entry: the user's code (a factory), the input shape it takes, and the truth
a human would write with trigrad's explicit API (spec, wrap keywords, for a network the
mapping from spec paths to its sub-objects). Mutants also carry the verdict expected."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.spec import Layer


@dataclass(frozen=True)
class Entry:
    """``factory(seed, dtype)`` builds the user's object; ``x_shape`` is in the code's own
    layout (NHWC code takes ``(N, H, W, C)``); ``spec`` / ``wrap`` are the truth
    (``wrap``: ``layout=``, ``params=``, ``grads=``, ``forward_kwargs=`` ...); ``style``:
    ``"object"`` (one layer, or a composite checked with ``check_layer``) or ``"network"``
    (checked with ``wrap_network``: ``layers(obj)`` maps spec paths to sub-objects, and the
    network's own forward/backward are passed when ``own_passes``); ``quirks``: what the code
    does that a checker must cope with; ``verdict``: for a mutant, the verdict its check
    against ``spec`` (the intended layer) must end in; ``bug``: what the mutant does;
    ``fits``: the (spec, wrap keywords) that its forward DOES compute (checked against it, the
    forward matches and the backward, the intended layer's, does not: verdict ``backward``);
    ``at``: for a network mutant, the entry of the report (a layer path or ``(network)``) that
    fails first with ``verdict``."""

    name: str
    factory: Callable[[int, Any], Any]
    x_shape: tuple[int, ...]
    spec: Layer
    wrap: Mapping[str, Any] = field(default_factory=dict)
    style: str = "object"
    quirks: tuple[str, ...] = ()
    layers: Callable[[Any], Mapping[str, Any]] | None = None
    own_passes: bool = True
    verdict: str | None = None
    bug: str = ""
    fits: tuple[Layer, Mapping[str, Any]] | None = None
    at: str = ""

    @property
    def kind(self) -> str:
        """The spec's kind (``"Sequential"`` for a span or a network)."""
        return self.spec.kind

    def make(self, seed: int = 0, dtype: Any = np.float64) -> Any:
        return self.factory(seed, dtype)

    def x(self, seed: int = 0, dtype: Any = np.float64) -> np.ndarray:
        """An example input in the code's own layout."""
        return np.random.default_rng(1000 + seed).normal(size=self.x_shape).astype(dtype)


def rng_normal(seed: int, shape: tuple[int, ...], scale: float, dtype: Any) -> np.ndarray:
    """Weights as the corpus draws them: normal, scaled, in ``dtype``."""
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(dtype)


def ctor(cls: type, *args: Any, **kwargs: Any) -> Callable[[int, Any], Any]:
    """A factory ``(seed, dtype) -> cls(*args, seed=seed, dtype=dtype, **kwargs)``."""
    return lambda seed, dtype: cls(*args, seed=seed, dtype=dtype, **kwargs)


def free(cls: type, *args: Any, **kwargs: Any) -> Callable[[int, Any], Any]:
    """A factory for a parameter-free layer (seed and dtype unused)."""
    return lambda seed, dtype: cls(*args, **kwargs)
