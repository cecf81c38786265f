"""redcore.threads: the batch split over threads gives the loss and gradients of the whole batch
(float64: to rounding, 1e-12; float32: within 1e-4 of the float64 reference), and training with it follows
the one-thread run; REDNet's own forward and backward split a cpu batch the same way (threads > 1).  The
whole-batch references are nets with threads=1."""
import numpy as np
import pytest

import redcore
from redcore import kernels
from redcore.backends.cpu_backend import CpuBackend
from redcore.threads import BatchThreads


def whole_batch(net, x, target):
    loss, dy = redcore.mse_loss(net.forward(x), target, backend=net.backend)
    net.backward(dy)
    return loss, net.grads.flat.copy()


def problem(n, dtype, h=17, w=19, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, h, w)).astype(dtype)
    return x, np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(dtype)


@pytest.mark.parametrize("threads,n", [(2, 5), (3, 7), (2, 1), (4, 3)])
@pytest.mark.parametrize("winograd", [False, True])
def test_split_batch_gives_the_whole_batch_gradient(threads, n, winograd):
    backend = CpuBackend(conv="winograd" if winograd else "im2col")   # the threads' backends follow it
    net = redcore.REDNet(depth=6, filters=8, skip_step=1, dtype="float64", seed=3, backend=backend, threads=1)
    runner = BatchThreads(net, threads)
    x, target = problem(n, np.float64)
    loss, grads = whole_batch(net, x, target)
    net.grads.flat[:] = np.nan                   # BatchThreads must overwrite every entry
    assert runner.loss_and_backward(x, target) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(net.grads.flat, grads, rtol=0, atol=1e-12 * np.abs(grads).max())
    assert len(runner.slices(n)) == min(threads, n)


def test_float32_split_batch_stays_near_the_float64_reference():
    ref = redcore.REDNet(depth=8, filters=8, dtype="float64", backend="numpy", seed=1)
    net = redcore.REDNet(depth=8, filters=8, dtype="float32", seed=1)
    x, target = problem(6, np.float64, 24, 24)
    _, grads = whole_batch(ref, x, target)
    BatchThreads(net, 2).loss_and_backward(x.astype(np.float32), target.astype(np.float32))
    assert np.abs(net.grads.flat - grads).max() / np.abs(grads).max() < 1e-4


def test_training_with_batch_threads_follows_one_thread():
    """Five Adam steps (float64): the parameters of the split run equal the whole-batch run's to 1e-10."""
    nets = [redcore.REDNet(depth=6, filters=6, dtype="float64", seed=2, threads=1) for _ in range(2)]
    opts = [redcore.Adam(n.params, lr=1e-3) for n in nets]
    runner = BatchThreads(nets[1], 2)
    for step in range(5):
        x, target = problem(4, np.float64, seed=step)
        whole_batch(nets[0], x, target)
        opts[0].step(nets[0].grads)
        runner.loss_and_backward(x, target)
        opts[1].step(nets[1].grads)
    np.testing.assert_allclose(nets[1].params.flat, nets[0].params.flat, rtol=0, atol=1e-10)
    assert not np.array_equal(nets[0].params.flat, redcore.REDNet(depth=6, filters=6, dtype="float64", seed=2).params.flat)


def test_single_threaded_kernels_match_the_parallel_ones():
    st = kernels.single_threaded()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    cols_a, cols_b = (np.empty((2, 27, 99), np.float32) for _ in range(2))
    kernels.im2col(cols_a, x, 3, 1, 1, 9, 11, 0)
    st.im2col(cols_b, x, 3, 1, 1, 9, 11, 0)
    assert np.array_equal(cols_a, cols_b)
    db_a, db_b = np.empty(3, np.float32), np.empty(3, np.float32)
    kernels.bias_backward(db_a, x)
    st.bias_backward(db_b, x)
    assert np.array_equal(db_a, db_b)
    assert st.im2col is not kernels.im2col and st.winograd.input_transform is not kernels.winograd.input_transform


