"""Recurrent layers written the way from-scratch code is (issue 17): CS231n's function pairs
(``rnn_step_forward`` ... ``lstm_backward``: loops over t, ``np.tanh``, caches as tuples, Wx
``(D, G*H)``, one fused b, LSTM gates i, f, o, g, c0 = 0), numpy-ml-style objects over the
whole sequence (``X (n_ex, n_in, n_t)``, ``self.parameters`` / ``self.gradients``) and a GRU
object in PyTorch's conventions; and mutants, each one realistic BPTT mistake.

``CORRECT`` lists (name, factory, spec, wrap kwargs, input shape); ``MUTANTS`` adds the
expected verdict and a diagnosis fragment (or None). Factories take ``seed`` and ``dtype``.
"""

from __future__ import annotations

import numpy as np

from harness import Layout, wrap_functions
from harness import spec as S

N, T, D, H = 3, 5, 4, 6
CS231N = Layout(linear="in_out", gates="ifog")  # Wx (D, 4H), gate blocks i, f, o, g


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ------------------------------------------------------------------ CS231n: vanilla RNN


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)
    cache = (x, prev_h, Wx, Wh, next_h)
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h ** 2)
    dx = da.dot(Wx.T)
    dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da)
    dWh = prev_h.T.dot(da)
    db = np.sum(da, axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b, step=rnn_step_forward):
    N, T, D = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=x.dtype)
    cache = []
    prev_h = h0
    for t in range(T):
        prev_h, cache_t = step(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        cache.append(cache_t)
    return h, cache


def rnn_backward(dh, cache, step=rnn_step_backward, carry=True):
    N, T, H = dh.shape
    x0, _, Wx, Wh, _ = cache[0]
    dx = np.zeros((N, T, x0.shape[1]), dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H, dtype=dh.dtype)
    for t in reversed(range(T)):
        dh_t = dh[:, t, :] + dprev_h if carry else dh[:, t, :]
        dx[:, t, :], dprev_h, dWx_t, dWh_t, db_t = step(dh_t, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


# ------------------------------------------------------------------ CS231n: LSTM


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    o = sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)
    di, df, do, dg = dc * g, dc * prev_c, dnext_h * tanh_c, dc * i
    dprev_c = dc * f
    da = np.hstack((di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)))
    dx = da.dot(Wx.T)
    dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da)
    dWh = prev_h.T.dot(da)
    db = np.sum(da, axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b, step=lstm_step_forward):
    N, T, D = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=x.dtype)
    prev_h, prev_c = h0, np.zeros_like(h0)
    cache = []
    for t in range(T):
        prev_h, prev_c, cache_t = step(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        cache.append(cache_t)
    return h, cache


def lstm_backward(dh, cache, step=lstm_step_backward):
    N, T, H = dh.shape
    x0, _, _, Wx, Wh = cache[0][:5]
    dx = np.zeros((N, T, x0.shape[1]), dtype=dh.dtype)
    dprev_h, dprev_c = np.zeros((N, H), dtype=dh.dtype), np.zeros((N, H), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H, dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dprev_c, dWx_t, dWh_t, db_t = step(dh[:, t, :] + dprev_h, dprev_c, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def relu_step_forward(x, prev_h, Wx, Wh, b):
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    return np.maximum(a, 0), (x, prev_h, Wx, Wh, a)


def relu_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, a = cache
    da = dnext_h * (a > 0)
    return da.dot(Wx.T), da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def _cs231n_params(seed, dtype, gates, n=N):
    """h0 (N, H), Wx (D, G*H), Wh (H, G*H), b (G*H,), as CS231n initialises them (scaled normals)."""
    rng = np.random.default_rng(seed)
    h0 = rng.normal(size=(n, H)) * 0.5
    Wx = rng.normal(size=(D, gates * H)) / np.sqrt(D)
    Wh = rng.normal(size=(H, gates * H)) / np.sqrt(H)
    b = rng.normal(size=gates * H) * 0.2
    return [a.astype(dtype) for a in (h0, Wx, Wh, b)]


RNN_SPEC = S.RNN("rnn", D, H, bias="fused")
LSTM_SPEC = S.LSTM("lstm", D, H, bias="fused")
RNN_STEP = S.RNNCell("rnn_step", D, H, bias="fused")
LSTM_STEP = S.LSTMCell("lstm_step", D, H, bias="fused")


def rnn_pair(seed=0, dtype=np.float64, forward=rnn_forward, backward=rnn_backward):
    return wrap_functions(forward, backward, RNN_SPEC, _cs231n_params(seed, dtype, 1), layout=Layout(linear="in_out"))


RELU_SPEC = S.RNN("rnn", D, H, nonlinearity="relu", bias="fused")


def relu_rnn_pair(seed=0, dtype=np.float64):
    """A relu RNN: the finite differences must not be fooled by its kinks (the pre-activations at 0)."""
    return wrap_functions(lambda *a: rnn_forward(*a, step=relu_step_forward),
                          lambda dh, c: rnn_backward(dh, c, step=relu_step_backward), RELU_SPEC,
                          _cs231n_params(seed, dtype, 1), layout=Layout(linear="in_out"))


def lstm_pair(seed=0, dtype=np.float64, forward=lstm_forward, backward=lstm_backward):
    return wrap_functions(forward, backward, LSTM_SPEC, _cs231n_params(seed, dtype, 4), layout=CS231N)


def rnn_step_pair(seed=0, dtype=np.float64):
    return wrap_functions(rnn_step_forward, rnn_step_backward, RNN_STEP, _cs231n_params(seed, dtype, 1),
                          layout=Layout(linear="in_out"))


def lstm_step_pair(seed=0, dtype=np.float64):
    h, Wx, Wh, b = _cs231n_params(seed, dtype, 4)
    c = (np.random.default_rng(seed + 100).normal(size=h.shape) * 0.5).astype(dtype)
    return wrap_functions(lstm_step_forward, lstm_step_backward, LSTM_STEP, [h, c, Wx, Wh, b], layout=CS231N)


# ------------------------------------------------------------------ numpy-ml style objects


class NumpyMLRNN:
    """numpy-ml's layout and names: X ``(n_ex, n_in, n_t)``, ``Z = A_prev @ Waa + ba + X_t @ Wax + bx``,
    A0 = 0, biases ``(1, n_out)``, gradients in ``self.gradients``."""

    def __init__(self, n_in=D, n_out=H, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.parameters = {
            "Waa": (rng.normal(size=(n_out, n_out)) / np.sqrt(n_out)).astype(dtype),
            "Wax": (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(dtype),
            "ba": (rng.normal(size=(1, n_out)) * 0.2).astype(dtype),
            "bx": (rng.normal(size=(1, n_out)) * 0.2).astype(dtype),
        }
        self.gradients = {k: np.zeros_like(v) for k, v in self.parameters.items()}

    def forward(self, X):
        n_ex, n_in, n_t = X.shape
        p = self.parameters
        self.X, self.A = X, [np.zeros((n_ex, p["Waa"].shape[0]), dtype=X.dtype)]
        Y = np.zeros((n_ex, p["Waa"].shape[0], n_t), dtype=X.dtype)
        for t in range(n_t):
            Z = self.A[-1] @ p["Waa"] + p["ba"] + X[:, :, t] @ p["Wax"] + p["bx"]
            self.A.append(np.tanh(Z))
            Y[:, :, t] = self.A[-1]
        return Y

    def _dZ(self, dA, t):
        return dA * (1 - self.A[t + 1] ** 2)

    def backward(self, dLdA):
        p, X = self.parameters, self.X
        self.gradients = {k: np.zeros_like(v) for k, v in p.items()}
        dX = np.zeros_like(X)
        dA_next = np.zeros_like(self.A[0])
        for t in reversed(range(X.shape[2])):
            dZ = self._dZ(dLdA[:, :, t] + dA_next, t)
            self.gradients["Wax"] += X[:, :, t].T @ dZ
            self.gradients["Waa"] += self._h_for_dWaa(t).T @ dZ
            self.gradients["bx"] += dZ.sum(axis=0, keepdims=True)
            self.gradients["ba"] += dZ.sum(axis=0, keepdims=True)
            dX[:, :, t] = dZ @ p["Wax"].T
            dA_next = dZ @ p["Waa"].T
        return dX

    def _h_for_dWaa(self, t):
        return self.A[t]  # A[t] is h_{t-1}: A[0] is the zero initial state


class GRU:
    """A GRU over a batch-first sequence in PyTorch's conventions (weights (3H, in), gates r, z, n,
    separate biases, h_t = (1 - z) * n + z * h_{t-1}), with a trainable h0."""

    def __init__(self, n_in=D, n_hid=H, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.W_ih = (rng.normal(size=(3 * n_hid, n_in)) / np.sqrt(n_in)).astype(dtype)
        self.W_hh = (rng.normal(size=(3 * n_hid, n_hid)) / np.sqrt(n_hid)).astype(dtype)
        self.b_ih = (rng.normal(size=3 * n_hid) * 0.2).astype(dtype)
        self.b_hh = (rng.normal(size=3 * n_hid) * 0.2).astype(dtype)
        self.h0 = (rng.normal(size=(N, n_hid)) * 0.5).astype(dtype)

    def _mix(self, z, n, h):
        return (1 - z) * n + z * h

    def forward(self, x):
        H = self.h0.shape[1]
        h, self.cache, out = self.h0, [], np.zeros((x.shape[0], x.shape[1], H), dtype=x.dtype)
        for t in range(x.shape[1]):
            gi, gh = x[:, t] @ self.W_ih.T + self.b_ih, h @ self.W_hh.T + self.b_hh
            r = sigmoid(gi[:, :H] + gh[:, :H])
            z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            self.cache.append((x[:, t], h, r, z, n, gh[:, 2 * H:]))
            h = self._mix(z, n, h)
            out[:, t] = h
        return out

    def _dmix(self, dh, z, n, h):
        """(dn, dz, dh_prev) of h_t = (1 - z) * n + z * h."""
        return dh * (1 - z), dh * (h - n), dh * z

    def backward(self, dout):
        dx = np.zeros((dout.shape[0], dout.shape[1], self.W_ih.shape[1]), dtype=dout.dtype)
        grads = {k: np.zeros_like(getattr(self, k)) for k in ("W_ih", "W_hh", "b_ih", "b_hh")}
        dh_next = np.zeros_like(self.h0)
        for t in reversed(range(dout.shape[1])):
            x_t, h, r, z, n, hn = self.cache[t]
            dn, dz, dh_prev = self._dmix(dout[:, t] + dh_next, z, n, h)
            dan = dn * (1 - n ** 2)
            dar, daz = dan * hn * r * (1 - r), dz * z * (1 - z)
            dgi = np.hstack([dar, daz, dan])
            dgh = np.hstack([dar, daz, dan * r])
            grads["W_ih"] += dgi.T @ x_t
            grads["W_hh"] += dgh.T @ h
            grads["b_ih"] += dgi.sum(axis=0)
            grads["b_hh"] += dgh.sum(axis=0)
            dx[:, t] = dgi @ self.W_ih
            dh_next = dh_prev + dgh @ self.W_hh
        self.dW_ih, self.dW_hh, self.db_ih, self.db_hh = grads["W_ih"], grads["W_hh"], grads["b_ih"], grads["b_hh"]
        self.dh0 = dh_next
        return dx


class LSTM:
    """An LSTM over a batch-first sequence in PyTorch's conventions (weights (4H, in), gates i, f,
    g, o, separate biases) with trainable initial states h0 and c0; gradients as dW_ih ... dc0."""

    def __init__(self, n_in=D, n_hid=H, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.W_ih = (rng.normal(size=(4 * n_hid, n_in)) / np.sqrt(n_in)).astype(dtype)
        self.W_hh = (rng.normal(size=(4 * n_hid, n_hid)) / np.sqrt(n_hid)).astype(dtype)
        self.b_ih = (rng.normal(size=4 * n_hid) * 0.2).astype(dtype)
        self.b_hh = (rng.normal(size=4 * n_hid) * 0.2).astype(dtype)
        self.h0 = (rng.normal(size=(N, n_hid)) * 0.5).astype(dtype)
        self.c0 = (rng.normal(size=(N, n_hid)) * 0.5).astype(dtype)

    def forward(self, x):
        H = self.h0.shape[1]
        h, c, self.cache = self.h0, self.c0, []
        out = np.zeros((x.shape[0], x.shape[1], H), dtype=x.dtype)
        for t in range(x.shape[1]):
            a = x[:, t] @ self.W_ih.T + self.b_ih + h @ self.W_hh.T + self.b_hh
            i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
            c_next = f * c + i * g
            self.cache.append((x[:, t], h, c, i, f, g, o, c_next))
            h, c = o * np.tanh(c_next), c_next
            out[:, t] = h
        return out

    def backward(self, dout):
        dx = np.zeros((dout.shape[0], dout.shape[1], self.W_ih.shape[1]), dtype=dout.dtype)
        self.dW_ih, self.dW_hh = np.zeros_like(self.W_ih), np.zeros_like(self.W_hh)
        self.db_ih = np.zeros_like(self.b_ih)
        dh_next, dc_next = np.zeros_like(self.h0), np.zeros_like(self.c0)
        for t in reversed(range(dout.shape[1])):
            x_t, h, c, i, f, g, o, c_next = self.cache[t]
            dh = dout[:, t] + dh_next
            tc = np.tanh(c_next)
            dc = dc_next + dh * o * (1 - tc ** 2)
            da = np.concatenate([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g ** 2),
                                 dh * tc * o * (1 - o)], axis=1)
            self.dW_ih += da.T @ x_t
            self.dW_hh += da.T @ h
            self.db_ih += da.sum(axis=0)
            dx[:, t] = da @ self.W_ih
            dh_next, dc_next = da @ self.W_hh, self._dc_prev(dc, f)
        self.db_hh = self.db_ih.copy()
        self.dh0, self.dc0 = dh_next, dc_next
        return dx

    def _dc_prev(self, dc, f):
        return dc * f


def gru_forward(x, h0, Wx, Wh, bx, bh):
    """A GRU as a function pair: Wx (D, 3H), Wh (H, 3H), gates z, r, n (the update gate first,
    as many tutorials stack them), a bias on each side (bh's n block inside r * (...))."""
    N, T, D = x.shape
    H = h0.shape[1]
    h, prev_h, cache = np.zeros((N, T, H), dtype=x.dtype), h0, []
    for t in range(T):
        gx, gh = x[:, t].dot(Wx) + bx, prev_h.dot(Wh) + bh
        z = sigmoid(gx[:, :H] + gh[:, :H])
        r = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        cache.append((x[:, t], prev_h, z, r, n, gh[:, 2 * H:]))
        prev_h = (1 - z) * n + z * prev_h
        h[:, t] = prev_h
    return h, (cache, Wx, Wh)


def gru_backward(dh, cache):
    steps, Wx, Wh = cache
    N, T, H = dh.shape
    dx = np.zeros((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh, dbx, dbh = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(3 * H, dtype=dh.dtype), np.zeros(3 * H, dtype=dh.dtype)
    dnext = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        x_t, prev_h, z, r, n, ghn = steps[t]
        dh_t = dh[:, t] + dnext
        dn, dz = dh_t * (1 - z), dh_t * (prev_h - n)
        dan = dn * (1 - n ** 2)
        daz, dar = dz * z * (1 - z), dan * ghn * r * (1 - r)
        dgx = np.hstack([daz, dar, dan])
        dgh = np.hstack([daz, dar, dan * r])
        dWx += x_t.T.dot(dgx)
        dWh += prev_h.T.dot(dgh)
        dbx += dgx.sum(axis=0)
        dbh += dgh.sum(axis=0)
        dx[:, t] = dgx.dot(Wx.T)
        dnext = dh_t * z + dgh.dot(Wh.T)
    return dx, dnext, dWx, dWh, dbx, dbh


GRU_PAIR_SPEC = S.GRU("gru", D, H)


def gru_pair(seed=0, dtype=np.float64, forward=gru_forward, backward=gru_backward):
    h0, Wx, Wh, bx = _cs231n_params(seed, dtype, 3)
    bh = (np.random.default_rng(seed + 200).normal(size=3 * H) * 0.2).astype(dtype)
    return wrap_functions(forward, backward, GRU_PAIR_SPEC, [h0, Wx, Wh, bx, bh],
                          layout=Layout(linear="in_out", gates="zrn"))


NUMPY_ML = {"layout": Layout(linear="in_out", sequence="NDT"),
            "params": {"weight_ih": "parameters['Wax']", "weight_hh": "parameters['Waa']",
                       "bias_ih": "parameters['bx']", "bias_hh": "parameters['ba']"},
            "grads": {"weight_ih": "gradients['Wax']", "weight_hh": "gradients['Waa']",
                      "bias_ih": "gradients['bx']", "bias_hh": "gradients['ba']"}}
NUMPY_ML_SPEC = S.RNN("rnn", D, H, initial_state=False)
GRU_SPEC = S.GRU("gru", D, H)
LSTM_OBJ_SPEC = S.LSTM("lstm", D, H, cell_state=True)

CORRECT = [
    ("cs231n rnn_forward/backward", rnn_pair, RNN_SPEC, {}, (N, T, D)),
    ("cs231n lstm_forward/backward", lstm_pair, LSTM_SPEC, {}, (N, T, D)),
    ("cs231n rnn_step", rnn_step_pair, RNN_STEP, {}, (N, D)),
    ("relu rnn pair", relu_rnn_pair, RELU_SPEC, {}, (N, T, D)),
    ("cs231n lstm_step", lstm_step_pair, LSTM_STEP, {}, (N, D)),
    ("numpy-ml rnn object", NumpyMLRNN, NUMPY_ML_SPEC, NUMPY_ML, (N, D, T)),
    ("gru object", GRU, GRU_SPEC, {}, (N, T, D)),
    ("lstm object", LSTM, LSTM_OBJ_SPEC, {}, (N, T, D)),
    ("gru function pair (gates z, r, n)", gru_pair, GRU_PAIR_SPEC, {}, (N, T, D)),
]


# ------------------------------------------------------------------ mutants


def rnn_backward_no_carry(dh, cache):
    """BPTT that does not add the hidden-state gradient from step t+1 into step t."""
    return rnn_backward(dh, cache, carry=False)


def rnn_backward_last_step_only(dh, cache):
    """Backprop through the last step only: the loop body runs for t = T-1 and stops."""
    N, T, H = dh.shape
    x0, _, Wx, Wh, _ = cache[0]
    dx = np.zeros((N, T, x0.shape[1]), dtype=dh.dtype)
    dx[:, T - 1, :], dprev_h, dWx, dWh, db = rnn_step_backward(dh[:, T - 1, :], cache[T - 1])
    return dx, np.zeros_like(dprev_h), dWx, dWh, db


def rnn_step_backward_dWh_next_h(dnext_h, cache):
    """dWh from the step's output h_t where its input h_{t-1} is meant."""
    x, prev_h, Wx, Wh, next_h = cache
    dx, dprev_h, dWx, _, db = rnn_step_backward(dnext_h, cache)
    return dx, dprev_h, dWx, next_h.T.dot(dnext_h * (1 - next_h ** 2)), db


def rnn_step_forward_keeps_a(x, prev_h, Wx, Wh, b):
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    return np.tanh(a), (x, prev_h, Wx, Wh, a)


def rnn_step_backward_tanh_of_a(dnext_h, cache):
    """tanh' written as 1 - a**2 with the pre-activation a, where 1 - tanh(a)**2 is meant."""
    x, prev_h, Wx, Wh, a = cache
    da = dnext_h * (1 - a ** 2)
    return da.dot(Wx.T), da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), np.sum(da, axis=0)


def rnn_backward_dh0_zero(dh, cache):
    dx, _, dWx, dWh, db = rnn_backward(dh, cache)
    return dx, np.zeros((dh.shape[0], dh.shape[2]), dtype=dh.dtype), dWx, dWh, db


def lstm_step_backward_gates_ifgo(dnext_h, dnext_c, cache):
    """The forward slices i, f, o, g; this backward stacks the gate gradients as PyTorch does (i, f, g, o)."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)
    di, df, do, dg = dc * g, dc * prev_c, dnext_h * tanh_c, dc * i
    da = np.hstack((di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)))
    return da.dot(Wx.T), da.dot(Wh.T), dc * f, x.T.dot(da), prev_h.T.dot(da), np.sum(da, axis=0)


def lstm_step_backward_forget_next_c(dnext_h, dnext_c, cache):
    """The forget gate's gradient taken with c_t where c_{t-1} is meant."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)
    di, df, do, dg = dc * g, dc * next_c, dnext_h * tanh_c, dc * i
    da = np.hstack((di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)))
    return da.dot(Wx.T), da.dot(Wh.T), dc * f, x.T.dot(da), prev_h.T.dot(da), np.sum(da, axis=0)


def lstm_step_forward_inplace(x, prev_h, prev_c, Wx, Wh, b):
    """``next_c = prev_c; next_c *= f``: the in-place update writes into the cell state every
    earlier step's cache holds (one array for all steps)."""
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
    next_c = prev_c
    next_c *= f
    next_c += i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


class GRUCho(GRU):
    """h_t = z * n + (1 - z) * h_{t-1} (Cho et al.'s convention, where PyTorch has z and 1 - z
    the other way round), forward and backward consistent."""

    def _mix(self, z, n, h):
        return z * n + (1 - z) * h

    def _dmix(self, dh, z, n, h):
        return dh * z, dh * (n - h), dh * (1 - z)


class LSTMCellGradNotCarried(LSTM):
    def _dc_prev(self, dc, f):
        return np.zeros_like(dc)  # the cell state's gradient dropped between steps: dc_next never flows back


class NumpyMLRNNdWaaFromOutput(NumpyMLRNN):
    def _h_for_dWaa(self, t):
        return self.A[t + 1]  # h_t where h_{t-1} is meant


def _fn(forward=None, backward=None, maker=rnn_pair):
    """A factory for a pair with one function replaced."""
    kw = {k: v for k, v in (("forward", forward), ("backward", backward)) if v is not None}
    return lambda seed=0, dtype=np.float64: maker(seed, dtype, **kw)


def lstm_step_pair_gates_ifgo(seed=0, dtype=np.float64):
    pair = lstm_step_pair(seed, dtype)
    return wrap_functions(lstm_step_forward, lstm_step_backward_gates_ifgo, LSTM_STEP, list(pair._params.values()),
                          layout=CS231N)


MUTANTS = [
    ("rnn BPTT does not accumulate dh across steps", _fn(backward=rnn_backward_no_carry), RNN_SPEC, {}, (N, T, D),
     "backward", "the recurrent path cut"),
    ("rnn gradient through the last step only", _fn(backward=rnn_backward_last_step_only), RNN_SPEC, {}, (N, T, D),
     "backward", "only the last timestep backpropagated"),
    ("rnn dWh from h_t instead of h_t-1",
     _fn(backward=lambda dh, c: rnn_backward(dh, c, step=rnn_step_backward_dWh_next_h)), RNN_SPEC, {}, (N, T, D),
     "backward", "weight_hh: equals sum over t of dgates_t^T h_t"),
    ("rnn tanh derivative of the pre-activation",
     _fn(forward=lambda *a: rnn_forward(*a, step=rnn_step_forward_keeps_a),
         backward=lambda dh, c: rnn_backward(dh, c, step=rnn_step_backward_tanh_of_a)), RNN_SPEC, {}, (N, T, D),
     "backward", "tanh's derivative written with its input a"),
    ("rnn dh0 returned as zeros", _fn(backward=rnn_backward_dh0_zero), RNN_SPEC, {}, (N, T, D), "backward",
     "h0: zero"),
    ("lstm gate order swapped in the backward only",
     _fn(backward=lambda dh, c: lstm_backward(dh, c, step=lstm_step_backward_gates_ifgo), maker=lstm_pair),
     LSTM_SPEC, {}, (N, T, D), "backward", "stacked as i,f,g,o where the forward slices the gates as i,f,o,g"),
    ("lstm_step gate order swapped in the backward only", lstm_step_pair_gates_ifgo, LSTM_STEP, {}, (N, D),
     "backward", "stacked as i,f,g,o where the forward slices the gates as i,f,o,g"),
    ("lstm forget-gate gradient with c_t instead of c_t-1",
     _fn(backward=lambda dh, c: lstm_backward(dh, c, step=lstm_step_backward_forget_next_c), maker=lstm_pair),
     LSTM_SPEC, {}, (N, T, D), "backward", None),
    ("lstm in-place *= corrupts the cached cell state",
     _fn(forward=lambda *a: lstm_forward(*a, step=lstm_step_forward_inplace), maker=lstm_pair),
     LSTM_SPEC, {}, (N, T, D), "backward", None),
    ("lstm cell-state gradient not carried across steps", LSTMCellGradNotCarried, LSTM_OBJ_SPEC, {}, (N, T, D),
     "backward", "the cell-state gradient dprev_c not carried back across steps"),
    ("gru (1-z)/z swapped in the forward (Cho et al.)", GRUCho, GRU_SPEC, {}, (N, T, D), "forward",
     "z and 1 - z exchanged"),
    ("numpy-ml rnn dWaa from A_t instead of A_t-1", NumpyMLRNNdWaaFromOutput, NUMPY_ML_SPEC, NUMPY_ML, (N, D, T),
     "backward", "taken with the step's output h_t"),
]

# the first wrong timestep (counting back from the end, t = 0..T-1) each sequence mutant's input
# gradient must be named with; None: the input gradient is right (or the forward is wrong)
TIMESTEPS = {
    "rnn BPTT does not accumulate dh across steps": T - 2,
    "rnn gradient through the last step only": T - 2,
    "rnn tanh derivative of the pre-activation": T - 1,
    "lstm gate order swapped in the backward only": T - 1,
    "lstm forget-gate gradient with c_t instead of c_t-1": T - 1,
    "lstm in-place *= corrupts the cached cell state": T - 1,
    "lstm cell-state gradient not carried across steps": T - 2,
}
