"""A user's layer seen in canonical conventions: object style and CS231n function pairs.

Both styles give a :class:`WrappedLayer`, whose methods take and return canonical float64
numpy arrays (NCHW data, PyTorch parameter layouts, local parameter names ``weight``,
``bias`` ...) whatever the user's layout, dtype or calling convention::

    conv = wrap_layer(MyConv(...), Conv2d("conv1", 3, 8, 3), layout=Layout(kernel="HWIO"))
    y = conv.forward(x)              # x: (N, C, H, W) float64 -> y canonical
    dx = conv.backward(g)            # g: upstream gradient, canonical
    conv.param_grads()               # {"weight": (O, I, kh, kw), "bias": (O,)}
    with conv.preserved():           # parameters restored bit for bit on exit, even on error
        conv.set_params({...})
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, ContextManager, Mapping, Sequence

import numpy as np

from ..faults import call_user
from ..spec import Layer, SpecError
from .arrays import ArrayError, NonFinite, from_float64, is_float_dtype, is_mutable, nonfinite, to_float64, write_into
from .layouts import CANONICAL, Layout, _squeezed, data_from_user, data_to_user, param_from_user, param_to_user, user_data_shape
from .effects import Effects, parse_inplace
from .notes import _data_hint, dtype_note
from .refs import AdapterError, Ref, ValueFinding, _candidates, _copy, _grad_candidates, preserving


# --------------------------------------------------------------------------- the common core


class WrappedLayer(Effects):
    """Base: conversions, checks and restoration shared by every calling style.

    Subclasses provide ``_call_forward(x_user)``, ``_call_backward(dy_user)`` and the
    parameter store (``_get_user(local)``, ``_put_user(local, value)``, ``_get_grad(local)``).
    """

    def __init__(self, spec: Layer | None, layout: Layout, name: str | None) -> None:
        if not isinstance(layout, Layout):
            raise AdapterError(f"layout must be a harness.Layout, got {layout!r}")
        self.spec = spec
        self.layout = layout
        self.name = name or (spec.name if spec is not None else "layer")
        self._init_effects()  # the writes the user's code makes into what it is handed (see .effects)
        # (C, H, W) a 2-D input was flattened from: under an HWC flatten its features (and a
        # Linear's weight columns) are in H, W, C order; set by the network wrapper
        self.features_in: tuple[int, int, int] | None = None
        self._features_out: tuple[int, int, int] | None = None
        self._x_shape: tuple[int, ...] | None = None
        self._y_shape: tuple[int, ...] | None = None
        # what the user's code last returned: the dtype of each tensor ("output", "input", a
        # parameter's gradient), and a parameter gradient's NaN/Inf (in the user's layout)
        self.returned: dict[str, np.dtype] = {}
        self.nonfinite_grads: dict[str, NonFinite] = {}
        self._grad_dtypes: dict[str, np.dtype | None] = {}  # set where gradients are not read as returned

    # -- subclass hooks
    def _param_names(self) -> list[str]:
        raise NotImplementedError

    def _get_user(self, local: str) -> Any:
        raise NotImplementedError

    def _put_user(self, local: str, value: Any) -> None:
        raise NotImplementedError

    def _get_grad(self, local: str) -> Any:
        raise NotImplementedError

    def _call_forward(self, x: np.ndarray) -> Any:
        raise NotImplementedError

    def _call_backward(self, dy: np.ndarray) -> Any:
        raise NotImplementedError

    # -- dtype the user computes in: their parameters' dtype, else float64
    @property
    def dtype(self) -> np.dtype:
        if getattr(self, "_dtype", None) is None:
            for local in self._param_names():
                _, kind = to_float64(self._get_user(local), self._what(local))
                if np.issubdtype(kind.dtype, np.floating):
                    self._dtype = kind.dtype  # cached: parameters keep their dtype
                    return kind.dtype
            return np.dtype(np.float64)  # no parameters (yet): not cached, a lazy layer may add some
        return self._dtype

    def _what(self, local: str) -> str:
        return f"layer '{self.name}' parameter '{local}'"

    def _expected(self, local: str) -> tuple[int, ...]:
        if self.spec is None:
            return tuple(np.shape(self._get_user(local)))
        return self._spec_params()[local].shape

    def _spec_params(self) -> dict[str, Any]:
        """The spec's parameters by the names this wrapper uses: local (``weight``) for one
        layer, paths relative to the span (``conv1.weight``) for a fused span of layers."""
        from ..spec import named_params

        shape = self._x_shape or self._dummy_input()
        if not self.spec.children():
            return self.spec.local_params(shape)
        prefix = f"{self.spec.name}." if self.spec.name else ""
        return {k[len(prefix):]: v for k, v in named_params(self.spec, shape).items()}

    def _leaf(self, name: str) -> tuple[Layer, str]:
        """(leaf spec layer, its local parameter name) for one of this wrapper's names."""
        if not self.spec.children():
            return self.spec, name
        from ..spec import join_path, walk

        path, _, local = name.rpartition(".")
        return dict(walk(self.spec))[join_path(self.spec.name, path)], local

    def _from_user(self, name: str, value: np.ndarray) -> np.ndarray:
        if self.spec is None:
            return value
        leaf, local = self._leaf(name)
        return param_from_user(leaf, local, value, self.layout, self._expected(name), self.features_in)

    def _to_user(self, name: str, value: np.ndarray, user_shape: tuple[int, ...]) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.spec is None:
            return value
        leaf, local = self._leaf(name)
        return param_to_user(leaf, local, value, self.layout, user_shape, self.features_in)

    def _dummy_input(self) -> tuple[int, ...]:
        # parameter shapes of conv / linear / norm layers do not depend on N, H, W
        from ..spec import Dropout, walk

        first = next((layer for _, layer in walk(self.spec) if not layer.children()), self.spec)
        for attr, rank in (("in_channels", 4), ("in_features", 2), ("num_features", 2)):
            if hasattr(first, attr):  # spatial size large enough for any kernel a span holds
                return (2, getattr(first, attr), *([64] * (rank - 2)))
        if not any(isinstance(layer, Dropout) and layer.training for _, layer in walk(self.spec)) and not (
                isinstance(self.spec, Dropout) and self.spec.training):
            return (1,)  # its parameters (none, or LayerNorm's) do not depend on the input
        raise AdapterError(f"layer '{self.name}': call forward once before reading its parameters (their shape depends on the input)")

    def note_input_shape(self, shape: tuple[int, ...]) -> None:
        """Record the canonical input shape when the layer ran inside the user's own network
        code rather than through :meth:`forward` (batch size for ``grad_scale``, lazy params)."""
        self._x_shape = tuple(shape)
        self._forwarded = True
        self._external = True  # the user's network ran it: per-call gradient caches are stale

    # -- forward / backward in canonical terms
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Canonical input (batch first, NCHW) -> canonical float64 output."""
        x = np.asarray(x, dtype=np.float64)
        if self.spec is not None:
            expected_out = self.spec.output_shape(x.shape)
        self._x_shape = x.shape
        self._features_out = self._output_features(x.shape, expected_out if self.spec is not None else None)
        x_user = np.ascontiguousarray(data_to_user(x, self.layout, self.features_in)).astype(self.dtype)
        y = self._watched_forward(x_user)
        y64 = self._to_canonical_data(y, "output", "forward output", self._features_out)
        if self.spec is not None and y64.shape != expected_out:
            hint = _data_hint(np.shape(y), expected_out, self.layout)  # another layout explains it: configuration
            raise (AdapterError if hint else ValueFinding)(
                f"layer '{self.name}': forward returned shape {tuple(np.shape(y))}; the spec expects "
                f"{user_data_shape(expected_out, self.layout)} in the declared {self.layout}{hint}"
            )
        self._y_shape = y64.shape
        return y64

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Canonical upstream gradient (the output's shape) -> canonical input gradient.
        Parameter gradients are then read with :meth:`param_grads`."""
        if self._y_shape is None:
            raise AdapterError(f"layer '{self.name}': backward called before forward")
        dy = np.asarray(dy, dtype=np.float64)
        if dy.shape != self._y_shape:
            raise AdapterError(f"layer '{self.name}': upstream gradient shape {dy.shape} differs from the output shape {self._y_shape}")
        dy_user = np.ascontiguousarray(data_to_user(dy, self.layout, self._features_out)).astype(self.dtype)
        dx = self._watched_backward(dy_user)
        if dx is None:
            raise ValueFinding(f"layer '{self.name}': backward returned None; it must return the input gradient dx")
        dx64 = self._to_canonical_data(dx, "input", "backward's input gradient", self.features_in)
        if dx64.shape != self._x_shape:
            hint = _data_hint(np.shape(dx), self._x_shape, self.layout)
            raise (AdapterError if hint else ValueFinding)(
                f"layer '{self.name}': backward returned an input gradient of shape {tuple(np.shape(dx))}; "
                f"expected {user_data_shape(self._x_shape, self.layout)} (the input's shape in the declared "
                f"{self.layout}){hint}"
            )
        return dx64

    def _output_features(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...] | None) -> tuple[int, int, int] | None:
        from ..spec import Flatten
        from .layouts import FEATURE_WISE

        if isinstance(self.spec, Flatten) and len(x_shape) == 4:
            return tuple(x_shape[1:])  # type: ignore[return-value]
        if isinstance(self.spec, FEATURE_WISE) and len(x_shape) == 2:
            return self.features_in  # ReLU, dropout, batch norm ... keep the feature order
        return None

    def _to_canonical_data(self, value: Any, name: str, what: str,
                           features: tuple[int, int, int] | None = None) -> np.ndarray:
        """An activation the user's code returned (``name``: ``"output"`` or ``"input"``, its
        gradient) -> canonical float64; :class:`ValueFinding` when it is None, not an array,
        integer, or holds NaN/Inf (first index in the user's layout, and the count)."""
        v, kind = self._read_returned(value, what)
        self._note_dtype(name, what, kind.dtype)
        bad = nonfinite(v)
        if bad:
            raise ValueFinding(f"layer '{self.name}': {what} has a non-finite value {bad.value} at {list(bad.index)} "
                               f"(user layout; {bad.count} of {bad.size} NaN or Inf)")
        return data_from_user(v, self.layout, features)

    def _read_returned(self, value: Any, what: str) -> tuple[np.ndarray, Any]:
        """A value the user's code returned, as a float64 copy and its ArrayKind;
        :class:`ValueFinding` when it is None or cannot be read as a real array."""
        if value is None:
            raise ValueFinding(f"layer '{self.name}': {what} is None; it must return an array")
        try:
            return to_float64(value, f"layer '{self.name}' {what}")
        except ArrayError as e:
            raise ValueFinding(str(e)) from None

    def _note_dtype(self, name: str, what: str, dtype: np.dtype | None) -> None:
        """Record the dtype of a returned tensor; an integer or bool one is a :class:`ValueFinding`
        (every value truncated: no gradient check can pass or mean anything)."""
        if dtype is None:  # computed by the harness (an SGD-step recovery): nothing the code returned
            return
        if not is_float_dtype(dtype):
            raise ValueFinding(
                f"layer '{self.name}': {what} is {dtype} while {self.computes_in()}: integer values cannot "
                "carry a gradient (likely cause: an array allocated with an integer dtype, e.g. np.zeros_like of "
                "integer data, or an astype(int))")
        self.returned[name] = np.dtype(dtype)

    def computes_in(self) -> str:
        """``"the parameters are float32"`` or, without parameters, ``"its input is float64"``."""
        return f"the parameters are {self.dtype}" if self._param_names() else f"its input is {self.dtype}"

    def dtype_notes(self) -> list[str]:
        """One line per tensor the code last returned in another dtype than it computes in."""
        return [note for name, dt in self.returned.items() if (note := dtype_note(name, dt, self.dtype, self.computes_in()))]

    # -- parameters in canonical terms
    def get_params(self) -> dict[str, np.ndarray]:
        """Canonical float64 copies of every parameter, by local name."""
        out = {}
        for local in self._param_names():
            v, _ = to_float64(self._get_user(local), self._what(local))
            out[local] = self._from_user(local, v)
        return out

    def nonfinite_params(self) -> dict[str, NonFinite]:
        """``{local: NonFinite}`` for every parameter whose value (the user's, in the user's
        layout) holds NaN or Inf."""
        out = {}
        for local in self._param_names():
            bad = nonfinite(to_float64(self._get_user(local), self._what(local))[0])
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
            v = v * self._grad_factor()
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
        return {k: eps * float(np.linalg.norm(to_float64(self._get_user(k), self._what(k))[0])) / abs(lr) * factor
                for k in self._param_names() if k in self._trainable()}

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
            current = self._get_user(local)
            _, kind = to_float64(current, self._what(local))
            user = self._to_user(local, value, kind.shape)
            if is_mutable(current):
                write_into(current, user, self._what(local))
            else:
                self._put_user(local, from_float64(user, kind))
            # a property that returns a fresh copy swallows writes: perturbations would then
            # change nothing and the backward would be blamed for it
            now = to_float64(self._get_user(local), self._what(local))[0]
            if not np.array_equal(now, from_float64(user, kind) if kind.family == "list" else
                                  to_float64(from_float64(user, kind), self._what(local))[0], equal_nan=True):
                raise AdapterError(
                    f"{self._what(local)}: writing it had no effect (likely cause: it is a computed property or "
                    f"a copy; declare params= with where the array is stored)"
                )

    def preserved(self) -> ContextManager[None]:
        """Parameters are restored bit for bit on exit, even when user code raises; the
        restoration is verified by fingerprint."""
        places = {k: (partial(self._get_user, k), partial(self._put_user, k)) for k in self._param_names()}
        return preserving(places, f"layer '{self.name}'")


