"""The torch bridge for the embedding family (merged into ``torch_bridge``): ``nn.Embedding``
both ways. Its ``state_dict`` key (``weight``) is the canonical name already, so there is no
name map. Options the spec cannot express (``max_norm`` renormalises rows in place during the
forward; ``scale_grad_by_freq`` divides each row's gradient by its token's count in the batch;
``sparse`` returns a sparse gradient) are refused with a SpecError naming the module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from harness import spec as S


def _to_module(layer: S.Embedding) -> nn.Module:
    # the module zeroes its padding row at construction; to_module then loads the user's weights over it
    return nn.Embedding(layer.num_embeddings, layer.embedding_dim, padding_idx=layer.padding_idx)


def _from_module(m: nn.Embedding, name: str, path: str) -> S.Layer:
    unsupported = [
        why
        for why in (
            f"max_norm={m.max_norm} (rows renormalised in place by the forward)" if m.max_norm is not None else "",
            "scale_grad_by_freq=True (gradients divided by token counts)" if m.scale_grad_by_freq else "",
            "sparse=True (a sparse weight gradient)" if m.sparse else "",
        )
        if why
    ]
    if unsupported:
        raise S.SpecError(
            f"from_torch: module '{path or '<root>'}' (Embedding) uses {' and '.join(unsupported)}, which the "
            "spec does not support; the Embedding spec is a plain lookup with an optional padding_idx"
        )
    return S.Embedding(name, m.num_embeddings, m.embedding_dim, m.padding_idx)


TO_MODULE: dict[type[S.Layer], Callable[[Any], nn.Module]] = {S.Embedding: _to_module}
FROM_MODULE: dict[type, Callable[[Any, str, str], S.Layer]] = {nn.Embedding: _from_module}

__all__ = ["FROM_MODULE", "TO_MODULE"]
