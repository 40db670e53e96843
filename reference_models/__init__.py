"""Reference networks built from a spec: PyTorch (``torch_ref``) and JAX (``jax_ref``).

Both are functional, float64, and written independently of each other. Frameworks are
imported only when a reference is built::

    ref = reference_models.build("torch", spec)        # or "jax"; jit=True compiles
    res = ref.vjp(params, x, g)                        # -> Result (output, grads, per-layer)
"""

from __future__ import annotations

from typing import Any

from ._result import Result

BACKENDS = ("torch", "jax")


def build(backend: str, spec: Any, *, jit: bool = False) -> Any:
    """A reference network for ``spec`` on ``backend`` ("torch" or "jax")."""
    if backend == "torch":
        from .torch_ref import TorchReference

        return TorchReference(spec, jit=jit)
    if backend == "jax":
        from .jax_ref import JaxReference

        return JaxReference(spec, jit=jit)
    raise ValueError(f"unknown reference backend {backend!r}; expected one of {BACKENDS}")


__all__ = ["BACKENDS", "Result", "build"]
