"""Data-parallel training over processes: MPI (mpi4py) for launching and CPU collectives, NCCL for GPUs.

Every rank holds the whole network and draws its own shard of the global batch (PatchSampler seeds
(seed, step, rank)); after backward the gradients are averaged with one all-reduce of the flat gradient
buffer; every rank then takes the same Adam step, so the parameters stay identical.  With the paper's
loss (Eq. 4, averaged over the batch) the mean of the ranks' gradients is exactly the gradient of the
global batch: (1/S) sum_r (1/B_r) sum_{n in r} g_n = (1/B) sum_n g_n when every B_r = B / S.

    comm = distributed.init(backend)            # MpiCommunicator, NcclCommunicator or SingleProcess
    loss = redcore.training.train_step(net, opt, noisy, clean, comm)

Why MPICH: its PyPI wheel (`pip install mpich mpi4py`) is a self-contained MPI with `mpiexec`, runs as root
without extra flags (Open MPI refuses by default), and is ABI-compatible with the MPIs of most clusters
(Intel MPI, Cray MPICH), so the same mpi4py build runs under their `srun`.

Failures end the job instead of hanging: a rank that raises calls MPI Abort (which ends every rank), and
every blocking collective is posted non-blocking and waited for at most `timeout` seconds, after which the
rank reports which collective did not complete and aborts.
"""
import os
import shutil
import sys
import time
import zlib

import numpy as np

DEFAULT_TIMEOUT = 600.0     # seconds a collective may wait (rank 0 validates and checkpoints meanwhile)


class CollectiveTimeout(RuntimeError):
    pass


class SingleProcess:
    """One process: every collective is the identity."""

    rank, size, name = 0, 1, "single process"

    def allreduce_mean_(self, array):
        return array

    def mean(self, value):
        return float(value)

    def broadcast_array_(self, array):
        return array

    def broadcast_object(self, obj):
        return obj

    def all_equal(self, value):
        return True

    def abort(self, message):
        raise RuntimeError(message)


class MpiCommunicator:
    """Collectives over MPI.COMM_WORLD (host arrays; a device array is staged through the host)."""

    def __init__(self, comm=None, timeout=DEFAULT_TIMEOUT):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = comm or MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = float(timeout)
        self.name = f"MPI ({MPI.Get_library_version().splitlines()[0].strip()}), {self.size} ranks"

    def _wait(self, request, what):
        """Wait for a non-blocking collective, at most `timeout` seconds."""
        deadline = time.monotonic() + self.timeout
        while not request.Test():
            if time.monotonic() > deadline:
                raise CollectiveTimeout(f"rank {self.rank}: the {what} did not complete within {self.timeout:g} s "
                                        "(another rank failed or hangs)")
            time.sleep(1e-4)

    def _in_place(self, array, collective, what):
        """Run collective(host buffer) on array, staging a device array through the host and back."""
        host = array if isinstance(array, np.ndarray) else array.get()
        self._wait(collective(host), what)
        if host is not array:
            array.set(host)
        return array

    def allreduce_mean_(self, array):
        """array <- the mean of every rank's array, in place (one all-reduce of the whole buffer)."""
        self._in_place(array, lambda host: self.comm.Iallreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM),
                       "gradient all-reduce")
        array /= self.size
        return array

    def mean(self, value):
        buf = np.array([float(value)])
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), "loss all-reduce")
        return float(buf[0]) / self.size

    def broadcast_array_(self, array):
        """array <- rank 0's array, in place."""
        return self._in_place(array, lambda host: self.comm.Ibcast(host, root=0), "broadcast")

    def broadcast_object(self, obj):
        """A small JSON-able object (training state) from rank 0 (pickled between our own processes)."""
        return self.comm.bcast(obj, root=0)

    def all_equal(self, value):
        """True when every rank passed the same integer (min == max over the ranks)."""
        lo, hi = np.array([value], np.int64), np.array([value], np.int64)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, lo, op=self.MPI.MIN), "checksum all-reduce")
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, hi, op=self.MPI.MAX), "checksum all-reduce")
        return int(lo[0]) == int(hi[0])

    def abort(self, message):
        import sys
        import time
        print(f"error: {message}", file=sys.stderr, flush=True)
        # mpiexec relays each rank's stderr through its process manager, and Abort kills those too: without a
        # moment to relay it, the one line that says why the job ended was lost in about 1 run of 6.
        time.sleep(0.5)
        self.comm.Abort(1)


class NcclCommunicator(MpiCommunicator):
    """GPU all-reduce through NCCL (cupy.cuda.nccl), the NCCL id broadcast over MPI; the small collectives
    (loss, checksums, state) stay on MPI.  `nccl` and `stream` may be stand-ins with the same interface
    (the tests run this class over a CPU stand-in of NCCL)."""

    def __init__(self, comm=None, timeout=DEFAULT_TIMEOUT, nccl=None, stream=None):
        super().__init__(comm, timeout)
        if nccl is None:
            from cupy.cuda import nccl
        self.nccl = nccl
        unique_id = self.comm.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
        self.nccl_comm = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        self.stream = stream
        self.name = f"NCCL over {self.size} GPUs (id over {self.name})"

    def _dtype(self, array):
        return {np.dtype(np.float32): self.nccl.NCCL_FLOAT32, np.dtype(np.float64): self.nccl.NCCL_FLOAT64}[array.dtype]

    @staticmethod
    def _pointer(array):
        return array.data.ptr if hasattr(array.data, "ptr") else array.ctypes.data

    def allreduce_mean_(self, array):
        ptr = self._pointer(array)
        stream = 0 if self.stream is None else self.stream.ptr
        self.nccl_comm.allReduce(ptr, ptr, array.size, self._dtype(array), self.nccl.NCCL_SUM, stream)
        array *= array.dtype.type(1.0 / self.size)
        return array


def find_mpiexec():
    """The path of `mpiexec`: on PATH, else beside the running interpreter, where MPICH's wheel puts it in a
    virtualenv that is not activated (`venv/bin/python ...`); None when there is neither."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return shutil.which("mpiexec") or (beside if os.access(beside, os.X_OK) else None)


def init(backend_name, timeout=DEFAULT_TIMEOUT):
    """The communicator for a job launched by mpiexec/srun: NCCL for the cuda backend (one GPU per rank,
    chosen by the node-local rank), MPI otherwise.  A clear error when mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError("distributed training needs mpi4py and an MPI: pip install mpich mpi4py") from None
    if backend_name == "cuda":
        import cupy
        local = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        cupy.cuda.Device(local % cupy.cuda.runtime.getDeviceCount()).use()
        return NcclCommunicator(timeout=timeout)
    return MpiCommunicator(timeout=timeout)


def checksum(backend, flat):
    """CRC32 of the parameters' bytes: equal on every rank exactly when the parameters are identical."""
    return zlib.crc32(np.ascontiguousarray(backend.to_numpy(flat)).view(np.uint8)) & 0xFFFFFFFF


def sync_from_rank0(net, optimizer, comm, state=None):
    """Rank 0's parameters, Adam moments, step count and hyper-parameters (and training state) on every rank."""
    comm.broadcast_array_(net.params.flat)
    if optimizer.m_flat is not None:
        comm.broadcast_array_(optimizer.m_flat)
        comm.broadcast_array_(optimizer.v_flat)
    optimizer.t = comm.broadcast_object(optimizer.t)
    optimizer.lr, optimizer.betas, optimizer.eps = comm.broadcast_object((optimizer.lr, optimizer.betas, optimizer.eps))
    return comm.broadcast_object(state)
