"""CS231n's ``CaptioningRNN`` checked without shims: ``model.loss(features, captions) -> (loss,
grads)`` over ``model.params`` keyed ``W_embed, W_proj, b_proj, Wx, Wh, b, W_vocab, b_vocab``.

:func:`wrap_captioning` reads the model as the assignment writes it: the parameters by their
CS231n names, ``model.cell_type`` (``"rnn"`` or ``"lstm"``; else read off ``Wh (H, G*H)``),
the padding token ``model._null`` (or ``word_to_idx["<NULL>"]``), ``_start`` and ``_end``; and
builds the :class:`~harness.spec.Captioner` from the parameters' shapes::

    W_embed (V, W)   W_proj (F, H)   b_proj (H,)   Wx (W, G*H)   Wh (H, G*H)   b (G*H,)
    W_vocab (H, V)   b_vocab (V,)    G = 1 (rnn) or 4 (lstm, gate blocks i, f, o, g)

CS231n's weights are ``in_out`` (``x.dot(W)``) and its LSTM slices gates i, f, o, g: the
wrapper converts them (``Layout(linear="in_out", gates="ifog")``) both ways. The loss is
``TemporalSoftmaxCrossEntropy(reduction="batch", ignore_index=_null)``: CS231n's masked sum over
the batch, the mask ``captions_out != _null``.

The layer functions the model calls (``affine_forward`` / ``affine_backward``,
``word_embedding_*``, ``rnn_*`` or ``lstm_*``, ``temporal_affine_*``, ``temporal_softmax_loss``)
are found by name where ``loss`` itself finds them (the globals of the module defining it:
CS231n's ``rnn.py`` imports them with ``from ..rnn_layers import *``; a script's or a
notebook's own), or in ``layers=``; the check (:mod:`harness.caption_check`) tests each alone,
but for a pair found by name that one call of ``loss`` does not run (a subclass's own helpers).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np

from ..spec import LSTM, RNN, Captioner, Embedding, Layer, Linear, SpecError, TemporalSoftmaxCrossEntropy
from .layouts import Layout
from .loss_model import LossModel
from .refs import AdapterError

# CS231n's key of each canonical local name (under the Captioner's part of that role)
KEYS = {
    "embed.weight": "W_embed",
    "project.weight": "W_proj",
    "project.bias": "b_proj",
    "rnn.weight_ih": "Wx",
    "rnn.weight_hh": "Wh",
    "rnn.bias": "b",
    "vocab.weight": "W_vocab",
    "vocab.bias": "b_vocab",
}
GATES = {"rnn": 1, "lstm": 4}
# the user's functions each part is checked with: (forward, backward); the loss is one function
FUNCTIONS = {
    "project": ("affine_forward", "affine_backward"),
    "embed": ("word_embedding_forward", "word_embedding_backward"),
    "rnn": ("rnn_forward", "rnn_backward"),
    "lstm": ("lstm_forward", "lstm_backward"),
    "vocab": ("temporal_affine_forward", "temporal_affine_backward"),
    "loss": ("temporal_softmax_loss",),
}


def is_captioning(obj: Any) -> bool:
    """An object with a ``loss`` method and a ``params`` dict holding any of CS231n's
    captioning keys (``W_embed``, ``W_proj``, ``W_vocab``): read as a CaptioningRNN (strictly:
    what does not fit is said by :func:`wrap_captioning`)."""
    params = getattr(obj, "params", None)
    return (
        not isinstance(obj, type)
        and callable(getattr(obj, "loss", None))
        and isinstance(params, Mapping)
        and any(k in params for k in ("W_embed", "W_proj", "W_vocab"))
    )


@dataclass(frozen=True)
class Reading:
    """What the model says about itself: sizes (features F, word vectors W, hidden H, vocabulary
    V), ``cell`` ("rnn" / "lstm") and the special tokens (``start`` / ``end`` None when absent)."""

    features: int
    words: int
    hidden: int
    vocab: int
    cell: str
    null: int
    start: int | None
    end: int | None


def _shape(params: Mapping[str, Any], key: str, rank: int, meaning: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in np.shape(params[key]))
    if len(shape) != rank:
        raise AdapterError(f"wrap_captioning: model.params['{key}'] has shape {shape}; expected {meaning}")
    return shape


def _cell(model: Any, params: Mapping[str, Any], hidden: int) -> str:
    """``model.cell_type``, checked against the gate blocks ``Wh (H, G*H)`` holds; read off
    them when the model has no ``cell_type``."""
    wh = _shape(params, "Wh", 2, "(hidden_dim, G * hidden_dim), G = 1 (rnn) or 4 (lstm)")
    # the cell whose gate blocks Wh's columns hold, None when they fit neither
    fits = next((c for c, g in GATES.items() if wh == (hidden, g * hidden)), None)
    cell = getattr(model, "cell_type", None)
    if cell is not None and cell not in GATES:
        raise AdapterError(
            f"wrap_captioning: model.cell_type is {cell!r}; CS231n's CaptioningRNN has 'rnn' or 'lstm' "
            "(check another recurrent cell with a Captioner spec of your own and layers=)"
        )
    if fits is None:
        raise AdapterError(
            f"wrap_captioning: model.params['Wh'] has shape {wh}; W_proj gives hidden_dim {hidden}, so Wh must be "
            f"({hidden}, {hidden}) for an rnn or ({hidden}, {4 * hidden}) for an lstm (4 gate blocks)"
        )
    if cell is not None and fits != cell:
        raise AdapterError(
            f"wrap_captioning: model.cell_type is {cell!r} but model.params['Wh'] has shape {wh}, the "
            f"{fits!r} layout ({GATES[cell]} gate block(s): ({hidden}, {GATES[cell] * hidden}) for {cell!r})"
        )
    return str(cell or fits)


def _token(model: Any, attr: str, word: str, vocab: int, required: bool) -> int | None:
    """A special token's index: ``model.<attr>``, else ``model.word_to_idx[word]``."""
    value = getattr(model, attr, None)
    if value is None:
        value = (getattr(model, "word_to_idx", None) or {}).get(word)
    if value is None:
        if required:
            raise AdapterError(
                f"wrap_captioning: no {word} token: model.{attr} (or model.word_to_idx['{word}']) gives the "
                "padding index that the loss masks out"
            )
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= int(value) < vocab:
        raise AdapterError(
            f"wrap_captioning: model.{attr} is {value!r}; it must be a word index in [0, {vocab}) "
            f"(the vocabulary of W_embed)"
        )
    return int(value)


