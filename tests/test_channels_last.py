"""Channels-last activations of the cpu backend (redcore/backends/cpu_backend.py): layers that feed the
channels-last Winograd F(4x4) kernels return (N, C, H, W)-shaped views of (N, H, W, C) memory, and every
backend method takes either layout.  Checked against the float64 NumPy reference in float64 (1e-10 of the
largest value): chains of layers whose inputs and gradients arrive channels-last, the im2col path producing
and consuming them, and the element-wise kernels on one layout, the other, and the two mixed."""
import numpy as np
import pytest

from redcore.backends import get_backend
from redcore.backends.cpu_backend import CpuBackend, is_channels_last

ref = get_backend("numpy")


@pytest.fixture(params=[False, True], ids=["parallel", "single-threaded"])
def be(request):
    backend = CpuBackend(single_threaded=request.param, conv="winograd", winograd_tile=4)
    return backend


def close(got, want, rtol=1e-10):
    err = np.abs(np.asarray(got) - want).max() / (np.abs(want).max() + 1e-30)
    assert err <= rtol, f"max error {err:.2e} relative to max |value|"


def channels_last(a):
    """a with the same values, laid out (N, H, W, C) in memory."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def test_the_layout_test():
    a = np.zeros((2, 5, 4, 3))
    assert not is_channels_last(a) and is_channels_last(channels_last(a))
    assert not is_channels_last(channels_last(np.zeros((2, 1, 4, 3))))     # one channel: both layouts at once
    assert not is_channels_last(a[:, :, ::2])


def test_a_chain_of_layers_hands_on_channels_last(be):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 13, 11))
    w1, w2, w3 = (rng.standard_normal(s) for s in [(6, 1, 3, 3), (5, 6, 3, 3), (7, 5, 5, 5)])
    y1 = be.conv2d(x, w1, 1, 1)                 # 1 channel in: im2col, its output channels-last
    y2 = be.conv2d(y1, w2, 1, 0)                # Winograd from channels-last to channels-last
    y3 = be.conv2d(y2, w3, 1, 2)                # 5x5: im2col from a channels-last input
    assert is_channels_last(y1) and is_channels_last(y2) and is_channels_last(y3)
    r1 = ref.conv2d(x, w1, 1, 1)
    r2 = ref.conv2d(r1, w2, 1, 0)
    close(y1, r1), close(y2, r2), close(y3, ref.conv2d(r2, w3, 1, 2))
    dy = channels_last(rng.standard_normal(r2.shape))
    close(be.conv2d_backward_input(dy, w2, y1.shape[2:], 1, 0),
          ref.conv2d_backward_input(np.ascontiguousarray(dy), w2, r1.shape[2:], 1, 0))
    close(be.conv2d_backward_weight(dy, y1, 3, 1, 0), ref.conv2d_backward_weight(np.ascontiguousarray(dy), r1, 3, 1, 0))
    dy1 = channels_last(rng.standard_normal(r1.shape))          # im2col weight gradient from a channels-last dy
    close(be.conv2d_backward_weight(dy1, x, 3, 1, 1), ref.conv2d_backward_weight(np.ascontiguousarray(dy1), x, 3, 1, 1))
    dy2 = rng.standard_normal((2, 6, 7, 9))                     # stride 2: the col2im path takes it too
    close(be.conv2d_backward_input(channels_last(dy2), w1, (15, 19), 2, 0),
          ref.conv2d_backward_input(dy2, w1, (15, 19), 2, 0))


@pytest.mark.parametrize("layouts", [("c", "c"), ("cl", "cl"), ("cl", "c"), ("c", "cl")])
def test_element_wise_kernels_on_either_layout(be, layouts):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 5, 4, 6)), rng.standard_normal((2, 5, 4, 6))
    lay = {"c": lambda t: t.copy(), "cl": channels_last}            # copies: the kernels work in place
    first, second = lay[layouts[0]], lay[layouts[1]]
    close(be.add_relu(first(a), second(b)), ref.add_relu(a, b))
    dy = first(a)
    be.relu_backward_(dy, second(b))
    close(dy, ref.relu_backward_(a.copy(), b))
    y, bias = first(a), rng.standard_normal(5)
    be.add_bias(y, bias, relu=True)
    close(y, ref.add_bias(a.copy(), bias, relu=True))
    close(be.bias_backward(first(a)), ref.bias_backward(a))
    y = first(a)
    be.relu_(y)
    close(y, np.maximum(a, 0))


def test_an_in_place_kernel_refuses_a_strided_view(be):
    y = np.zeros((2, 4, 6, 6))[:, :, ::2]
    with pytest.raises(ValueError, match="C-contiguous or channels-last"):
        be.relu_(y)