def test_bad_use_is_one_sentence():
    with pytest.raises(ValueError, match="runs the cpu backend's kernels; this network is on 'numpy'"):
        BatchThreads(redcore.REDNet(depth=2, filters=2, backend="numpy"), 2)
    runner = BatchThreads(redcore.REDNet(depth=2, filters=2), 2)
    with pytest.raises(ValueError, match="inputs and targets of one shape"):
        runner.loss_and_backward(np.zeros((2, 1, 8, 8), np.float32), np.zeros((2, 1, 8, 9), np.float32))


def test_backward_without_input_gradient_gives_the_same_weight_gradients():
    """input_grad=False (training: the input is data) skips conv1's input gradient and changes nothing else."""
    net = redcore.REDNet(depth=6, filters=4, dtype="float64", backend="numpy", seed=5)
    x, target = problem(2, np.float64)
    _, dy = redcore.mse_loss(net.forward(x), target)
    assert net.backward(dy).shape == x.shape
    grads = net.grads.flat.copy()
    net.forward(x)
    assert net.backward(dy, input_grad=False) is None
    assert np.array_equal(net.grads.flat, grads)


@pytest.mark.parametrize("threads,n", [(2, 5), (3, 2), (2, 1)])
def test_the_plain_loop_splits_the_batch_behind_forward_and_backward(threads, n):
    """REDNet(threads=T).forward / backward on the cpu backend (the README's loop) give the output, dL/dx and
    gradients of the whole batch (float64, to rounding), the same as BatchThreads, and a second step reuses
    the threads; record_paths, which needs the whole batch's activations, is refused on a split batch."""
    whole = redcore.REDNet(depth=6, filters=8, dtype="float64", seed=4, threads=1)
    split = redcore.REDNet(depth=6, filters=8, dtype="float64", seed=4, threads=threads)
    for step in range(2):
        x, target = problem(n, np.float64, seed=step)
        outputs, grads, dxs = [], [], []
        for net in (whole, split):
            y = net.forward(x)
            _, dy = redcore.mse_loss(y, target, backend=net.backend)
            net.grads.flat[:] = np.nan                       # every entry must be written
            dxs.append(net.backward(dy))
            outputs.append(y)
            grads.append(net.grads.flat.copy())
        scale = np.abs(grads[0]).max()
        np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dxs[1], dxs[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(grads[1], grads[0], rtol=0, atol=1e-12 * scale)
    assert (split._batch_split is not None) == (n > 1)
    if n > 1:
        split.forward(x)
        with pytest.raises(ValueError, match="record_paths needs the batch run whole"):
            split.backward(dy, record_paths=True)
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        redcore.REDNet(depth=2, filters=2, threads=0)


def test_the_single_core_backend_keeps_the_variant_and_drops_the_threads():
    from redcore.backends import get_backend
    from redcore.threads import single_core_backend
    for name, conv, tile in (("cpu", "auto", 4), ("cpu-im2col", "im2col", 4), ("cpu-winograd2", "winograd", 2)):
        one = single_core_backend(get_backend(name))
        assert (one.single_threaded, one.conv, one.winograd_tile, one.name) == (True, conv, tile, "cpu"), name
        assert one.winograd == get_backend(name).winograd
    # Winograd from 64 channels either way; one core's slice keeps a smaller column buffer in its cache
    one, threaded = single_core_backend(get_backend("cpu")), get_backend("cpu")
    assert one.winograd_min_channels == threaded.winograd_min_channels == 64
    assert one.cols_budget < threaded.cols_budget


def test_networks_share_one_pool_of_worker_threads():
    """restore loads a network per call: its batch split must run on the process's warm worker threads, and
    closing one split must leave them to the next network."""
    first, second = (redcore.REDNet(depth=4, filters=4, dtype="float64", seed=s, threads=2) for s in (0, 1))
    x, _ = problem(2, np.float64)
    first.forward(x, keep=False)
    first._batch_split.close()
    y = second.forward(x, keep=False)
    assert second._batch_split.pool is first._batch_split.pool
    np.testing.assert_allclose(y, np.concatenate([second.replica(second.backend).forward(x[i:i + 1], keep=False)
                                                  for i in range(2)]), rtol=0, atol=1e-12)
