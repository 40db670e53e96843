"""One layer object that computes a span inside a network: ``Sequential([Flatten, Linear])``
(a CS231n / "deep learning from scratch" ``Affine`` that reshapes its input itself).
``wrap_network`` maps one object per spec layer, so the span is split when the object also
takes the input already flattened (the reshape is then a no-op): the Flatten becomes a layer
without a user object (run by the network's own passes) and the object is the Linear, which
inference confirms on the flattened input.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..adapters.layouts import Layout, data_from_user
from ..spec import Flatten, Linear, Sequential, join_path
from .result import Fit, LayerInference


def _flattened(x: np.ndarray, fit: Fit) -> np.ndarray:
    """``x`` (the user's layout) flattened as the span's Flatten does it."""
    c = data_from_user(np.asarray(x, dtype=np.float64), fit.layout)
    if fit.layout.flatten == "HWC":
        c = c.transpose(0, 2, 3, 1)
    return c.reshape(c.shape[0], -1)


def split(li: LayerInference, x: Any, seed: int, kw: dict[str, Any]) -> list[LayerInference] | None:
    """``[flatten (no object), linear (the object)]`` for a Flatten+Linear span ``li`` whose
    object, handed the flattened input, is inferred as exactly that Linear; else None.
    Names are the span's paths (``"<li.name>.<inner name>"``)."""
    from .layer import infer_layer

    spec = li.spec
    if not (isinstance(spec, Sequential) and len(spec.layers) == 2 and li.exact and np.ndim(x) == 4):
        return None
    flat, lin = spec.layers
    if not (isinstance(flat, Flatten) and isinstance(lin, Linear)):
        return None
    try:
        inner = infer_layer(li.target, _flattened(x, li.best), name=lin.name, seed=seed, **kw)
    except Exception:  # it only takes its 4-D input: the span stays whole
        return None
    if not inner.exact or inner.spec != lin:
        return None
    inner.name, inner.path = join_path(li.name, lin.name), li.path
    layout = replace(li.layout, linear=inner.layout.linear)
    inner.best = replace(inner.best, layout=layout)
    f = Fit(flat, Layout(data=layout.data, flatten=layout.flatten), {}, 0.0, note="the reshape inside the object")
    flatten = LayerInference(join_path(li.name, flat.name), None, f, "exact", li.tol, [f])
    return [flatten, inner]


__all__ = ["split"]
