"""Per-layer timings of a training step, redcore beside PyTorch: every conv and deconv layer's forward, input
gradient and weight gradient, on one core with one thread's share of the batch.

    python bench/layers.py                                  # RED30-64 (valid) and the released RED30
    python bench/layers.py --configs red30-release --batch 16 --threads 2 --repeats 5

Why one core: on the cpu backend a training step splits the batch over the cores (redcore.threads), each core
running every layer single-threaded on batch/threads images, so that is the unit whose cost adds up to a step.
PyTorch runs here on the same images with torch.set_num_threads(1): its per-core cost.  Layers of the same
shape are timed once and counted; the totals (count x time) are the convolutions' share of a step per core,
and bench/train_step.py gives the whole step (element-wise work, Adam, threading) on all cores.

redcore: the cpu backend's primitives as REDNet calls them (Winograd F(4x4, 3x3) from 64 channels, im2col
below; maps channels-last where the network keeps them so).  PyTorch: F.conv2d / F.conv_transpose2d and
aten.convolution_backward with one output at a time.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, HERE)
from train_step import CONFIGS  # noqa: E402


def layer_shapes(cfg, size):
    """[(name, kind, c_in, c_out, h_in, w_in, padding)] of every layer of the network on size x size input."""
    n, f = cfg["depth"] // 2, cfg["filters"]
    pad = 1 if cfg["padding"] == "same" else 0
    sizes, layers = [size], []
    for i in range(1, n + 1):
        c_in = 1 if i == 1 else f
        layers.append((f"conv{i}", "conv", c_in, f, sizes[-1], pad))
        sizes.append(sizes[-1] + 2 * pad - 2)
    for j in range(1, n + 1):
        i = n + 1 - j            # deconv{j} restores conv{i}'s input size
        c_out = 1 if j == n else f
        layers.append((f"deconv{j}", "deconv", f, c_out, sizes[i], pad))
    return layers


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * sorted(times)[len(times) // 2]


def redcore_layer(be, kind, x, w, dy, h, h_out, pad):
    """(forward, input gradient, weight gradient) of one layer as REDNet calls the backend."""
    if kind == "conv":
        return (lambda: be.conv2d(x, w, 1, pad), lambda: be.conv2d_backward_input(dy, w, (h, h), 1, pad),
                lambda: be.conv2d_backward_weight(dy, x, 3, 1, pad))
    # the transposed conv is the conv's adjoint (ops/conv.py)
    return (lambda: be.conv2d_backward_input(x, w, (h_out, h_out), 1, pad), lambda: be.conv2d(dy, w, 1, pad),
            lambda: be.conv2d_backward_weight(x, dy, 3, 1, pad))


def time_layers(framework, shapes, images, repeats):
    """{(kind, c_in, c_out, h, pad): (forward, input gradient, weight gradient) ms} for one framework."""
    import numpy as np
    rng = np.random.default_rng(0)
    result = {}
    if framework == "torch":
        import torch
        import torch.nn.functional as F
        torch.set_num_threads(1)
        conv_bwd = torch.ops.aten.convolution_backward
    else:
        from threadpoolctl import threadpool_limits
        from redcore.backends.cpu_backend import CpuBackend
        threadpool_limits(1, "blas")
        be = CpuBackend(single_threaded=True)        # what each thread of a training step runs
    for key in sorted(set(shapes)):
        kind, c_in, c_out, h, pad = key
        h_out = h + 2 * pad - 2 if kind == "conv" else h - 2 * pad + 2
        x = rng.random((images, c_in, h, h), dtype=np.float32)
        w = rng.standard_normal((c_out, c_in, 3, 3) if kind == "conv" else (c_in, c_out, 3, 3)).astype(np.float32)
        dy = rng.standard_normal((images, c_out, h_out, h_out)).astype(np.float32)
        if framework == "torch":
            xt, wt, dyt = (torch.from_numpy(a) for a in (x, w, dy))
            op = F.conv2d if kind == "conv" else F.conv_transpose2d
            back = lambda mask: conv_bwd(dyt, xt, wt, None, [1, 1], [pad, pad], [1, 1],  # noqa: E731
                                         kind == "deconv", [0, 0], 1, mask)
            fns = (lambda: op(xt, wt, padding=pad), lambda: back([True, False, False]),
                   lambda: back([False, True, False]))
        else:
            # the maps in the layout the network hands them on in (cpu_backend: channels-last where the layer
            # taking them runs the channels-last Winograd kernels)
            x, dy = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
                     if be._channels_last_output(a.shape[1]) else a for a in (x, dy))
            fns = redcore_layer(be, kind, x, w, dy, h, h_out, pad)
        result[key] = tuple(median_ms(fn, repeats) for fn in fns)
    return result


def worker(args):
    import json
    if args.framework != "torch":
        sys.path.insert(0, ROOT)
        import redcore  # noqa: F401  (first: the thread pools' idle policy)
    layers = layer_shapes(CONFIGS[args.config], args.size)
    times = time_layers(args.framework, [(k, ci, co, h, p) for _, k, ci, co, h, p in layers],
                        args.batch // args.threads, args.repeats)
    print(json.dumps([[list(k), v] for k, v in times.items()]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--configs", default="red30,red30-release")
    p.add_argument("--batch", type=int, default=16, help="the training step's batch (each core: batch / threads)")
    p.add_argument("--threads", type=int, default=2, help="cores a training step splits its batch over")
    p.add_argument("--size", type=int, default=50, help="patch size")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--framework", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    import json
    print(f"one core, {args.batch // args.threads} images of {args.size}x{args.size} (a batch of {args.batch} over "
          f"{args.threads} cores), median of {args.repeats}; ms per layer: forward / input gradient / weight gradient")
    for config in args.configs.split(","):
        times = {}
        for framework in ("torch", "redcore"):      # each in its own process, one after the other
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--framework", framework, "--config", config,
                   "--batch", str(args.batch), "--threads", str(args.threads), "--size", str(args.size),
                   "--repeats", str(args.repeats)]
            env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            times[framework] = {tuple(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1])}
        layers = layer_shapes(CONFIGS[config], args.size)
        print(f"\n{config}")
        print(f"{'layers':22s} {'shape (C_in>C_out, HxW)':26s} {'redcore fwd/dx/dW':>22s} {'PyTorch fwd/dx/dW':>22s} "
              f"{'ratio':>6s}")
        groups = {}
        for name, kind, c_in, c_out, h, pad in layers:
            groups.setdefault((kind, c_in, c_out, h, pad), []).append(name)
        total = {"redcore": 0.0, "torch": 0.0}
        for key, names in groups.items():
            kind, c_in, c_out, h, pad = key
            r, t = times["redcore"][key], times["torch"][key]
            total["redcore"] += len(names) * sum(r)
            total["torch"] += len(names) * sum(t)
            label = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]} ({len(names)})"
            print(f"{label:22s} {f'{kind} {c_in}>{c_out}, {h}x{h} pad {pad}':26s} "
                  f"{'/'.join(f'{v:.1f}' for v in r):>22s} {'/'.join(f'{v:.1f}' for v in t):>22s} "
                  f"{sum(t) / sum(r):5.2f}x")
        print(f"{'all layers':49s} {total['redcore']:17.0f} ms {total['torch']:17.0f} ms "
              f"{total['torch'] / total['redcore']:5.2f}x")


if __name__ == "__main__":
    main()
