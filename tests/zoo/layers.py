"""Correct handwritten numpy layers (NCHW, written the way people write them) and mutants,
each one realistic mistake. ``MUTANTS`` lists (name, factory, spec, wrap kwargs, input
shape, expected verdict, expected diagnosis fragment or None)."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.adapters.layouts import Layout

# ------------------------------------------------------------------ correct layers


class Dense:
    def __init__(self, fin=6, fout=4, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.W = (rng.normal(size=(fin, fout)) / np.sqrt(fin)).astype(dtype)
        self.b = rng.normal(size=fout).astype(dtype)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class Conv:
    """Stride / pad conv, OIHW kernel, loops over kernel positions."""

    def __init__(self, cin=2, cout=3, k=3, stride=2, pad=1, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.W = (rng.normal(size=(cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(dtype)
        self.b = rng.normal(size=cout).astype(dtype)
        self.s, self.p = stride, pad

    def _out(self, h, w):
        k = self.W.shape[2]
        return (h + 2 * self.p - k) // self.s + 1, (w + 2 * self.p - k) // self.s + 1

    def forward(self, x):
        self.x = x
        self.xp = np.pad(x, ((0, 0), (0, 0), (self.p, self.p), (self.p, self.p)))
        oh, ow = self._out(*x.shape[2:])
        k, s = self.W.shape[2], self.s
        out = np.zeros((x.shape[0], self.W.shape[0], oh, ow), x.dtype)
        for u in range(k):
            for v in range(k):
                out += np.einsum("nchw,oc->nohw", self.xp[:, :, u:u + s * oh:s, v:v + s * ow:s], self.W[:, :, u, v])
        return out + self.b[None, :, None, None]

    def _dw_stride(self):
        return self.s

    def _dx_kernel(self):
        return self.W

    def _crop(self, dxp):
        p = self.p
        return dxp[:, :, p:dxp.shape[2] - p, p:dxp.shape[3] - p]

    def backward(self, dy):
        k, oh, ow = self.W.shape[2], dy.shape[2], dy.shape[3]
        s, sw = self.s, self._dw_stride()
        dxp, self.dW = np.zeros_like(self.xp), np.zeros_like(self.W)
        wk = self._dx_kernel()
        for u in range(k):
            for v in range(k):
                dxp[:, :, u:u + s * oh:s, v:v + s * ow:s] += np.einsum("nohw,oc->nchw", dy, wk[:, :, u, v])
                self.dW[:, :, u, v] = np.einsum("nohw,nchw->oc", dy, self.xp[:, :, u:u + sw * oh:sw, v:v + sw * ow:sw])
        self.db = dy.sum(axis=(0, 2, 3))
        return self._crop(dxp)


class ReLU:
    def forward(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dy):
        return dy * (self.x > 0)


class BatchNorm:
    """Training-mode per-channel batch norm (NCHW), the full backward."""

    def __init__(self, c=3, seed=0, eps=1e-5, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.gamma = (1 + 0.2 * rng.normal(size=c)).astype(dtype)
        self.beta = (0.2 * rng.normal(size=c)).astype(dtype)
        self.running_mean, self.running_var = np.zeros(c, dtype), np.ones(c, dtype)
        self.eps = eps

    def forward(self, x):
        self.mu = x.mean(axis=(0, 2, 3), keepdims=True)
        self.var = x.var(axis=(0, 2, 3), keepdims=True)
        self.xhat = (x - self.mu) / np.sqrt(self.var + self.eps)
        return self.gamma[None, :, None, None] * self.xhat + self.beta[None, :, None, None]

    def backward(self, dy):
        m = dy.shape[0] * dy.shape[2] * dy.shape[3]
        self.dgamma = (dy * self.xhat).sum(axis=(0, 2, 3))
        self.dbeta = dy.sum(axis=(0, 2, 3))
        dxhat = dy * self.gamma[None, :, None, None]
        inv = 1 / np.sqrt(self.var + self.eps)
        return inv / m * (m * dxhat - dxhat.sum(axis=(0, 2, 3), keepdims=True)
                          - self.xhat * (dxhat * self.xhat).sum(axis=(0, 2, 3), keepdims=True))


class FlattenHWC:
    """Flattens NCHW data in H, W, C order (a TensorFlow port's habit)."""

    def forward(self, x):
        self.shape = x.shape
        return x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1)

    def backward(self, dy):
        n, c, h, w = self.shape
        return dy.reshape(n, h, w, c).transpose(0, 3, 1, 2)


