"""The bias of a layer, redcore/ops/bias.py: its gradient by central differences in float64, with and without
the ReLU that backends fuse into the same call."""
import numpy as np
from hypothesis import given, strategies as st

from gradcheck import check_gradient
from redcore.ops.bias import add_bias_reference, bias_backward_reference

shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6))


@given(shapes, st.integers(0, 2**31 - 1))
def test_bias_gradient(shape, seed):
    rng = np.random.default_rng(seed)
    y, b, g = rng.standard_normal(shape), rng.standard_normal(shape[1]), rng.standard_normal(shape)
    out = add_bias_reference(y.copy(), b)
    np.testing.assert_array_equal(out, y + b[None, :, None, None])
    check_gradient("bias db", lambda: float((g * add_bias_reference(y.copy(), b)).sum()), b,
                   bias_backward_reference(g), rng)


def test_bias_with_relu_is_relu_of_the_sum():
    rng = np.random.default_rng(0)
    y, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal(3)
    np.testing.assert_array_equal(add_bias_reference(y.copy(), b, relu=True), np.maximum(y + b[None, :, None, None], 0))