def read_model(model: Any) -> Reading:
    """The sizes, cell type and special tokens of a CaptioningRNN; an :class:`AdapterError`
    naming the parameter, its shape and the expected one when the model does not fit."""
    params = getattr(model, "params", None)
    if not isinstance(params, Mapping):
        raise AdapterError(
            f"wrap_captioning: a CaptioningRNN keeps its weights in model.params (a dict); "
            f"{type(model).__name__} has {'none' if params is None else type(params).__name__}"
        )
    missing = [k for k in KEYS.values() if k not in params]
    if missing:
        raise AdapterError(
            f"wrap_captioning: model.params lacks {missing} (CS231n's CaptioningRNN has {list(KEYS.values())}); "
            f"it has {sorted(map(str, params))}"
        )
    v, w = _shape(params, "W_embed", 2, "(vocab_size, wordvec_dim)")
    f, h = _shape(params, "W_proj", 2, "(input_dim, hidden_dim)")
    cell = _cell(model, params, h)
    gh = GATES[cell] * h
    expected = {"b_proj": (h,), "Wx": (w, gh), "b": (gh,), "W_vocab": (h, v), "b_vocab": (v,)}
    wrong = [f"{k} has {np.shape(params[k])}, expected {s}" for k, s in expected.items() if np.shape(params[k]) != s]
    if wrong:
        raise AdapterError(
            f"wrap_captioning: model.params do not fit a CaptioningRNN with vocab_size {v} and wordvec_dim {w} "
            f"(W_embed {(v, w)}), input_dim {f} and hidden_dim {h} (W_proj {(f, h)}), cell_type {cell!r}: "
            + "; ".join(wrong)
        )
    null = _token(model, "_null", "<NULL>", v, required=True)
    assert null is not None  # required
    start = _token(model, "_start", "<START>", v, required=False)
    return Reading(f, w, h, v, cell, null, start, _token(model, "_end", "<END>", v, required=False))


