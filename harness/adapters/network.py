"""A user's whole network seen in canonical conventions: layer by layer, or end to end.

:func:`wrap_network` maps spec layer paths to the user's layers (objects or already
:class:`WrappedLayer`\\ s) and optionally takes the user's own network ``forward`` /
``backward``::

    net = wrap_network({"conv1": c1, "relu1": r1, "pool1": p1, "flat": f, "fc1": fc}, spec,
                       forward=model.forward, backward=model.backward,
                       layout=Layout(linear="in_out"), input_shape=(8, 3, 32, 32))
    y = net.forward(x)          # x canonical (N, C, H, W) float64 -> canonical output
    dx = net.backward(g)        # g: d objective / d output, canonical
    net.param_grads()           # {"conv1.weight": (O, I, kh, kw), "fc1.weight": (out, in), ...}

Everything crossing this API is canonical float64 numpy: data NCHW (2-D ``(N, F)``
features in C,H,W order), parameters in PyTorch layouts under their full canonical names
(``conv1.weight``). The user's code sees its own ``layout``: 4-D data in ``layout.data``;
features after a Flatten in ``layout.flatten`` order (this needs ``input_shape``); other
2-D data (logits) unchanged. What the user gives (``input_shape=``, kept as given) is in
the user's layout instead: the rule of :mod:`harness.adapters.inputs`.

With ``forward``/``backward`` the pass runs through the user's own network code (which
catches wiring bugs); without them the wrapped layers are chained in spec order (Sequential
and Residual trees, :mod:`.chain`), which needs every leaf layer covered. ``mode="chain"`` / ``"network"``
picks one explicitly, so both can be compared on the same objects. CS231n-style models
(``model.loss(X, y)``): :func:`wrap_loss_model` (:mod:`.loss_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

import numpy as np

from ..faults import call_user
from ..spec import Layer, index_layer, layer_shapes, read_input, walk
from . import sequences, state
from .chain import chain_backward, chain_forward
from .effects import Effects, parse_inplace
from .feed import hand_network, network_kind, typed
from .indices import hand_indices
from .inputs import AXES, read_shape
from .layer import AdapterError, ValueFinding, WrappedLayer, _data_hint, wrap_layer
from .layouts import CANONICAL, Layout, data_to_user, feature_orders, user_data_shape
from .loss_model import LossModel, wrap_loss_model  # re-exported: CS231n-style models
from .network_parts import Shape, _check_arguments, _dummy_input, _input_grad, _needs_input_shape, _user_output
from .notes import _close, _listing
from .replay import replaying
from .watch import Calls, returns_kept, watching

# --------------------------------------------------------------------------- whole networks


class WrappedNetwork(Effects):
    """The user's network in canonical terms; see the module docstring. Build with
    :func:`wrap_network`.

    ``layers``: ``{path: WrappedLayer}`` in forward order; ``covered``: those paths;
    ``missing``: parameter-free leaves with no user object (only the user's network
    forward/backward computes them, so they cannot be checked in isolation).
    """

    def __init__(
        self,
        layers: Mapping[str, Any],
        spec: Layer,
        *,
        forward: Callable | None,
        backward: Callable | None,
        layout: Layout,
        input_shape: Shape | None,
        inplace: Any = None,
    ) -> None:
        self._init_effects()  # the network's own passes' writes into what they are handed (see .effects)
        self.inplace = parse_inplace(inplace, "wrap_network")
        _check_arguments(layers, spec, layout, forward, backward)
        self.spec, self.layout = spec, layout
        # its input is integer indices (an Embedding first); an Embedding elsewhere is a SpecError
        self.indices = index_layer(spec) is not None
        self.input_shape = tuple(input_shape) if input_shape is not None else None  # as given, in layout.data
        self._input_shape = read_shape(input_shape, spec, layout) if input_shape is not None else None  # canonical
        self._net_forward, self._net_backward = forward, backward
        tree = dict(walk(spec))
        leaves = [p for p, l in tree.items() if not l.children()]
        shapes = layer_shapes(spec, self._input_shape) if self._input_shape is not None else None

        self.layers: dict[str, WrappedLayer] = {}
        self._wrap_layers(layers, tree, leaves)
        self._share_dtype()

        self.covered = list(self.layers)
        state.expect_inputs(self, self._input_shape)  # a mask a forward draws can then be read before any pass
        self.input_grad = _input_grad(self.layers, leaves[0] if leaves else None)
        self.missing = [p for p in leaves if p not in self.layers]
        needed = [p for p in self.missing if tree[p].local_params(shapes[p][0] if shapes else _dummy_input(tree[p]))]
        if needed:
            raise AdapterError(
                f"wrap_network: no layer given for {needed}, which have parameters (or a dropout mask); "
                f"every such spec layer needs its user object"
            )
        self._tell_features(shapes)
        self._mode: str | None = None
        self._x_shape: Shape | None = None
        self._y_shape: Shape | None = None
        self._outputs: dict[str, np.ndarray] = {}
        self._output_grads: dict[str, np.ndarray] = {}
        self.returned: dict[str, np.dtype] = {}  # dtypes of what the network's own passes last returned

    def _wrap_layers(self, layers: Mapping[str, Any], tree: dict[str, Layer], leaves: list[str]) -> None:
        """Fill ``self.layers``: each user layer at its spec leaf, in the spec's forward order,
        wrapped unless it already is (then with that leaf's spec)."""
        prev: str | None = None
        for path, obj in layers.items():
            if path not in tree:
                raise AdapterError(
                    f"wrap_network: '{path}' is not a layer of the spec{_close(path, leaves)}; "
                    f"its layers are {_listing(leaves)}"
                )
            if path not in leaves:
                inside = [p for p in leaves if p.startswith(path + ".")]
                raise AdapterError(
                    f"wrap_network: '{path}' is a {type(tree[path]).__name__}, not a leaf layer; map its "
                    f"layers instead: {_listing(inside)}"
                )
            if prev is not None and leaves.index(path) < leaves.index(prev):
                raise AdapterError(
                    f"wrap_network: layers are not in forward order: '{path}' comes after '{prev}' in the "
                    f"mapping but before it in the spec; the spec's order is {_listing(leaves)}"
                )
            prev = path
            if isinstance(obj, WrappedLayer):
                if obj.spec != tree[path]:  # None too: a spec-less wrapper cannot be checked as this layer
                    raise AdapterError(
                        f"wrap_network: the layer given for '{path}' was wrapped with spec {obj.spec!r}, "
                        f"but the network's spec has {tree[path]!r} there"
                    )
                w = obj
            else:
                w = wrap_layer(obj, tree[path], layout=self.layout, name=path, inplace=self.inplace)
            self.layers[path] = w

    def _tell_features(self, shapes: dict[str, Any] | None) -> None:
        """Under an HWC flatten the features after a Flatten (and the next Linear's weight
        columns) are in H, W, C order; the wrapped layers convert once told (C, H, W), which
        needs the input shape. Sets ``_out_features``: the network output's order, if flattened."""
        used = [self.layout, *(w.layout for w in self.layers.values())]
        if shapes is None and _needs_input_shape(self.spec, used):
            raise AdapterError(
                "wrap_network: a Layout(flatten='HWC') reorders the features after the Flatten by the "
                f"(C, H, W) it flattens; pass input_shape={AXES[self.layout.data]} so they are known"
            )
        features, self._out_features = (
            feature_orders(self.spec, self._input_shape) if self._input_shape is not None else ({}, None)
        )
        for path, chw in features.items():
            if path in self.layers and self.layers[path].features_in is None:
                self.layers[path].features_in = chw

    def __repr__(self) -> str:
        mode = "network forward/backward" if self.end_to_end else "chained layers"
        miss = f", not covered {self.missing}" if self.missing else ""
        return f"WrappedNetwork({len(self.covered)} layers covered{miss}; {mode}; {self.layout})"

    @property
    def end_to_end(self) -> bool:
        """Whether the user's own network forward/backward were given (the default mode)."""
        return self._net_forward is not None

    @property
    def dtype(self) -> np.dtype:
        """What the user's network computes in: the first parameterised layer's dtype (its
        parameter-free layers without ``dtype=`` too), float64 without any parameters."""
        for w in self.layers.values():
            if w._param_names():
                return w.dtype
        return np.dtype(np.float64)

    def _share_dtype(self) -> None:
        """Parameter-free layers without a ``dtype=`` of their own compute in the network's dtype."""
        for w in self.layers.values():
            if not w._param_names() and getattr(w, "_dtype", None) is None:
                w._network_dtype = lambda: self.dtype  # read when asked: a lazy layer's parameters come later

    # -- parameters, by full canonical name
    def get_params(self) -> dict[str, np.ndarray]:
        return {f"{p}.{k}": v for p, w in self.layers.items() for k, v in w.get_params().items()}

    def param_grads(self) -> dict[str, np.ndarray]:
        """Trainable parameters' gradients after :meth:`backward` (either mode)."""
        return {f"{p}.{k}": v for p, w in self.layers.items() for k, v in w.param_grads().items()}

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        """Write canonical values (any subset of :meth:`get_params`'s names) into the user's layers."""
        valid = [f"{p}.{k}" for p, w in self.layers.items() for k in [*w._param_names(), *w._absent]]
        unknown = [k for k in values if k not in valid]
        if unknown:
            raise AdapterError(
                f"set_params: {unknown} are not parameters of the wrapped network"
                f"{_close(unknown[0], valid)}; its parameters are {_listing(valid)}"
            )
        by_layer: dict[str, dict[str, np.ndarray]] = {}
        for name, v in values.items():
            path, _, local = name.rpartition(".")
            by_layer.setdefault(path, {})[local] = v
        for path, vals in by_layer.items():
            self.layers[path].set_params(vals)

    @contextmanager
    def preserved(self) -> Iterator[None]:
        """Every layer's parameters restored bit for bit on exit, even when user code raises."""
        with ExitStack() as stack:
            for w in self.layers.values():
                stack.enter_context(w.preserved())
            yield

    # -- forward / backward
    def forward(self, x: np.ndarray, *, mode: str | None = None) -> np.ndarray:
        """Canonical input -> canonical float64 output. ``mode``: ``"network"`` (the user's
        own forward; the default when given) or ``"chain"`` (wrapped layers in spec order)."""
        mode = mode or ("network" if self.end_to_end else "chain")
        if mode not in ("network", "chain"):
            raise AdapterError(f"forward: mode must be 'network' or 'chain', got {mode!r}")
        if mode == "network" and not self.end_to_end:
            raise AdapterError(
                "forward: mode='network' needs the network's own passes: pass forward= and backward= to wrap_network"
            )
        if mode == "chain" and self.missing:
            raise AdapterError(
                f"forward: cannot chain the layers: no user layer for {self.missing}; map them in "
                f"wrap_network's layers, or pass the network's own forward= and backward="
            )
        x = read_input(self.spec, x)  # float64, or int64 indices for a network opened by an Embedding
        if (
            self._input_shape is not None and x.shape[1:] != self._input_shape[1:]
        ):  # the features' (C, H, W) came from it
            raise AdapterError(
                f"forward: input shape {user_data_shape(x.shape, self.layout)} differs from input_shape="
                f"{self.input_shape} given to wrap_network (both in the declared {self.layout}; only "
                f"the batch size may change)"
            )
        expected = self.spec.output_shape(x.shape)
        self._mode, self._x_shape, self._outputs, self._output_grads = None, x.shape, {}, {}
        if mode == "chain":
            y = chain_forward(self.layers, self._outputs, self.spec, self.spec.name, x)
        else:
            x_user = (
                hand_indices(
                    sequences.indices_to_user(x, self.layout.sequence),
                    network_kind(self.layers, getattr(self, "array_type", None), self.dtype),
                    "network input",
                )
                if self.indices
                else hand_network(self, data_to_user(x, self.layout), "input")
            )
            raw = self._watched_forward(x_user)
            y = _user_output(raw, "network forward output", self.layout, self._out_features, self.returned)
            if y.shape != expected:
                hint = _data_hint(np.shape(raw), expected, self.layout)  # another layout explains it: configuration
                raise (AdapterError if hint else ValueFinding)(
                    f"network forward returned shape {tuple(np.shape(raw))}; the spec expects "
                    f"{user_data_shape(expected, self.layout)} in the declared {self.layout}{hint}"
                )
            # the layers' own forward did not run: tell them their input shapes, which
            # shape-dependent conversions (grad_scale="batch", lazy parameters) read
            shapes = layer_shapes(self.spec, x.shape)
            for path, w in self.layers.items():
                w.note_input_shape(shapes[path][0])
        self._mode, self._y_shape = mode, y.shape
        return y

    def backward(self, g: np.ndarray) -> np.ndarray | None:
        """Canonical upstream gradient (the output's shape) -> canonical input gradient, in the
        mode of the last :meth:`forward`; then read :meth:`param_grads`."""
        if self._mode is None:
            raise AdapterError("backward called before forward")
        g = np.asarray(g, dtype=np.float64)
        if g.shape != self._y_shape:
            raise AdapterError(
                f"backward: upstream gradient shape {g.shape} differs from the output shape {self._y_shape}"
            )
        if self._mode == "chain":
            return chain_backward(self.layers, self._output_grads, self.spec, self.spec.name, g)
        g_user = hand_network(self, data_to_user(g, self.layout, self._out_features), "upstream gradient")
        with returns_kept(self.layers):  # gradients the layers return to the network's code: read from there
            raw = self._watched_backward(g_user)
        if not self.input_grad:  # the first layer is declared to compute none
            return None
        dx = _user_output(raw, "network backward's input gradient", self.layout, None, self.returned, "input")
        if dx.shape != self._x_shape:
            assert self._x_shape is not None  # set by the forward, which ran (_mode is set)
            raise (AdapterError if _data_hint(np.shape(raw), self._x_shape, self.layout) else ValueFinding)(
                f"network backward returned an input gradient of shape {tuple(np.shape(raw))}; expected "
                f"{user_data_shape(self._x_shape, self.layout)} (the input's shape in the declared {self.layout})"
            )
        return dx

    def _call_forward(self, x_user: np.ndarray) -> Any:
        with replaying(self.layers):  # a layer that draws its mask draws what it draws when checked alone
            return call_user(self._net_forward, x_user)  # type: ignore[arg-type]

    def _call_backward(self, g_user: np.ndarray) -> Any:
        return call_user(self._net_backward, g_user)  # type: ignore[arg-type]

    def _params_seen(self) -> dict[str, Any]:
        """Every layer's trainable parameters, the user's own arrays (the network's own code uses them)."""
        return {
            f"{p}.{k}": w._get_user(k) for p, w in self.layers.items() for k in w._param_names() if k in w._trainable()
        }

    def recording(self) -> AbstractContextManager[dict[str, Calls]]:
        """Watch the user's own network passes at every layer boundary (see
        :mod:`harness.adapters.watch`): ``with net.recording() as calls: net.forward(x)``
        gives ``{path: Calls}`` for every layer that can be watched."""
        return watching(self.layers)

    def layer_outputs(self) -> dict[str, np.ndarray]:
        """``{path: canonical output}`` of every layer (composites too, pre-order as
        :func:`walk`) from the last chained forward."""
        self._need_chain("layer_outputs")
        return dict(self._outputs)

    def layer_output_grads(self) -> dict[str, np.ndarray]:
        """``{path: upstream gradient the layer received}`` from the last chained backward
        (as the references' ``Result.output_grads``)."""
        self._need_chain("layer_output_grads")
        return dict(self._output_grads)

    def _need_chain(self, what: str) -> None:
        if self._mode != "chain":
            raise AdapterError(
                f"{what}: needs a chained forward first (forward(x, mode='chain')); the user's own "
                f"network forward does not expose its intermediate values"
            )


def wrap_network(
    layers: Mapping[str, WrappedLayer | Any],
    spec: Layer,
    *,
    forward: Callable | None = None,
    backward: Callable | None = None,
    layout: Layout = CANONICAL,
    input_shape: Shape | None = None,
    inplace: Any = None,
    array_type: Any = None,
) -> WrappedNetwork:
    """Wrap a user's network. ``layers``: ``{spec path: user layer}`` in forward order
    (paths as :func:`walk` yields them, e.g. ``"conv1"``, ``"res.conv1"``); a
    :class:`WrappedLayer` is used as is, anything else goes through
    ``wrap_layer(obj, spec_layer, layout=layout)``. Parameter-free leaves (ReLU, Flatten,
    pooling ...) may be left out when the user's network has no object for them; then only
    the network's own ``forward(x_user) -> y_user`` / ``backward(dy_user) -> dx_user`` can run
    it. ``input_shape`` (needed under ``Layout(flatten="HWC")``) is in the declared layout:
    4-D in ``layout.data`` (NHWC: ``(N, H, W, C)``), 2-D as it is; one that does not fit the
    spec is an :class:`AdapterError` naming that layout and the fix (:mod:`.inputs`).
    Parameter-free layers without their own ``dtype=`` compute in the network's dtype.
    ``inplace={"input", "upstream", "params"}``: writes that are deliberate, for the network's
    own passes and the layers wrapped here (see :func:`~harness.adapters.layer.wrap_layer`).
    ``array_type=`` ("torch", "jax", "cupy", "numpy"): what its own passes and parameter-free layers are handed.
    """
    return typed(
        WrappedNetwork(
            layers, spec, forward=forward, backward=backward, layout=layout, input_shape=input_shape, inplace=inplace
        ),
        array_type,
    )


__all__ = ["LossModel", "WrappedNetwork", "wrap_loss_model", "wrap_network"]
