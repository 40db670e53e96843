"""The bundled LSTM language model (harness.examples.lstm) against an independent truth:
torch.nn.LSTM / F.embedding / F.cross_entropy in float64, written here (not trigrad's
references). The correct model's every gradient matches; every variant's mistake is
really in the layer (and side, and timestep) its LSTMVariant names, and nowhere else."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest

from harness.examples.lstm import NULL, LSTMLanguageModel, temporal_softmax_loss, toy_batch
from harness.examples.lstm_variants import LSTM_VARIANTS, STEPS, LSTMVariant

V, D, H, N = 12, 6, 8, 3
TOL = 1e-10

# the user's arrays on each layer: parameters and the attributes their gradients land in
PARAMS = {
    "embed": {"W": "dW"},
    "lstm": {"Wx": "dWx", "Wh": "dWh", "b": "db", "h0": "dh0"},
    "vocab": {"W": "dW", "b": "db"},
}
# LSTMLanguageModel.backward's names (CS231n's) -> the truth's "<layer>.<param>"
MODEL_GRADS = {
    "W_embed": "embed.W",
    "Wx": "lstm.Wx",
    "Wh": "lstm.Wh",
    "b": "lstm.b",
    "h0": "lstm.h0",
    "W_vocab": "vocab.W",
    "b_vocab": "vocab.b",
}
INPUT_OF = {"lstm": "emb", "vocab": "h"}  # the truth's tensor each layer's input gradient is checked against


def rel_err(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return toy_batch(N, STEPS, V, rng=np.random.default_rng([seed, 1]))


def truth(model: LSTMLanguageModel, tokens: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Every value and gradient of the model's loss by torch.autograd: ``{"scores", "emb",
    "h", "loss", "d<tensor>" for emb / h / scores, "<layer>.<param>" gradients}``.

    Built on torch.nn.LSTM (gates i, f, g, o; weight (4H, in); two biases), so the numpy
    layout is converted here: columns reordered i,f,o,g -> i,f,g,o and transposed, the fused
    bias as bias_ih with bias_hh = 0, the carried state as (1, N, H), the cell at zero."""
    import torch
    import torch.nn.functional as F

    def leaf(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(a, np.float64), requires_grad=True)

    def ifgo(w: torch.Tensor) -> torch.Tensor:  # the last axis's gate blocks i,f,o,g -> i,f,g,o
        return torch.cat([w[..., : 2 * H], w[..., 3 * H :], w[..., 2 * H : 3 * H]], dim=-1)

    e, l, v = model.embed, model.lstm, model.vocab
    p = {
        "embed.W": leaf(e.W),
        "lstm.Wx": leaf(l.Wx),
        "lstm.Wh": leaf(l.Wh),
        "lstm.b": leaf(l.b),
        "lstm.h0": leaf(l.h0),
        "vocab.W": leaf(v.W),
        "vocab.b": leaf(v.b),
    }
    rnn = torch.nn.LSTM(D, H, batch_first=True).double()
    weights = {
        "weight_ih_l0": ifgo(p["lstm.Wx"]).T,
        "weight_hh_l0": ifgo(p["lstm.Wh"]).T,
        "bias_ih_l0": ifgo(p["lstm.b"]),
        "bias_hh_l0": torch.zeros(4 * H, dtype=torch.float64),
    }
    emb = F.embedding(torch.as_tensor(tokens), p["embed.W"])
    h0 = p["lstm.h0"][None]
    h, _ = torch.func.functional_call(rnn, weights, (emb, (h0, torch.zeros_like(h0))))
    scores = h @ p["vocab.W"] + p["vocab.b"]
    for t in (emb, h, scores):
        t.retain_grad()
    loss = (
        F.cross_entropy(scores.reshape(-1, V), torch.as_tensor(targets).reshape(-1), ignore_index=NULL, reduction="sum")
        / N
    )
    loss.backward()
    out = {"scores": scores, "emb": emb, "h": h, "loss": loss}
    out.update({f"d{k}": t.grad for k, t in out.items() if k != "loss"})
    out.update({k: t.grad for k, t in p.items()})
    return {k: t.detach().numpy() for k, t in out.items()}


