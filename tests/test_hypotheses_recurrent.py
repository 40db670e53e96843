"""Recurrent diagnoses (issue 17) beyond the zoo: each line appears only when its hypothesis
reproduces the user's tensor and differs from the truth; gate orders are named in the user's
declared order; time-first code gets the same timesteps; the reference variants are exact."""

from __future__ import annotations

import numpy as np
from zoo import recurrent as R

from harness import Layout, check_layer, wrap_functions, wrap_layer
from harness import spec as S
from reference_models import build
from reference_models.torch_recurrent import Variant, variant_vjp


def diagnosis(wrapped, **kw) -> tuple[str, list[str]]:
    layer = check_layer(wrapped, **kw).layers[0]
    return layer.verdict, layer.diagnosis


def test_a_mistake_no_hypothesis_explains_gets_none_of_their_lines() -> None:
    def backward(dh, cache):  # dWx 1% off: a constant factor, not a recurrent mistake
        dx, dh0, dWx, dWh, db = R.rnn_backward(dh, cache)
        return dx, dh0, dWx * 1.01, dWh, db

    verdict, lines = diagnosis(R.rnn_pair(backward=backward))
    assert verdict == "backward"
    assert any("weight_ih: off by a constant factor" in d for d in lines), lines
    assert not any("timestep" in d or "equal the reference's gradient with" in d for d in lines), lines


def test_time_first_code_is_told_the_same_timestep() -> None:
    def forward(x, h0, Wx, Wh, b):
        h, cache = R.rnn_forward(x.transpose(1, 0, 2), h0, Wx, Wh, b)
        return h.transpose(1, 0, 2), cache

    def backward(dh, cache):
        dx, *grads = R.rnn_backward_no_carry(dh.transpose(1, 0, 2), cache)
        return (dx.transpose(1, 0, 2), *grads)

    pair = wrap_functions(forward, backward, R.RNN_SPEC, R._cs231n_params(0, np.float64, 1),
                          layout=Layout(linear="in_out", sequence="TND"))
    verdict, lines = diagnosis(pair, input_shape=(R.T, R.N, R.D))
    assert verdict == "backward"
    assert any(d.startswith(f"input: wrong from timestep {R.T - 2} backwards") for d in lines), lines
    assert any("the recurrent path cut" in d for d in lines), lines


def test_a_gru_gate_swap_is_named_in_the_declared_order() -> None:
    """The pair slices z, r, n (declared gates='zrn'); its backward stacks r, z, n."""

    def backward(dh, cache):
        steps, Wx, Wh = cache
        swapped = [(x, h, z, r, n, ghn) for x, h, z, r, n, ghn in steps]
        dx, dh0, dWx, dWh, dbx, dbh = R.gru_backward(dh, (swapped, Wx, Wh))
        H = R.H
        restack = lambda a: np.concatenate([a[..., H:2 * H], a[..., :H], a[..., 2 * H:]], axis=-1)  # noqa: E731
        return dx, dh0, restack(dWx), restack(dWh), restack(dbx), restack(dbh)

    verdict, lines = diagnosis(R.gru_pair(backward=backward))
    assert verdict == "backward"
    assert any("weight_ih, weight_hh, bias_ih, bias_hh: the gate gradients are stacked as r,z,n where the forward "
               "slices the gates as z,r,n (r and z swapped)" in d for d in lines), lines


def test_variants_are_exact() -> None:
    """Variant() is the reference itself; a cut variant equals step-by-step local VJPs."""
    layer = S.LSTM("l", 3, 4, cell_state=True)
    spec = S.Sequential([layer])
    full = S.init_params(spec, (2, 4, 3), seed=0)
    params = {k.split(".", 1)[1]: v for k, v in full.items()}
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 4))
    plain = variant_vjp(layer, params, x, g, Variant())
    ref = build("torch", spec).vjp(full, x, g)
    np.testing.assert_allclose(plain["input"], ref.input_grad, rtol=1e-13)
    np.testing.assert_allclose(plain["weight_hh"], ref.param_grads["l.weight_hh"], rtol=1e-13)
    cut = variant_vjp(layer, params, x, g, Variant(cut=frozenset("hc")))
    only_last = np.zeros_like(g)
    only_last[:, -1] = g[:, -1]
    # the last step's input gradient does not depend on any carry; earlier ones do
    np.testing.assert_allclose(cut["input"][:, -1], plain["input"][:, -1], rtol=1e-13)
    assert not np.allclose(cut["input"][:, 0], plain["input"][:, 0])
    # with the path cut, step t's input gradient is the VJP of g[:, t] alone
    alone = variant_vjp(layer, params, x, only_last, Variant(cut=frozenset("hc")))
    np.testing.assert_allclose(alone["input"][:, -1], cut["input"][:, -1], rtol=1e-13)
    assert not alone["input"][:, :-1].any()
    restacked = variant_vjp(layer, params, x, g, Variant(gates=(0, 1, 3, 2)))
    np.testing.assert_allclose(restacked["output"], plain["output"], rtol=0)  # the forward is unchanged