def _is_array(value: Any) -> bool:
    """An array the harness can read (not, say, a list of a layer's [W, b])."""
    try:
        to_float64(value, "candidate")
        return True
    except SpecError:
        return False


# --------------------------------------------------------------------------- object style


class ObjectLayer(WrappedLayer):
    """``obj.forward(x) -> y``, ``obj.backward(dy) -> dx``, parameters and gradients kept on
    the object (attributes or dicts, see :class:`Ref`)."""

    def __init__(self, obj: Any, spec: Layer | None, *, params: Mapping[str, str] | None, grads: Mapping[str, str] | None,
                 layout: Layout, forward: str, backward: str, name: str | None, options: Mapping[str, Any]) -> None:
        super().__init__(spec, layout, name)
        self.obj = obj
        for method in (forward, backward):
            if not callable(getattr(obj, method, None)):
                raise AdapterError(f"layer '{self.name}': {type(obj).__name__} has no method {method}(); pass forward=/backward= with its names")
        self._forward_name, self._backward_name = forward, backward
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise AdapterError(f"layer '{self.name}': unknown option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
        opts = {**OPTIONS, **options}
        self.forward_args, self.forward_kwargs = tuple(opts["forward_args"]), dict(opts["forward_kwargs"])
        self.backward_args, self.backward_kwargs = tuple(opts["backward_args"]), dict(opts["backward_kwargs"])
        self.zero_grad, self.sgd, self.grad_scale = opts["zero_grad"], opts["sgd"], opts["grad_scale"]
        self.batched, self.channel_axis = bool(opts["batched"]), bool(opts["channel_axis"])
        self.inplace = parse_inplace(opts["inplace"], f"layer '{self.name}'")
        if not self.batched and self.sgd:
            raise AdapterError(f"layer '{self.name}': batched=False and sgd= cannot be combined")
        if not self.channel_axis and self.batched:
            raise AdapterError(f"layer '{self.name}': channel_axis=False is for single examples: pass batched=False too")
        self._summed_grads: dict[str, np.ndarray] = {}
        _check_grad_scale(self.name, self.grad_scale)
        for method in filter(None, (self.zero_grad, self.sgd and self.sgd[0])):
            if not callable(getattr(obj, method, None)):
                raise AdapterError(f"layer '{self.name}': {type(obj).__name__} has no method {method}() (declared as an option)")
        if opts["dtype"] is not None:
            self._dtype = np.dtype(opts["dtype"])
        self._declared_params, self._declared_grads = params, grads
        self._sgd_grads: dict[str, np.ndarray] = {}
        self._forwarded = False
        self.params: dict[str, Ref] | None = None
        self.grads: dict[str, Ref | None] = {}
        if not opts["lazy"]:
            self._resolve()

    def _resolve(self) -> None:
        self.params = self._resolve_params(self._declared_params)
        self.grads = self._resolve_grads(self._declared_grads)

    def _resolve_params(self, declared: Mapping[str, str] | None) -> dict[str, Ref]:
        wanted = list(self._spec_params_safe()) if self.spec else list(declared or {})
        declared = dict(declared or {})
        unknown = [k for k in declared if self.spec is not None and k not in wanted]
        if unknown:
            raise AdapterError(f"layer '{self.name}': params names {unknown} are not parameters of {type(self.spec).__name__}; expected some of {wanted}")
        out = {}
        for local in wanted:
            if local in declared:
                ref = Ref(declared[local])
                if not ref.exists(self.obj):
                    raise AdapterError(f"layer '{self.name}': parameter '{local}' declared at {ref!r}, but {type(self.obj).__name__} has nothing there")
                out[local] = ref
                continue
            found = [Ref(c) for c in _candidates(local) if Ref(c).exists(self.obj) and _is_array(Ref(c).get(self.obj))]
            if not found:
                raise AdapterError(
                    f"layer '{self.name}': cannot find parameter '{local}' on {type(self.obj).__name__} "
                    f"(tried {', '.join(_candidates(local)[:6])} ...); pass params={{'{local}': \"W\"}} with where it lives"
                )
            clash = [k for k, r in out.items() if r.path == found[0].path]
            if clash:
                raise AdapterError(
                    f"layer '{self.name}': '{clash[0]}' and '{local}' would both be read from {found[0]!r}; "
                    f"pass params= to say where each lives"
                )
            out[local] = found[0]
        return out

    def _spec_params_safe(self) -> dict[str, Any]:
        try:
            return self._spec_params()
        except AdapterError:
            raise AdapterError(f"layer '{self.name}': {type(self.spec).__name__} needs its input shape to list its parameters") from None

    def _resolve_grads(self, declared: Mapping[str, str] | None) -> dict[str, Ref]:
        declared = dict(declared or {})
        out = {}
        for local, ref in self.params.items():
            if local in declared:
                out[local] = Ref(declared[local])
            else:
                # gradients usually appear only after the first backward: resolve then
                out[local] = None  # type: ignore[assignment]
        return out

    def _param_names(self) -> list[str]:
        if self.params is None:  # lazy: the parameters appear in the first forward
            if not self._forwarded:
                return []
            self._resolve()
        return list(self.params)  # type: ignore[arg-type]

    def _get_user(self, local: str) -> Any:
        if self.params is None:
            self._param_names()
        return self.params[local].get(self.obj)  # type: ignore[index]

    def _put_user(self, local: str, value: Any) -> None:
        self.params[local].set(self.obj, value)

    def _get_grad(self, local: str) -> Any:
        if (self.sgd or not self.batched) and getattr(self, "_external", False):
            raise AdapterError(
                f"layer '{self.name}': with sgd= or batched=False its gradients are recovered around its own "
                "backward call, which the network's own backward made; check this layer chained, not end to end"
            )
        if self.sgd:
            return self._sgd_grads.get(local)
        if not self.batched:
            return self._summed_grads.get(local)
        return self._read_grad(local)

    def _read_grad(self, local: str) -> Any:
        ref = self.grads.get(local)
        if ref is None:
            tried = _grad_candidates(self.params[local].path)
            found = [Ref(c) for c in tried if Ref(c).exists(self.obj)]
            if not found:
                raise AdapterError(
                    f"layer '{self.name}': cannot find the gradient of '{local}' (kept at {self.params[local]!r}) after "
                    f"backward (tried {', '.join(tried[:6])} ...); pass grads={{'{local}': \"dW\"}}"
                )
            ref = self.grads[local] = found[0]
        try:
            return ref.get(self.obj)
        except (AttributeError, KeyError, IndexError, TypeError):
            raise AdapterError(f"layer '{self.name}': gradient of '{local}' declared at {ref!r} is missing after backward") from None

    def _call_forward(self, x: np.ndarray) -> Any:
        self._external, self._sgd_grads, self._summed_grads = False, {}, {}
        if not self.batched:  # code written for one example at a time: loop, then stack
            self._x_user = x
            raw = [self._forward_one(self._drop_channel(xi)) for xi in x]
            # channel_axis=False is about the input; the output keeps its channels unless the
            # code returned (H, W) too, and the upstream gradient must match what it returned
            self._flat_output = not self.channel_axis and np.ndim(raw[0]) == 2
            ys = [self._read_returned(self._add_channel(y), "forward output") for y in raw]
            # in the examples' own dtype (exact: the values came from it), so the output's dtype is checked
            return np.stack([y for y, _ in ys]).astype(ys[0][1].dtype)
        y = self._forward_one(x)
        return y

    def _forward_one(self, x: np.ndarray) -> Any:
        y = call_user(getattr(self.obj, self._forward_name), x, *self.forward_args, **self.forward_kwargs)
        self._forwarded = True
        return y

    def _backward_one(self, dy: np.ndarray) -> Any:
        if self.zero_grad:  # code that accumulates gradients until told to flush them
            call_user(getattr(self.obj, self.zero_grad))
        return call_user(getattr(self.obj, self._backward_name), dy, *self.backward_args, **self.backward_kwargs)

    def _call_backward(self, dy: np.ndarray) -> Any:
        if not self.batched:
            # per example: forward again (the layer caches one example), backward, and sum
            # the parameter gradients as a batched layer would
            dxs, total, kinds = [], {}, {}
            for xi, dyi in zip(self._x_user, dy):
                self._forward_one(self._drop_channel(xi))
                dyi = self._drop_channel(dyi) if getattr(self, "_flat_output", True) else dyi
                dx, kinds["input"] = self._read_returned(self._add_channel(self._backward_one(dyi)),
                                                         "backward's input gradient")
                dxs.append(dx)
                for k in self._param_names():
                    if k in self._trainable():
                        g = self._read_grad(k)
                        if g is None:
                            raise ValueFinding(f"layer '{self.name}': no gradient for parameter '{k}' after the "
                                               f"backward of example {len(dxs) - 1}")
                        g, kinds[k] = self._read_returned(g, f"gradient of '{k}'")
                        total[k] = g if k not in total else total[k] + g
            self._summed_grads = total
            self._grad_dtypes = {k: kinds[k].dtype for k in total}  # summed here in float64: report the code's dtype
            return np.stack(dxs).astype(kinds["input"].dtype)  # exact: the values came from that dtype
        if not self.sgd:
            return self._backward_one(dy)
        # gradients exposed only through an in-place SGD step: recover them from the weight
        # change (w_before - w_after) / lr, then put the weights back exactly
        method, lr = self.sgd
        names = [k for k in self._param_names() if k in self._trainable()]
        with self.preserved():
            before = {k: to_float64(self._get_user(k), self._what(k))[0] for k in names}
            dx = self._backward_one(dy)
            if method:  # None: the backward itself applies the update
                call_user(getattr(self.obj, method))
            self._sgd_grads = {k: (before[k] - to_float64(self._get_user(k), self._what(k))[0]) / lr for k in names}
            self._grad_dtypes = dict.fromkeys(names)  # computed here, in float64: not a dtype the code returned
        return dx

    def _drop_channel(self, a: np.ndarray) -> np.ndarray:
        """One example as the user's code wants it: without its channel axis if declared."""
        if self.channel_axis or a.ndim != 3:
            return a
        axis = 0 if self.layout.data == "NCHW" else 2
        if a.shape[axis] != 1:
            raise AdapterError(f"layer '{self.name}': channel_axis=False needs 1 channel, the input has {a.shape[axis]}")
        return a.squeeze(axis)

    def _add_channel(self, a: Any) -> Any:
        if self.channel_axis or np.ndim(a) != 2:
            return a
        return np.expand_dims(np.asarray(a), 0 if self.layout.data == "NCHW" else 2)

OPTIONS: dict[str, Any] = {
    "forward_args": (),  # extra positional arguments every forward needs (a training flag ...)
    "forward_kwargs": {},  # extra keyword arguments, e.g. {"training": True}
    "backward_args": (),  # extra positional arguments every backward needs (a learning rate ...)
    "backward_kwargs": {},
    "lazy": False,  # parameters are created by the first forward
    "zero_grad": None,  # name of the method that clears accumulated gradients
    "sgd": None,  # (method, lr): gradients only visible through an in-place SGD step
    "grad_scale": None,  # "batch" (gradients already divided by N) or a number to multiply by
    "dtype": None,  # dtype to hand the user's code when it has no parameters to tell
    "batched": True,  # False: the code takes one example at a time, (C, H, W) or (H, W, C)
    "channel_axis": True,  # False (with batched=False): single-channel examples as (H, W)
    "inplace": None,  # writes declared deliberate: {"input", "upstream", "params"} (see harness.adapters.effects)
}


def wrap_layer(obj: Any, spec: Layer | None = None, *, params: Mapping[str, str] | None = None,
               grads: Mapping[str, str] | None = None, layout: Layout = CANONICAL,
               forward: str = "forward", backward: str = "backward", name: str | None = None,
               **options: Any) -> ObjectLayer:
    """Wrap an object-style layer: ``obj.forward(x) -> y``, ``obj.backward(dy) -> dx``.

    params / grads: where each canonical parameter and its gradient live on ``obj``, e.g.
    ``params={"weight": "W", "bias": "b"}``, ``grads={"weight": "dW"}`` or
    ``params={"weight": "params['w']"}``. Undeclared ones are looked for under the usual
    names (``W``/``w``/``weight``/``kernel``..., gradients ``dW``/``grads['W']``...).
    layout: the user's conventions (:class:`Layout`); spec: the spec layer it implements
    (``None``: no reference, finite differences only).

    Options for what real code does (see :data:`OPTIONS`): ``forward_args`` /
    ``forward_kwargs`` (a required training flag), ``lazy=True`` (parameters created on the
    first forward), ``zero_grad="zero_grad"`` (gradients accumulate until that method is
    called; it is called before every backward), ``sgd=("step", lr)`` (gradients only
    visible through an in-place update, by that method or, with ``None``, inside backward;
    recovered as the weight change over lr, and the weights restored bit for bit),
    ``backward_args`` / ``backward_kwargs``, ``batched=False`` (one example at a time; with
    ``channel_axis=False`` single-channel images as (H, W)), ``grad_scale="batch"`` (gradients already divided by the batch size).
    ``inplace={"input", "upstream", "params"}``: writes that are deliberate, not findings — the
    forward (or the backward, through its cache) writing into the forward's input, the backward
    into its upstream gradient, either changing a trainable parameter; any subset (an unknown
    name is an AdapterError). Undeclared, each is a failing finding on the side that wrote.
    """
    if spec is None and params is None:
        params = {}
    return ObjectLayer(obj, spec, params=params, grads=grads, layout=layout, forward=forward, backward=backward,
                       name=name, options=options)


# --------------------------------------------------------------------------- function pairs


def _check_grad_scale(name: str, value: Any) -> None:
    if value is not None and value != "batch" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise AdapterError(f"layer '{name}': grad_scale must be 'batch' or a number, got {value!r}")


class FunctionLayer(WrappedLayer):
    """CS231n style: ``forward(x, *params, *args) -> (out, cache)`` and
    ``backward(dout, cache) -> (dx, *param_grads)``, parameters in ``order``."""

    def __init__(self, forward: Callable, backward: Callable, spec: Layer | None, params: Mapping[str, Any] | Sequence[Any],
                 *, args: Sequence[Any], kwargs: Mapping[str, Any], order: Sequence[str] | None, layout: Layout,
                 name: str | None, inplace: Any = None, grad_scale: Any = None, dtype: Any = None) -> None:
        super().__init__(spec, layout, name)
        self.inplace = parse_inplace(inplace, f"layer '{self.name}'")
        _check_grad_scale(self.name, grad_scale)
        self.grad_scale = grad_scale
        if dtype is not None:  # for parameter-free pairs, which have no array to tell it
            self._dtype = np.dtype(dtype)
        self._f, self._b, self._args, self._kwargs = forward, backward, tuple(args), dict(kwargs)
        if order is None:
            order = list(self._spec_params()) if spec is not None and not isinstance(params, Mapping) else list(params)
        if isinstance(params, Mapping):
            missing = [k for k in order if k not in params]
            if missing:
                raise AdapterError(f"layer '{self.name}': params lack {missing}; got {list(params)}")
            self._params = {k: params[k] for k in order}
        else:
            params = list(params)
            if len(params) != len(order):
                raise AdapterError(f"layer '{self.name}': got {len(params)} parameter arrays for {list(order)}")
            self._params = dict(zip(order, params))
        self._grads: dict[str, Any] = {}
        self._cache: Any = None

    def _param_names(self) -> list[str]:
        return list(self._params)

    def _get_user(self, local: str) -> Any:
        return self._params[local]

    def _put_user(self, local: str, value: Any) -> None:
        self._params[local] = value

    def _get_grad(self, local: str) -> Any:
        return self._grads.get(local)

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        # the arrays were handed to us by the user: replace, never write into them
        for local, value in values.items():
            _, kind = to_float64(self._params[local], self._what(local))
            user = self._to_user(local, value, kind.shape)
            self._params[local] = from_float64(user, kind)

    def _call_forward(self, x: np.ndarray) -> Any:
        self._handed = {k: _copy(v) for k, v in self._params.items()}  # the user's own arrays are never handed over
        result = call_user(self._f, x, *self._handed.values(), *self._args, **self._kwargs)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ValueFinding(f"layer '{self.name}': forward must return (out, cache), got {type(result).__name__}")
        out, self._cache = result
        return out

    def _call_backward(self, dy: np.ndarray) -> Any:
        result = call_user(self._b, dy, self._cache)
        result = result if isinstance(result, tuple) else (result,)
        if len(result) != 1 + len(self._params):
            raise ValueFinding(
                f"layer '{self.name}': backward must return (dx, {', '.join('d' + k for k in self._params)}), "
                f"got {len(result)} values"
            )
        self._grads = dict(zip(self._params, result[1:]))
        return result[0]


def wrap_functions(forward: Callable, backward: Callable, spec: Layer | None = None,
                   params: Mapping[str, Any] | Sequence[Any] = (), *, args: Sequence[Any] = (),
                   kwargs: Mapping[str, Any] | None = None, order: Sequence[str] | None = None,
                   layout: Layout = CANONICAL, name: str | None = None, inplace: Any = None, grad_scale: Any = None,
                   dtype: Any = None) -> FunctionLayer:
    """Wrap a CS231n-style function pair.

    ``forward(x, *params, *args, **kwargs) -> (out, cache)`` and
    ``backward(dout, cache) -> (dx, *param_grads)``. ``params``: the user's arrays, as a
    mapping by canonical local name (``{"weight": w, "bias": b}``) or a sequence in the
    spec's order (weight, bias); extra arguments such as ``conv_param`` go in ``args``.
    The arrays are never modified: the code is handed copies, perturbed values new arrays.
    ``inplace``: writes that are deliberate; ``grad_scale``: ``"batch"`` for gradients already
    divided by the batch size, or a number to multiply them by; ``dtype``: the dtype to hand a
    parameter-free pair (as for :func:`wrap_layer`).
    """
    return FunctionLayer(forward, backward, spec, params, args=args, kwargs=kwargs or {}, order=order,
                         layout=layout, name=name, inplace=inplace, grad_scale=grad_scale, dtype=dtype)


__all__ = ["OPTIONS", "preserving", "AdapterError", "ValueFinding", "dtype_note", "FunctionLayer", "ObjectLayer", "Ref", "WrappedLayer", "wrap_functions", "wrap_layer"]
