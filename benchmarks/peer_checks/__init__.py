"""The gradient checkers compared in ``peers.py``, each run on the same handwritten numpy code;
this package's modules, one per peer, are re-exported here.

Every peer calls the user's code through trigrad's adapter (a ``WrappedLayer`` or
``WrappedNetwork``: canonical float64 in and out, whatever the user's layout or calling
style), so all of them check exactly the same code at the same point; new parameter
values are copied straight into the user's own arrays where they are canonical float64
(see :class:`Problem`), as a hand-written adapter would:

``gradcheck`` / ``gradcheck_fast``
    ``torch.autograd.gradcheck`` (default eps 1e-6, atol 1e-5, rtol 1e-3) on a
    ``torch.autograd.Function`` whose forward calls the user's forward and whose backward
    calls the user's backward; the input and every trainable parameter are float64 inputs
    of the Function, written into the user's object before each forward. The user's layer
    caches only its latest forward, so the Function's backward re-runs the user's forward at
    its own inputs first when another forward came in between (gradcheck's perturbations).
``jax_check_grads``
    ``jax.test_util.check_grads(f, (arrays,), order=1, modes=["rev"])`` with ``f`` a
    ``jax.custom_vjp`` whose forward and backward call the user's code through
    ``jax.pure_callback``, float64 inside ``with jax.enable_x64(True)``. JAX calls the
    backward after other evaluations, so the backward re-runs the user's forward at the
    residual point first; JAX may run callbacks concurrently on its worker threads, so
    each callback holds a lock (the user's layer is stateful), and float64 crosses the
    callback as uint32 bit pairs (see :func:`jax_function`).
``cs231n``
    CS231n's ``eval_numerical_gradient_array`` (central differences, h = 1e-5) over every
    coordinate of the input and every parameter against the user's backward with a random
    upstream gradient ``df``; CS231n's ``rel_error`` (elementwise, floored at 1e-8) above
    1e-7 for any tensor is a failure.
``trigrad``
    ``harness.check_layer`` / ``harness.check_network`` with the default ``fd_probes``.

Each returns a :class:`PeerResult`: the verdict (caught a problem or not), wall time and the
number of calls into the user's forward and backward (see :func:`count_calls`). The two
exhaustive peers (slow gradcheck, CS231n) can be run on a random subset of coordinates
(``max_coords``; slow gradcheck also ``max_outputs``) and their full cost extrapolated
linearly (:attr:`PeerResult.extrapolated`).

Modules: ``problem`` (the user's code at one point: :class:`Problem`, :class:`Slot`,
:func:`sample_slots`), ``counting`` (:func:`count_calls`), ``result`` (:class:`PeerResult`,
:data:`PEERS`), ``torch_gradcheck``, ``jax_grads``, ``cs231n_loop``, ``trigrad_check``
(the peers).
"""

from __future__ import annotations

from .counting import CallCounts, count_calls
from .cs231n_loop import CS231N_H as CS231N_H
from .cs231n_loop import CS231N_THRESHOLD as CS231N_THRESHOLD
from .cs231n_loop import cs231n, eval_numerical_gradient_array, rel_error
from .cs231n_loop import rel_error_normwise as rel_error_normwise
from .jax_grads import jax_check_grads
from .jax_grads import jax_function as jax_function
from .problem import Problem, Slot, sample_slots
from .problem import _spec_of as _spec_of  # peers_timing reads the spec of a subject
from .result import PEERS, PeerResult
from .torch_gradcheck import gradcheck
from .torch_gradcheck import torch_function as torch_function
from .trigrad_check import FAILING as FAILING
from .trigrad_check import trigrad

__all__ = ["PEERS", "CallCounts", "PeerResult", "Problem", "Slot", "count_calls", "cs231n", "eval_numerical_gradient_array",
           "gradcheck", "jax_check_grads", "rel_error", "sample_slots", "trigrad"]
