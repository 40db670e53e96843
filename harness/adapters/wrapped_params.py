"""The parameter side of a wrapped layer: the user's parameters read as canonical float64
(PyTorch layouts, local names), written back in the user's layout and dtype, their
gradients read and scaled, and restored bit for bit after a check. A mixin of
:class:`~harness.adapters.wrapped.WrappedLayer`; the calling styles provide the parameter
store (``_param_names``, ``_get_user``, ``_put_user``, ``_get_grad``).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from ..spec import Layer
from . import attention, state
from .arrays import NonFinite, from_float64, is_mutable, nonfinite, read_float64, same_bits, to_float64, write_into
from .layouts import Layout, _squeezed, param_from_user, param_to_user
from .refs import AdapterError, ValueFinding, preserving


class ParamAccess:
    """Mixin for :class:`~harness.adapters.wrapped.WrappedLayer` (which sets the attributes
    annotated here and provides ``dtype``, ``_input_shape``, ``_prime``, ``_place``,
    ``_read_returned`` and ``_note_dtype``); subclasses override the parameter-store hooks."""

    spec: Layer | None
    layout: Layout
    name: str
    features_in: tuple[int, int, int] | None
    _x_shape: tuple[int, ...] | None
    _absent: dict[str, None]
    nonfinite_grads: dict[str, NonFinite]
    _grad_dtypes: dict[str, np.dtype | None]

    if TYPE_CHECKING:  # provided by WrappedLayer and state.OptionalState

        @property
        def dtype(self) -> np.dtype: ...
        def _input_shape(self) -> tuple[int, ...] | None: ...
        def _prime(self) -> None: ...
        def _place(self, name: str) -> str: ...
        def _read_returned(self, value: Any, what: str) -> tuple[np.ndarray, Any]: ...
        def _note_dtype(self, name: str, what: str, dtype: np.dtype | None) -> None: ...

    # -- the parameter store (subclass hooks)
    def _param_names(self) -> list[str]:
        raise NotImplementedError

    def _get_user(self, local: str) -> Any:
        raise NotImplementedError

    def _put_user(self, local: str, value: Any) -> None:
        raise NotImplementedError

    def _get_grad(self, local: str) -> Any:
        raise NotImplementedError

    def _peek(self, local: str) -> Any:
        """The user's value of an already located parameter, or None (never searches)."""
        try:
            return self._get_user(local)
        except (AttributeError, KeyError, IndexError, TypeError):
            return None

    # -- a parameter by the spec's name: its shape, and its value in the user's layout <-> canonical
    def _what(self, local: str) -> str:
        return f"layer '{self.name}' parameter '{local}'"

    def _expected(self, local: str) -> tuple[int, ...]:
        if self.spec is None:
            return tuple(np.shape(self._get_user(local)))
        if self._input_shape() is None and state.shape_dependent(*self._leaf(local)):
            raise AdapterError(
                f"layer '{self.name}': the shape of its parameter '{local}' is the input's (or its (C, H, W)), which is "
                "not known yet; pass x= or input_shape= to check_layer (input_shape= to wrap_network), or run its "
                "forward once"
            )
        return self._spec_params()[local].shape

    def _spec_params(self) -> dict[str, Any]:
        """The spec's parameters by the names this wrapper uses: local (``weight``) for one
        layer, paths relative to the span (``conv1.weight``) for a fused span of layers."""
        from ..spec import named_params

        assert self.spec is not None  # only a wrapper with a spec lists the spec's parameters
        known = self._input_shape()
        if not self.spec.children():
            return self.spec.local_params(known or state.dummy_input(self.spec)[0])
        prefix = f"{self.spec.name}." if self.spec.name else ""
        dummy, exact = state.dummy_input(self.spec)
        if known is not None or not exact:  # a mask or per-feature parameters: the input's shape, however made up
            return {k[len(prefix) :]: v for k, v in named_params(self.spec, known or dummy).items()}
        return self._span_params(prefix)

    def _span_params(self, prefix: str) -> dict[str, Any]:
        """A fused span's parameters before any input is known: each leaf's own, listed at a
        made-up input of its own (their shapes do not depend on N, H, W), so a span that
        starts with a Flatten, or flattens a conv's output, needs no input shape."""
        from ..spec import join_path, walk

        assert self.spec is not None
        out = {}
        for path, leaf in walk(self.spec):
            if not leaf.children():
                out.update(
                    {
                        join_path(path, k)[len(prefix) :]: v
                        for k, v in leaf.local_params(state.dummy_input(leaf)[0]).items()
                    }
                )
        return out

    def _leaf(self, name: str) -> tuple[Layer, str]:
        """(leaf spec layer, its local parameter name) for one of this wrapper's names."""
        assert self.spec is not None
        if not self.spec.children():
            return self.spec, name
        from ..spec import join_path, walk

        path, _, local = name.rpartition(".")
        return dict(walk(self.spec))[join_path(self.spec.name, path)], local

    def _from_user(self, name: str, value: np.ndarray) -> np.ndarray:
        if self.spec is None:
            return value
        leaf, local = self._leaf(name)
        if state.deferred(leaf, local):  # 0/1, bool, or 0 and the 1/(1-p) scale -> 0/1
            value = state.mask_from_user(
                value,
                f"layer '{self.name}'",
                self._place(name),
                f"pass params={{'{name}': \"...\"}} with where the mask lives",
            )
        expected = self._expected(name)
        value = attention.from_user(leaf, local, value, self.layout, expected)  # in_out projections, a "keep" mask
        return param_from_user(leaf, local, value, self.layout, expected, self.features_in)

    def _to_user(self, name: str, value: np.ndarray, user_shape: tuple[int, ...]) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.spec is None:
            return value
        leaf, local = self._leaf(name)
        value = attention.to_user(leaf, local, value, self.layout)  # in_out projections, a "keep" mask
        user = param_to_user(leaf, local, value, self.layout, user_shape, self.features_in)
        return user * state.mask_scale(self._get_user(name)) if state.deferred(leaf, local) else user

    # -- parameters in canonical terms
    def get_params(self) -> dict[str, np.ndarray]:
        """Canonical float64 copies of every parameter, by local name; running statistics the
        code does not keep (training mode) as PyTorch's initial values."""
        self._prime()
        out = {}
        for local in self._param_names():
            v, _ = to_float64(self._get_user(local), self._what(local))
            out[local] = self._from_user(local, v)
        return {**out, **{k: state.default(k, self._expected(k)) for k in self._absent}}

    def nonfinite_params(self) -> dict[str, NonFinite]:
        """``{local: NonFinite}`` for every parameter whose value (the user's, in the user's
        layout) holds NaN or Inf."""
        out = {}
        for local in self._param_names():
            bad = nonfinite(read_float64(self._get_user(local), self._what(local))[0])
            if bad:
                out[local] = bad
        return out

    def param_grads(self) -> dict[str, np.ndarray]:
        """Canonical float64 gradients of the trainable parameters, after :meth:`backward`;
        NaN/Inf in them are kept (and recorded in :attr:`nonfinite_grads`), not raised."""
        out = {}
        trainable = self._trainable()
        for local in self._param_names():
            if local not in trainable:
                continue
            g = self._get_grad(local)
            if g is None:
                raise ValueFinding(f"layer '{self.name}': no gradient for parameter '{local}' after backward")
            v, kind = self._read_returned(g, f"gradient of '{local}'")
            self._note_dtype(local, f"gradient of '{local}'", self._grad_dtypes.get(local, kind.dtype))
            p_shape = tuple(np.shape(self._get_user(local)))
            if v.shape != p_shape and _squeezed(v.shape) != _squeezed(p_shape):
                # equal sizes are not enough: a transposed gradient reshaped would scramble
                hint = "; looks transposed" if v.shape == p_shape[::-1] else ""
                raise ValueFinding(
                    f"layer '{self.name}': gradient of '{local}' has shape {v.shape} but the parameter has {p_shape}{hint}"
                )
            v = v.reshape(p_shape)
            bad = nonfinite(v)  # reported by the check (with the gradient still compared), not raised
            if bad:
                self.nonfinite_grads[local] = bad
            else:
                self.nonfinite_grads.pop(local, None)
            factor = self._grad_factor()
            if factor != 1.0:  # v is the harness's own copy; a factor of 1 would only cost a pass
                v = v * factor
            out[local] = self._from_user(local, v)
        return out

    def grad_noise(self) -> dict[str, float]:
        """``{local: absolute norm-wise error}`` the way gradients are read adds on top of the
        user's arithmetic: recovering them from an SGD step, (w_before - w_after) / lr, loses
        up to half an ulp of each weight, so ||error|| <= eps/2 * ||w|| / lr; eps * ||w|| / lr
        here, times any ``grad_scale`` the recovered gradient is multiplied by. Empty when
        gradients are read directly."""
        sgd = getattr(self, "sgd", None)
        if not sgd or not np.issubdtype(self.dtype, np.floating):
            return {}
        eps, lr = float(np.finfo(self.dtype).eps), float(sgd[1])
        factor = abs(self._grad_factor())
        if not getattr(self, "batched", True) and self._x_shape:  # one recovery per example, summed
            factor *= self._x_shape[0]
        return {
            k: eps * float(np.linalg.norm(read_float64(self._get_user(k), self._what(k))[0])) / abs(lr) * factor
            for k in self._param_names()
            if k in self._trainable()
        }

    def _grad_factor(self) -> float:
        """What the user's parameter gradients must be multiplied by to be d<out, g>/dθ:
        ``grad_scale="batch"`` for code that already divided them by the batch size."""
        scale = getattr(self, "grad_scale", None)
        if scale is None:
            return 1.0
        if scale == "batch":
            return float(self._x_shape[0]) if self._x_shape else 1.0
        return float(scale)

    def _trainable(self) -> set[str]:
        if self.spec is None:
            return set(self._param_names())
        return {k for k, info in self._spec_params().items() if info.trainable}

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        """Write canonical values into the user's parameters, in the user's layout and dtype
        (in place where the array is mutable, else by replacing it)."""
        for local, value in values.items():
            if local in self._absent:
                continue  # running statistics the code does not keep: nowhere to write them
            current = self._get_user(local)
            _, kind = read_float64(current, self._what(local))
            user = self._to_user(local, value, kind.shape)
            if is_mutable(current):
                write_into(current, user, self._what(local))
            else:
                self._put_user(local, from_float64(user, kind))
            # a property that returns a fresh copy swallows writes: perturbations would then
            # change nothing and the backward would be blamed for it
            now = self._get_user(local)
            if kind.family == "numpy" and isinstance(now, np.ndarray) and same_bits(now, np.asarray(user, kind.dtype)):
                continue  # the bits written are there (float64: no cast, no copy); else compared as values below
            now = to_float64(now, self._what(local))[0]
            if not np.array_equal(
                now,
                from_float64(user, kind)
                if kind.family == "list"
                else to_float64(from_float64(user, kind), self._what(local))[0],
                equal_nan=True,
            ):
                raise AdapterError(
                    f"{self._what(local)}: writing it had no effect (likely cause: it is a computed property or "
                    f"a copy; declare params= with where the array is stored)"
                )

    def preserved(self) -> AbstractContextManager[None]:
        """Parameters are restored bit for bit on exit, even when user code raises; the
        restoration is verified by fingerprint."""
        places = {
            k: (partial(self._get_user, k), partial(self._put_user, k))
            for k in self._param_names()
            if self._peek(k) is not None
        }  # a mask the forward has not drawn yet: nothing to restore
        return preserving(places, f"layer '{self.name}'")


def _check_grad_scale(name: str, value: Any) -> None:
    if value is not None and value != "batch" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise AdapterError(f"layer '{name}': grad_scale must be 'batch' or a number, got {value!r}")
