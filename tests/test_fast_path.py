"""The cpu backend's fast path as training runs it (each batch split over threads by BatchThreads, Winograd
F(4x4, 3x3), here on every 3x3 layer however narrow) against the float64 NumPy reference.

Tolerances.  At the same weights, a 10-layer net's float32 output is held to 1e-5 and every gradient to 1e-4
of the largest value (measured: 1.7e-6 and 2e-6).  Over training, Adam turns gradients below float32's
resolution into steps of ~lr (tests/test_backend_parity.py), so the two runs' weights drift apart by ~1e-3
relative within 100 steps while the loss does not: the training curve is held to 1e-4 relative at every one of
100 steps (measured: 1.8e-5)."""
import numpy as np

import redcore
from redcore.backends.cpu_backend import CpuBackend
from redcore.threads import BatchThreads


def winograd4_everywhere():
    """A cpu backend of its own (not the shared one) with F(4x4, 3x3) on every 3x3 stride-1 layer."""
    be = CpuBackend()
    be.winograd, be.winograd_min_channels, be.winograd_tile = True, 1, 4
    return be


def threads_of(net):
    """BatchThreads of net, its replicas' backends (single-threaded ones) also on F(4x4, 3x3) everywhere."""
    runner = BatchThreads(net, 2)
    for replica in runner.replicas:
        replica.backend.winograd_min_channels = 1
    return runner


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
    n64, n32, runner = reference_and_fast(depth=6)
    o64, o32 = redcore.Adam(n64.params, lr=1e-3), redcore.Adam(n32.params, lr=1e-3)
    image = np.random.default_rng(0).random((64, 64))
    curves = []
    for step in range(100):
        rng = np.random.default_rng(step)
        clean = np.stack([image[i:i + 24, j:j + 24] for i, j in rng.integers(0, 40, (4, 2))])[:, None]
        noisy = clean + 0.1 * rng.standard_normal(clean.shape)
        l64, d64 = redcore.mse_loss(n64.forward(noisy), clean)
        n64.backward(d64)
        o64.step(n64.grads)
        l32 = runner.loss_and_backward(noisy.astype(np.float32), clean.astype(np.float32))
        o32.step(n32.grads)
        curves.append((l64, l32))
    l64, l32 = np.array(curves).T
    assert l64[-1] < 0.2 * l64[0]                       # it trained
    assert (np.abs(l32 - l64) / l64).max() < 1e-4
