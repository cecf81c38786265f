"""The MSE loss of the paper (Eq. 4), redcore/ops/loss.py: its value under both reductions and its gradient
by central differences in float64."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import redcore
from gradcheck import check_gradient

shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6))


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
