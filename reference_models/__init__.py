"""Reference networks built from a spec: PyTorch (``torch_ref``) and JAX (``jax_ref``).

Both are functional, float64, and written independently of each other. Frameworks are
imported only when a reference is built::

    ref = reference_models.build("torch", spec)        # or "jax" (jitted unless jit=False)
    res = ref.vjp(params, x, g)                        # -> Result (output, grads, per-layer)

PYTEST_DONT_REWRITE (installed with trigrad's pytest plugin: see harness/__init__.py).
"""

from __future__ import annotations

from typing import Any

from ._result import Result

BACKENDS = ("torch", "jax")


def build(backend: str, spec: Any, *, jit: bool | None = None) -> Any:
    """A reference network for ``spec`` on ``backend`` ("torch" or "jax").

    ``jit``: compile (``torch.compile`` / ``jax.jit``). ``None``, the default, is each backend's
    faster choice for a check: torch eager (``torch.compile`` costs seconds per network) and JAX
    jitted (one compile per spec and input shapes, where eager compiles every primitive on its
    own). ``False`` gives JAX's eager op-by-op path."""
    if backend == "torch":
        from .torch_ref import TorchReference

        return TorchReference(spec, jit=bool(jit))
    if backend == "jax":
        from .jax_ref import JaxReference

        return JaxReference(spec, jit=jit is not False)
    raise ValueError(f"unknown reference backend {backend!r}; expected one of {BACKENDS}")


__all__ = ["BACKENDS", "Result", "build"]
