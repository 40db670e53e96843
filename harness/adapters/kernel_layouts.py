"""Conv kernels in the user's axis order, for every layer with a kernel: ``Conv2d``,
``ConvTranspose2d`` and ``Conv1d``. :mod:`.layouts` calls these for a ``weight``.

``Layout.kernel`` names the user's axes with the letters of the canonical weight's axes,
position by position: ``O`` its axis 0, ``I`` its axis 1, ``H`` and ``W`` the kernel rows and
columns.

* ``Conv2d``: canonical ``(out, in/groups, kh, kw)``; ``"HWIO"`` is TensorFlow's
  ``(kh, kw, in, out)``.
* ``ConvTranspose2d``: canonical (PyTorch's) ``(in, out/groups, kh, kw)``, so ``O`` is the
  *input* channels: the letters describe the kernel of the forward conv whose gradient the
  transposed conv is. TensorFlow's ``Conv2DTranspose`` kernel ``(kh, kw, out, in)`` is then
  ``"HWIO"``, as for its ``Conv2D``; numpy-ml's ``Deconv2D`` ``(kh, kw, in, out)`` is ``"HWOI"``.
* ``Conv1d``: canonical ``(out, in/groups, k)``, its one spatial axis the ``W``; the ``H``
  of the declared order is dropped: ``"HWIO"`` is ``(k, in, out)`` (TensorFlow's and
  numpy-ml's ``Conv1D``), ``"OIHW"`` the canonical order.

``Layout.flip`` rotates the spatial axes (180 degrees in 2-D, reversed in 1-D). Every
conversion is a transpose (and flip), so a round trip is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..spec import Conv1d, Conv2d, ConvTranspose2d, Layer

if TYPE_CHECKING:
    from .layouts import Layout

KERNELED = (Conv2d, ConvTranspose2d, Conv1d)


def _orders(layer: Layer, local: str, kernel: str) -> tuple[str, str] | None:
    """``(canonical letters, user letters)`` of this parameter's axes, or None when it is
    not a conv kernel."""
    if local != "weight" or not isinstance(layer, KERNELED):
        return None
    if isinstance(layer, Conv1d):
        return "OIW", kernel.replace("H", "")
    return "OIHW", kernel


def kernel_from_user(layer: Layer, local: str, value: np.ndarray, layout: Layout) -> np.ndarray | None:
    """The user's kernel in the canonical order (un-flipped), or None when ``value`` is not
    a conv kernel of this layer's rank (left to the caller's shape check)."""
    orders = _orders(layer, local, layout.kernel)
    if orders is None or value.ndim != len(orders[0]):
        return None
    canon, user = orders
    v = value.transpose([user.index(c) for c in canon])
    return np.flip(v, axis=tuple(range(2, v.ndim))) if layout.flip else v


def kernel_to_user(layer: Layer, local: str, value: np.ndarray, layout: Layout) -> np.ndarray | None:
    """A canonical kernel in the user's order; the exact inverse of :func:`kernel_from_user`."""
    orders = _orders(layer, local, layout.kernel)
    if orders is None or value.ndim != len(orders[0]):
        return None
    canon, user = orders
    v = np.flip(value, axis=tuple(range(2, value.ndim))) if layout.flip else value
    return v.transpose([canon.index(c) for c in user])


def kernel_user_shape(layer: Layer, local: str, expected: tuple[int, ...], kernel: str) -> tuple[int, ...] | None:
    """The shape a kernel of canonical shape ``expected`` has in the declared ``kernel`` order."""
    orders = _orders(layer, local, kernel)
    if orders is None or len(expected) != len(orders[0]):
        return None
    canon, user = orders
    return tuple(expected[canon.index(c)] for c in user)


def kernel_hint(layer: Layer, local: str, found: tuple[int, ...], expected: tuple[int, ...], layout: Layout) -> str:
    """``"; looks like HWIO: pass Layout(kernel='HWIO')"`` when ``found`` is the kernel in
    another declared order (the common orders first), else ``""``."""
    from .layouts import KERNEL_ORDERS

    orders = _orders(layer, local, layout.kernel)
    if orders is None or len(found) != len(orders[0]):
        return ""
    fits: dict[str, str] = {}  # user letters -> the first Layout.kernel giving them (1-D: many give one)
    for k in KERNEL_ORDERS:
        letters = _orders(layer, local, k)[1]  # type: ignore[index]  # a kernel: orders is not None
        if kernel_user_shape(layer, local, expected, k) == found and letters not in fits:
            fits[letters] = k
    if not fits or orders[1] in fits:
        return ""
    first, *rest = fits.values()
    # the letters name positions of the canonical weight: spelled out where they are not (out, in)
    what = "" if isinstance(layer, Conv2d) else f" ({', '.join(_axis_names(layer)[c] for c in next(iter(fits)))})"
    also = f" (also fits {', '.join(rest)}: harness.detect_layout tells them apart by running the code)" if rest else ""
    return f"; looks like {first}{what}: pass Layout(kernel={first!r}){also}"


def _axis_names(layer: Layer) -> dict[str, str]:
    if isinstance(layer, ConvTranspose2d):
        return {"O": "in", "I": "out/groups", "H": "kh", "W": "kw"}
    if isinstance(layer, Conv1d):
        return {"O": "out", "I": "in/groups", "W": "k"}
    return {"O": "out", "I": "in/groups", "H": "kh", "W": "kw"}


__all__ = ["KERNELED", "kernel_from_user", "kernel_hint", "kernel_to_user", "kernel_user_shape"]
