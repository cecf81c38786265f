r"""Data parallelism over the cores of one process, for the "cpu" backend.

On 2 cores, two single-threaded MPI ranks trained 1.22-1.34x faster than one process with two threads
(bench/distributed.py): a step's threaded phases do not all keep both cores busy (short Numba kernels, GEMMs
too narrow to split well, NumPy operations that run on one core).  BatchThreads does what the ranks do,
inside one process and without copies: the batch is cut into one slice per thread, and each thread runs the
whole forward and backward of its slice on a replica of the network that shares the parameters and has its own
activations, gradients and column buffer, with single-threaded Numba kernels (GIL released) and one BLAS thread.

The loss of Eq. 4 is a mean over the batch, so with slice s holding N_s of the N samples,

    L = sum_s (N_s / N) L_s          dL/dW = sum_s (N_s / N) dL_s/dW

(the same for reduction="mean": each slice's mean is over N_s C H W elements).  One Adam step on the summed
gradient then updates the shared parameters, as in single-threaded training: the result equals the one-thread
step up to the order of floating-point sums (tests/test_threads.py).
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from .ops.loss import mse_loss


def default_threads():
    """Numba's thread count (NUMBA_NUM_THREADS, else the cores): the threads BatchThreads uses by default, so
    one setting sizes both the kernel-threaded and the batch-split path (1 under `mpiexec` ranks that set it)."""
    import numba
    return numba.config.NUMBA_NUM_THREADS


class BatchThreads:
    """Forward, loss and backward of a batch split over `threads` Python threads (see the module docstring).

        runner = BatchThreads(net)                    # net on the "cpu" backend
        loss = runner.loss_and_backward(x, target)    # fills net.grads
        opt.step(net.grads)
    """

    def __init__(self, net, threads=None):
        from .backends.cpu_backend import CpuBackend
        if net.backend.name != "cpu":
            raise ValueError(f"BatchThreads runs the cpu backend's kernels; this network is on {net.backend.name!r}")
        self.net = net
        self.threads = int(threads or default_threads())
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1; got {threads}")
        self.replicas = [net.replica(CpuBackend(single_threaded=True)) for _ in range(self.threads)]
        for replica in self.replicas:            # the fast path's choice follows the network's backend
            replica.backend.winograd = net.backend.winograd
            replica.backend.winograd_tile = net.backend.winograd_tile
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="redcore-batch")
        self.blas = ThreadpoolController()

    def slices(self, n):
        """[(a, b)] of at most `threads` non-empty, near-equal slices of n samples."""
        bounds = np.linspace(0, n, min(self.threads, n) + 1).round().astype(int)
        return list(zip(bounds[:-1], bounds[1:]))

    def loss_and_backward(self, x, target, reduction="batch"):
        """The loss of Eq. 4 on (x, target), with its gradient in net.grads.  Returns the loss (a float)."""
        if getattr(x, "ndim", None) != 4 or getattr(target, "shape", None) != x.shape:
            raise ValueError(f"loss_and_backward takes (N, C, H, W) inputs and targets of one shape; got "
                             f"{getattr(x, 'shape', None)} and {getattr(target, 'shape', None)}")
        slices = self.slices(x.shape[0])

        def one_slice(r):
            replica, (a, b) = self.replicas[r], slices[r]
            loss, dy = mse_loss(replica.forward(x[a:b]), target[a:b], reduction, backend=replica.backend)
            replica.backward(dy, input_grad=False)
            return loss

        # One BLAS thread per Python thread while the slices run: the cores are taken by the slices.
        with self.blas.limit(limits=1, user_api="blas"):
            losses = list(self.pool.map(one_slice, range(len(slices))))
        weights = [(b - a) / x.shape[0] for a, b in slices]
        total = self.net.grads.flat
        np.multiply(self.replicas[0].grads.flat, total.dtype.type(weights[0]), out=total)
        for replica, weight in zip(self.replicas[1:len(slices)], weights[1:]):
            total += total.dtype.type(weight) * replica.grads.flat
        return float(sum(w * loss for w, loss in zip(weights, losses)))

    def close(self):
        self.pool.shutdown()
