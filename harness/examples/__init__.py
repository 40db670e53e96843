"""A bundled example: a handwritten numpy LeNet in TensorFlow habits (NHWC data, HWIO
kernels, ``x @ W`` dense layers, HWC flatten) and buggy variants of it, each one
realistic mistake, ready for trigrad::

    from harness.examples import VARIANTS, build
    import harness

    ex = build("fc1-bias-averaged")          # or build() for the correct network
    report = harness.check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss)
    assert report.first_failure == ex.variant.layer

``VARIANTS`` maps each bug's name to its :class:`Variant` (where trigrad must find it).
"""

from .example import Example, build
from .variants import VARIANTS, Variant

__all__ = ["VARIANTS", "Example", "Variant", "build"]
