"""The common core of a wrapped layer: conversions between the user's conventions and the
canonical ones (NCHW data, float64, the array type the code computes with), the forward and
backward in canonical terms, and checks on what the user's code returns. The parameter side
(reading, writing and restoring parameters, reading gradients) is :mod:`.wrapped_params`.
The calling styles subclass it: :mod:`.object_layer` (``obj.forward`` / ``obj.backward``)
and :mod:`.function_layer` (CS231n function pairs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import Layer, SpecError, index_layer, read_input
from . import sequences, state, steps
from .arrays import ArrayError, ArrayKind, NonFinite, is_float_dtype, nonfinite, read_float64, to_float64
from .effects import Effects
from .feed import FeedOptions, default_dtype, hand, parse_array_type, read_dtype, resolve
from .indices import hand_indices, ignored_dx
from .layouts import Layout, data_from_user, data_to_user, user_data_shape
from .notes import _data_hint, dtype_note
from .refs import AdapterError, ValueFinding
from .replay import Replay
from .wrapped_params import ParamAccess


class WrappedLayer(ParamAccess, Effects, state.OptionalState):
    """Base: conversions, checks and (from :class:`~.wrapped_params.ParamAccess`) the
    parameter side, shared by every calling style.

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
        # its input is integer indices (an Embedding first): int64, no input gradient (see .indices)
        self.indices = spec is not None and index_layer(spec) is not None
        self.index_notes: list[str] = []  # a dx returned anyway for the indices (ignored)
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
        steps.refuse_time_axis(spec, layout, self.name)
        self._pair_out = False  # the last forward returned an LSTM step's (next_h, next_c) pair (see .steps)

    # -- subclass hooks (the parameter store's: see .wrapped_params)
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
                _, kind = read_float64(self._get_user(local), self._what(local))
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
        kinds = [(k, read_float64(self._get_user(k), self._what(k))[1]) for k in names]
        kind = resolve(f"layer '{self.name}'", self.feed_options, kinds, self.dtype)
        if names:  # cached once there are parameters to tell (a lazy layer creates them later)
            self._feed = kind
        return kind

    def _hand(self, values: np.ndarray, what: str) -> Any:
        """Canonical-layout-converted float64 ``values`` as the array the code is handed."""
        return hand(values, self.feed_kind(), f"layer '{self.name}' {what}")

    def note_input_shape(self, shape: tuple[int, ...]) -> None:
        """Record the canonical input shape when the layer ran inside the user's own network
        code rather than through :meth:`forward` (batch size for ``grad_scale``, lazy params)."""
        self._x_shape = tuple(shape)
        self._forwarded = True
        self._external = True  # the user's network ran it: per-call gradient caches are stale

    # -- forward / backward in canonical terms
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Canonical input (batch first, NCHW; int64 indices for an index input) -> canonical
        float64 output."""
        x = read_input(self.spec, x) if self.indices else np.asarray(x, dtype=np.float64)  # type: ignore[arg-type]
        if self.spec is not None:
            expected_out = self.spec.output_shape(x.shape)
            steps.check_state_batch(self.spec, {k: self._peek(k) for k in self._param_names()}, x.shape, self.name)
        self._x_shape = x.shape
        self._features_out = self._output_features(x.shape, expected_out if self.spec is not None else None)
        x_user = (
            hand_indices(
                sequences.indices_to_user(x, self.layout.sequence), self.feed_kind(), f"layer '{self.name}' input"
            )
            if self.indices
            else self._hand(data_to_user(x, self.layout, self.features_in), "input")
        )
        with self._replaying():
            y = self._watched_forward(x_user)
        y, self._pair_out = steps.stacked(self.spec, y)
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

    def assume_output(self, shape: tuple[int, ...]) -> None:
        """Take ``shape`` (canonical) as the last forward's output shape: the backward is then
        handed an upstream gradient of that shape. Inference asks what a backward computes for
        the layer it was written for when the forward's bug returned another shape."""
        self._y_shape = tuple(shape)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        """Canonical upstream gradient (the output's shape) -> canonical input gradient.
        Parameter gradients are then read with :meth:`param_grads`."""
        if self._y_shape is None:
            raise AdapterError(f"layer '{self.name}': backward called before forward")
        dy = np.asarray(dy, dtype=np.float64)
        if dy.shape != self._y_shape:
            raise AdapterError(
                f"layer '{self.name}': upstream gradient shape {dy.shape} differs from the output shape {self._y_shape}"
            )
        dy_user = self._hand(data_to_user(dy, self.layout, self._features_out), "upstream gradient")
        with self._replaying(backward=True):  # its own state: a mask drawn again is not the forward's
            dx = self._watched_backward(dy_user)
        if not self.input_grad:  # declared: the code computes none (a first layer); nothing to compare
            if self.indices and dx is not None:
                self.index_notes[:] = [ignored_dx(self.name, dx)]
            return None
        if dx is None:
            raise ValueFinding(
                f"layer '{self.name}': backward returned None; it must return the input gradient dx "
                "(a first layer that computes none: declare input_grad=False)"
            )
        dx64 = self._to_canonical_data(dx, "input", "backward's input gradient", self.features_in)
        if dx64.shape != self._x_shape:
            assert self._x_shape is not None  # set by the forward, which ran (_y_shape is set)
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

    def _output_features(
        self, x_shape: tuple[int, ...], y_shape: tuple[int, ...] | None
    ) -> tuple[int, int, int] | None:
        from ..spec import Flatten
        from .layouts import FEATURE_WISE

        if isinstance(self.spec, Flatten) and len(x_shape) == 4:
            return tuple(x_shape[1:])  # type: ignore[return-value]
        if isinstance(self.spec, FEATURE_WISE) and len(x_shape) == 2:
            return self.features_in  # ReLU, dropout, batch norm ... keep the feature order
        return None

    def _to_canonical_data(
        self, value: Any, name: str, what: str, features: tuple[int, int, int] | None = None
    ) -> np.ndarray:
        """An activation the user's code returned (``name``: ``"output"`` or ``"input"``, its
        gradient) -> canonical float64; :class:`ValueFinding` when it is None, not an array,
        integer, or holds NaN/Inf (first index in the user's layout, and the count)."""
        v, kind = self._read_returned(value, what)
        self._note_dtype(name, what, kind.dtype)
        bad = nonfinite(v)
        if bad:
            raise ValueFinding(
                f"layer '{self.name}': {what} has a non-finite value {bad.value} at {list(bad.index)} "
                f"(user layout; {bad.count} of {bad.size} NaN or Inf)"
            )
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
                "integer data, or an astype(int))"
            )
        self.returned[name] = np.dtype(dtype)

    def notes(self) -> list[str]:
        """Lines for the report about what was not checked: running statistics not kept (see
        :mod:`.state`), a dx returned for integer indices (ignored)."""
        return [*super().notes(), *self.index_notes]

    def computes_in(self) -> str:
        """``"the parameters are float32"`` or, without parameters, ``"its input is float64"``."""
        return f"the parameters are {self.dtype}" if self._param_names() else f"its input is {self.dtype}"

    def dtype_notes(self) -> list[str]:
        """One line per tensor the code last returned in another dtype than it computes in."""
        return [
            note for name, dt in self.returned.items() if (note := dtype_note(name, dt, self.dtype, self.computes_in()))
        ]


# the guess from the output's rank alone; harness.hints replaces it when a per-example run confirms it
ONE_EXAMPLE_GUESS = (
    "; one axis fewer than the spec's (N, ...) output: code written for one example at a time? declare batched=False"
)


def _is_array(value: Any) -> bool:
    """An array the harness can read (not, say, a list of a layer's [W, b])."""
    try:
        to_float64(value, "candidate")
        return True
    except SpecError:
        return False
