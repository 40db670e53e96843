"""The loss rules of the JAX reference (``loss(output, target) -> scalar``), out of
``jax_ref`` so each stays small: softmax cross-entropy (labels or probabilities, with a
declared epsilon in the log), MSE, the projection <output, g>, and the temporal softmax
cross-entropy with ignored positions. Imports neither torch nor ``jax_ref``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from harness import spec as S


def _cross_entropy(loss: S.SoftmaxCrossEntropy, out: jax.Array, target: jax.Array) -> jax.Array:
    logp = out - jax.nn.logsumexp(out, axis=1, keepdims=True)  # log-softmax, stable
    if target.ndim == 1:  # integer labels
        per = -jnp.take_along_axis(logp, target[:, None].astype(jnp.int64), axis=1)[:, 0]
    else:  # probabilities
        per = -jnp.sum(target * logp, axis=1)
    if loss.log_eps:  # the value of -log(p + log_eps), the textbook gradient (the spec's docstring)
        prob = jnp.exp(logp) + loss.log_eps
        with_eps = -(
            jnp.log(jnp.take_along_axis(prob, target[:, None].astype(jnp.int64), axis=1)[:, 0])
            if target.ndim == 1
            else jnp.sum(target * jnp.log(prob), axis=1)
        )
        per = per + jax.lax.stop_gradient(with_eps - per)
    total = jnp.sum(per)
    return total / out.shape[0] if loss.reduction == "mean" else total


def _temporal(loss: S.TemporalSoftmaxCrossEntropy, out: jax.Array, target: jax.Array) -> jax.Array:
    """Logits (N, T, V), labels (N, T); ignored positions contribute nothing (and no gradient)."""
    logp = out - jax.nn.logsumexp(out, axis=-1, keepdims=True)
    kept = target != loss.ignore_index
    labels = jnp.where(kept, target, 0).astype(jnp.int64)  # any valid index: its term is dropped below
    per = -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    total = jnp.sum(jnp.where(kept, per, 0.0))
    if loss.reduction == "batch":
        return total / out.shape[0]
    if loss.reduction == "mean":
        return total / jnp.sum(kept)
    return total


def loss_value(loss: S.Loss, out: jax.Array, target: jax.Array) -> jax.Array:
    """``loss(out, target)`` as a scalar, differentiable in ``out``."""
    if isinstance(loss, S.SoftmaxCrossEntropy):
        return _cross_entropy(loss, out, target)
    if isinstance(loss, S.TemporalSoftmaxCrossEntropy):
        return _temporal(loss, out, target)
    if isinstance(loss, S.MSE):
        total = jnp.sum((out - target) ** 2)
        return total / out.size if loss.reduction == "mean" else total
    if isinstance(loss, S.Projection):
        return jnp.sum(out * target)
    raise S.SpecError(f"the JAX reference has no rule for loss {type(loss).__name__}")


__all__ = ["loss_value"]
