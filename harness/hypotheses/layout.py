"""Whether the user's code, run under another layout, reproduces every compared tensor:
the condition for printing a layout hint."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..compare import relative_with_floor
from ..results import LayerResult
from ..spec import Sequential, join_path


def reproduces_under(wrapped: Any, layout: Any, x: np.ndarray, g: np.ndarray, result: LayerResult) -> bool:
    """Does the user's code, run under ``layout`` instead of its declared one, reproduce
    every tensor ``result`` compared (output, input and parameter gradients; canonical) within
    that tensor's tolerance? A layout hint is printed only then. The parameters and the
    declared layout are restored afterwards."""
    from reference_models import build

    spec, declared = wrapped.spec, wrapped.layout
    with wrapped.preserved():
        try:
            wrapped.layout = layout
            user = {"output": wrapped.forward(x), "input": wrapped.backward(g), **wrapped.param_grads()}
            params = wrapped.get_params()
        except Exception:  # the code does not even run under that layout
            return False
        finally:
            wrapped.layout = declared
    try:
        res = build("torch", Sequential([spec])).vjp({join_path(spec.name, k): v for k, v in params.items()}, x, g)
    except Exception:
        return False
    ref = {
        "output": res.output,
        **({"input": res.input_grad} if res.input_grad is not None else {}),  # None: integer-index input
        **{k: res.param_grads[join_path(spec.name, k)] for k in user if join_path(spec.name, k) in res.param_grads},
    }
    scale = max((float(np.linalg.norm(v)) for k, v in ref.items() if k != "output"), default=0.0)
    for tr in result.tensors:
        if tr.name not in user or tr.name not in ref or np.shape(user[tr.name]) != np.shape(ref[tr.name]):
            return False
        floor = 0.0 if tr.name == "output" else 1e-3 * scale
        if relative_with_floor(np.asarray(user[tr.name], np.float64), ref[tr.name], floor) > tr.tolerance:
            return False
    return True


__all__ = ["reproduces_under"]
