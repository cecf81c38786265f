"""Gradient checks of ReLU and the skip sum + ReLU (paper Eq. 2-3), redcore/ops/activation.py, on the NumPy
reference in float64."""
import numpy as np
from hypothesis import given, strategies as st

from gradcheck import check_gradient
from redcore.backends import get_backend

be = get_backend("numpy")
shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6))


def away_from_kink(rng, shape):
    """Values at least 0.05 from 0, so a central difference of step 1e-6 never straddles ReLU's kink."""
    a = rng.uniform(0.05, 1.0, shape)
    return a * rng.choice([-1.0, 1.0], shape)


@given(shapes, st.integers(0, 2**31 - 1))
def test_relu_gradient(shape, seed):
    rng = np.random.default_rng(seed)
    x, g = away_from_kink(rng, shape), rng.standard_normal(shape)
    y = be.relu_(x.copy())
    assert np.array_equal(y, np.maximum(x, 0))
    dx = be.relu_backward_(g.copy(), y)
    check_gradient("relu dx", lambda: float((g * be.relu_(x.copy())).sum()), x, dx, rng)


@given(shapes, st.integers(0, 2**31 - 1))
def test_skip_relu_gradient(shape, seed):
    """y = max(0, x1 + x2): both summands receive dy * [y > 0]."""
    rng = np.random.default_rng(seed)
    x1 = away_from_kink(rng, shape)
    x2 = rng.uniform(-0.02, 0.02, shape)          # keeps x1 + x2 away from 0 as well
    g = rng.standard_normal(shape)
    y = be.add_relu(x1, x2)
    assert np.array_equal(y, np.maximum(x1 + x2, 0))
    d = be.relu_backward_(g.copy(), y)
    loss = lambda: float((g * be.add_relu(x1, x2)).sum())
    check_gradient("skip sum dx1", loss, x1, d, rng)
    check_gradient("skip sum dx2", loss, x2, d, rng)
