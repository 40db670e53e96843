"""The captioning family in the PyTorch reference: a :class:`~harness.spec.Captioner` run through
its children, each recorded like any layer (input, output, eps) by the traversal that calls
it. Written independently of :mod:`.jax_caption`; ``torch_ref._Run.layer`` calls
:func:`captioner` with itself as ``run`` (duck-typed: ``run.layer(child, x, path)`` and
``run.params``, a mapping of canonical names to tensors), so this module imports no
``torch_ref``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from harness import spec as S


def captioner(run: Any, layer: S.Captioner, x: torch.Tensor, path: str) -> torch.Tensor:
    """Caption indices ``x (N, T)`` -> scores ``(N, T, V)``; the features ``(N, F)`` are the
    buffer ``<path>.features``. The recurrent child runs as the same layer with an initial state
    whose value is the projection's output (h0 ``(N, H)``, with its eps: its upstream gradient is
    recorded as the projection's)."""
    part = lambda child: S.join_path(path, child.name)  # noqa: E731
    emb = run.layer(layer.embed, x, part(layer.embed))
    h0 = run.layer(layer.project, run.params[f"{path}.features"], part(layer.project))
    # a new mapping, not an entry added to the caller's: its keys are the spec's parameters
    run.params = {**run.params, f"{part(layer.rnn)}.h0": h0}
    hidden = run.layer(replace(layer.rnn, initial_state=True), emb, part(layer.rnn))
    return run.layer(layer.vocab, hidden, part(layer.vocab))


__all__ = ["captioner"]
