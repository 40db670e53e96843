"""Inference of the spec, layout and parameter names from the user's code (issue 15):
``infer(obj, x)`` watches a forward (and a backward), proposes candidate kinds from the
parameters' shapes and names, reads hyperparameters from the output's shape and values, and
keeps only what the reference confirms. See :mod:`.result` for what it returns."""

from .result import STATUSES, Fit, Inference, LayerInference

__all__ = ["STATUSES", "Fit", "Inference", "LayerInference"]
