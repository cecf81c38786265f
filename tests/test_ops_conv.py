"""Gradient checks of conv2d and conv_transpose2d on the NumPy reference in float64, over drawn shapes,
and the adjoint identities that tie the two together."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from gradcheck import check_gradient
from strategies import conv_case
from redcore.backends import get_backend
from redcore.ops import conv

be = get_backend("numpy")


@given(conv_case(max_batch=2, max_channels=3, max_kernel=3, max_size=9))
def test_the_einsum_reference_is_the_formula_written_as_loops(case):
    """conv2d_reference (one einsum per tap) against conv2d_loops (the index sum, one element at a time),
    float64: the same sum in another order, equal to rounding."""
    n, c_in, c_out, k, s, p, h, w, seed = case
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, k, k))
    np.testing.assert_allclose(conv.conv2d_reference(x, wt, s, p), conv.conv2d_loops(x, wt, s, p),
                               rtol=1e-12, atol=1e-12)


@given(conv_case())
def test_conv2d_gradients(case):
    n, c_in, c_out, k, s, p, h, w, seed = case
    rng = np.random.default_rng(seed)
    x, wt, b = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, k, k)), rng.standard_normal(c_out)
    y = conv.conv2d_forward(be, x, wt, b, s, p)
    assert y.shape == (n, c_out, conv.conv_output_size(h, k, s, p), conv.conv_output_size(w, k, s, p))
    g = rng.standard_normal(y.shape)
    dx, dw, db = conv.conv2d_backward(be, g, x, wt, s, p)
    loss = lambda: float((g * conv.conv2d_forward(be, x, wt, b, s, p)).sum())
    check_gradient("conv2d dx", loss, x, dx, rng)
    check_gradient("conv2d dw", loss, wt, dw, rng)
    check_gradient("conv2d db", loss, b, db, rng)


@given(conv_case(), st.integers(0, 2))
def test_conv_transpose2d_gradients(case, op):
    n, c_in, c_out, k, s, p, h, w, seed = case
    assume(op < s)
    rng = np.random.default_rng(seed)
    x, wt, b = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_in, c_out, k, k)), rng.standard_normal(c_out)
    assume(conv.conv_transpose_output_size(min(h, w), k, s, p, op) >= 1)
    y = conv.conv_transpose2d_forward(be, x, wt, b, s, p, op)
    assert y.shape == (n, c_out, (h - 1) * s - 2 * p + k + op, (w - 1) * s - 2 * p + k + op)
    g = rng.standard_normal(y.shape)
    dx, dw, db = conv.conv_transpose2d_backward(be, g, x, wt, s, p)
    loss = lambda: float((g * conv.conv_transpose2d_forward(be, x, wt, b, s, p, op)).sum())
    check_gradient("conv_transpose2d dx", loss, x, dx, rng)
    check_gradient("conv_transpose2d dw", loss, wt, dw, rng)
    check_gradient("conv_transpose2d db", loss, b, db, rng)


@given(conv_case())
def test_adjoint_identities(case):
    """<conv(x), y> = <x, conv2d_backward_input(y)>, and conv_transpose2d is that adjoint."""
    n, c_in, c_out, k, s, p, h, w, seed = case
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, k, k))
    cx = be.conv2d(x, wt, s, p)
    y = rng.standard_normal(cx.shape)
    lhs = (cx * y).sum()
    rhs = (x * be.conv2d_backward_input(y, wt, (h, w), s, p)).sum()
    assert np.isclose(lhs, rhs, rtol=1e-10, atol=1e-10)
    op = conv.output_padding_to_restore(h, k, s, p), conv.output_padding_to_restore(w, k, s, p)
    zero = np.zeros(c_in)
    t = conv.conv_transpose2d_forward(be, y, wt, zero, s, p, op)   # restores x's size exactly
    assert t.shape == x.shape
    assert np.isclose((x * t).sum(), lhs, rtol=1e-10, atol=1e-10)


def test_output_size_errors_are_clear():
    with pytest.raises(ValueError, match="too small"):
        conv.conv_output_size(2, 5, 1, 0)
    with pytest.raises(ValueError, match="output_padding"):
        conv.conv_transpose_output_size(4, 3, 2, 1, 2)
