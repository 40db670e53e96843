"""Side effects of the user's code on the arrays it is handed: failing findings.

The harness hands the user's code copies (the input of a forward, the upstream gradient of
a backward) and compares each copy, bit for bit, with what it was before the call. A write
the user's caller would see is a finding on the side that made it:

- the forward writes into its input array (``x *= ...``, ``np.maximum(x, 0, out=x)``);
- the backward writes into its upstream gradient (dropout's ``dout *= self.mask``);
- the backward writes into the input its forward was given, which it cached
  (``self.x[self.x < 0] = 0`` in a ReLU's backward);
- the forward or the backward changes a trainable parameter, or a buffer no pass may change
  (:data:`CONSTANT_BUFFERS`: an attention's padding mask).

Writes declared deliberate with ``inplace=`` (see :data:`INPLACE`) are not findings. The
arrays handed may be torch tensors or CuPy arrays (see :mod:`.feed`): their host copies are
compared; jax arrays are immutable, so no write into them can happen and none is looked for. The
recording lives in :class:`Effects`, a base of :class:`~harness.adapters.layer.WrappedLayer`;
:func:`apply_effects` (in :mod:`harness.check`) turns what it recorded into the verdict.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import SpecError
from .arrays import _read, same_bits, to_float64
from .feed import snapshot

# the values of the inplace= option: writes the user's code makes on purpose
INPLACE: dict[str, str] = {
    "input": "the forward may write into its input array, and the backward into the input it cached",
    "upstream": "the backward may write into the upstream gradient it is given",
    "params": "the forward and the backward may change the trainable parameters",
}


# buffers no pass may change (unlike running statistics or a dropout mask a forward draws):
# an attention's padding mask turned into an additive one in place (mask *= -1e9) corrupts
# every later call of the user's own model
CONSTANT_BUFFERS = frozenset({"key_padding_mask"})


@dataclass(frozen=True)
class SideEffect:
    """One write the caller would see: ``side`` (``"forward"`` / ``"backward"``) wrote into
    ``array`` (``"input"``, ``"upstream"``, ``"cached input"``, ``"parameter 'weight'"``);
    ``detail`` counts the changed values and locates the first; ``declare``: the
    ``inplace=`` value that makes it deliberate."""

    side: str
    array: str
    declare: str
    detail: str

    def finding(self) -> str:
        """The diagnosis line, e.g. ``"backward writes into its upstream gradient: the caller's
        array is changed (...)"``."""
        what = {
            "input": "writes into its input array: the caller's array is changed",
            "upstream": "writes into its upstream gradient: the caller's array is changed",
            "cached input": (
                "writes into the input array its forward was given (the cached input): the caller's array is changed"
            ),
        }.get(self.array, f"changes {self.array}: the model is changed by a {self.side} pass")
        return (
            f"{self.side} {what} ({self.detail}; work on a copy, or declare inplace={{{self.declare!r}}} if it "
            "is deliberate)"
        )