def build_spec(reading: Reading, name: str = "cap") -> Captioner:
    """The :class:`Captioner` of a CaptioningRNN of these sizes: the parts named ``project``,
    ``embed``, ``rnn``, ``vocab``; the recurrent one tanh (CS231n's) with one fused bias ``b``."""
    r = reading
    cell = RNN if r.cell == "rnn" else LSTM
    return Captioner(
        name,
        project=Linear("project", r.features, r.hidden),
        embed=Embedding("embed", r.vocab, r.words),
        rnn=cell("rnn", r.words, r.hidden, bias="fused", initial_state=False),
        vocab=Linear("vocab", r.hidden, r.vocab),
    )


def _check_spec(spec: Any, reading: Reading) -> Captioner:
    """A spec given to :func:`wrap_captioning`: a Captioner whose parts have CS231n's biases and
    the model's cell type (its sizes are checked against the parameters when they are read)."""
    if not isinstance(spec, Captioner):
        raise AdapterError(
            f"wrap_captioning: spec must be a harness.Captioner (or None: built from the params' shapes), "
            f"got {type(spec).__name__}"
        )
    cell = {"rnn": RNN, "lstm": LSTM}[reading.cell]
    if type(spec.rnn) is not cell:
        raise AdapterError(
            f"wrap_captioning: the model's cell_type is {reading.cell!r} but the spec's rnn is a "
            f"{type(spec.rnn).__name__}; use a {cell.__name__}"
        )
    if getattr(spec.rnn, "bias", None) != "fused" or not (spec.project.bias and spec.vocab.bias):
        raise AdapterError(
            "wrap_captioning: CS231n's model has one bias b for the recurrent layer (bias='fused') and the biases "
            "b_proj and b_vocab: declare the spec's rnn with bias='fused' and its Linear parts with bias=True"
        )
    return spec


def _homes(model: Any) -> dict[str, Mapping[str, Any]]:
    """``{module name: its globals}`` where the model's code finds its functions: the globals of
    each ``loss`` along the class's MRO (what ``loss`` itself resolves, also when the class was
    defined by ``exec``), then the modules of the classes (a subclass defined elsewhere)."""
    homes: dict[str, Mapping[str, Any]] = {}
    for cls in type(model).__mro__[:-1]:
        own = getattr(cls.__dict__.get("loss"), "__globals__", None)
        if isinstance(own, dict):
            homes.setdefault(str(own.get("__name__", cls.__module__)), own)
    for cls in type(model).__mro__[:-1]:
        if cls.__module__ in sys.modules:
            homes.setdefault(cls.__module__, vars(sys.modules[cls.__module__]))
    return homes


def _functions(model: Any, layers: Any) -> tuple[dict[str, tuple[Any, ...]], str]:
    """``({role: the user's functions}, where they were looked for)``: each name in ``layers``
    (a module or a mapping) first, then where the model's code finds its own (:func:`_homes`);
    a role whose functions are not all found is left out."""
    homes = _homes(model)
    sources: list[Mapping[str, Any]] = []
    if layers is not None:
        if not isinstance(layers, (Mapping, ModuleType)):
            raise AdapterError(
                f"wrap_captioning: layers= takes a module (your rnn_layers) or a dict of its functions by name "
                f"({{'rnn_forward': rnn_forward, ...}}), got {type(layers).__name__}"
            )
        sources.append(vars(layers) if isinstance(layers, ModuleType) else layers)
    sources += list(homes.values())
    found = {}
    for role, names in FUNCTIONS.items():
        fns = tuple(next((s[n] for s in sources if callable(s.get(n))), None) for n in names)
        if all(fn is not None for fn in fns):
            found[role] = fns
    where = ", ".join(["layers="] * (layers is not None) + [f"module {m!r}" for m in homes])
    return found, where


