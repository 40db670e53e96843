"""``jax.custom_vjp`` code checked through jax's own ``vjp`` (issue 18): ``defvjp(fwd, bwd)``
with residuals saved in ``fwd``, ``nondiff_argnums`` for a non-array argument, a
``custom_jvp``, float32 arrays (float64 only inside ``jax.enable_x64``). A bwd returning a
bias gradient of the broadcast shape is not summed by jax: jax raises, and the verdict is
``error`` naming the shape."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import harness

FC = harness.Linear("fc", 6, 4)
SQUARE = harness.Linear("fc", 6, 6)


def arrays(*shapes: tuple[int, ...], seed: int = 0, dtype=jnp.float32) -> list[jax.Array]:
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.normal(size=s), dtype=dtype) for s in shapes]


def fc_params(i: int = 6, o: int = 4, dtype=jnp.float32) -> dict[str, jax.Array]:
    w, b = arrays((o, i), (o,), seed=1, dtype=dtype)
    return {"weight": w, "bias": b}


def entry(fn, spec, shape, **kw):
    return harness.check_layer(fn, spec, input_shape=shape, seed=0, **kw).layers[0]


def bad_tensors(e) -> list[str]:
    return [t.name for t in e.tensors if not t.ok]


def said(e, *words: str) -> bool:
    text = " ".join([e.message, *e.diagnosis]).lower()
    return all(w.lower() in text for w in words)


# --------------------------------------------------------------------------- Linear with defvjp


def linear_vjp(fwd, bwd):
    @jax.custom_vjp
    def linear(x, w, b):
        return x @ w.T + b

    linear.defvjp(fwd, bwd)
    return linear


def _fwd(x, w, b):
    return x @ w.T + b, (x, w)


def _fwd_saves_output(x, w, b):
    y = x @ w.T + b
    return y, (y, w)  # the output saved where the input belongs


def _bwd(res, g):
    x, w = res
    return g @ w, g.T @ x, g.sum(0)


def _bwd_bias_mean(res, g):
    x, w = res
    return g @ w, g.T @ x, g.mean(0)


def _bwd_bias_unreduced(res, g):
    x, w = res
    return g @ w, g.T @ x, g  # (N, F) for a (F,) bias: jax does not sum it


jlinear = linear_vjp(_fwd, _bwd)
jlinear_saves_output = linear_vjp(_fwd_saves_output, _bwd)
jlinear_bias_mean = linear_vjp(_fwd, _bwd_bias_mean)
jlinear_bias_unreduced = linear_vjp(_fwd, _bwd_bias_unreduced)


def test_custom_vjp_linear_passes_in_float32() -> None:
    e = entry(jlinear, FC, (5, 6), params=fc_params())
    assert e.verdict == "pass", e.message
    assert e.dtype == "float32"
    assert [t.name for t in e.tensors] == ["output", "input", "weight", "bias"]
    assert all(t.error_torch <= t.tolerance for t in e.tensors)


def test_custom_vjp_saving_the_output_is_a_backward_bug() -> None:
    e = entry(jlinear_saves_output, SQUARE, (5, 6), params=fc_params(6, 6))
    assert e.verdict == "backward", e.message
    assert bad_tensors(e) == ["weight"]


def test_custom_vjp_bias_mean_is_off_by_the_batch_size() -> None:
    e = entry(jlinear_bias_mean, FC, (5, 6), params=fc_params())
    assert e.verdict == "backward", e.message
    assert bad_tensors(e) == ["bias"]
    assert said(e, "bias", "off by a constant factor", "1/5")


def test_custom_vjp_unreduced_bias_gradient_is_an_error_naming_the_shape() -> None:
    e = entry(jlinear_bias_unreduced, FC, (5, 6), params=fc_params())
    assert e.verdict == "error" and e.error_side == "backward"
    assert "output[2]" in e.message and "float32[5,4]" in e.message and "float32[4]" in e.message, e.message


def test_custom_vjp_unreduced_bias_gradient_names_the_bwd_rule() -> None:
    e = entry(jlinear_bias_unreduced, FC, (5, 6), params=fc_params())
    assert "_bwd_bias_unreduced" in e.message or __file__ in e.message, e.message


@jax.custom_jvp
def jlinear_jvp(x, w, b):
    return x @ w.T + b


@jlinear_jvp.defjvp
def _linear_jvp(primals, tangents):
    (x, w, b), (dx, dw, db) = primals, tangents
    return jlinear_jvp(x, w, b), dx @ w.T + x @ dw.T + db


def test_custom_jvp_linear_passes() -> None:
    assert entry(jlinear_jvp, FC, (5, 6), params=fc_params()).verdict == "pass"


def test_float64_inside_enable_x64() -> None:
    with jax.enable_x64(True):
        e = entry(jlinear, FC, (5, 6), params=fc_params(dtype=jnp.float64))
    assert e.verdict == "pass", e.message
    assert e.dtype == "float64"
    assert max(t.tolerance for t in e.tensors) < 1e-10
    assert jnp.zeros(1).dtype == jnp.float32  # the global configuration is as it was


# --------------------------------------------------------------------------- LayerNorm, eps as nondiff_argnums


def layer_norm_vjp(dx_rule):
    @partial(jax.custom_vjp, nondiff_argnums=(3,))
    def layer_norm(x, w, b, eps):
        return fwd(x, w, b, eps)[0]

    def fwd(x, w, b, eps):
        mean = x.mean(-1, keepdims=True)
        rstd = jax.lax.rsqrt(x.var(-1, keepdims=True) + eps)
        xhat = (x - mean) * rstd
        return xhat * w + b, (xhat, rstd, w)

    def bwd(eps, res, g):
        xhat, rstd, w = res
        return dx_rule(g * w, xhat, rstd), (g * xhat).sum(0), g.sum(0)

    layer_norm.defvjp(fwd, bwd)
    return layer_norm


def _dx(dxhat, xhat, rstd):
    return rstd * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))


def _dx_missing_term(dxhat, xhat, rstd):
    return rstd * (dxhat - dxhat.mean(-1, keepdims=True))  # forgot the variance's term


@pytest.mark.parametrize(("dx_rule", "verdict"), [(_dx, "pass"), (_dx_missing_term, "backward")])
def test_layer_norm_with_nondiff_eps(dx_rule, verdict: str) -> None:
    w, b = arrays((8,), (8,), seed=3)
    e = entry(
        layer_norm_vjp(dx_rule), harness.LayerNorm("ln", (8,)), (5, 8), params=[1 + 0.1 * w, b], forward_args=(1e-5,)
    )
    assert e.verdict == verdict, e.message
    assert bad_tensors(e) == ([] if verdict == "pass" else ["input"])


# --------------------------------------------------------------------------- parameter-free


@jax.custom_vjp
def jrelu(x):
    return jnp.maximum(x, 0)


jrelu.defvjp(lambda x: (jnp.maximum(x, 0), x), lambda x, g: (jnp.where(x > 0, g, 0),))


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def jleaky(x, slope):
    return jnp.where(x > 0, x, slope * x)


jleaky.defvjp(lambda x, slope: (jleaky(x, slope), x), lambda slope, x, g: (jnp.where(x > 0, g, 0),))  # forgot slope


@pytest.mark.parametrize(
    ("fn", "spec", "args", "verdict"),
    [(jrelu, harness.ReLU("relu"), (), "pass"), (jleaky, harness.LeakyReLU("leaky", 0.1), (0.1,), "backward")],
    ids=["relu", "leaky-forgets-slope"],
)
def test_parameter_free_custom_vjp(fn, spec, args, verdict: str) -> None:
    e = entry(fn, spec, (4, 6), forward_args=args, dtype=jnp.float32)
    assert e.verdict == verdict, e.message


def _jax_gpus() -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU backend on this machine
        return []


@pytest.mark.skipif(not _jax_gpus(), reason="needs a jax GPU device")
def test_custom_vjp_on_a_gpu_passes_and_stays_there() -> None:
    """Parameters on a GPU: the code runs there (its input is handed on its parameters'
    device) and the check passes; the parameters stay where they were."""
    gpu = _jax_gpus()[0]
    params = {k: jax.device_put(v, gpu) for k, v in fc_params().items()}
    e = entry(jlinear, FC, (5, 6), params=params)
    assert e.verdict == "pass", e.message
    assert all(v.devices() == {gpu} for v in params.values())
