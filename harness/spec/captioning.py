"""The captioning family: :class:`Captioner`, CS231n's ``CaptioningRNN`` as one container, so a
two-input model (image features and caption words) is checked by the single-input engine.

Why a container with the features as a buffer. The model's loss is
``loss(features, captions)``, but only the captions flow through the layers in order; the
features enter once, as the recurrent layer's initial state ``h0 = project(features)``. Taking
the caption indices as the network's input and the features as a non-trainable buffer
(``<name>.features (N, F)``) keeps everything the engine already does for one input (integer
indices that are not differentiated, every layer's input, output and upstream gradient
recorded by both references, ``loss_vjp`` under a temporal loss) and matches the model's own
gradients: CS231n's ``loss`` returns none for the features, they are data, not weights, so
finite differences must not move them either. A general "initial state from a projection"
option on the recurrent specs would need a second input threaded through every container;
the container says exactly what the model computes and names its parts as the model does.

Data flow (shapes with batch N, T steps, F features, W word vector size, H hidden, V scores):

    captions_in (N, T) int64 --embed--> (N, T, W) --rnn (h0)--> (N, T, H) --vocab--> (N, T, V)
    features (N, F) buffer --project--> h0 (N, H)

Children in walk order: ``embed`` (the network's input, the indices, enters there, so it is the
first leaf as :func:`~harness.spec.tree.index_layer` requires), ``project``, ``rnn``, ``vocab``;
canonical names ``<name>.features``, ``<name>.embed.weight``, ``<name>.project.weight`` ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import Layer, ParamInfo, Shape, SpecError, _check_name, join_path
from .embedding import Embedding
from .linear import Linear
from .recurrent import GRU, LSTM, RNN

RECURRENT = (RNN, LSTM, GRU)


@dataclass(frozen=True)
class Captioner(Layer):
    """``scores = vocab(rnn(embed(captions), h0=project(features)))``: caption indices ``(N, T)``
    -> scores ``(N, T, V)``.

    ``project``: a :class:`Linear` ``(F -> H)`` applied to the buffer ``features (N, F)``;
    ``embed``: an :class:`Embedding` ``(V_words, W)`` of the caption indices; ``rnn``: an
    :class:`RNN`, :class:`LSTM` or :class:`GRU` ``(W -> H)`` declared with
    ``initial_state=False`` (its h0 is the projection; an LSTM's c0 is zero, CS231n's, or a
    trainable parameter with ``cell_state=True``); ``vocab``: a :class:`Linear` ``(H -> V)`` over
    ``(N, T, H)``. The name must not be empty (it owns the ``features`` buffer).
    """

    kind: ClassVar[str] = "Captioner"
    child_fields: ClassVar[Mapping[str, str]] = {"embed": "one", "project": "one", "rnn": "one", "vocab": "one"}
    name: str
    project: Any
    embed: Any
    rnn: Any
    vocab: Any

    def __post_init__(self) -> None:
        _check_name(self.name, "Captioner")
        for attr, kinds in (("project", Linear), ("embed", Embedding), ("rnn", RECURRENT), ("vocab", Linear)):
            value = getattr(self, attr)
            if not isinstance(value, kinds):
                want = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
                raise SpecError(f"Captioner '{self.name}': {attr} must be a {want} spec, got {value!r}")
        names = [c.name for c in self.children()]
        if len(set(names)) != len(names):
            raise SpecError(f"Captioner '{self.name}': its parts need distinct names, got {names}")
        if self.rnn.initial_state:
            raise SpecError(
                f"Captioner '{self.name}': rnn '{self.rnn.name}' takes its initial state from "
                f"project(features); declare it with initial_state=False"
            )
        h = self.rnn.hidden_size
        self._fits("project", "out_features", self.project.out_features, f"rnn hidden_size={h}", h)
        w = self.embed.embedding_dim
        self._fits("rnn", "input_size", self.rnn.input_size, f"embed embedding_dim={w}", w)
        self._fits("vocab", "in_features", self.vocab.in_features, f"rnn hidden_size={h}", h)

    def _fits(self, part: str, attr: str, value: int, other: str, expected: int) -> None:
        if value != expected:
            raise SpecError(
                f"Captioner '{self.name}': {part} has {attr}={value} but {other}; they must be equal "
                f"({part} '{getattr(self, part).name}')"
            )

    def children(self) -> tuple[Layer, ...]:
        return (self.embed, self.project, self.rnn, self.vocab)

    @property
    def feature_size(self) -> int:
        """F: the size of one example's features (the projection's input)."""
        return int(self.project.in_features)

    def _visit(self, shape: Shape, path: str, record: dict | None) -> Shape:
        if len(shape) != 2:
            raise SpecError(
                f"layer '{path}': a Captioner takes caption indices (N, T), got shape {shape}; the image "
                "features are its buffer 'features' (N, F)"
            )
        if record is not None:
            record[path] = None  # the pre-order slot, filled once the output is known
        n = shape[0]
        emb = self.embed._visit(shape, join_path(path, self.embed.name), record)
        self.project._visit((n, self.feature_size), join_path(path, self.project.name), record)
        hidden = self.rnn._visit(emb, join_path(path, self.rnn.name), record)
        out = self.vocab._visit(hidden, join_path(path, self.vocab.name), record)
        if record is not None:
            record[path] = (shape, out)
        return out

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        """The image features ``(N, F)``: a buffer (data, not a weight: no gradient)."""
        return {"features": ParamInfo((int(input_shape[0]), self.feature_size), trainable=False)}


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (Captioner,)
