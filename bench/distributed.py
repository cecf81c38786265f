"""Data-parallel scaling on this machine: training throughput with 1 and 2 ranks, and the all-reduce cost.

    python bench/distributed.py                      # RED30 (64 filters, valid), global batch 16
    python bench/distributed.py --config red30-release --steps 3

Runs, in separate processes and one after the other:
  1 rank,  --threads threads, the whole global batch;
  2 ranks (mpiexec -n 2), --threads / 2 threads each, half the batch each, one gradient all-reduce per step;
and, under 2 ranks, the time of one all-reduce of a float32 buffer of the released RED30's parameter count
(median of --repeats), from which the time per step on other interconnects follows (see bench/README.md).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from redcore.distributed import find_mpiexec  # noqa: E402
from train_step import CONFIGS  # noqa: E402


def worker(args):
    import redcore
    import numpy as np
    from redcore import distributed
    from redcore.training import train_step
    comm = distributed.init("cpu") if args.ranks > 1 else distributed.SingleProcess()
    cfg = CONFIGS[args.config]
    net = redcore.REDNet(backend="cpu", seed=0, **cfg)
    opt = redcore.Adam(net.params)
    rng = np.random.default_rng([1, comm.rank])
    per_rank = args.batch // comm.size
    x = rng.random((per_rank, 1, args.size, args.size), dtype=np.float32)
    target = np.clip(x + 0.1 * rng.standard_normal(x.shape, dtype=np.float32), 0, 1).astype(np.float32)
    times = []
    for step in range(args.steps + 1):                      # the first step warms up (JIT, buffers)
        t0 = time.perf_counter()
        train_step(net, opt, x, target, comm)
        times.append(time.perf_counter() - t0)
    result = {"step_s": sorted(times[1:])[len(times[1:]) // 2], "params": net.num_params}
    if comm.size > 1:
        release = redcore.REDNet(depth=30, filters=128, backend="numpy", dtype="float32")
        buf = np.random.default_rng(0).random(release.num_params).astype(np.float32)
        comm.allreduce_mean_(buf)                            # warm up
        t_ar = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            comm.allreduce_mean_(buf)
            t_ar.append(time.perf_counter() - t0)
        result.update(allreduce_s=sorted(t_ar)[len(t_ar) // 2], allreduce_params=release.num_params)
    if comm.rank == 0:
        print(json.dumps(result))


def run(ranks, threads, args):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--ranks", str(ranks), "--config", args.config,
           "--batch", str(args.batch), "--size", str(args.size), "--steps", str(args.steps),
           "--repeats", str(args.repeats)]
    if ranks > 1:
        cmd = [find_mpiexec(), "-n", str(ranks)] + cmd
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{ranks} ranks failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="red30", choices=sorted(CONFIGS))
    p.add_argument("--batch", type=int, default=16, help="global batch (split over the ranks)")
    p.add_argument("--size", type=int, default=50)
    p.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    p.add_argument("--repeats", type=int, default=20, help="timed all-reduces (median)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if find_mpiexec() is None:
        sys.exit(f"error: no mpiexec on PATH nor beside {sys.executable}: pip install mpich mpi4py")
    one = run(1, args.threads, args)
    two = run(2, max(1, args.threads // 2), args)
    print(f"{args.config}, global batch {args.batch} of {args.size}x{args.size}, {args.threads} cores, "
          f"median of {args.steps} steps")
    print(f"{'ranks':>5s} {'threads/rank':>12s} {'s/step':>8s} {'patches/s':>10s} {'speed-up':>9s}")
    for ranks, r in ((1, one), (2, two)):
        print(f"{ranks:5d} {max(1, args.threads // ranks):12d} {r['step_s']:8.3f} {args.batch / r['step_s']:10.2f} "
              f"{one['step_s'] / r['step_s']:8.2f}x")
    mb = two["allreduce_params"] * 4 / 2**20
    print(f"all-reduce of {two['allreduce_params']:,} float32 parameters ({mb:.1f} MiB, the released RED30) "
          f"between 2 ranks: {two['allreduce_s'] * 1e3:.2f} ms (median of {args.repeats}), "
          f"{two['allreduce_params'] * 4 / two['allreduce_s'] / 1e9:.2f} GB/s algorithm bandwidth")


if __name__ == "__main__":
    main()