class CaptioningModel(LossModel):
    """A CaptioningRNN seen as a loss model over the :class:`Captioner` spec (see
    :func:`wrap_captioning`). ``x`` is ``captions_in (N, T)``, the target ``captions_out (N, T)``
    (one step later); the image features ``(N, F)`` are the buffer ``<name>.features``, held in
    :attr:`features` (the user's dtype) and handed to ``model.loss`` with the whole captions."""

    def __init__(self, model: Any, spec: Captioner, reading: Reading, layers: Any) -> None:
        places = {f"{spec.name}.{getattr(spec, role.split('.')[0]).name}.{role.split('.')[1]}": f"params[{key!r}]"
                  for role, key in KEYS.items()}  # fmt: skip
        layout = Layout(linear="in_out", gates="ifog" if reading.cell == "lstm" else "")
        loss = TemporalSoftmaxCrossEntropy(reduction="batch", ignore_index=reading.null)
        super().__init__(model, spec, loss=loss, params=places, layout=layout, method="loss", input_shape=None)
        self.has_scores = False  # CS231n's loss(features, captions) needs the captions: no scores of its own
        self.reading, self.captioner = reading, spec
        self.functions, self.searched = _functions(model, layers)
        self.declared = layers is not None  # functions handed in layers=: checked whether loss() calls them or not
        self.uncalled: dict[str, tuple[Any, ...]] = {}  # found by name, but loss() does not call them (the check)
        self.features: np.ndarray | None = None  # set by the check: the point's features, the user's dtype
        self.caption_dtype = np.dtype(np.int64)  # the captions' dtype handed to model.loss
        self.what = "loss(features, captions)"
        try:
            self.get_params()
        except SpecError as e:
            raise AdapterError(f"wrap_captioning: model.params do not fit the spec: {e}") from None

    @property
    def features_name(self) -> str:
        return f"{self.captioner.name}.features"

    def user_key(self, name: str) -> str:
        """The CS231n key of canonical parameter ``name`` (``cap.rnn.weight_ih`` -> ``Wx``)."""
        return str(self.params[name].steps[-1][1])

    def get_params(self) -> dict[str, np.ndarray]:
        """Canonical float64 parameters, the features (when set) among them."""
        out = super().get_params()
        if self.features is not None:
            out[self.features_name] = np.asarray(self.features, dtype=np.float64)
        return out

    def _user_args(self, x: np.ndarray, y: Any) -> tuple[Any, ...]:
        """``(features, captions)``: captions ``(N, T + 1)`` put back together from captions_in
        ``x`` and captions_out ``y`` (which overlap in T - 1 steps)."""
        x, y = np.asarray(x), np.asarray(y)
        if self.features is None or x.shape != y.shape or not np.array_equal(x[:, 1:], y[:, :-1]):
            raise AdapterError("CaptioningModel: loss_and_grads takes captions[:, :-1] and captions[:, 1:] of a point")
        captions = np.concatenate([x[:, :1], y], axis=1).astype(self.caption_dtype)
        return np.array(self.features, copy=True), captions


def wrap_captioning(model: Any, spec: Captioner | None = None, *, layers: Any = None) -> CaptioningModel:
    """Wrap a CS231n-style ``CaptioningRNN`` (see the module docstring for what is read).

    ``spec``: a :class:`~harness.spec.Captioner` (None: built from the parameters' shapes, the
    parts named ``cap.project``, ``cap.embed``, ``cap.rnn``, ``cap.vocab``). ``layers``: your
    ``rnn_layers`` module, or a dict of its functions by name, when ``model.loss`` does not
    find them by their CS231n names itself. Check it with :func:`harness.check_network` (``x=``
    features ``(N, F)``, ``y=`` captions ``(N, T + 1)``, both drawn from the seed when omitted).
    Raises :class:`AdapterError` naming what does not fit: a missing parameter, a shape, the cell
    type, the NULL token.
    """
    reading = read_model(model)
    spec = build_spec(reading) if spec is None else _check_spec(spec, reading)
    return CaptioningModel(model, spec, reading, layers)


def part_spec(model: CaptioningModel, role: str) -> Layer:
    """The spec a part is checked alone with: the Captioner's child; the recurrent one with its
    initial state as a parameter (h0, the projection's output at the point)."""
    part = getattr(model.captioner, role)
    return replace(part, initial_state=True) if role == "rnn" else part


__all__ = ["CaptioningModel", "Reading", "build_spec", "is_captioning", "part_spec", "read_model", "wrap_captioning"]
