"""Recurrent code checked without shims (issue 17): CS231n's step and sequence function pairs
called positionally (the state between x and the weights), an LSTM step's (next_h, next_c)
pair stacked and its upstream gradient split, time-first and numpy-ml's (n_ex, n_in, n_t)
sequences, the gate order of stacked weights, and the errors for declarations that cannot fit."""

from __future__ import annotations

import numpy as np
import pytest

from harness import Layout, check_layer, detect_layout, wrap_functions, wrap_layer
from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layouts import LayoutError, param_from_user, param_to_user
from harness.adapters.refs import AdapterError
from zoo import recurrent as R

N, T, D, H = R.N, R.T, R.D, R.H


def passes(wrapped, **kw) -> None:
    report = check_layer(wrapped, **kw)
    assert report.ok, str(report)


def test_cs231n_pairs_take_their_arrays_in_their_own_order() -> None:
    """rnn_step_forward(x, prev_h, Wx, Wh, b) / rnn_forward(x, h0, Wx, Wh, b) /
    lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b) / lstm_forward(x, h0, Wx, Wh, b): the
    arrays listed as the functions take them, no order= and no wrapper functions."""
    arrays = R._cs231n_params(0, np.float64, 4)
    before = [fingerprint(a) for a in arrays]
    lstm = wrap_functions(R.lstm_forward, R.lstm_backward, R.LSTM_SPEC, arrays, layout=R.CS231N)
    assert lstm._param_names() == ["h0", "weight_ih", "weight_hh", "bias"]
    passes(lstm)  # example_input_shape: (3, 5, D)
    assert [fingerprint(a) for a in arrays] == before
    passes(R.rnn_step_pair())
    passes(R.rnn_pair(), input_shape=(N, 7, D))
    step = R.lstm_step_pair()
    assert step._param_names() == ["h", "c", "weight_ih", "weight_hh", "bias"]
    passes(step)


def test_an_lstm_step_returning_a_pair_in_other_forms() -> None:
    """forward -> ((next_h, next_c), cache) with backward((dnext_h, dnext_c), cache), and an
    object whose forward returns (next_h, next_c) and whose backward takes both gradients."""

    def forward(x, prev_h, prev_c, Wx, Wh, b):
        next_h, next_c, cache = R.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
        return (next_h, next_c), cache

    def backward(dnext, cache):
        dnext_h, dnext_c = dnext
        return R.lstm_step_backward(dnext_h, dnext_c, cache)

    h, Wx, Wh, b = R._cs231n_params(1, np.float64, 4)
    c = np.full_like(h, 0.3)
    passes(wrap_functions(forward, backward, R.LSTM_STEP, [h, c, Wx, Wh, b], layout=R.CS231N))

    class Cell:
        def __init__(self):
            self.Wx, self.Wh, self.b, self.h, self.c = Wx, Wh, b, h.copy(), c.copy()

        def forward(self, x):
            next_h, next_c, self.cache = R.lstm_step_forward(x, self.h, self.c, self.Wx, self.Wh, self.b)
            return next_h, next_c

        def backward(self, dnext_h, dnext_c):
            dx, self.dh, self.dc, self.dWx, self.dWh, self.db = R.lstm_step_backward(dnext_h, dnext_c, self.cache)
            return dx

    passes(wrap_layer(Cell(), R.LSTM_STEP, layout=R.CS231N))


def test_time_first_code_with_time_first_input() -> None:
    def forward(x, h0, Wx, Wh, b):  # x (T, N, D)
        h, cache = R.rnn_forward(x.transpose(1, 0, 2), h0, Wx, Wh, b)
        return h.transpose(1, 0, 2), cache

    def backward(dh, cache):
        dx, *grads = R.rnn_backward(dh.transpose(1, 0, 2), cache)
        return (dx.transpose(1, 0, 2), *grads)

    arrays = R._cs231n_params(2, np.float64, 1)
    pair = wrap_functions(forward, backward, R.RNN_SPEC, arrays, layout=Layout(linear="in_out", sequence="TND"))
    passes(pair, input_shape=(T, N, D))  # in the declared layout: time first
    passes(pair, x=np.random.default_rng(0).normal(size=(T, N, D)))
    undeclared = wrap_functions(forward, backward, R.RNN_SPEC, arrays, layout=Layout(linear="in_out"))
    with pytest.raises(
        LayoutError,
        match=r"under Layout\(linear='in_out', sequence='TND'\) it runs and "
        r"reproduces the reference: declare that layout",
    ):
        check_layer(undeclared, input_shape=(N, T, D))


