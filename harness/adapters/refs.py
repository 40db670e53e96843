"""References into the user's objects: where a layer keeps each array (:class:`Ref`), where
handwritten code usually keeps parameters and gradients, and how saved arrays are put back
bit for bit (:func:`preserving`); and the adapters' errors.

A :class:`Ref` names one array by the steps that reach it from the user's object
(``"W"``, ``"params['w']"``, ``"grads.dW"``, ``"weights[0]"``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..faults import CodeFault
from ..spec import SpecError
from .arrays import fingerprint, is_mutable, same_bits


class AdapterError(SpecError):
    """The user's layer does not fit what was declared; the message names layer and value."""


class ValueFinding(AdapterError, CodeFault):
    """The user's code returned a value no declaration can make right: ``None``, a
    non-array, a complex or integer array, NaN or Inf, or a shape that fits neither the
    declared layout nor another one. A check reports it as the layer's verdict ``error``
    (see :mod:`harness.faults`); a shape that another layout explains is a plain
    :class:`AdapterError` instead (a configuration error)."""


# --------------------------------------------------------------------------- references into user objects

# an attribute, a ['key'] / ["key"], an [index], or a trailing basic slice such as [3:] or [:, :5]
# (a part of a parameter kept inside a larger array: numpy-ml's gates act on stack([h, x]))
_STEP = re.compile(r"""\.?([A-Za-z_]\w*)|\[\s*(?:'([^']*)'|"([^"]*)"|(\d+)|([-\d\s,]*:[-\d\s:,]*))\s*\]""")


def _slices(text: str) -> tuple[slice, ...]:
    """``"3:"`` -> ``(slice(3, None),)``, ``":, :5"`` -> ``(slice(None), slice(None, 5))``."""
    out = []
    for axis in text.split(","):
        bounds = [int(b) if b.strip() else None for b in axis.split(":")]
        if len(bounds) not in (2, 3):
            raise AdapterError(f"cannot parse the slice [{text}]: write each axis as start:stop, e.g. [3:] or [:, :5]")
        out.append(slice(*bounds))
    return tuple(out)


