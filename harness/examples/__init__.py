"""A bundled example: a handwritten numpy LeNet in TensorFlow habits (NHWC data, HWIO
kernels, ``x @ W`` dense layers, HWC flatten) and buggy variants of it, each one
realistic mistake, ready for trigrad::

    from harness.examples import VARIANTS, build
    import harness

    ex = build("fc1-bias-averaged")          # or build() for the correct network
    report = harness.check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss)
    assert report.first_failure == ex.variant.layer

``VARIANTS`` maps each bug's name to its :class:`Variant` (where trigrad must find it).

The second example, a CS231n-style numpy LSTM language model (word embedding, LSTM with
gates i, f, o, g, temporal affine, masked temporal softmax loss), works the same way:
``build_lstm(name)`` and ``LSTM_VARIANTS`` (:mod:`.lstm`, :mod:`.lstm_variants`,
:mod:`.lstm_example`).

The third, a torch network of custom ``torch.autograd.Function``s with handwritten
backwards (im2col conv, LeakyReLU, Linear, LayerNorm, tanh-GELU), checked through torch's
autograd: ``build_autograd(name)`` and ``AUTOGRAD_VARIANTS`` (:mod:`.autograd_model`,
:mod:`.autograd_variants`, :mod:`.autograd_example`). Those import torch, so they are
loaded on first use of these names, not with this package.
"""

from typing import Any

from .example import Example, build
from .lstm_example import LSTMExample, build_lstm
from .lstm_variants import LSTM_VARIANTS, LSTMVariant
from .variants import VARIANTS, Variant

_TORCH_NAMES = {
    "AUTOGRAD_VARIANTS": ".autograd_variants",
    "AutogradVariant": ".autograd_variants",
    "AutogradExample": ".autograd_example",
    "build_autograd": ".autograd_example",
}


def __getattr__(name: str) -> Any:
    """The custom-autograd example's names, imported (with torch) on first use."""
    if name in _TORCH_NAMES:
        from importlib import import_module

        return getattr(import_module(_TORCH_NAMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUTOGRAD_VARIANTS",
    "LSTM_VARIANTS",
    "VARIANTS",
    "AutogradExample",
    "AutogradVariant",
    "Example",
    "LSTMExample",
    "LSTMVariant",
    "Variant",
    "build",
    "build_autograd",
    "build_lstm",
]