def test_numpy_ml_object_over_the_sequence() -> None:
    """X (n_ex, n_in, n_t), parameters in self.parameters, biases (1, n_out)."""
    layer = R.NumpyMLRNN(seed=3)
    before = {k: fingerprint(v) for k, v in layer.parameters.items()}
    passes(wrap_layer(layer, R.NUMPY_ML_SPEC, **R.NUMPY_ML), input_shape=(N, D, T))
    assert {k: fingerprint(v) for k, v in layer.parameters.items()} == before


def test_gru_object_found_under_its_own_names() -> None:
    """W_ih, W_hh, b_ih, b_hh, h0 and dW_ih ... dh0: found without params= / grads=."""
    wrapped = wrap_layer(R.GRU(seed=4), R.GRU_SPEC)
    assert wrapped._param_names() == ["h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    passes(wrapped, input_shape=(N, T, D))


def test_gate_order_and_orientation_round_trip_exactly() -> None:
    rng = np.random.default_rng(5)
    layout = Layout(linear="in_out", gates="ogif")
    for layer in (S.LSTM("l", D, H, bias="fused"), S.GRU("g", D, H)):
        g = layer.num_gates
        order = "rzn" if g == 3 else "ogif"
        lay = Layout(linear="in_out", gates="nzr") if g == 3 else layout
        user_w = rng.normal(size=(D, g * H))
        canon = param_from_user(layer, "weight_ih", user_w, lay, (g * H, D))
        assert np.array_equal(param_to_user(layer, "weight_ih", canon, lay, (D, g * H)), user_w)
        # the user's first block holds its first gate, which sits at that gate's canonical place
        k = layer.gates.index(order[0] if g == 4 else "n")
        assert np.array_equal(canon[k * H : (k + 1) * H], user_w[:, :H].T)
    bias = rng.normal(size=(1, 4 * H))  # numpy-ml's (1, n) bias
    lstm = S.LSTM("l", D, H, bias="fused")
    canon = param_from_user(lstm, "bias", bias, layout, (4 * H,))
    assert canon.shape == (4 * H,) and np.array_equal(param_to_user(lstm, "bias", canon, layout, (1, 4 * H)), bias)
    # an RNN has no gates: a declared LSTM order leaves it alone
    rnn_w = rng.normal(size=(H, D))
    assert np.array_equal(param_from_user(S.RNN("r", D, H), "weight_ih", rnn_w, Layout(gates="ifog"), (H, D)), rnn_w)


def test_a_wrong_gate_order_is_named_with_the_layout_to_declare() -> None:
    arrays = R._cs231n_params(0, np.float64, 4)
    declared = wrap_functions(R.lstm_forward, R.lstm_backward, R.LSTM_SPEC, arrays, layout=Layout(linear="in_out"))
    layer = check_layer(declared).layers[0]
    assert layer.verdict == "forward"
    assert any("Layout(linear='in_out', gates='ifog')" in d for d in layer.diagnosis), layer.diagnosis
    found = detect_layout(declared)
    assert found.matched and found.best == R.CS231N


@pytest.mark.parametrize(
    "make,message",
    [
        (
            lambda: Layout(sequence="BTD"),
            "layout: sequence must be 'NTD' (batch first), 'TND' (time first), 'NDT' (features before time) or 'NLC'",
        ),
        (lambda: Layout(gates="ifgx"), "layout: gates must be a permutation of 'ifgo'"),
        (lambda: Layout(gates="ifg"), "layout: gates must be a permutation of 'ifgo'"),
    ],
)
def test_bad_layout_fields(make, message) -> None:
    with pytest.raises(LayoutError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_declarations_that_cannot_fit_are_clear_errors() -> None:
    h0, Wx, Wh, b = R._cs231n_params(0, np.float64, 1)
    with pytest.raises(
        LayoutError,
        match=r"layer 'rnn': parameter 'weight_ih' has shape \(4, 6\) in the declared "
        r"Layout\(\); expected \(6, 4\) there; looks transposed .*pass "
        r"Layout\(linear='in_out'\)",
    ):
        check_layer(wrap_functions(R.rnn_forward, R.rnn_backward, R.RNN_SPEC, [h0, Wx, Wh, b]))
    with pytest.raises(
        AdapterError,
        match=r"layer 'rnn': its state 'h0' has shape \(3, 6\), a batch of 3, but the "
        r"input \(2, 5, 4\) has N=2; check the layer on an input of batch 3",
    ):
        check_layer(R.rnn_pair(), input_shape=(2, T, D))
    with pytest.raises(
        AdapterError,
        match=r"layer 'lstm_step': an LSTMCell is one step .*Layout\(sequence='TND'\) is "
        r"for whole sequences",
    ):
        wrap_functions(
            R.lstm_step_forward, R.lstm_step_backward, R.LSTM_STEP, [h0, h0, Wx, Wh, b], layout=Layout(sequence="TND")
        )


def test_an_lstm_step_pair_of_mismatched_shapes_is_the_codes_error() -> None:
    def forward(x, prev_h, prev_c, Wx, Wh, b):
        next_h, next_c, cache = R.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
        return next_h, next_c[:, :-1], cache

    report = check_layer(
        wrap_functions(forward, R.lstm_step_backward, R.LSTM_STEP, R.lstm_step_pair()._params.values(), layout=R.CS231N)
    )
    layer = report.layers[0]
    assert layer.verdict == "error" and "next_h of shape (3, 6) and next_c of shape (3, 5)" in layer.message


def test_the_kept_state_tells_the_batch() -> None:
    """h0 of batch 2: its parameters read before any forward, and the default input has N = 2."""
    pair = wrap_functions(
        R.rnn_forward,
        R.rnn_backward,
        R.RNN_SPEC,
        R._cs231n_params(0, np.float64, 1, n=2),
        layout=Layout(linear="in_out"),
    )
    assert pair.get_params()["h0"].shape == (2, H)
    report = check_layer(pair)
    assert report.ok and report.layers[0].tensors[0].name == "output"
    step = wrap_functions(
        R.rnn_step_forward,
        R.rnn_step_backward,
        R.RNN_STEP,
        R._cs231n_params(0, np.float64, 1, n=4),
        layout=Layout(linear="in_out"),
    )
    assert step.kept_mask_input() == (4, D) and check_layer(step).ok


class TemporalAffine:
    """CS231n's temporal affine as an object: x (N, T, H) @ W (H, M) + b."""

    def __init__(self, n_in, n_out, seed=0):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(n_in, n_out)), np.zeros(n_out)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = np.einsum("ntd,ntm->dm", self.x, dy), dy.sum(axis=(0, 1))
        return dy @ self.W.T


def test_a_recurrent_layer_inside_a_network() -> None:
    import harness as tg

    spec = tg.Sequential([R.RNN_SPEC, tg.Linear("fc", H, 3)])
    layout = Layout(linear="in_out")
    ok = tg.check_network(
        tg.wrap_network({"rnn": R.rnn_pair(), "fc": TemporalAffine(H, 3)}, spec, layout=layout), input_shape=(N, T, D)
    )
    assert ok.ok, str(ok)
    bad = tg.check_network(
        tg.wrap_network(
            {"rnn": R.rnn_pair(backward=R.rnn_backward_no_carry), "fc": TemporalAffine(H, 3)}, spec, layout=layout
        ),
        input_shape=(N, T, D),
    )
    assert bad.first_failure == "rnn" and bad.layer("rnn").verdict == "backward"
    assert any("from timestep 3 backwards" in d for d in bad.layer("rnn").diagnosis)


class _BlogRNN:
    """A blog-post / min-char-rnn style RNN object: Wxh (D, H), Whh (H, H) and ONE bias ``bh``,
    a list of hidden states, gradients in ``dWxh`` / ``dWhh`` / ``dbh``."""

    def __init__(self, d: int = 4, h: int = 5, seed: int = 0, bias_mean: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.Wxh, self.Whh = rng.normal(size=(d, h)) * 0.3, rng.normal(size=(h, h)) * 0.3
        self.bh, self.bias_mean = np.full(h, 0.1), bias_mean

    def forward(self, x):
        self.x, self.hs = x, [np.zeros((x.shape[0], self.Whh.shape[0]))]
        for t in range(x.shape[1]):
            self.hs.append(np.tanh(x[:, t] @ self.Wxh + self.hs[-1] @ self.Whh + self.bh))
        return np.stack(self.hs[1:], axis=1)

    def backward(self, dh):
        self.dWxh, self.dWhh, self.dbh = np.zeros_like(self.Wxh), np.zeros_like(self.Whh), np.zeros_like(self.bh)
        dx, dnext = np.zeros_like(self.x), np.zeros_like(self.hs[0])
        for t in reversed(range(dh.shape[1])):
            da = (dh[:, t] + dnext) * (1 - self.hs[t + 1] ** 2)
            self.dWxh += self.x[:, t].T @ da
            self.dWhh += self.hs[t].T @ da
            self.dbh += da.mean(0) if self.bias_mean else da.sum(0)
            dx[:, t], dnext = da @ self.Wxh.T, da @ self.Whh.T
        return dx


def test_a_blog_style_rnn_with_one_bias_named_bh_is_found_without_declarations() -> None:
    spec, layout = S.RNN("rnn", 4, 5, bias="fused", initial_state=False), Layout(linear="in_out")
    assert check_layer(_BlogRNN(), spec, layout=layout).layers[0].verdict == "pass"
    bad = check_layer(_BlogRNN(bias_mean=True), spec, layout=layout).layers[0]
    assert bad.verdict == "backward" and [t.name for t in bad.tensors if not t.ok] == ["bias"], str(bad)


# --------------------------------------------------------------------------- numpy-ml's LSTM


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


class _NumpyMLLSTM:
    """numpy-ml's LSTM habits: X (n_ex, n_in, n_t); gates f, u, c, o with W* (n_in + n_out, n_out)
    acting on Z = hstack([A_prev, X_t]); b* (1, n_out); gradients accumulated with +=."""

    def __init__(self, n_in, n_out, seed=0, bug=None):
        rng = np.random.default_rng(seed)
        H = n_out
        self.n_out = H
        self.bug = bug
        self.parameters = {k: rng.normal(size=(n_in + H, H)) * 0.4 for k in ("Wf", "Wu", "Wc", "Wo")}
        self.parameters.update({k: rng.normal(size=(1, H)) * 0.1 for k in ("bf", "bu", "bc", "bo")})
        self.flush_gradients()

    def flush_gradients(self):
        self.gradients = {k: np.zeros_like(v) for k, v in self.parameters.items()}

    def forward(self, X):
        P = self.parameters
        n_ex, _, n_t = X.shape
        H = self.n_out
        A, C = [np.zeros((n_ex, H))], [np.zeros((n_ex, H))]
        self.cache = []
        for t in range(n_t):
            Z = np.hstack([A[-1], X[:, :, t]])
            Gf = sigmoid(Z @ P["Wf"] + P["bf"])
            Gu = sigmoid(Z @ P["Wu"] + P["bu"])
            Go = sigmoid(Z @ P["Wo"] + P["bo"])
            Cc = np.tanh(Z @ P["Wc"] + P["bc"])
            Ct = Gf * C[-1] + Gu * Cc
            At = Go * np.tanh(Ct)
            self.cache.append((Z, Gf, Gu, Go, Cc, C[-1], Ct))
            A.append(At)
            C.append(Ct)
        return np.dstack(A[1:])

    def backward(self, dLdA):
        P, G = self.parameters, self.gradients
        H = self.n_out
        dA_acc = np.zeros((dLdA.shape[0], H))
        dC_acc = np.zeros_like(dA_acc)
        dX = []
        for t in reversed(range(dLdA.shape[2])):
            Z, Gf, Gu, Go, Cc, C_prev, Ct = self.cache[t]
            dA = dLdA[:, :, t] + dA_acc
            dC = dC_acc + dA * Go * (1 - np.tanh(Ct) ** 2)
            dGo = dA * np.tanh(Ct) * Go * (1 - Go)
            dCc = dC * Gu * (1 - Cc**2)
            dGu = dC * Cc * Gu * (1 - Gu)
            dGf = dC * C_prev * Gf * (1 - Gf)
            if self.bug == "forget":
                dGf = dC * Ct * Gf * (1 - Gf)
            dZ = dGf @ P["Wf"].T + dGu @ P["Wu"].T + dCc @ P["Wc"].T + dGo @ P["Wo"].T
            for k, d in (("Wc", dCc), ("Wu", dGu), ("Wf", dGf), ("Wo", dGo)):
                G[k] += Z.T @ d
            for k, d in (("bo", dGo), ("bu", dGu), ("bf", dGf), ("bc", dCc)):
                G[k] += d.sum(axis=0, keepdims=True)
            dX.insert(0, dZ[:, H:])
            dA_acc = dZ[:, :H]
            dC_acc = Gf * dC
        return np.dstack(dX)


def _numpy_ml_params(h: int) -> dict[str, tuple[str, ...]]:
    """Its gates as PyTorch's stacked blocks: i, f, g, o are numpy-ml's u, f, c, o, each W*
    split into the rows acting on A_prev (the first h) and those acting on X_t (the rest)."""
    gates = ("Wu", "Wf", "Wc", "Wo")
    return {
        "weight_ih": tuple(f"parameters['{k}'][{h}:]" for k in gates),
        "weight_hh": tuple(f"parameters['{k}'][:{h}]" for k in gates),
        "bias": tuple(f"parameters['b{k[1]}']" for k in gates),
    }


def test_numpy_ml_lstm_with_gates_on_the_stacked_state_and_input_checks_through_sliced_parts() -> None:
    """numpy-ml keeps one (n_in + n_out, n_out) matrix per gate acting on hstack([A_prev, X_t]):
    declared as sliced parts, joined into weight_ih / weight_hh, gradients found at the same
    slices of gradients['W*']; the user's arrays come back bit for bit."""
    spec, layout = S.LSTM("lstm", 3, 4, bias="fused", initial_state=False), Layout(linear="in_out", sequence="NDT")
    for seed in (0, 1):
        lstm = _NumpyMLLSTM(3, 4, seed=seed)
        before = {k: v.copy() for k, v in lstm.parameters.items()}
        report = check_layer(lstm, spec, params=_numpy_ml_params(4), layout=layout, flush="flush_gradients", seed=seed)
        assert report.layers[0].verdict == "pass", str(report)
        assert all(np.array_equal(before[k], lstm.parameters[k]) for k in before)
    bad = check_layer(
        _NumpyMLLSTM(3, 4, bug="forget"), spec, params=_numpy_ml_params(4), layout=layout, flush="flush_gradients"
    ).layers[0]
    assert bad.verdict == "backward" and "input" in [t.name for t in bad.tensors if not t.ok], str(bad)


def test_a_place_with_a_slice_that_does_not_parse_is_refused() -> None:
    from harness.adapters.refs import Ref

    assert Ref("parameters['Wf'][:, 2:]").steps[-1] == ("key", (slice(None), slice(2, None)))
    with pytest.raises(AdapterError, match="cannot parse the slice"):
        Ref("parameters['Wf'][1:2:3:4]")


def test_sliced_parts_are_restored_bit_for_bit_when_the_backward_raises_midway() -> None:
    class Raising(_NumpyMLLSTM):
        def backward(self, dLdA):
            self.parameters["Wf"] *= 0.5  # in place, through the arrays the parts are slices of
            self.parameters["Wu"][:] = 7.0
            raise RuntimeError("midway")

    lstm = Raising(3, 4)
    before = {k: (v.copy(), id(v)) for k, v in lstm.parameters.items()}
    spec, layout = S.LSTM("lstm", 3, 4, bias="fused", initial_state=False), Layout(linear="in_out", sequence="NDT")
    report = check_layer(lstm, spec, params=_numpy_ml_params(4), layout=layout, flush="flush_gradients")
    assert report.layers[0].verdict == "error" and "midway" in report.layers[0].message
    assert all(np.array_equal(v, lstm.parameters[k]) and id(lstm.parameters[k]) == i for k, (v, i) in before.items())
