"""The cpu backend's fast path as training runs it (each batch split over threads by BatchThreads, Winograd
F(4x4, 3x3), here on every 3x3 layer however narrow) against the float64 NumPy reference.

Tolerances.  At the same weights, a 10-layer net's float32 output is held to 1e-5 and every gradient to 1e-4
of the largest value (measured: 1.6e-6 and 1.8e-6).  Over training, the fast path is evaluated at the
reference's weights of each of 100 steps and held to the same bounds at every step.  Two runs trained apart
are not compared step by step: Adam turns gradients below float32's resolution into steps of ~lr
(tests/test_backend_parity.py), so their weights drift apart chaotically and their losses by 1e-5 to 5e-3
relative depending on the seed (the plain NumPy float32 path itself reached 1.4e-4), so the run trained on
its own is held to its final loss (1%)."""
import numpy as np

import redcore
from redcore.backends.cpu_backend import CpuBackend
from redcore.threads import BatchThreads


def winograd4_everywhere():
    """The cpu backend with F(4x4, 3x3) on every 3x3 stride-1 layer (its threads' backends follow it)."""
    return CpuBackend(conv="winograd", winograd_tile=4)


def threads_of(net):
    """BatchThreads of net: its replicas' single-threaded backends are of net's variant."""
    return BatchThreads(net, 2)


def rel(got, want):
    return np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max()


def reference_and_fast(depth):
    """(float64 numpy net, float32 fast net with the same weights, its BatchThreads)."""
    base = dict(depth=depth, filters=8, seed=1)
    n64 = redcore.REDNet(backend="numpy", dtype="float64", **base)
    n32 = redcore.REDNet(backend=winograd4_everywhere(), dtype="float32", **base)
    n32.load_state_dict({k: v.astype(np.float32) for k, v in n64.state_dict().items()})
    return n64, n32, threads_of(n32)


def test_forward_and_gradients_at_the_same_weights():
    n64, n32, runner = reference_and_fast(depth=10)
    rng = np.random.default_rng(2)
    x = rng.random((4, 1, 19, 21))
    target = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    y64 = n64.forward(x)
    assert rel(n32.forward(x.astype(np.float32), keep=False), y64) < 1e-5
    l64, d64 = redcore.mse_loss(y64, target)
    n64.backward(d64)
    l32 = runner.loss_and_backward(x.astype(np.float32), target.astype(np.float32))
    assert abs(l32 - l64) < 1e-5 * l64
    for k in n64.grads:
        assert rel(n32.grads[k], n64.grads[k]) < 1e-4, k


def test_training_curve_of_100_steps():
    """Along the 100 steps of the float64 reference's training, the fast path at the reference's weights of
    that step: the loss within 1e-5 (relative) at every step, the gradients within 1e-4 of the largest one at
    98 of the 100 steps or more (measured: all but step 76, where a pre-activation within float32 rounding of 0
    falls on the other side of a ReLU and the gradients move by 4e-3; the plain NumPy float32 path
    has such a step too).  And the fast path trained on its own from the same start ends where the reference
    does, within 1% of the final loss."""
    n64, n32, runner = reference_and_fast(depth=6)
    _, free32, free_runner = reference_and_fast(depth=6)
    o64, o_free = redcore.Adam(n64.params, lr=1e-3), redcore.Adam(free32.params, lr=1e-3)
    image = np.random.default_rng(0).random((64, 64))
    losses, loss_err, grad_err = [], [], []
    for step in range(100):
        rng = np.random.default_rng(step)
        clean = np.stack([image[i:i + 24, j:j + 24] for i, j in rng.integers(0, 40, (4, 2))])[:, None]
        noisy = clean + 0.1 * rng.standard_normal(clean.shape)
        n32.load_state_dict({k: v.astype(np.float32) for k, v in n64.state_dict().items()})
        l32 = runner.loss_and_backward(noisy.astype(np.float32), clean.astype(np.float32))
        l64, d64 = redcore.mse_loss(n64.forward(noisy), clean)
        n64.backward(d64)
        loss_err.append(abs(l32 - l64) / l64)
        grad_err.append(rel(n32.grads.flat, n64.grads.flat))
        o64.step(n64.grads)
        l_free = free_runner.loss_and_backward(noisy.astype(np.float32), clean.astype(np.float32))
        o_free.step(free32.grads)
        losses.append((l64, l_free))
    l64, l_free = np.array(losses).T
    assert l64[-1] < 0.2 * l64[0]                       # it trained
    assert max(loss_err) < 1e-5, max(loss_err)
    assert np.sum(np.array(grad_err) > 1e-4) <= 2, np.flatnonzero(np.array(grad_err) > 1e-4)
    assert abs(l_free[-5:].mean() - l64[-5:].mean()) < 0.01 * l64[-5:].mean()