# ------------------------------------------------------------------ mutants


class DenseBiasNotSummed(Dense):
    def backward(self, dy):
        dx = super().backward(dy)
        self.db = dy[0]
        return dx


class DenseMeanGrads(Dense):
    def backward(self, dy):
        dx = super().backward(dy)
        self.dW = self.dW / len(dy)
        return dx


class DenseSignFlip(Dense):
    def backward(self, dy):
        return -super().backward(dy)


class DenseTinyError(Dense):
    """An error under 1% of the gradient norm: dW off by 0.5%."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.dW = self.dW * 1.005
        return dx


class DenseForwardNoBias(Dense):
    """Forgets the bias in the forward; the backward is the true one."""

    def forward(self, x):
        self.x = x
        return x @ self.W


class DenseConsistentWrongForward(Dense):
    """Uses W^2 elementwise in the forward and differentiates that faithfully."""

    def forward(self, x):
        self.x = x
        return x @ (self.W * np.abs(self.W)) + self.b

    def backward(self, dy):
        self.dW = (self.x.T @ dy) * 2 * np.abs(self.W)
        self.db = dy.sum(axis=0)
        return dy @ (self.W * np.abs(self.W)).T


class ConvFlippedKernelInDx(Conv):
    def _dx_kernel(self):
        return self.W[:, :, ::-1, ::-1]


class ConvStrideIgnoredInDw(Conv):
    def _dw_stride(self):
        return 1


class ConvCropOffByOne(Conv):
    def _crop(self, dxp):
        p = self.p
        return dxp[:, :, p + 1:dxp.shape[2] - p + 1, p + 1:dxp.shape[3] - p + 1]


class ReLUMaskFromGradient(ReLU):
    def backward(self, dy):
        return dy * (dy > 0)


class BatchNormConstantStats(BatchNorm):
    """Treats the batch mean and variance as constants in the backward."""

    def backward(self, dy):
        super().backward(dy)
        return dy * self.gamma[None, :, None, None] / np.sqrt(self.var + self.eps)


class FlattenHWCBackwardNotUndone(FlattenHWC):
    def backward(self, dy):
        return dy.reshape(self.shape)  # forgets to undo the H, W, C transpose


LIN = S.Linear("fc", 6, 4)
CONV = S.Conv2d("conv", 2, 3, 3, stride=2, padding=1)
BN = S.BatchNorm2d("bn", 3)
IN_OUT = {"layout": Layout(linear="in_out")}
BN_NAMES = {"params": {"weight": "gamma", "bias": "beta", "running_mean": "running_mean",
                       "running_var": "running_var"}, "grads": {"weight": "dgamma", "bias": "dbeta"}}

CORRECT = [
    ("dense", Dense, LIN, IN_OUT, (5, 6)),
    ("conv", Conv, CONV, {}, (2, 2, 7, 6)),
    ("relu", ReLU, S.ReLU("relu"), {}, (2, 3, 4, 5)),
    ("batchnorm", BatchNorm, BN, BN_NAMES, (4, 3, 3, 2)),
]

MUTANTS = [
    ("dense bias grad not summed over the batch", DenseBiasNotSummed, LIN, IN_OUT, (5, 6), "backward", None),
    ("dense weight grad averaged over the batch", DenseMeanGrads, LIN, IN_OUT, (5, 6), "backward", "1/the batch size 5"),
    ("dense input grad sign flipped", DenseSignFlip, LIN, IN_OUT, (5, 6), "backward", "wrong sign"),
    ("dense weight grad 0.5% off", DenseTinyError, LIN, IN_OUT, (5, 6), "backward", "off by a constant factor"),
    ("dense forward forgets the bias", DenseForwardNoBias, LIN, IN_OUT, (5, 6), "forward", None),
    ("dense wrong forward, consistent backward", DenseConsistentWrongForward, LIN, IN_OUT, (5, 6), "forward", None),
    ("conv dx with a flipped kernel", ConvFlippedKernelInDx, CONV, {}, (2, 2, 7, 6), "backward", "kernel not rotated 180 degrees"),
    ("conv stride ignored in dW", ConvStrideIgnoredInDw, CONV, {}, (2, 2, 7, 6), "backward", None),
    ("conv padding crop off by one", ConvCropOffByOne, CONV, {}, (2, 2, 7, 6), "backward", None),
    ("relu mask taken from the gradient", ReLUMaskFromGradient, S.ReLU("relu"), {}, (2, 3, 4, 5), "backward", None),
    ("batch norm backward with constant statistics", BatchNormConstantStats, BN, BN_NAMES, (4, 3, 3, 2), "backward", None),
    ("flatten backward does not undo the HWC transpose", FlattenHWCBackwardNotUndone, S.Flatten("flat"),
     {"layout": Layout(flatten="HWC")}, (2, 3, 2, 4), "backward", None),
]


# ------------------------------------------------------------------ second batch


class Sigmoid:
    def forward(self, x):
        self.y = 1 / (1 + np.exp(-x))
        return self.y

    def backward(self, dy):
        return dy * self.y * (1 - self.y)


class SigmoidDerivativeOfInput(Sigmoid):
    def forward(self, x):
        self.x = x
        return super().forward(x)

    def backward(self, dy):
        return dy * self.x * (1 - self.x)  # y(1-y) written with the input


class Tanh:
    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        return dy * (1 - self.y**2)


class TanhMissingSquare(Tanh):
    def backward(self, dy):
        return dy * (1 - self.y)


class LeakyReLU:
    def __init__(self, slope=0.01):
        self.slope = slope

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, self.slope * x)

    def backward(self, dy):
        return dy * np.where(self.x > 0, 1.0, self.slope)


class LeakyReLUZeroSlopeBackward(LeakyReLU):
    def backward(self, dy):
        return dy * (self.x > 0)  # copied from ReLU


class AvgPool:
    """2x2, stride 2."""

    def forward(self, x):
        self.shape = x.shape
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))

    def backward(self, dy):
        return np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3) / 4


class AvgPoolNotDivided(AvgPool):
    def backward(self, dy):
        return np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3)


class Softmax:
    def forward(self, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.y = e / e.sum(axis=1, keepdims=True)
        return self.y

    def backward(self, dy):
        return self.y * (dy - (dy * self.y).sum(axis=1, keepdims=True))


class SoftmaxDiagonalOnly(Softmax):
    def backward(self, dy):
        return dy * self.y * (1 - self.y)  # the Jacobian's diagonal only


class GlobalAvgPool:
    def forward(self, x):
        self.shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        n, c, h, w = self.shape
        return np.broadcast_to(dy[:, :, None, None], self.shape) / (h * w)


class GlobalAvgPoolNotDivided(GlobalAvgPool):
    def backward(self, dy):
        return np.broadcast_to(dy[:, :, None, None], self.shape).copy()


class BatchNormMissingVarianceTerm(BatchNorm):
    def backward(self, dy):
        super().backward(dy)
        m = dy.shape[0] * dy.shape[2] * dy.shape[3]
        dxhat = dy * self.gamma[None, :, None, None]
        return (dxhat - dxhat.sum(axis=(0, 2, 3), keepdims=True) / m) / np.sqrt(self.var + self.eps)


class ConvBiasNotSummedSpatially(Conv):
    def backward(self, dy):
        dx = super().backward(dy)
        self.db = dy.sum(axis=0)[:, 0, 0]  # only the top-left output pixel
        return dx


CORRECT += [
    ("sigmoid", Sigmoid, S.Sigmoid("sig"), {}, (2, 3, 4)),
    ("tanh", Tanh, S.Tanh("tanh"), {}, (2, 3, 4)),
    ("leaky_relu", LeakyReLU, S.LeakyReLU("lrelu", 0.01), {}, (2, 3, 4, 5)),
    ("avgpool", AvgPool, S.AvgPool2d("pool", 2), {}, (2, 3, 4, 6)),
    ("softmax", Softmax, S.Softmax("soft", 1), {}, (4, 5)),
    ("global_avgpool", GlobalAvgPool, S.GlobalAvgPool2d("gap"), {}, (2, 3, 4, 5)),
]

MUTANTS += [
    ("sigmoid derivative of the input, not the output", SigmoidDerivativeOfInput, S.Sigmoid("sig"), {}, (2, 3, 4),
     "backward", None),
    ("tanh derivative missing the square", TanhMissingSquare, S.Tanh("tanh"), {}, (2, 3, 4), "backward", None),
    ("leaky relu backward with slope 0", LeakyReLUZeroSlopeBackward, S.LeakyReLU("lrelu", 0.01), {}, (2, 3, 4, 5),
     "backward", None),
    ("avg pool backward not divided by the window", AvgPoolNotDivided, S.AvgPool2d("pool", 2), {}, (2, 3, 4, 6),
     "backward", "the window size 4"),
    ("softmax backward with the Jacobian's diagonal only", SoftmaxDiagonalOnly, S.Softmax("soft", 1), {}, (4, 5),
     "backward", None),
    ("global avg pool backward not divided by H*W", GlobalAvgPoolNotDivided, S.GlobalAvgPool2d("gap"), {},
     (2, 3, 4, 5), "backward", "off by a constant factor 20"),
    ("batch norm backward missing the variance term", BatchNormMissingVarianceTerm, BN, BN_NAMES, (4, 3, 3, 2),
     "backward", None),
    ("conv bias grad not summed over H, W", ConvBiasNotSummedSpatially, CONV, {}, (2, 2, 7, 6), "backward", None),
]


# ------------------------------------------------------------------ third batch: call-order bugs


class DenseCachesFirstInputOnly(Dense):
    def forward(self, x):
        if not hasattr(self, "x"):
            self.x = x  # "optimisation": keep the first input; Dense.backward then uses it
        return x @ self.W + self.b


class ReLUCachesFirstInputOnly(ReLU):
    def forward(self, x):
        if not hasattr(self, "x"):
            self.x = x
        return np.maximum(x, 0)


class DenseNoisyForward(Dense):
    """Leaves a random perturbation in the forward (a debugging leftover)."""

    def forward(self, x):
        return super().forward(x) + 1e-3 * np.random.default_rng().standard_normal((x.shape[0], self.W.shape[1]))


class ConvAccumulatesDw(Conv):
    def backward(self, dy):
        old = getattr(self, "_acc", None)
        dx = super().backward(dy)
        self._acc = self.dW.copy() if old is None else old + self.dW
        self.dW = self._acc.copy()
        return dx


class ConvBiasAddedTwice(Conv):
    """Adds the bias twice, and differentiates that faithfully."""

    def forward(self, x):
        return super().forward(x) + self.b[None, :, None, None]

    def backward(self, dy):
        dx = super().backward(dy)
        self.db = 2 * self.db
        return dx


MUTANTS += [
    ("dense backward uses the first forward's input", DenseCachesFirstInputOnly, LIN, IN_OUT, (5, 6), "backward",
     "stale cache"),
    ("relu backward uses the first forward's mask", ReLUCachesFirstInputOnly, S.ReLU("relu"), {}, (2, 3, 4, 5),
     "backward", "stale cache"),
    ("dense forward not deterministic", DenseNoisyForward, LIN, IN_OUT, (5, 6), "forward", "not deterministic"),
    ("conv dW accumulates across backward calls", ConvAccumulatesDw, CONV, {}, (2, 2, 7, 6), "backward",
     "doubled on a second backward call"),
    ("conv bias added twice, consistently", ConvBiasAddedTwice, CONV, {}, (2, 2, 7, 6), "forward", None),
]


# ------------------------------------------------------------------ fourth batch: CS231n function pairs


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def affine_backward_mean_bias(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, dout.mean(axis=0)


def affine_backward_untransposed(dout, cache):
    x, w = cache
    return dout @ w, x.T @ dout, dout.sum(axis=0)  # w is square here, so the shapes hide it


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    return (dout * (cache > 0),)


def relu_backward_no_mask(dout, cache):
    return (dout.copy(),)


def max_pool_forward(x, pool_param):
    k, s = pool_param["pool_height"], pool_param["stride"]
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
    return out, (x, pool_param)


def _max_pool_backward(dout, cache, accumulate):
    x, pool_param = cache
    k, s = pool_param["pool_height"], pool_param["stride"]
    dx = np.zeros_like(x)
    n, c = dout.shape[:2]
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = x[:, :, i * s:i * s + k, j * s:j * s + k].reshape(n, c, k * k)
            a = win.argmax(axis=2)
            for p in range(n):
                for q in range(c):
                    u, v = divmod(int(a[p, q]), k)
                    if accumulate:
                        dx[p, q, i * s + u, j * s + v] += dout[p, q, i, j]
                    else:
                        dx[p, q, i * s + u, j * s + v] = dout[p, q, i, j]
    return (dx,)


def max_pool_backward(dout, cache):
    return _max_pool_backward(dout, cache, True)


def max_pool_backward_assign(dout, cache):
    return _max_pool_backward(dout, cache, False)  # = where overlapping windows need +=


def _pair(forward, backward, spec, params=(), args=(), layout=None):
    from harness.adapters.layer import wrap_functions

    def make(seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        arrays = [rng.normal(size=s).astype(dtype) for s in params]
        wrapped = wrap_functions(forward, backward, spec, arrays, args=args, layout=layout or Layout())
        if not params:  # no parameters to tell the dtype: hand the code its inputs in this one
            wrapped._dtype = np.dtype(dtype)
        return wrapped
    return make


SQ = S.Linear("affine", 5, 5)
POOL = S.MaxPool2d("pool", 3, 2)
POOL_ARGS = ({"pool_height": 3, "pool_width": 3, "stride": 2},)
AFF = dict(spec=SQ, params=((5, 5), (5,)), layout=Layout(linear="in_out"))

CORRECT += [
    ("affine pair", _pair(affine_forward, affine_backward, **AFF), SQ, {}, (4, 5)),
    ("relu pair", _pair(relu_forward, relu_backward, S.ReLU("relu")), S.ReLU("relu"), {}, (3, 4)),
    ("max pool pair", _pair(max_pool_forward, max_pool_backward, POOL, args=POOL_ARGS), POOL, {}, (2, 2, 7, 6)),
]

MUTANTS += [
    ("affine pair: bias grad averaged", _pair(affine_forward, affine_backward_mean_bias, **AFF), SQ, {}, (4, 5),
     "backward", "1/the batch size 4"),
    ("affine pair: dx with w, not w.T (square w)", _pair(affine_forward, affine_backward_untransposed, **AFF), SQ, {},
     (4, 5), "backward", None),
    ("relu pair: backward without the mask", _pair(relu_forward, relu_backward_no_mask, S.ReLU("relu")),
     S.ReLU("relu"), {}, (3, 4), "backward", None),
    ("max pool pair: overlapping windows assigned, not added",
     _pair(max_pool_forward, max_pool_backward_assign, POOL, args=POOL_ARGS), POOL, {}, (2, 2, 7, 6), "backward", "only where pooling windows overlap"),
]


def affine_backward_dw_transposed(dout, cache):
    x, w = cache
    return dout @ w.T, dout.T @ x, dout.sum(axis=0)  # (x^T dout)^T: fits only because w is square


MUTANTS += [
    ("affine pair: dw transposed (square w)", _pair(affine_forward, affine_backward_dw_transposed, **AFF), SQ, {},
     (4, 5), "backward", "transposed"),
]


# ------------------------------------------------------------------ gradients seen only through an SGD step


class DenseSGD(Dense):
    """Keeps no gradients: backward(dy, lr) updates W and b in place (a training-loop layer)."""

    def backward(self, dy, lr):
        dx = dy @ self.W.T
        self.W -= lr * (self.x.T @ dy)
        self.b -= lr * dy.sum(axis=0)
        return dx


class DenseSGDMeanWeight(DenseSGD):
    def backward(self, dy, lr):
        dx = dy @ self.W.T
        self.W -= lr * (self.x.T @ dy) / len(dy)  # averaged over the batch although the loss sums
        self.b -= lr * dy.sum(axis=0)
        return dx


# a small rate: float32 recovery (w_before - w_after) / lr then loses ~1e-4 relative
SGD = {**IN_OUT, "sgd": (None, 1e-3), "backward_args": (1e-3,)}
class DenseSGDMean(DenseSGD):
    """A mean loss's habit: the step uses gradients divided by the batch (grad_scale="batch")."""

    def backward(self, dy, lr):
        dx = dy @ self.W.T
        self.W -= lr * (self.x.T @ dy) / len(dy)
        self.b -= lr * dy.sum(axis=0) / len(dy)
        return dx


