"""Where an object-style layer keeps its parameters and their gradients: each located once
(declared with ``params=`` / ``grads=``, else looked for under the usual names, on a
composite's sub-objects too), a mask its forward draws located after that forward, and the
object's values read and written through the :class:`~harness.adapters.refs.Ref` found. A
mixin of :class:`~harness.adapters.object_layer.ObjectLayer`; the error messages name the
places tried and the declaration that fixes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..spec import Layer
from . import attention, state
from .composite import sub_objects, under
from .joined import JoinedRef, argument_mask, declared_ref, find_joined_grad, split_last
from .layouts import Layout
from .missing import lazy_hint, sgd_hint
from .refs import AdapterError, Ref, _candidates, _grad_candidates
from .wrapped import _is_array


class ObjectRefs:
    """Mixin for :class:`~harness.adapters.object_layer.ObjectLayer` (put before the
    :class:`~harness.adapters.wrapped.WrappedLayer` it overrides the parameter store of). It
    sets ``params``, ``grads``, ``_pending``, ``_owners`` and ``_absent``; the layer sets the
    rest of what is annotated here and provides ``_leaf``, ``_spec_params`` and ``_sgd_hint``."""

    obj: Any
    spec: Layer | None
    name: str
    layout: Layout
    params: dict[str, Ref] | None
    grads: dict[str, Ref | None]
    _declared_params: Mapping[str, str] | None
    _declared_grads: Mapping[str, str] | None
    _pending: dict[str, Ref | None]
    _owners: dict[str, str]
    _absent: dict[str, None]
    _forwarded: bool

    if TYPE_CHECKING:  # provided by the layer (WrappedLayer's ParamAccess)

        def _leaf(self, name: str) -> tuple[Layer, str]: ...
        def _spec_params(self) -> dict[str, Any]: ...

    # -- locating the parameters (once; a mask the forward draws, after it)
    def _resolve(self) -> None:
        self.params = params = self._resolve_params(self._declared_params)
        self.grads = self._resolve_grads(params, self._declared_grads)

    def _resolve_params(self, declared: Mapping[str, str] | None) -> dict[str, Ref]:
        wanted = list(self._spec_params_safe()) if self.spec else list(declared or {})
        declared = dict(declared or {})
        unknown = [k for k in declared if self.spec is not None and k not in wanted]
        if unknown:
            raise AdapterError(
                f"layer '{self.name}': params names {unknown} are not parameters of {type(self.spec).__name__}; expected some of {wanted}"
            )
        out: dict[str, Ref] = {}
        self._absent, self._pending, eval_missing = {}, {}, []
        # a composite (Sequential / Residual) object: each sub-layer's parameters on its own object
        composite = self.spec is not None and bool(self.spec.children())
        owners = (
            sub_objects(self.obj, self.spec, [k for k in wanted if k not in declared], self.name)
            if composite and self.spec is not None
            else {}
        )
        for local in wanted:
            leaf, leaf_local = self._leaf(local) if self.spec is not None else (None, local)
            later = leaf is not None and state.deferred(leaf, leaf_local)  # a mask drawn by the forward
            if local in declared:
                ref = self._declared_ref(local, declared[local])
                if not ref.exists(self.obj) and later:
                    self._pending[local] = ref
                    continue
                if not ref.exists(self.obj):
                    raise AdapterError(
                        f"layer '{self.name}': parameter '{local}' declared at {ref!r}, but {type(self.obj).__name__} has nothing there"
                    )
                out[local] = ref
                continue
            owner = owners.get(local.rpartition(".")[0], "")
            found = self._find(local, later, owner)
            if found is None and leaf is not None and attention.is_padding(leaf, leaf_local):
                found = argument_mask(self)  # an attention's padding mask handed to every forward
            if found is None and leaf is not None and state.optional(leaf, leaf_local):
                self._absent[local] = None  # training mode: not kept, not checked (a note says so)
            elif found is None and later:
                self._pending[local] = None
            elif found is None and leaf is not None and leaf_local in state.RUNNING:
                eval_missing.append(local)
            elif found is None:
                raise self._not_found(local, owner)
            elif clash := [k for k, r in out.items() if r.path == found.path]:
                raise AdapterError(
                    f"layer '{self.name}': '{clash[0]}' and '{local}' would both be read from {found!r}; "
                    f"pass params= to say where each lives"
                )
            else:
                out[local] = found
        if eval_missing:
            raise state.eval_error(
                self.name,
                type(self._leaf(eval_missing[0])[0]).__name__,
                eval_missing,
                f"tried {', '.join(_candidates('running_mean')[:4])} ... on {type(self.obj).__name__}",
                "pass params={" + ", ".join(f"'{k}': \"...\"" for k in eval_missing) + "} with where they live",
            )
        return out

    def _spec_params_safe(self) -> dict[str, Any]:
        try:
            return self._spec_params()
        except AdapterError:
            raise AdapterError(
                f"layer '{self.name}': {type(self.spec).__name__} needs its input shape to list its parameters"
            ) from None

    def _find(self, local: str, mask: bool, owner: str = "") -> Ref | None:
        """The first usual place that holds an array for ``local`` on the object, or on the
        sub-object at ``owner`` (a composite's layer, ``"conv1"``); None if nowhere."""
        tried = [under(owner, c) for c in (state.mask_candidates() if mask else state.candidates(local))]
        found = next((Ref(c) for c in tried if Ref(c).exists(self.obj) and _is_array(Ref(c).get(self.obj))), None)
        if found is not None:
            self._owners[local] = owner
        return found

    def _not_found(self, local: str, owner: str) -> AdapterError:
        """Parameter ``local`` is nowhere: the places tried, and params= to declare it."""
        tried = [under(owner, c) for c in _candidates(local)]
        on = f"{owner} (a {type(Ref(owner).get(self.obj)).__name__})" if owner else type(self.obj).__name__
        leaf = local.rpartition(".")[0]
        hint = (
            (
                f"; nor is there a sub-object for '{leaf}' (an attribute named {leaf.rpartition('.')[2]!r}, or a "
                ".layers list in forward order)"
            )
            if leaf and not owner
            else ""
        )
        return AdapterError(
            f"layer '{self.name}': cannot find parameter '{local}' on {on} (tried {', '.join(tried[:6])} ...){hint}; "
            f"pass params={{'{local}': \"{tried[0]}\"}} with where it lives{lazy_hint(self, local)}"
        )

    def _resolve_pending(self) -> None:
        """After a forward: locate the mask it drew (declared, or in the usual places)."""
        for local, ref in list(self._pending.items()):
            found = (
                ref if ref is not None and ref.exists(self.obj) else (self._find(local, True) if ref is None else None)
            )
            if found is None:
                tried = (
                    f"declared at {ref!r}" if ref is not None else f"tried {', '.join(state.mask_candidates()[:8])} ..."
                )
                raise AdapterError(
                    f"layer '{self.name}': cannot find its dropout mask '{local}' on {type(self.obj).__name__} after "
                    f"the forward ({tried}); pass params={{'{local}': \"...\"}} with where the mask of the input's "
                    "shape lives (0 where a unit is dropped)"
                )
            self.params[local] = found  # type: ignore[index]
            del self._pending[local]

    # -- the parameter store, through the refs found
    def _param_names(self) -> list[str]:
        if self.params is None:  # lazy: the parameters appear in the first forward
            if not self._forwarded:
                return []
            self._resolve()
        if self._pending and self._forwarded:
            self._resolve_pending()
        return list(self.params)  # type: ignore[arg-type]

    def _get_user(self, local: str) -> Any:
        if self.params is None:
            self._param_names()
        return self._ref(local).get(self.obj)

    def _put_user(self, local: str, value: Any) -> None:
        self._ref(local).set(self.obj, value)

    def _ref(self, local: str) -> Ref:
        """Where parameter ``local`` lives: a TypeError while the parameters are not located yet
        (the callers that may run that early catch it)."""
        return self.params[local]  # type: ignore[index]

    def _peek(self, local: str) -> Any:
        ref = (self.params or {}).get(local)
        return ref.get(self.obj) if ref is not None and ref.exists(self.obj) else None

    def _place(self, name: str) -> str:
        return repr((self.params or {}).get(name, name))

    # -- gradients: declared places, else found after the first backward
    def _resolve_grads(self, params: dict[str, Ref], declared: Mapping[str, str] | None) -> dict[str, Ref | None]:
        declared = dict(declared or {})
        out: dict[str, Ref | None] = {}
        for local in params:
            if local in declared:
                out[local] = self._declared_ref(local, declared[local])
            else:
                # gradients usually appear only after the first backward: resolve then
                out[local] = None
        return out

    def _declared_ref(self, local: str, place: Any) -> Ref:
        """A declared place (a path, or a tuple of paths for a parameter kept in parts)."""
        axis = attention.join_axis(*self._leaf(local), self.layout) if self.spec is not None else 0
        return declared_ref(place, axis, self)

    def _read_grad(self, local: str) -> Any:
        ref = self.grads.get(local)
        param = self._ref(local)
        if ref is None and isinstance(param, JoinedRef):  # kept in parts: each part's gradient next to it
            ref = self.grads[local] = find_joined_grad(param, self.obj)
            if ref is None:
                raise self._no_joined_grad(local, param)
        if ref is None:
            owner = self._owners.get(local, "")  # a composite's layer: its gradients live on its own object
            tried = [under(owner, c) for c in _grad_candidates(param.path[len(owner) :].lstrip("."))]
            parent, last = split_last(param)
            if parent and not owner:  # declared on a sub-object ("proj.W"): its gradient next to it first
                tried = [under(parent, c) for c in _grad_candidates(last)] + tried
            found = [Ref(c) for c in tried if Ref(c).exists(self.obj)]
            if not found:
                # the SGD step seen in backward, when it was; else every way a gradient can be given
                ways = sgd_hint(self, local) or (
                    f"pass grads={{'{local}': \"dW\"}} or return it from backward as (dx, dW, db); or, if it is only "
                    f"applied to the weights, {self._sgd_hint()}"
                )
                raise AdapterError(
                    f"layer '{self.name}': cannot find the gradient of '{local}' (kept at "
                    f"{self._ref(local)!r}) after backward (tried {', '.join(tried[:6])} ...); {ways}"
                )
            ref = self.grads[local] = found[0]
        try:
            return ref.get(self.obj)
        except (AttributeError, KeyError, IndexError, TypeError):
            raise AdapterError(
                f"layer '{self.name}': gradient of '{local}' declared at {ref!r} is missing after backward"
            ) from None

    def _no_joined_grad(self, local: str, param: JoinedRef) -> AdapterError:
        places = param.grad_places()
        return AdapterError(
            f"layer '{self.name}': cannot find the gradients of '{local}' (kept in parts at {param!r}) after backward "
            f"(tried {', '.join(p[0] for p in places)} ...); pass grads={{'{local}': "
            f"({', '.join(repr(p[0]) for p in places)})}} with where each part's gradient lives"
        )

    def _sgd_hint(self) -> str:
        step = next(
            (
                m
                for m in ("step", "update", "apply_gradients", "update_params", "sgd_step")
                if callable(getattr(self.obj, m, None))
            ),
            None,
        )
        by_method = (
            f"sgd=({step!r}, lr) (its {step}() applies it)" if step else "sgd=('method', lr) (a method applies it)"
        )
        return f"declare {by_method} or sgd=(None, lr) (backward applies it)"
