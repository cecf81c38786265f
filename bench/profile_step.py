"""Where one core's share of a training step goes: the cpu backend's kernels and GEMMs, timed one by one.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/profile_step.py               # RED30-64, valid
    python bench/profile_step.py --config red30-release --images 8 --repeats 5

One thread of a training step (redcore.threads) runs forward, loss and backward of its slice of the batch on a
single-threaded cpu backend with one BLAS thread; this does the same on `--images` images and wraps every Numba
kernel, Winograd transform and GEMM (numpy.matmul) with a timer.  "other" is the rest: Python, NumPy element-wise
operations, allocation.  The wrappers add a few microseconds per call, so the total is a little above a step's.
"""
import argparse
import collections
import os
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from train_step import CONFIGS  # noqa: E402

KERNELS = ("im2col", "col2im", "add_bias", "bias_backward", "add_bias_channels_last", "bias_backward_channels_last",
           "relu", "add_relu", "relu_backward")
TRANSFORMS = ("input_transform", "output_transform", "gradient_transform", "filter_transform",
              "input_gradient_filter_transform", "weight_gradient_from_winograd")


def timed(namespace, name, totals, counts, label):
    """Replace namespace.name by a wrapper adding its wall time to totals[label]."""
    fn = getattr(namespace, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        totals[label] += time.perf_counter() - t0
        counts[label] += 1
        return out
    setattr(namespace, name, wrapper)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="red30", choices=sorted(CONFIGS))
    p.add_argument("--images", type=int, default=8, help="images per core (a batch of 16 over 2 cores: 8)")
    p.add_argument("--size", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    from threadpoolctl import threadpool_limits

    import redcore
    from redcore.backends.cpu_backend import CpuBackend
    from redcore.ops.loss import mse_loss

    net = redcore.REDNet(backend="cpu", **CONFIGS[args.config])
    be = CpuBackend(single_threaded=True)
    replica = net.replica(be)
    totals, counts = collections.defaultdict(float), collections.Counter()
    # private copies of the (shared, cached) kernel namespaces, so that only this backend is wrapped
    be.kernels = types.SimpleNamespace(**vars(be.kernels))
    be.kernels.winograd4 = types.SimpleNamespace(**vars(be.kernels.winograd4))
    for name in KERNELS:
        timed(be.kernels, name, totals, counts, name)
    for name in TRANSFORMS:
        timed(be.kernels.winograd4, name, totals, counts, "winograd4." + name)
    be.xp = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    timed(be.xp, "matmul", totals, counts, "GEMM (numpy.matmul)")

    x = np.random.default_rng(0).random((args.images, 1, args.size, args.size), dtype=np.float32)

    def step():
        y = replica.forward(x)
        _, dy = mse_loss(y, x, "batch", backend=be)
        replica.backward(dy, input_grad=False)

    with threadpool_limits(1, "blas"):
        step()                                       # compilation, buffers
        totals.clear(), counts.clear()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            step()
        per_step = (time.perf_counter() - t0) / args.repeats
    print(f"{args.config}: forward + backward of {args.images} images of {args.size}x{args.size} on one core: "
          f"{per_step * 1e3:.1f} ms (mean of {args.repeats})")
    for label, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {label:42s} {total / args.repeats * 1e3:7.1f} ms  {counts[label] // args.repeats:4d} calls")
    print(f"  {'other':42s} {(per_step - sum(totals.values()) / args.repeats) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
