"""A user's layer seen in canonical conventions: object style and CS231n function pairs.

Both styles give a :class:`WrappedLayer`, whose methods take and return canonical float64
numpy arrays (NCHW data, PyTorch parameter layouts, local parameter names ``weight``,
``bias`` ...) whatever the user's layout, dtype or calling convention::

    conv = wrap_layer(MyConv(...), Conv2d("conv1", 3, 8, 3), layout=Layout(kernel="HWIO"))
    y = conv.forward(x)              # x: (N, C, H, W) float64 -> y canonical
    dx = conv.backward(g)            # g: upstream gradient, canonical
    conv.param_grads()               # {"weight": (O, I, kh, kw), "bias": (O,)}
    with conv.preserved():           # parameters restored bit for bit on exit, even on error
        conv.set_params({...})

The common core lives in :mod:`.wrapped` (its parameter side in :mod:`.wrapped_params`), the
object style in :mod:`.object_layer` (where it finds parameters: :mod:`.object_refs`), the
function pairs in :mod:`.function_layer`; this module gathers them.
"""

from .function_layer import FunctionLayer, wrap_functions
from .notes import _data_hint, dtype_note
from .object_layer import OPTIONS, ObjectLayer, wrap_layer
from .refs import AdapterError, Ref, ValueFinding, preserving
from .wrapped import WrappedLayer

__all__ = [
    "OPTIONS",
    "preserving",
    "AdapterError",
    "ValueFinding",
    "dtype_note",
    "FunctionLayer",
    "ObjectLayer",
    "Ref",
    "WrappedLayer",
    "wrap_functions",
    "wrap_layer",
    "_data_hint",
]
