"""Layers written for one example at a time (blog-post CNNs): a grayscale image ``(H, W)``
with no channel axis, a vector ``(D,)``; some update their weights inside ``backprop(d_out,
learn_rate)`` and keep no gradient; the first conv of such a network returns nothing.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


class Conv3x3:
    """One grayscale image (H, W) -> (num_filters, H - 2, W - 2); filters (F, 3, 3)."""

    keeps_accumulating = False

    def __init__(self, num_filters, seed=0):
        rng = np.random.default_rng(seed)
        self.filters = rng.standard_normal((num_filters, 3, 3)) / 9
        self.biases = rng.normal(0, 0.1, num_filters)
        self.d_filters = np.zeros_like(self.filters)

    def iterate_regions(self, image):
        h, w = image.shape
        for i in range(h - 2):
            for j in range(w - 2):
                yield image[i:i + 3, j:j + 3], i, j

    def forward(self, image):
        self.last_input = image
        h, w = image.shape
        out = np.zeros((len(self.filters), h - 2, w - 2))
        for region, i, j in self.iterate_regions(image):
            out[:, i, j] = np.sum(region * self.filters, axis=(1, 2)) + self.biases
        return out

    def backward(self, d_out):
        if not self.keeps_accumulating:  # the bug variant never resets it between examples
            self.d_filters = np.zeros_like(self.filters)
        d_input = np.zeros_like(self.last_input)
        for region, i, j in self.iterate_regions(self.last_input):
            for f in range(len(self.filters)):
                self.d_filters[f] += d_out[f, i, j] * region
                d_input[i:i + 3, j:j + 3] += d_out[f, i, j] * self.filters[f]
        self.d_biases = d_out.sum(axis=(1, 2))
        return d_input


class Conv3x3Accumulates(Conv3x3):
    keeps_accumulating = True


CONV3X3 = NS(Conv3x3=Conv3x3)
CONV3X3_ACCUMULATES = NS(Conv3x3=Conv3x3Accumulates)


def conv_gray_forward(image, kernels, bias):
    """Function pair for one grayscale image: (H, W), kernels (F, k, k) -> (F, H', W')."""
    F, k, _ = kernels.shape
    h, w = image.shape
    out = np.empty((F, h - k + 1, w - k + 1))
    for i in range(h - k + 1):
        for j in range(w - k + 1):
            out[:, i, j] = np.einsum("fab,ab->f", kernels, image[i:i + k, j:j + k]) + bias
    return out, (image, kernels)


def _conv_gray_backward(d_out, cache, flip):
    image, kernels = cache
    F, k, _ = kernels.shape
    d_image, d_kernels = np.zeros_like(image), np.zeros_like(kernels)
    for i in range(d_out.shape[1]):
        for j in range(d_out.shape[2]):
            region = image[i:i + k, j:j + k]
            if flip:
                region = region[::-1, ::-1]  # bug: convolution and correlation mixed up, here only
            d_kernels += d_out[:, i, j, None, None] * region
            d_image[i:i + k, j:j + k] += np.einsum("f,fab->ab", d_out[:, i, j], kernels)
    return d_image, d_kernels, d_out.sum(axis=(1, 2))


def conv_gray_backward(d_out, cache):
    return _conv_gray_backward(d_out, cache, flip=False)


def conv_gray_backward_flipped(d_out, cache):
    return _conv_gray_backward(d_out, cache, flip=True)


CONV_GRAY = NS(conv_gray_forward=conv_gray_forward, conv_gray_backward=conv_gray_backward)
CONV_GRAY_FLIPPED = NS(conv_gray_forward=conv_gray_forward, conv_gray_backward=conv_gray_backward_flipped)


class FC:
    """One example (D,) -> (nodes,); weights (D, nodes); backprop applies the SGD step."""

    update_first = False

    def __init__(self, input_len, nodes, seed=0):
        rng = np.random.default_rng(seed)
        self.weights = rng.standard_normal((input_len, nodes)) / input_len
        self.biases = np.zeros(nodes)

    def forward(self, input):
        self.last_input_shape = input.shape
        input = input.flatten()
        self.last_input = input
        return input @ self.weights + self.biases

    def backprop(self, d_L_d_out, learn_rate):
        d_L_d_w = self.last_input[np.newaxis].T @ d_L_d_out[np.newaxis]
        d_L_d_b = d_L_d_out
        if self.update_first:  # bug: the input gradient then uses the updated weights
            self.weights -= learn_rate * d_L_d_w
            self.biases -= learn_rate * d_L_d_b
        d_L_d_inputs = self.weights @ d_L_d_out
        if not self.update_first:
            self.weights -= learn_rate * d_L_d_w
            self.biases -= learn_rate * d_L_d_b
        return d_L_d_inputs.reshape(self.last_input_shape)


class FCUpdateFirst(FC):
    update_first = True


FC_SGD = NS(FC=FC)
FC_SGD_UPDATE_FIRST = NS(FC=FCUpdateFirst)


class Conv3x3HWC:
    """The first layer of a one-image network: (H, W) -> (H - 2, W - 2, F), no bias;
    backprop(d_L_d_out, learn_rate) updates the filters and returns None (nothing before it
    needs an input gradient)."""

    swapped = False

    def __init__(self, num_filters, seed=0):
        self.filters = np.random.default_rng(seed).standard_normal((num_filters, 3, 3)) / 9

    def iterate_regions(self, image):
        h, w = image.shape
        for i in range(h - 2):
            for j in range(w - 2):
                yield image[i:i + 3, j:j + 3], i, j

    def forward(self, input):
        self.last_input = input
        h, w = input.shape
        output = np.zeros((h - 2, w - 2, len(self.filters)))
        for im_region, i, j in self.iterate_regions(input):
            output[i, j] = np.sum(im_region * self.filters, axis=(1, 2))
        return output

    def backprop(self, d_L_d_out, learn_rate):
        d_L_d_filters = np.zeros(self.filters.shape)
        for im_region, i, j in self.iterate_regions(self.last_input):
            if self.swapped:
                im_region = self.last_input[j:j + 3, i:i + 3]  # bug: row and column swapped
            for f in range(len(self.filters)):
                d_L_d_filters[f] += d_L_d_out[i, j, f] * im_region
        self.filters -= learn_rate * d_L_d_filters
        return None


class Conv3x3HWCSwapped(Conv3x3HWC):
    swapped = True


FIRST_CONV_HWC = NS(Conv3x3HWC=Conv3x3HWC)
FIRST_CONV_HWC_SWAPPED = NS(Conv3x3HWC=Conv3x3HWCSwapped)
