"""Run under mpiexec by test_distributed.py: data-parallel steps on every rank, checked on rank 0 against one
process training on the concatenated global batch.

    mpiexec -n 2 python tests/mpi_worker.py OUT.json [mpi|nccl-standin|fail|hang]
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import redcore  # noqa: E402
from redcore import data  # noqa: E402
from redcore import distributed  # noqa: E402
from redcore.training import train_step  # noqa: E402

STEPS, GLOBAL_BATCH, SIGMA = 3, 16, 25


class CpuNcclStandIn:
    """The part of cupy.cuda.nccl that NcclCommunicator uses, on host memory, reducing over MPI: it runs the
    NCCL code path (unique id over MPI, pointers, dtype codes, the mean) without a GPU."""

    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0
    _dtypes = {7: np.float32, 8: np.float64}

    def __init__(self, comm):
        self.comm = comm

    def get_unique_id(self):
        return tuple(np.random.default_rng().integers(0, 256, 128))

    def NcclCommunicator(self, size, unique_id, rank):
        assert size == self.comm.Get_size() and rank == self.comm.Get_rank()
        ids = self.comm.allgather(unique_id)
        assert all(i == ids[0] for i in ids), "ranks received different NCCL ids"
        return self

    def allReduce(self, send_ptr, recv_ptr, count, dtype, op, stream):
        import ctypes
        assert op == self.NCCL_SUM and send_ptr == recv_ptr and stream == 0
        ctype = ctypes.c_float if self._dtypes[dtype] == np.float32 else ctypes.c_double
        buf = np.ctypeslib.as_array((ctype * count).from_address(recv_ptr))
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)


def make(batch):
    net = redcore.REDNet(depth=4, filters=4, backend="numpy", dtype="float64", seed=1)
    return net, redcore.Adam(net.params, lr=1e-3), data.PatchSampler(data.builtin_images(count=4, size=48), patch=16,
                                                                   batch=batch, seed=5)


def main(out, mode):
    world = MPI.COMM_WORLD
    if mode == "nccl-standin":
        comm = distributed.NcclCommunicator(world, timeout=60, nccl=CpuNcclStandIn(world))
    else:
        comm = distributed.MpiCommunicator(world, timeout=3 if mode == "hang" else 60)
    rank, size = comm.rank, comm.size
    net, opt, sampler = make(GLOBAL_BATCH // size)
    try:
        for step in range(STEPS):
            if mode == "fail" and rank == 1 and step == 1:
                raise ValueError("a deliberate failure")
            if mode == "hang" and rank == 1 and step == 1:
                time.sleep(3600)
            noisy, clean = sampler.denoising_batch(step, SIGMA, shard=rank)
            train_step(net, opt, noisy, clean, comm)
        same = comm.all_equal(distributed.checksum(net.backend, net.params.flat))
    except Exception as e:
        comm.abort(f"rank {rank}: {type(e).__name__}: {e}")
    params = world.gather(net.params.flat.copy(), root=0)
    if rank != 0:
        return
    # One process, the global batch: the ranks' shards of each step, concatenated.
    ref, ref_opt, _ = make(GLOBAL_BATCH)
    single = distributed.SingleProcess()
    for step in range(STEPS):
        shards = [sampler.denoising_batch(step, SIGMA, shard=r) for r in range(size)]
        noisy, clean = (np.concatenate([s[k] for s in shards]) for k in (0, 1))
        train_step(ref, ref_opt, noisy, clean, single)
    diffs = [float(np.abs(p - ref.params.flat).max()) for p in params]
    change = float(np.abs(ref.params.flat - make(GLOBAL_BATCH)[0].params.flat).max())
    with open(out, "w") as f:
        json.dump({"ranks": size, "max_difference": max(diffs), "checksums_equal": bool(same),
                   "parameter_change": change, "communicator": comm.name}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "mpi")