CORRECT += [("dense sgd step", DenseSGD, LIN, SGD, (5, 6)),
            ("dense sgd step, batch-averaged", DenseSGDMean, LIN, {**SGD, "grad_scale": "batch"}, (5, 6))]
MUTANTS += [("dense sgd step with the weight update averaged over the batch", DenseSGDMeanWeight, LIN, SGD, (5, 6),
             "backward", "1/the batch size 5")]


# ------------------------------------------------------------------ side effects and crashes (issue 12)


class Dropout:
    """Inverted dropout with a fixed 0/1 mask (the spec's buffer ``mask``)."""

    def __init__(self, p=0.5, shape=(2, 3, 4, 5), seed=0):
        self.p = p
        self.mask = (np.random.default_rng(seed).random(shape) >= p).astype(np.float64)

    def forward(self, x):
        return x * self.mask / (1 - self.p)

    def backward(self, dout):
        return dout * self.mask / (1 - self.p)


class DropoutScalesUpstreamInPlace(Dropout):
    """The values are right; the caller's upstream gradient is not left alone."""

    def backward(self, dout):
        dout *= self.mask  # saves an allocation ...
        dout /= 1 - self.p
        return dout  # ... and returns the caller's own array, now changed


class ReLUZeroesCachedInput(ReLU):
    def backward(self, dy):
        self.x[self.x < 0] = 0  # "clean" the cache; the caller's input array changes under it
        return dy * (self.x > 0)


