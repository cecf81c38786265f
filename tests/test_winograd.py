"""Winograd F(2x2, 3x3) and F(4x4, 3x3) (kernels/cpu/winograd.py, winograd4.py), with the parallel and the
single-threaded kernels, against the float64 NumPy reference convolution: the same 3x3 stride-1 convolution on
drawn shapes, paddings 0-2 and odd sizes (tiles cut by the border), float64 to 1e-10 and float32 to 1e-4
(relative to the largest output): forward, the stride-1 input gradient (a convolution with the flipped
kernel, which takes the same path) and the weight gradient (F(3x3, m x m))."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from redcore.backends import get_backend
from redcore.backends.cpu_backend import CpuBackend

ref = get_backend("numpy")


@pytest.fixture(scope="module", params=[(2, False), (4, False), (4, True)],
                ids=["F2x2", "F4x4", "F4x4-single-threaded"])
def wino(request):
    tile, single_threaded = request.param
    be = CpuBackend(single_threaded=single_threaded, conv="winograd", winograd_tile=tile)   # every 3x3 layer
    return be


def close(got, want, rtol):
    err = np.abs(np.asarray(got, np.float64) - want).max() / (np.abs(want).max() + 1e-30)
    assert err <= rtol, f"shape {want.shape}: max error {err:.2e} relative to max |value|"


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-4)])
@given(n=st.integers(1, 3), c_in=st.integers(2, 6), c_out=st.integers(1, 6), h=st.integers(1, 15),
       w=st.integers(1, 15), padding=st.integers(0, 2), seed=st.integers(0, 2**31 - 1))
def test_winograd_equals_the_reference(wino, dtype, rtol, n, c_in, c_out, h, w, padding, seed):
    assume(h + 2 * padding >= 3 and w + 2 * padding >= 3)
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, 3, 3))
    y = ref.conv2d(x, wt, 1, padding)
    close(wino.conv2d(x.astype(dtype), wt.astype(dtype), 1, padding), y, rtol)
    dy = rng.standard_normal(y.shape)
    close(wino.conv2d_backward_input(dy.astype(dtype), wt.astype(dtype), (h, w), 1, padding),
          ref.conv2d_backward_input(dy, wt, (h, w), 1, padding), rtol)
    close(wino.conv2d_backward_weight(dy.astype(dtype), x.astype(dtype), 3, 1, padding),
          ref.conv2d_backward_weight(dy, x, 3, 1, padding), rtol)


def test_winograd_groups_images_within_the_budget(wino):
    rng = np.random.default_rng(0)
    x, wt = rng.standard_normal((5, 4, 9, 8)), rng.standard_normal((3, 4, 3, 3))
    old, wino.cols_budget = wino.cols_budget, 1         # one image per group
    try:
        close(wino.conv2d(x, wt, 1, 1), ref.conv2d(x, wt, 1, 1), 1e-10)
        dy = rng.standard_normal((5, 3, 9, 8))
        close(wino.conv2d_backward_weight(dy, x, 3, 1, 1), ref.conv2d_backward_weight(dy, x, 3, 1, 1), 1e-10)
    finally:
        wino.cols_budget = old


@pytest.mark.parametrize("tile,rtol", [(2, 2e-6), (4, 2e-5)])
def test_float32_error_of_a_wide_layer(tile, rtol):
    """A released-RED30 layer (128 channels in and out, 50x50): F(4x4, 3x3)'s larger coefficients cost about
    one decimal digit over F(2x2, 3x3) in float32, still far inside the 1e-4 the gradients are held to."""
    be = CpuBackend(winograd_tile=tile)          # "auto": 128 channels run by Winograd
    rng = np.random.default_rng(1)
    x, wt = rng.random((2, 128, 50, 50)), rng.standard_normal((128, 128, 3, 3)) * np.sqrt(2 / 1152)
    dy = rng.standard_normal((2, 128, 50, 50))
    close(be.conv2d(x.astype(np.float32), wt.astype(np.float32), 1, 1), ref.conv2d(x, wt, 1, 1), rtol)
    close(be.conv2d_backward_weight(dy.astype(np.float32), x.astype(np.float32), 3, 1, 1),
          ref.conv2d_backward_weight(dy, x, 3, 1, 1), rtol)
