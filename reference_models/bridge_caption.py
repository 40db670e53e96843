"""The captioning family between specs and PyTorch modules (used by :mod:`.torch_bridge`).

* spec -> module: :class:`SpecCaptioner`, an ``nn.Module`` holding the four parts as children
  named as in the spec (an ``nn.Embedding``, two ``nn.Linear`` and the recurrent bridge's
  ``SpecRNN`` / ``SpecLSTM`` / ``SpecGRU``) and the image features as the buffer ``features
  (N, F)``; ``forward(captions (N, T) int64) -> scores (N, T, V)`` runs the recurrent module
  from ``h0 = project(features)``. Its ``state_dict`` keys are the canonical names (the
  recurrent child's PyTorch names, ``weight_ih_l0`` ..., are mapped by the recurrent bridge).
* module -> spec: a :class:`SpecCaptioner` gives its spec back (the round trip). A captioning
  model of your own in PyTorch takes two inputs (features and captions), which ``from_torch``'s
  single-input reading cannot follow: build its ``Captioner`` spec by hand (its parts
  ``from_torch`` one by one) or keep the model's loss and wrap it with
  :func:`harness.wrap_captioning`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import spec as S

Build = Callable[[S.Layer, str, Mapping[str, Any]], nn.Module]


class SpecCaptioner(nn.Module):
    """``vocab(rnn(embed(captions), h0=project(features)))`` with the features a buffer."""

    layer: S.Captioner

    def __init__(self, layer: S.Captioner, parts: Mapping[str, nn.Module], n: int) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("features", torch.zeros(n, layer.feature_size))  # first: the spec's order
        for child in layer.children():  # embed, project, rnn, vocab: the spec's parameter order
            self.add_module(child.name, parts[child.name])

    def forward(self, captions: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        part = lambda child: self.get_submodule(child.name)  # noqa: E731
        emb = part(layer.embed)(captions)
        h0 = part(layer.project)(self.get_buffer("features"))[None]  # (1, N, H): one layer, one direction
        rnn = part(layer.rnn)
        # nn.RNN / nn.LSTM / nn.GRU's own forward, called with the state (the Spec* subclass's takes none)
        base: Any = next(c for c in (nn.LSTM, nn.GRU, nn.RNN) if isinstance(rnn, c))
        run = partial(base.forward, rnn)
        if isinstance(layer.rnn, S.LSTM):
            c0 = rnn.get_parameter("c0")[None] if layer.rnn.cell_state else torch.zeros_like(h0)
            hidden = run(emb, (h0, c0))[0]
        else:
            hidden = run(emb, h0)[0]
        return part(layer.vocab)(hidden)


def module(layer: S.Captioner, path: str, params: Mapping[str, Any], build: Build) -> nn.Module:
    """The :class:`SpecCaptioner` for ``layer`` at ``path``, its parts made by ``build``
    (``torch_bridge._module``); the features' batch read off ``params`` (1 when absent)."""
    parts = {c.name: build(c, S.join_path(path, c.name), params) for c in layer.children()}
    features = params.get(f"{path}.features")
    return SpecCaptioner(layer, parts, int(np.shape(features)[0]) if features is not None else 1)


def _from_module(m: SpecCaptioner, name: str, path: str) -> S.Layer:
    return m.layer if m.layer.name == name else S.from_dict({**m.layer.to_dict(), "name": name})  # type: ignore[return-value]


FROM_MODULE: dict[type, Callable[[Any, str, str], S.Layer]] = {SpecCaptioner: _from_module}

__all__ = ["FROM_MODULE", "SpecCaptioner", "module"]