class ReLUInPlaceForward(ReLU):
    def forward(self, x):
        np.maximum(x, 0, out=x)  # no allocation: the caller's array becomes the output
        self.x = x
        return x


class DenseStepsInBackward(Dense):
    """Applies an SGD step inside backward (undeclared): the model changes on every backward."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.W -= 0.1 * self.dW
        return dx


class DenseNoBiasBackwardCrashes(Dense):
    """The forward forgets the bias; the backward multiplies by W instead of W.T and crashes."""

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W  # (N, 4) @ (6, 4): ValueError


class DenseBackwardCrashes(Dense):
    """A right forward; the backward crashes the same way."""

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W


DROP = S.Dropout("drop", 0.5)
CORRECT += [
    ("dropout", Dropout, DROP, {"lazy": True}, (2, 3, 4, 5)),
    ("dropout scaling its upstream in place, declared", DropoutScalesUpstreamInPlace, DROP,
     {"lazy": True, "inplace": {"upstream"}}, (2, 3, 4, 5)),
    ("relu with an in-place forward, declared", ReLUInPlaceForward, S.ReLU("relu"), {"inplace": "input"},
     (2, 3, 4, 5)),
]
MUTANTS += [
    ("dropout backward scales its upstream gradient in place", DropoutScalesUpstreamInPlace, DROP, {"lazy": True},
     (2, 3, 4, 5),
     "backward", "backward writes into its upstream gradient: the caller's array is changed"),
    ("relu backward zeroes its cached input", ReLUZeroesCachedInput, S.ReLU("relu"), {}, (2, 3, 4, 5), "backward",
     "backward writes into the input array its forward was given"),
    ("relu forward writes into its input", ReLUInPlaceForward, S.ReLU("relu"), {}, (2, 3, 4, 5), "forward",
     "forward writes into its input array: the caller's array is changed"),
    ("dense backward applies an undeclared SGD step", DenseStepsInBackward, LIN, IN_OUT, (5, 6), "backward",
     "backward changes parameter 'weight'"),
    ("dense forward forgets the bias, backward crashes", DenseNoBiasBackwardCrashes, LIN, IN_OUT, (5, 6), "error",
     None),
]