def parse_inplace(value: Any, owner: str) -> frozenset[str]:
    """The ``inplace=`` option as a set of :data:`INPLACE` names: a name, or an iterable of
    them; anything else is an :class:`~harness.adapters.refs.AdapterError` naming ``owner``."""
    from .refs import AdapterError

    if value is None:
        return frozenset()
    items: Iterable[Any] = (value,) if isinstance(value, str) else value
    try:
        names = list(items)
    except TypeError:
        raise AdapterError(f"{owner}: inplace= takes a set of names from {sorted(INPLACE)}, got {value!r}") from None
    for name in names:
        if name not in INPLACE:
            close = difflib.get_close_matches(str(name), list(INPLACE), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AdapterError(
                f"{owner}: inplace= has the unknown value {name!r}{hint}; known: "
                + "; ".join(f"{k!r}: {v}" for k, v in INPLACE.items())
            )
    return frozenset(names)


def change(before: np.ndarray, after: Any) -> str | None:
    """``"3 of 24 values changed, first at [0, 1]"`` when ``after`` differs from ``before`` bit
    for bit (shape, dtype or a value; -0.0 differs from 0.0), else None."""
    after = np.asarray(after)
    if same_bits(before, after):
        return None
    if before.shape != after.shape:
        return f"its shape changed from {before.shape} to {after.shape}"
    a, b = before.reshape(-1), after.astype(before.dtype, copy=False).reshape(-1)
    differs = (
        (a.view(np.uint8).reshape(a.size, -1) != b.view(np.uint8).reshape(b.size, -1)).any(axis=1)
        if a.size
        else np.zeros(0, bool)
    )
    if not differs.any():
        return f"its dtype changed from {before.dtype} to {after.dtype}"
    first = [int(i) for i in np.unravel_index(int(np.argmax(differs)), before.shape)]
    return f"{int(differs.sum())} of {before.size} values changed, first at {first}"


def apply_effects(result: Any, found: list[SideEffect]) -> None:
    """Each write in ``found`` is a diagnosis line of ``result`` (a
    :class:`~harness.results.LayerResult`) and fails the side that made it: ``pass`` (or
    ``inconclusive``) becomes that side, the other side ``both``."""
    for effect in found:
        result.diagnosis.append(effect.finding())
        if result.verdict in ("pass", "inconclusive"):
            result.verdict = effect.side
        elif result.verdict in ("forward", "backward") and result.verdict != effect.side:
            result.verdict = "both"


class Effects:
    """Recording of the user's writes, for :class:`~harness.adapters.layer.WrappedLayer`:
    :meth:`_watched_forward` / :meth:`_watched_backward` wrap its ``_call_forward`` /
    ``_call_backward``. ``effects``: every write seen (declared or not); ``running``: the
    side whose user code ran last (so an exception can be attributed)."""

    inplace: frozenset[str] = frozenset()

    def _init_effects(self) -> None:
        self.effects: list[SideEffect] = []
        self.running: str | None = None
        self._fed: tuple[Any, np.ndarray | None] | None = None  # the last forward's input and its copy
        self._handed: dict[str, Any] = {}  # copies of the parameters a function pair's forward was handed

    @property
    def input_mutated(self) -> bool:
        """The forward (or the backward, through its cache) wrote into the forward's input."""
        return any(e.array in ("input", "cached input") for e in self.effects)

    @property
    def grad_mutated(self) -> bool:
        """The backward wrote into its upstream gradient."""
        return any(e.array == "upstream" for e in self.effects)

    def side_effects(self) -> list[SideEffect]:
        """The writes not declared deliberate with ``inplace=``, each once, in the order seen."""
        out: list[SideEffect] = []
        for e in self.effects:
            if e.declare not in self.inplace and all((o.side, o.array) != (e.side, e.array) for o in out):
                out.append(e)
        return out

    def _note(self, side: str, array: str, declare: str, before: np.ndarray, after: Any) -> bool:
        """Record a write into ``array`` when ``after`` differs from ``before``; whether it did."""
        detail = change(before, after)
        if detail is not None and len(self.effects) < 64:  # a finding per call would only repeat itself
            self.effects.append(SideEffect(side, array, declare, detail))
        return detail is not None

    def _params_seen(self) -> dict[str, Any]:
        """The trainable parameters as the user's code sees them (by local name): the copies
        handed to a function pair's last forward (its cache holds them), else the user's own."""
        names = self._param_names()  # type: ignore[attr-defined]
        trainable = self._trainable() if names else set()  # type: ignore[attr-defined]
        return {
            k: self._handed[k] if k in self._handed else self._get_user(k)  # type: ignore[attr-defined]
            for k in names
            if k in trainable or k in CONSTANT_BUFFERS
        }

    def _param_values(self, copy: bool) -> dict[str, np.ndarray]:
        """The trainable parameters' values on the host in their own dtype, by local name:
        copies to compare with later (``copy``), else possibly the user's arrays themselves
        (to compare now; a cast to float64 and ``tobytes`` per call cost 6 passes over
        each parameter, which dominated checks of 1e7-parameter layers)."""
        try:
            raw = {k: _read(v, f"parameter '{k}'")[0] for k, v in self._params_seen().items()}
        except SpecError:  # parameters not readable yet (a lazy layer): nothing to compare
            return {}
        return {k: self._guard_copy(k, v) for k, v in raw.items()} if copy else raw

    def _guard_copy(self, name: str, value: np.ndarray) -> np.ndarray:
        """A copy of ``value`` in a buffer kept per parameter across calls (each copy is
        compared once, right after the call, and not kept): a fresh array per call
        page-faults its memory anew, a large share of a call's cost at 1e7 values."""
        buffers: dict[str, np.ndarray] = self.__dict__.setdefault("_guard_buffers", {})
        buf = buffers.get(name)
        if buf is None or buf.shape != value.shape or buf.dtype != value.dtype:
            buf = buffers[name] = np.array(value, copy=True)
        else:
            np.copyto(buf, value)
        return buf

    def _compare_params(self, side: str, before: dict[str, np.ndarray]) -> None:
        after = self._param_values(copy=False)
        for k, value in before.items():
            if k in after:
                now = after[k]
                if now.dtype != value.dtype:  # replaced by an array of another dtype: compared as values
                    value, now = to_float64(value, k)[0], to_float64(now, k)[0]
                self._note(side, f"parameter '{k}'", "params", value, now)

    def _watched_forward(self, x_user: Any) -> Any:
        self.running, self._fed, self._handed = "forward", None, {}
        # a host copy in the user's dtype (numpy, torch, CuPy); None for an immutable jax array
        guard, params = snapshot(x_user), self._param_values(copy=True)
        y = self._call_forward(x_user)  # type: ignore[attr-defined]
        after = guard
        if guard is not None and self._note("forward", "input", "input", guard, _current(x_user)):
            after = snapshot(x_user)  # as the forward left it: kept to see the backward's writes
        self._compare_params("forward", params)
        self._fed = (x_user, after)
        return y

    def _watched_backward(self, dy_user: Any) -> Any:
        self.running = "backward"
        guard = snapshot(dy_user)
        # an SGD step changes them by design
        params = {} if getattr(self, "sgd", None) else self._param_values(copy=True)
        dx = self._call_backward(dy_user)  # type: ignore[attr-defined]
        if guard is not None:
            self._note("backward", "upstream", "upstream", guard, _current(dy_user))
        if self._fed is not None and self._fed[1] is not None:
            self._note("backward", "cached input", "input", self._fed[1], _current(self._fed[0]))
        self._compare_params("backward", params)
        return dx


def _current(a: Any) -> Any:
    """What ``a`` holds now, to compare with a :func:`~.feed.snapshot`: a numpy array itself
    (read in place, no copy), anything else through a host copy."""
    return a if isinstance(a, np.ndarray) else snapshot(a)


__all__ = ["Effects", "INPLACE", "SideEffect", "apply_effects", "change", "parse_inplace"]