class Ref:
    """Where a user object keeps one array: ``"W"``, ``"params['w']"``, ``"grads.dW"``,
    ``"weights[0]"`` — attribute names and dict keys / list indices, in order — or a part of
    one, a trailing basic slice (``"parameters['Wf'][5:]"``): read as a view, written in place."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.steps: list[tuple[str, Any]] = []
        pos = 0
        while pos < len(path):
            m = _STEP.match(path, pos)
            if not m or m.end() == pos:
                raise AdapterError(
                    f"cannot parse the parameter reference {path!r} at position {pos}: use attributes and [key]s, e.g. \"params['W']\""
                )
            attr, k1, k2, idx, cut = m.groups()
            if cut is not None:
                self.steps.append(("key", _slices(cut)))
            else:
                self.steps.append(
                    ("attr", attr) if attr else ("key", int(idx) if idx is not None else (k1 if k1 is not None else k2))
                )
            pos = m.end()

    def _parent(self, obj: Any) -> Any:
        for kind, key in self.steps[:-1]:
            obj = getattr(obj, key) if kind == "attr" else obj[key]
        return obj

    def get(self, obj: Any) -> Any:
        parent = self._parent(obj)
        kind, key = self.steps[-1]
        return getattr(parent, key) if kind == "attr" else parent[key]

    def set(self, obj: Any, value: Any) -> None:
        parent = self._parent(obj)
        kind, key = self.steps[-1]
        if kind == "attr":
            setattr(parent, key, value)
        else:
            parent[key] = value

    def exists(self, obj: Any) -> bool:
        try:
            return self.get(obj) is not None
        except (AttributeError, KeyError, IndexError, TypeError):
            return False

    def __repr__(self) -> str:
        return self.path


# Where handwritten code usually keeps parameters; tried in order when none are declared.
PARAM_CANDIDATES: dict[str, tuple[str, ...]] = {
    "weight": ("W", "w", "weight", "weights", "kernel", "filters", "gamma"),
    "bias": ("b", "bias", "biases", "beta", "bh", "b_h"),  # bh: a recurrent layer's one bias (Karpathy's min-char-rnn)
    "running_mean": ("running_mean", "mean", "moving_mean"),
    "running_var": ("running_var", "var", "moving_var"),
    "mask": ("mask",),
    # recurrent layers: CS231n (Wx, Wh, b, h0), PyTorch (weight_ih ...), numpy-ml (Wax, Waa, bx, ba)
    "weight_ih": ("Wx", "W_ih", "Wih", "W_xh", "Wxh", "Wax", "weight_ih"),
    "weight_hh": ("Wh", "W_hh", "Whh", "Waa", "weight_hh"),
    "bias_ih": ("b_ih", "bih", "bx", "bias_ih"),
    "bias_hh": ("b_hh", "bhh", "bh", "ba", "bias_hh"),
    "h0": ("h0", "h_0", "A0"),
    "c0": ("c0", "c_0", "C0"),
    "key_padding_mask": ("key_padding_mask", "padding_mask", "pad_mask"),
}
_CONTAINERS = ("", "params", "param", "weights", "parameters")
_GRAD_CONTAINERS = ("", "grads", "grad", "gradients")


def _candidates(local: str) -> list[str]:
    local = local.rpartition(".")[2]  # "conv1.weight" in a fused span looks like "weight"
    return [f"{c}[{name!r}]" if c else name for name in PARAM_CANDIDATES.get(local, (local,)) for c in _CONTAINERS]


def _grad_candidates(param_path: str) -> list[str]:
    steps = Ref(param_path).steps
    last = steps[-1][1]
    if isinstance(last, int):  # params in a list ("weights[0]"): gradients in a parallel list
        owner = steps[-2][1] if len(steps) > 1 else ""
        return [f"{c}[{last}]" for c in (f"d{owner}", f"grad_{owner}", f"{owner}_grad", *_GRAD_CONTAINERS[1:])]
    names = [f"d{last}", f"grad_{last}", f"{last}_grad", f"d_{last}"]
    out = [f"{c}[{n!r}]" if c else n for n in names for c in _GRAD_CONTAINERS]
    out += [f"{c}[{last!r}]" for c in _GRAD_CONTAINERS if c]
    return out


# --------------------------------------------------------------------------- restoring


@contextmanager
def preserving(places: Mapping[str, tuple[Callable[[], Any], Callable[[Any], None]]], owner: str) -> Iterator[None]:
    """Save every array at ``places`` ({name: (get, set)}); on exit, even on an exception,
    write the saved values back into the original objects, put those objects back where
    they were (the user's code may have replaced them), and verify every fingerprint."""
    saved = {}
    for name, (get, _) in places.items():
        obj = get()
        # a numpy array is verified against its private copy, bit for bit (sha256 over tens of
        # MB took longer than the check of a 1e7-parameter layer's user code)
        fp = None if isinstance(obj, np.ndarray) else fingerprint(obj)
        saved[name] = (obj, _copy(obj), fp, _autograd_state(obj))
    try:
        yield
    finally:
        for name, (obj, copy, fp, grad_state) in saved.items():
            _restore_autograd(obj, grad_state)
            if isinstance(obj, list):
                _restore_list(obj, copy)
            elif is_mutable(obj):
                _restore_into(obj, copy)
            get, put = places[name]
            if get() is not obj:  # the user's code replaced it: put the original back
                try:
                    put(obj)
                except (AttributeError, TypeError) as e:
                    raise AdapterError(
                        f"{owner}: parameter '{name}' was replaced and cannot be put back ({type(e).__name__}: {e})"
                    ) from None
            now = get()
            if fp is None:
                restored = isinstance(now, np.ndarray) and same_bits(np.asarray(now), copy)
            else:
                restored = fingerprint(now) == fp
            if not restored:
                raise AdapterError(f"{owner}: could not restore parameter '{name}' bit for bit")


def _autograd_state(obj: Any) -> tuple[bool, Any, Any] | None:
    """A torch tensor's ``requires_grad``, its ``.grad`` tensor and a copy of its values:
    code that runs torch autograd inside its backward fills ``.grad``, which the user's
    training loop would then see (None for anything but a torch tensor)."""
    if not type(obj).__module__.startswith("torch"):
        return None
    grad = obj.grad
    return obj.requires_grad, grad, None if grad is None else grad.detach().clone()


def _restore_autograd(obj: Any, state: tuple[bool, Any, Any] | None) -> None:
    if state is None:
        return
    import torch

    requires_grad, grad, values = state
    with torch.no_grad():
        if grad is not None and grad.shape == values.shape and not _same_torch_bits(grad, values):
            grad.copy_(values)  # the same .grad tensor object, its values as they were
        if obj.grad is not grad:
            obj.grad = grad
    if obj.requires_grad != requires_grad and obj.is_leaf:
        obj.requires_grad_(requires_grad)


def _copy(obj: Any) -> Any:
    if type(obj).__module__.startswith("torch"):
        return obj.detach().clone()
    if isinstance(obj, list):  # nested lists: a shallow copy would share the inner lists
        import copy

        return copy.deepcopy(obj)
    return obj.copy() if hasattr(obj, "copy") else obj


def _restore_list(obj: list, saved: list) -> None:
    """Put the saved values back into the user's own (nested) list objects."""
    if len(obj) != len(saved):
        obj[:] = saved
        return
    for i, (a, b) in enumerate(zip(obj, saved)):
        if isinstance(a, list) and isinstance(b, list):
            _restore_list(a, b)
        else:
            obj[i] = b


def _restore_into(obj: Any, copy: Any) -> None:
    if type(obj).__module__.startswith("torch"):
        import torch

        if _same_torch_bits(obj, copy):  # untouched: no write, so its version counter stays as it was
            return  # (a write would fail a backward the user still has pending through it)
        with torch.no_grad():
            obj.copy_(copy)
    else:
        obj[...] = copy


def _same_torch_bits(a: Any, b: Any) -> bool:
    """Whether torch tensors ``a`` and ``b`` hold the same bits (NaN payloads and -0.0 included)."""
    import torch

    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    if a.is_floating_point() and a.element_size() in ints and a.is_contiguous() and b.is_contiguous():
        kind = ints[a.element_size()]
        return bool(torch.equal(a.detach().view(kind), b.detach().view(kind)))
    return bool(torch.equal(a.detach(), b.detach())) and not a.is_floating_point()


__all__ = ["AdapterError", "PARAM_CANDIDATES", "Ref", "ValueFinding", "preserving"]
