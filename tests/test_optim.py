"""Adam (paper Eq. 5-7), redcore/optim.py: steps against the formulas written out by hand, and its state."""
import math

import numpy as np

import redcore


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
