r"""Data parallelism over the cores of one process, for the "cpu" backend.

Two single-threaded MPI ranks trained faster than one process with two threads (bench/README.md,
bench/distributed.py): a step's threaded phases do not all keep both cores busy (short Numba kernels, GEMMs
too narrow to split well, NumPy operations that run on one core).  BatchSplit does what the ranks do,
inside one process and without copies: the batch is cut into one slice per thread, and each thread runs the
whole forward and backward of its slice on a replica of the network that shares the parameters and has its own
activations, gradients and column buffer, with single-threaded Numba kernels (GIL released) and one BLAS thread.
REDNet.forward and REDNet.backward use it for every cpu batch of more than one image (REDNet(threads=...)),
so the plain loop forward / mse_loss / backward / Adam.step is the fast one.

The loss of Eq. 4 is a sum over the batch's samples, so dL/dy of the whole batch, cut into the slices, is each
slice's share of it, and the weight gradient is the sum of the slices' weight gradients:

    dL/dW = sum_s sum_{n in s} (dy_n/dW)^T dL/dy_n

(whatever the reduction: its 1/N or 1/M is already in dL/dy).  One Adam step on the summed gradient then
updates the shared parameters, as in single-threaded training: the result equals the one-thread step up to the
order of floating-point sums (tests/test_threads.py).
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from .ops.loss import mse_loss


def default_threads():
    """Numba's thread count (NUMBA_NUM_THREADS, else the cores): the threads BatchThreads uses by default, so
    one setting sizes both the kernel-threaded and the batch-split path (1 under `mpiexec` ranks that set it)."""
    import numba
    return numba.config.NUMBA_NUM_THREADS


def use_cores(n):
    """Keep this process's compute on n cores: Numba's parallel kernels on at most n threads and BLAS on n.
    `examples/train.py --threads n` calls it, so that `--threads 1` trains on one core: without it the whole
    batch would run on the kernels' own threads, one per core, and two such trainings side by side would ask
    for twice the cores they have (their spinning BLAS and Numba threads then slow both down several-fold)."""
    import numba
    from threadpoolctl import threadpool_limits
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"the cores to use must be a whole number >= 1; got {n!r}")
    numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(int(n))                       # the BLAS and OpenMP libraries loaded so far,
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(int(n))          # and those loaded later (SciPy's own OpenBLAS) read these


def single_core_backend(backend):
    """The single-threaded twin of a cpu backend (its conv and Winograd tile): kernels without threads, Winograd
    from 64 channels and a column buffer sized for one core's cache (CpuBackend(single_threaded=True)).  Each
    thread of a BatchSplit runs one; so does a whole training on one core (`examples/train.py --threads 1`),
    which on the threaded kernels would take im2col for 64 channels and about 3x as long a step."""
    from .backends.cpu_backend import CpuBackend
    return CpuBackend(single_threaded=True, conv=backend.conv, winograd_tile=backend.winograd_tile)


_pools = {}      # threads -> the ThreadPoolExecutor every BatchSplit of that width runs on


def _pool(threads):
    """One pool of `threads` worker threads per process, shared by every BatchSplit: a new network (restore
    loads one per call) then runs on threads whose memory is already warm, not on new ones that first fault
    in every buffer (bench/README.md).  The slices of one call are independent, so calls may share it."""
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix=f"redcore-batch{threads}")
    return _pools[threads]


class BatchSplit:
    """net's forward and backward of a batch, cut into one slice per thread (see the module docstring).

    REDNet runs its cpu batches through one of these (REDNet(threads=...)): the caller sees one forward
    and one backward of the whole batch.  dL/dy of the whole batch is what backward receives, so each
    slice's gradient is already weighted by its share of the loss and the gradients simply add up."""

    def __init__(self, net, threads=None):
        if net.backend.name != "cpu":
            raise ValueError(f"the batch split runs the cpu backend's kernels; this network is on {net.backend.name!r}")
        self.net = net
        self.threads = int(threads or default_threads())
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1; got {threads}")
        # each thread's backend: the network's variant (its conv and Winograd tile), single-threaded
        self.replicas = [net.replica(single_core_backend(net.backend)) for _ in range(self.threads)]
        self.pool = _pool(self.threads)
        self.blas = ThreadpoolController()
        self.bounds = None                       # the slices of the last forward

    def slices(self, n):
        """[(a, b)] of at most `threads` non-empty, near-equal slices of n samples."""
        bounds = np.linspace(0, n, min(self.threads, n) + 1).round().astype(int)
        return list(zip(bounds[:-1], bounds[1:]))

    def _run(self, work):
        """work(replica, a, b) for every slice at once, each on its thread; their results in slice order."""
        # One BLAS thread per Python thread while the slices run: the cores are taken by the slices.
        with self.blas.limit(limits=1, user_api="blas"):
            return list(self.pool.map(lambda r: work(self.replicas[r], *self.bounds[r]), range(len(self.bounds))))

    def forward(self, x, keep=True):
        """The net's output for the batch x (N, C, H, W), slice by slice."""
        self.bounds = self.slices(x.shape[0])
        return np.concatenate(self._run(lambda replica, a, b: replica.forward(x[a:b], keep=keep)))

    def backward(self, dy, input_grad=True, accumulate=False):
        """Fill net.grads with the sum of the slices' gradients (add it with accumulate); return dL/dx (None
        with input_grad=False)."""
        if self.bounds is None:
            raise RuntimeError("REDNet.backward needs a forward pass first")
        dxs = self._run(lambda replica, a, b: replica.backward(dy[a:b], input_grad=input_grad))
        total = self.net.grads.flat
        if not accumulate:
            total[...] = 0
        for replica in self.replicas[:len(self.bounds)]:
            total += replica.grads.flat
        self.bounds = None
        return np.concatenate(dxs) if input_grad else None

    def close(self):
        """Nothing to release: the worker threads are the process's (_pool), kept for the next network."""


class BatchThreads:
    """Forward, loss and backward of a batch split over `threads` Python threads, whatever net.threads says.

        runner = BatchThreads(net)                    # net on the "cpu" backend
        loss = runner.loss_and_backward(x, target)    # fills net.grads
        opt.step(net.grads)
    """

    def __init__(self, net, threads=None):
        self.net, self.split = net, BatchSplit(net, threads)
        self.threads, self.replicas = self.split.threads, self.split.replicas

    def slices(self, n):
        return self.split.slices(n)

    def loss_and_backward(self, x, target, reduction="batch"):
        """The loss of Eq. 4 on (x, target), with its gradient in net.grads.  Returns the loss (a float)."""
        if getattr(x, "ndim", None) != 4 or getattr(target, "shape", None) != x.shape:
            raise ValueError(f"loss_and_backward takes (N, C, H, W) inputs and targets of one shape; got "
                             f"{getattr(x, 'shape', None)} and {getattr(target, 'shape', None)}")
        loss, dy = mse_loss(self.split.forward(np.asarray(x, self.net.dtype)), target, reduction,
                            backend=self.net.backend)
        self.split.backward(dy, input_grad=False)
        return loss

    def close(self):
        self.split.close()
