"""The common core of a wrapped layer: conversions between the user's conventions and the
canonical ones (NCHW data, PyTorch parameter layouts, float64), checks on what the user's
code returns, and restoration of parameters. The calling styles subclass it:
:mod:`.object_layer` (``obj.forward`` / ``obj.backward``) and :mod:`.function_layer`
(CS231n function pairs).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, ContextManager, Mapping

import numpy as np

from ..spec import Layer, SpecError
from .arrays import ArrayError, ArrayKind, NonFinite, from_float64, is_float_dtype, is_mutable, nonfinite, to_float64, write_into
from .layouts import Layout, _squeezed, data_from_user, data_to_user, param_from_user, param_to_user, user_data_shape
from .effects import Effects
from .feed import FeedOptions, default_dtype, hand, parse_array_type, read_dtype, resolve
from .notes import _data_hint, dtype_note
from .refs import AdapterError, ValueFinding, preserving
from . import state
from .replay import Replay


class WrappedLayer(Effects, state.OptionalState):
    """Base: conversions, checks and restoration shared by every calling style.

    Subclasses provide ``_call_forward(x_user)``, ``_call_backward(dy_user)`` and the
    parameter store (``_get_user(local)``, ``_put_user(local, value)``, ``_get_grad(local)``).
    """

    input_grad: bool = True  # False: the code computes no input gradient (declared; see harness.adapters.options)

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
        # the array type the code computes with (numpy, torch, jax, cupy): see .feed
        self.feed_options = FeedOptions()
        self._feed: ArrayKind | None = None
        # set by a network for a parameter-free layer without dtype=: its dtype, read when asked
        self._network_dtype: Callable[[], np.dtype] | None = None
        # optional state (see .state): running statistics the code does not keep, by name; the
        # input shape when known before any forward; one random state for code that draws a mask
        self._absent: dict[str, None] = {}
        self._expected_input: tuple[int, ...] | None = None
        self.replay = Replay(self.name, getattr(self, "obj", None)) if state.draws(spec) else None

    # -- subclass hooks
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

    def _call_forward(self, x: np.ndarray) -> Any:
        raise NotImplementedError

    def _call_backward(self, dy: np.ndarray) -> Any:
        raise NotImplementedError

    # -- dtype the user computes in: a declared dtype=, their parameters' dtype, the network's, else float64
    @property
    def dtype(self) -> np.dtype:
        """What the user's code is handed and judged in: a declared ``dtype=``; else its
        parameters' dtype; else, parameter-free inside a network (ReLU, pooling ...), the
        dtype the network's parameterised layers compute in; else float64."""
        if getattr(self, "_dtype", None) is None:
            for local in self._param_names():
                _, kind = to_float64(self._get_user(local), self._what(local))
                if np.issubdtype(kind.dtype, np.floating):
                    self._dtype = kind.dtype  # cached: parameters keep their dtype
                    return kind.dtype
            # no parameters (yet): not cached, a lazy layer may add some, the network's may change
            if self._network_dtype is not None:
                return np.dtype(self._network_dtype())
            return default_dtype(self.feed_options)
        return self._dtype

    def _declare_types(self, dtype: Any, array_type: Any) -> None:
        """The ``dtype=`` and ``array_type=`` options (see :mod:`.feed`)."""
        owner = f"layer '{self.name}'"
        np_dtype, implied, framework = read_dtype(dtype, owner)
        if np_dtype is not None:  # for parameter-free code, which has no array to tell it
            self._dtype = np_dtype
        self.feed_options = FeedOptions(parse_array_type(array_type, owner), implied, framework)

    def feed_kind(self) -> ArrayKind:
        """The array type, dtype and device the code is handed (shape left empty): declared,
        else its parameters' (see :mod:`.feed`); a declaration they contradict is an AdapterError."""
        if self._feed is not None:
            return self._feed
        names = self._param_names()
        kinds = [(k, to_float64(self._get_user(k), self._what(k))[1]) for k in names]
        kind = resolve(f"layer '{self.name}'", self.feed_options, kinds, self.dtype)
        if names:  # cached once there are parameters to tell (a lazy layer creates them later)
            self._feed = kind
        return kind

    def _hand(self, values: np.ndarray, what: str) -> Any:
        """Canonical-layout-converted float64 ``values`` as the array the code is handed."""
        return hand(values, self.feed_kind(), f"layer '{self.name}' {what}")

    def _what(self, local: str) -> str:
        return f"layer '{self.name}' parameter '{local}'"

    def _expected(self, local: str) -> tuple[int, ...]:
        if self.spec is None:
            return tuple(np.shape(self._get_user(local)))
        if self._input_shape() is None and state.shape_dependent(*self._leaf(local)):
            raise AdapterError(
                f"layer '{self.name}': the shape of its parameter '{local}' is the input's (or its (C, H, W)), which is "
                "not known yet; pass x= or input_shape= to check_layer (input_shape= to wrap_network), or run its "
                "forward once")
        return self._spec_params()[local].shape

    def _spec_params(self) -> dict[str, Any]:
        """The spec's parameters by the names this wrapper uses: local (``weight``) for one
        layer, paths relative to the span (``conv1.weight``) for a fused span of layers."""
        from ..spec import named_params

        known = self._input_shape()
        if not self.spec.children():
            return self.spec.local_params(known or state.dummy_input(self.spec)[0])
        prefix = f"{self.spec.name}." if self.spec.name else ""
        dummy, exact = state.dummy_input(self.spec)
        if known is not None or not exact:  # a mask or per-feature parameters: the input's shape, however made up
            return {k[len(prefix):]: v for k, v in named_params(self.spec, known or dummy).items()}
        return self._span_params(prefix)

    def _span_params(self, prefix: str) -> dict[str, Any]:
        """A fused span's parameters before any input is known: each leaf's own, listed at a
        made-up input of its own (their shapes do not depend on N, H, W), so a span that
        starts with a Flatten, or flattens a conv's output, needs no input shape."""
        from ..spec import join_path, walk

        out = {}
        for path, leaf in walk(self.spec):
            if not leaf.children():
                out.update({join_path(path, k)[len(prefix):]: v for k, v in leaf.local_params(state.dummy_input(leaf)[0]).items()})
        return out

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
        if state.deferred(leaf, local):  # 0/1, bool, or 0 and the 1/(1-p) scale -> 0/1
            value = state.mask_from_user(value, f"layer '{self.name}'", self._place(name),
                                         f"pass params={{'{name}': \"...\"}} with where the mask lives")
        return param_from_user(leaf, local, value, self.layout, self._expected(name), self.features_in)

    def _to_user(self, name: str, value: np.ndarray, user_shape: tuple[int, ...]) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.spec is None:
            return value
        leaf, local = self._leaf(name)
        user = param_to_user(leaf, local, value, self.layout, user_shape, self.features_in)
        return user * state.mask_scale(self._get_user(name)) if state.deferred(leaf, local) else user

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
        x_user = self._hand(data_to_user(x, self.layout, self.features_in), "input")
        with self._replaying():
            y = self._watched_forward(x_user)
        y64 = self._to_canonical_data(y, "output", "forward output", self._features_out)
        if self.spec is not None and y64.shape != expected_out:
            hint = _data_hint(np.shape(y), expected_out, self.layout)  # another layout explains it: configuration
            raise (AdapterError if hint else ValueFinding)(
                f"layer '{self.name}': forward returned shape {tuple(np.shape(y))}; the spec expects "
                f"{user_data_shape(expected_out, self.layout)} in the declared {self.layout}"
                f"{hint or self._one_example_hint(y, expected_out)}"
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
        dy_user = self._hand(data_to_user(dy, self.layout, self._features_out), "upstream gradient")
        with self._replaying(backward=True):  # its own state: a mask drawn again is not the forward's
            dx = self._watched_backward(dy_user)
        if not self.input_grad:  # declared: the code computes none (a first layer); nothing to compare
            return None
        if dx is None:
            raise ValueFinding(f"layer '{self.name}': backward returned None; it must return the input gradient dx "
                               "(a first layer that computes none: declare input_grad=False)")
        dx64 = self._to_canonical_data(dx, "input", "backward's input gradient", self.features_in)
        if dx64.shape != self._x_shape:
            hint = _data_hint(np.shape(dx), self._x_shape, self.layout)
            raise (AdapterError if hint else ValueFinding)(
                f"layer '{self.name}': backward returned an input gradient of shape {tuple(np.shape(dx))}; "
                f"expected {user_data_shape(self._x_shape, self.layout)} (the input's shape in the declared "
                f"{self.layout}){hint or self._shape_hint(dx)}"
            )
        return dx64

    def _shape_hint(self, dx: Any) -> str:
        """More on an input gradient of the wrong shape, from what a calling style knows."""
        return ""

    def _one_example_hint(self, y: Any, expected: tuple[int, ...]) -> str:
        """A batched call whose output lacks the batch axis: code written for one example."""
        if getattr(self, "batched", True) and np.ndim(y) == len(expected) - 1:
            return ONE_EXAMPLE_GUESS
        return ""

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
        if not getattr(self, "batched", True) and self._x_shape:  # one recovery per example, summed
            factor *= self._x_shape[0]
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
            if local in self._absent:
                continue  # running statistics the code does not keep: nowhere to write them
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
        places = {k: (partial(self._get_user, k), partial(self._put_user, k)) for k in self._param_names()
                  if self._peek(k) is not None}  # a mask the forward has not drawn yet: nothing to restore
        return preserving(places, f"layer '{self.name}'")


# the guess from the output's rank alone; harness.hints replaces it when a per-example run confirms it
ONE_EXAMPLE_GUESS = ("; one axis fewer than the spec's (N, ...) output: code written for one example at a time? "
                     "declare batched=False")


def _is_array(value: Any) -> bool:
    """An array the harness can read (not, say, a list of a layer's [W, b])."""
    try:
        to_float64(value, "candidate")
        return True
    except SpecError:
        return False


def _check_grad_scale(name: str, value: Any) -> None:
    if value is not None and value != "batch" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise AdapterError(f"layer '{name}': grad_scale must be 'batch' or a number, got {value!r}")
