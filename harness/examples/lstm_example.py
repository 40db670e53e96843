"""The example LSTM language model (correct or with one bug) wrapped for trigrad: spec,
layout, loss, data. Mirrors :mod:`harness.examples.example` (the LeNet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..adapters.layouts import Layout
from ..adapters.loss import WrappedLoss, wrap_loss
from ..adapters.network import WrappedNetwork, wrap_network
from ..spec import LSTM, Embedding, Linear, Sequential, TemporalSoftmaxCrossEntropy
from .lstm import NULL, LSTMLanguageModel, temporal_softmax_loss, toy_batch
from .lstm_variants import LSTM_VARIANTS, STEPS, LSTMVariant

VOCAB, WORDVEC, HIDDEN, BATCH = 12, 6, 8, 3

# what the numpy code uses: CS231n's habits (x @ W weights, gates i, f, o, g, batch-first)
LAYOUT = Layout(linear="in_out", gates="ifog")
# The layers' arrays (W, Wx, Wh, b, h0) and gradients (dW, dWx, ..., dh0) are found under
# those usual names: nothing to declare. The embedding's backward returns no input gradient
# (integer tokens), which trigrad expects of an Embedding.


def lstm_spec(vocab: int = VOCAB, wordvec: int = WORDVEC, hidden: int = HIDDEN) -> Sequential:
    """The spec of :class:`~harness.examples.lstm.LSTMLanguageModel`: tokens (N, T) ->
    scores (N, T, vocab)."""
    return Sequential(
        [
            Embedding("embed", vocab, wordvec),
            LSTM("lstm", wordvec, hidden, bias="fused", initial_state=True),
            Linear("vocab", hidden, vocab),
        ]
    )


def loss_spec() -> TemporalSoftmaxCrossEntropy:
    """CS231n's temporal_softmax_loss: the masked sum over time divided by N; NULL targets ignored."""
    return TemporalSoftmaxCrossEntropy(reduction="batch", ignore_index=NULL)


@dataclass
class LSTMExample:
    """A ready-to-check example (the LSTM counterpart of :class:`~harness.examples.Example`).

    name:    ``"correct"`` or the variant's name; ``variant``: its :class:`LSTMVariant`, or None.
    net:     the user's network wrapped (its own forward/backward, declared layout ``LAYOUT``).
    spec:    the spec it implements; ``loss``: the user's temporal softmax loss wrapped;
             ``model``: the raw numpy :class:`LSTMLanguageModel`.
    x:       the tokens (N, T) int64; ``y``: the targets (N, T), :data:`NULL` where padding.
    """

    name: str
    variant: LSTMVariant | None
    net: WrappedNetwork
    spec: Sequential
    loss: WrappedLoss
    model: LSTMLanguageModel
    x: np.ndarray
    y: np.ndarray


def build_lstm(variant: str = "correct", *, batch: int = BATCH, seed: int = 0, dtype: Any = np.float64) -> LSTMExample:
    """The example LSTM language model, correct or with the bug ``variant`` (a key of
    :data:`LSTM_VARIANTS`). Weights (and the carried state h0) come from ``seed``, identical
    across variants; tokens and targets from an independent stream of the same seed.
    ``batch`` below 3 leaves the embedding variant invisible when no token repeats (3 x 5
    tokens from 11 words always repeat one) and the mask variant when no target is padding
    (every row after the first ends early)."""
    if variant != "correct" and variant not in LSTM_VARIANTS:
        raise ValueError(f"unknown example variant {variant!r}; valid: {', '.join(['correct', *LSTM_VARIANTS])}")
    bug = LSTM_VARIANTS.get(variant)
    model = (bug.network if bug else LSTMLanguageModel)(
        VOCAB, WORDVEC, HIDDEN, batch, seed=seed, dtype=dtype, layers=dict(bug.layers) if bug else None
    )
    spec = lstm_spec()
    net = wrap_network(
        model.layers(), spec, forward=model.forward, backward=model.backward, layout=LAYOUT, input_shape=(batch, STEPS)
    )
    loss = wrap_loss(
        bug.loss if bug and bug.loss else temporal_softmax_loss, loss_spec(), style="function", dtype=dtype
    )
    x, y = toy_batch(batch, STEPS, VOCAB, rng=np.random.default_rng([seed, 1]))
    return LSTMExample(name=variant, variant=bug, net=net, spec=spec, loss=loss, model=model, x=x, y=y)


__all__ = ["LAYOUT", "LSTMExample", "build_lstm", "loss_spec", "lstm_spec"]