@cache
def truth_at(seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    tokens, targets = data(seed)
    return truth(LSTMLanguageModel(V, D, H, N, seed=seed), tokens, targets), tokens, targets


def build(variant: LSTMVariant | None, seed: int = 0) -> LSTMLanguageModel:
    layers = dict(variant.layers) if variant else None
    return (variant.network if variant else LSTMLanguageModel)(V, D, H, N, seed=seed, layers=layers)


def in_isolation(model: LSTMLanguageModel, name: str, ref: dict[str, np.ndarray], tokens: np.ndarray) -> dict:
    """One layer run alone, as trigrad checks it: the truth's input to it and the truth's
    gradient of its output -> {"out", "dx" (None for the embedding), param: gradient}."""
    layer = model.layers()[name]
    upstream = {"embed": "demb", "lstm": "dh", "vocab": "dscores"}[name]
    x = {"embed": tokens, "lstm": ref["emb"], "vocab": ref["h"]}[name]
    got = {"out": layer.forward(x.copy()), "dx": layer.backward(ref[upstream].copy())}
    got.update({param: getattr(layer, grad) for param, grad in PARAMS[name].items()})
    return got


# --------------------------------------------------------------------------- the correct model


@pytest.mark.parametrize("seed", [0, 1])
def test_correct_model_matches_torch_end_to_end(seed: int) -> None:
    ref, tokens, targets = truth_at(seed)
    model = build(None, seed)
    assert (targets == NULL).any() and len(np.unique(tokens)) < tokens.size  # padding, repeated tokens
    scores = model.forward(tokens)
    assert rel_err(scores, ref["scores"]) < TOL
    loss, dscores = temporal_softmax_loss(scores, targets, targets != NULL)
    assert abs(loss - ref["loss"]) <= TOL * abs(ref["loss"])
    assert rel_err(dscores, ref["dscores"]) < TOL
    grads = model.backward(dscores)
    assert set(grads) == set(MODEL_GRADS)
    for mine, theirs in MODEL_GRADS.items():
        assert rel_err(grads[mine], ref[theirs]) < TOL, mine
    loss2, grads2 = build(None, seed).loss(tokens, targets)  # CS231n's model.loss gives the same
    assert loss2 == loss and all(np.array_equal(grads2[k], grads[k]) for k in grads)


@pytest.mark.parametrize("name", ["embed", "lstm", "vocab"])
def test_correct_layers_match_torch_in_isolation(name: str) -> None:
    ref, tokens, _ = truth_at(0)
    got = in_isolation(build(None), name, ref, tokens)
    assert rel_err(got["out"], ref[{"embed": "emb", "lstm": "h", "vocab": "scores"}[name]]) < TOL
    if name == "embed":
        assert got["dx"] is None  # integer tokens: no input gradient
    else:
        assert rel_err(got["dx"], ref["d" + INPUT_OF[name]]) < TOL
    for param in PARAMS[name]:
        assert rel_err(got[param], ref[f"{name}.{param}"]) < TOL, param


def test_float32_model_is_close() -> None:
    ref, tokens, targets = truth_at(0)
    model = LSTMLanguageModel(V, D, H, N, seed=0, dtype=np.float32)
    assert model.lstm.Wx.dtype == np.float32
    _, grads = model.loss(tokens, targets)
    assert grads["Wx"].dtype == np.float32 and rel_err(grads["Wx"], ref["lstm.Wx"]) < 1e-4


def test_shapes_are_cs231n_layouts() -> None:
    m = build(None)
    assert m.embed.W.shape == (V, D) and m.vocab.W.shape == (H, V) and m.vocab.b.shape == (V,)
    assert m.lstm.Wx.shape == (D, 4 * H) and m.lstm.Wh.shape == (H, 4 * H) and m.lstm.b.shape == (4 * H,)
    assert m.lstm.h0.shape == (N, H)


# --------------------------------------------------------------------------- the variants


def test_variants_are_well_formed() -> None:
    assert len(LSTM_VARIANTS) >= 6 and "correct" not in LSTM_VARIANTS
    base = {k: v.copy() for k, v in vars(build(None).lstm).items() if isinstance(v, np.ndarray)}
    for name, v in LSTM_VARIANTS.items():
        assert v.name == name and name == name.lower() and " " not in name and v.summary
        assert v.layer in (*PARAMS, "(loss)") and v.side in ("forward", "backward", "both")
        assert (v.timestep is not None) == (v.layer == "lstm" and v.side == "backward")
        assert v.timestep is None or 0 <= v.timestep < STEPS
        got = build(v).lstm  # identical weights whatever the bug: only the code differs
        assert all(np.array_equal(getattr(got, k), a) for k, a in base.items()), name


@pytest.mark.parametrize("name", [n for n, v in LSTM_VARIANTS.items() if v.layer != "(loss)"])
def test_variant_mistake_is_where_it_says(name: str) -> None:
    """Each layer alone on the truth's input and upstream gradient (trigrad's isolation):
    only the named layer is wrong, on the named side."""
    variant = LSTM_VARIANTS[name]
    ref, tokens, _ = truth_at(0)
    model = build(variant)
    for layer in PARAMS:
        got = in_isolation(model, layer, ref, tokens)
        out_ok = rel_err(got["out"], ref[{"embed": "emb", "lstm": "h", "vocab": "scores"}[layer]]) < TOL
        grads_ok = [rel_err(got[p], ref[f"{layer}.{p}"]) < TOL for p in PARAMS[layer]]
        if layer in INPUT_OF:
            grads_ok.append(rel_err(got["dx"], ref["d" + INPUT_OF[layer]]) < TOL)
        if layer != variant.layer:
            assert out_ok and all(grads_ok), layer
        elif variant.side == "backward":
            assert out_ok and not all(grads_ok)
        else:
            assert not out_ok


@pytest.mark.parametrize("name", [n for n, v in LSTM_VARIANTS.items() if v.layer == "lstm" and v.side == "backward"])
def test_bptt_variant_goes_wrong_at_its_timestep(name: str) -> None:
    """dx[:, t] is right for every t after the variant's timestep and wrong at it; where it
    is the last one (the step's own backward is wrong), wrong at every timestep."""
    variant = LSTM_VARIANTS[name]
    ref, tokens, _ = truth_at(0)
    dx = in_isolation(build(variant), "lstm", ref, tokens)["dx"]
    wrong = [rel_err(dx[:, t], ref["demb"][:, t]) > 1e-6 for t in range(STEPS)]
    assert variant.timestep is not None and wrong[variant.timestep] and not any(wrong[variant.timestep + 1 :]), wrong
    if variant.timestep == STEPS - 1:
        assert all(wrong), wrong


def test_embedding_variant_is_wrong_only_on_repeated_tokens() -> None:
    ref, tokens, _ = truth_at(0)
    dW = in_isolation(build(LSTM_VARIANTS["embed-grad-overwritten"]), "embed", ref, tokens)["W"]
    counts = np.bincount(tokens.ravel(), minlength=V)
    wrong = np.abs(dW - ref["embed.W"]).max(axis=1) > 1e-12
    assert wrong.any() and np.array_equal(wrong, counts > 1)


@pytest.mark.parametrize("name", [n for n, v in LSTM_VARIANTS.items() if v.layer == "(loss)"])
def test_loss_variant_gradient_is_wrong_only_at_padding(name: str) -> None:
    ref, _, targets = truth_at(0)
    loss, dscores = LSTM_VARIANTS[name].loss(ref["scores"], targets, targets != NULL)  # type: ignore[misc]
    assert abs(loss - ref["loss"]) <= TOL * abs(ref["loss"])  # the value is right
    wrong = np.abs(dscores - ref["dscores"]).max(axis=2) > 1e-12
    assert wrong.any() and np.array_equal(wrong, targets == NULL)


@pytest.mark.parametrize("name", list(LSTM_VARIANTS))
def test_variant_end_to_end_leaves_later_layers_right(name: str) -> None:
    """Through the model's own loss: the buggy layer's gradients are wrong (the last layer's
    for a bug in the loss) and, for a backward bug, the layers after it get the true ones."""
    variant = LSTM_VARIANTS[name]
    ref, tokens, targets = truth_at(0)
    model = build(variant)
    scores = model.forward(tokens)
    loss = variant.loss or temporal_softmax_loss
    grads = model.backward(loss(scores, targets, targets != NULL)[1])
    order = ["embed", "lstm", "vocab"]
    first = order.index(variant.layer if variant.layer in order else "vocab")
    for layer in order[first:]:
        errs = [rel_err(grads[k], ref[v]) for k, v in MODEL_GRADS.items() if v.startswith(layer + ".")]
        if layer == order[first]:
            assert max(errs) > 1e-6, (layer, errs)
        elif variant.side == "backward":
            assert max(errs) < TOL, (layer, errs)


@pytest.mark.parametrize("name", [n for n, v in LSTM_VARIANTS.items() if v.side == "forward"])
def test_forward_variant_backward_is_its_forwards_gradient(name: str) -> None:
    """A forward bug's backward differentiates the buggy forward exactly: central differences
    of <layer(x), g> along a random direction of every parameter agree with its gradients."""
    variant = LSTM_VARIANTS[name]
    ref, tokens, _ = truth_at(0)
    layer = build(variant).layers()[variant.layer]
    x = {"embed": tokens, "lstm": ref["emb"], "vocab": ref["h"]}[variant.layer]
    g = np.random.default_rng(3).standard_normal(layer.forward(x).shape)
    layer.backward(g)
    rng, eps = np.random.default_rng(4), 1e-6
    for param, grad in PARAMS[variant.layer].items():
        value, analytic = getattr(layer, param), getattr(layer, grad).copy()
        u = rng.standard_normal(value.shape)
        value += eps * u
        plus = np.sum(layer.forward(x) * g)
        value -= 2 * eps * u
        minus = np.sum(layer.forward(x) * g)
        value += eps * u
        numeric = (plus - minus) / (2 * eps)
        assert abs(numeric - np.sum(analytic * u)) < 1e-6 * max(1.0, abs(numeric)), param
