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
"""

from .example import Example, build
from .lstm_example import LSTMExample, build_lstm
from .lstm_variants import LSTM_VARIANTS, LSTMVariant
from .variants import VARIANTS, Variant

__all__ = ["LSTM_VARIANTS", "VARIANTS", "Example", "LSTMExample", "LSTMVariant", "Variant", "build", "build_lstm"]
