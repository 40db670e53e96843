"""Real-code shapes for the issue-13 acceptance suite (tests/test_real_code.py).

Each module holds small layers written the way public from-scratch repositories write them
(fresh code in their habits, copied from none): CS231n function pairs, numpy-ml objects,
Keras-like NHWC layers, one-example-at-a-time layers, odd return structures, torch / jax
code, composites, networks and losses. Every shape has its correct version and at least one
realistic buggy variant, collected as namespaces (``types.SimpleNamespace``) so a wrapping
can say ``m.affine_forward`` or ``m.Conv2D(...)`` for either.
"""
