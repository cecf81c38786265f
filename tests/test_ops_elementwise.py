"""Gradient checks of ReLU, the skip sum + ReLU (Eq. 3) and the MSE loss (Eq. 4); Adam against Eq. 5-7."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import redcore
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


@pytest.mark.parametrize("reduction", ["batch", "mean"])
@given(shapes, st.integers(0, 2**31 - 1))
def test_mse_loss_value_and_gradient(reduction, shape, seed):
    rng = np.random.default_rng(seed)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, dpred = redcore.mse_loss(pred, target, reduction)
    per_sample = ((pred - target) ** 2).reshape(shape[0], -1).sum(axis=1)
    want = per_sample.mean() if reduction == "batch" else per_sample.sum() / pred.size
    assert math.isclose(loss, want, rel_tol=1e-12)
    check_gradient(f"mse {reduction}", lambda: redcore.mse_loss(pred, target, reduction)[0], pred, dpred, rng)


def test_mse_loss_errors():
    a = np.zeros((1, 1, 2, 2))
    with pytest.raises(ValueError, match="reduction"):
        redcore.mse_loss(a, a, "sum")
    with pytest.raises(ValueError, match="shape"):
        redcore.mse_loss(a, np.zeros((1, 1, 2, 3)))
    with pytest.raises(FloatingPointError, match="NaN"):
        redcore.mse_loss(a + np.nan, a)


def test_adam_follows_eq_5_to_7():
    """Three steps on two tensors against the paper's formulas written out by hand."""
    rng = np.random.default_rng(1)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    want = {k: v.copy() for k, v in params.items()}
    opt = redcore.Adam(params, lr=1e-2, betas=(0.8, 0.9), eps=1e-6)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(val) for k, val in params.items()}
    for t in range(1, 4):
        grads = {k: rng.standard_normal(p.shape) for k, p in params.items()}
        opt.step(grads)
        alpha_t = 1e-2 * math.sqrt(1 - 0.9 ** t) / (1 - 0.8 ** t)
        for k in params:
            m[k] = 0.8 * m[k] + 0.2 * grads[k]
            v[k] = 0.9 * v[k] + 0.1 * grads[k] ** 2
            want[k] = want[k] - alpha_t * m[k] / (np.sqrt(v[k]) + 1e-6)
            np.testing.assert_allclose(params[k], want[k], rtol=1e-13, atol=1e-15)
    assert opt.t == 3


def test_adam_state_round_trip():
    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal(6)}
    opt = redcore.Adam(params)
    opt.step({"w": rng.standard_normal(6)})
    state = opt.state_dict()
    params2 = {"w": params["w"].copy()}
    opt2 = redcore.Adam(params2)
    opt2.load_state_dict(state)
    g = rng.standard_normal(6)
    opt.step({"w": g})
    opt2.step({"w": g})
    assert np.array_equal(params["w"], params2["w"]) and opt2.t == 2
