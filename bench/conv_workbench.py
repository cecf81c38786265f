"""Kernel workbench (after llm.c's dev/cuda): one convolution kernel checked and timed on its own.

    python bench/conv_workbench.py                      # on a GPU: the tensor-core kernels against PyTorch
    python bench/conv_workbench.py --device emulation   # without one: the same checks on the CPU emulation

For each layer (64 -> 64 and 128 -> 128 channels, 3x3, padding 1, a batch of 50x50 maps, RED30's shapes)
the kernel's output is first checked against the float64 reference on the batch's first image, within the
TF32 rounding bound (2^-10 + 9 C 2^-24 of conv(|x|, |w|), tests/test_cuda_kernels.py derives it); then,
on a GPU, it is timed (median of --repeats after --warmup, CUDA events) beside torch.nn.functional.conv2d with
TF32 on (PyTorch's default for cuDNN convolutions) on channels-last tensors, in TFLOP/s (2 C K 9 H W per image).
Then the three calls of the training path (cuda-tf32: NCHW maps, the weight as stored): the forward with bias and
ReLU, the input gradient (the weight read flipped) and the weight gradient with the bias gradient, each checked
against its TF32 bound on one image and timed beside PyTorch's NCHW conv2d, conv2d_input and conv2d_weight;
and the forward with bfloat16 operands (cuda-bf16) beside PyTorch's bfloat16 channels-last conv2d.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from redcore.backends import get_backend  # noqa: E402

ref = get_backend("numpy")


def check(kernels, xp, x, w, b):
    """The kernel on x[:1] against the float64 reference: (max error / TF32 bound), which must be <= 1."""
    c, k = x.shape[1], w.shape[0]
    x0 = x[:1]
    y = xp.zeros((1, x.shape[2], x.shape[3], k), np.float32)
    kernels.conv3x3(y, xp.asarray(np.ascontiguousarray(x0.transpose(0, 2, 3, 1), np.float32)),
                         xp.asarray(np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(9, c, k), np.float32)),
                         xp.asarray(b.astype(np.float32)), 1, False)
    got = np.asarray(y.get() if hasattr(y, "get") else y, np.float64).transpose(0, 3, 1, 2)
    want = ref.conv2d(x0, w, 1, 1) + b[None, :, None, None]
    bound = (2.0 ** -10 + 9 * c * 2.0 ** -24) * (ref.conv2d(np.abs(x0), np.abs(w), 1, 1) + np.abs(b)[None, :, None, None])
    return float((np.abs(got - want) / bound).max())


def training_path_errors(kernels, xp, x, w, dy):
    """The kernels as cuda-tf32 calls them (NCHW; the weight as stored, flipped for the input gradient; the
    weight gradient with its bias gradient) on one image, as (max error / TF32 bound) each."""
    c = x.shape[1]
    dev = lambda a: xp.asarray(a.astype(np.float32))      # noqa: E731
    back = lambda a: np.asarray(a.get() if hasattr(a, "get") else a, np.float64)   # noqa: E731
    x, w, dy = (a.astype(np.float32).astype(np.float64) for a in (x, w, dy))
    y = xp.empty(x.shape, np.float32)
    zero = xp.zeros(c, np.float32)
    kernels.conv3x3(y, dev(x), dev(w), zero, 1, False, nhwc=False, wlayout=1)
    unit = 2.0 ** -10 + 9 * c * 2.0 ** -24
    errors = {"forward_error_over_bound": float((np.abs(back(y) - ref.conv2d(x, w, 1, 1))
                                                 / (unit * ref.conv2d(np.abs(x), np.abs(w), 1, 1))).max())}
    kernels.conv3x3(y, dev(dy), dev(w), zero, 1, False, nhwc=False, wlayout=2)
    errors["input_grad_error_over_bound"] = float((np.abs(back(y) - ref.conv2d_backward_input(dy, w, x.shape[2:], 1, 1))
                                                   / (unit * ref.conv2d_backward_input(np.abs(dy), np.abs(w), x.shape[2:], 1, 1))).max())
    dw, db = xp.empty(w.shape, np.float32), xp.empty(c, np.float32)
    kernels.conv3x3_wgrad(dw, db, dev(x), dev(dy), 1, nhwc=False, wlayout=1)
    terms = dy.shape[0] * dy.shape[2] * dy.shape[3]
    bound = (2.0 ** -10 + terms * 2.0 ** -24) * ref.conv2d_backward_weight(np.abs(dy), np.abs(x), 3, 1, 1)
    errors["weight_grad_error_over_bound"] = float((np.abs(back(dw) - ref.conv2d_backward_weight(dy, x, 3, 1, 1)) / bound).max())
    return errors


def deconv_skip_sum(x, w, b, skip):
    """PyTorch's RED decoder layer with a skip: (deconv + bias + ReLU, ReLU(that + skip)), the two maps kept."""
    import torch
    layer = torch.relu(torch.nn.functional.conv_transpose2d(x, w, b, padding=1))
    return layer, torch.relu(layer + skip)


def timed(run, gpu, warmup, repeats):
    """Median seconds of run(): CUDA events on a GPU; on the emulation the wall clock, which only proves
    that this script runs (the emulation's speed says nothing of a GPU's)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        if gpu:
            import cupy
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
        else:
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "emulation"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=50)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--time-emulation", action="store_true",
                   help="with --device emulation: run the timing code too (against PyTorch on the CPU), to prove it "
                        "runs before a GPU is lent; its figures mean nothing")
    args = p.parse_args()
    backend = get_backend("cuda" if args.device == "cuda" else "cuda-emulation")
    xp, kernels = backend.xp, backend.kernels
    batch, size = (args.batch, args.size) if args.device == "cuda" else (1, 12)   # the emulation is slow
    gpu = args.device == "cuda"
    rows = []
    for channels in (64, 128):
        rng = np.random.default_rng(channels)
        x = rng.standard_normal((batch, channels, size, size))
        w = rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(2 / (9 * channels))
        b = rng.standard_normal(channels) * 0.1
        dy = rng.standard_normal((batch, channels, size, size))
        flop = 2 * channels * channels * 9 * size * size * batch
        row = {"layer": f"{channels}->{channels}", "batch": batch, "size": size, "error_over_bound": check(kernels, xp, x, w, b)}
        row.update(training_path_errors(kernels, xp, x[:1], w, dy[:1]))
        if gpu or args.time_emulation:
            import torch
            device = "cuda" if gpu else "cpu"
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = True
            x_nhwc = xp.asarray(np.ascontiguousarray(x.transpose(0, 2, 3, 1), np.float32))
            w_taps = xp.asarray(np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(9, channels, channels), np.float32))
            b_dev = xp.asarray(b.astype(np.float32))
            y = xp.empty((batch, size, size, channels), np.float32)
            ours = timed(lambda: kernels.conv3x3(y, x_nhwc, w_taps, b_dev, 1, False), gpu, args.warmup, args.repeats)
            xt = torch.from_numpy(x.astype(np.float32)).to(device).to(memory_format=torch.channels_last)
            wt = torch.from_numpy(w.astype(np.float32)).to(device).to(memory_format=torch.channels_last)
            bt = torch.from_numpy(b.astype(np.float32)).to(device)
            theirs = timed(lambda: torch.nn.functional.conv2d(xt, wt, bt, padding=1), gpu, args.warmup, args.repeats)
            row.update(redcore_s=ours, torch_s=theirs, redcore_tflops=flop / ours / 1e12,
                       torch_tflops=flop / theirs / 1e12, ratio=theirs / ours)
            # the training path (cuda-tf32): NCHW maps, weights as stored, against PyTorch's NCHW defaults
            xc, wc, dyc = (xp.asarray(a.astype(np.float32)) for a in (x, w, dy))
            y = xp.empty_like(xc)
            dw, db = xp.empty_like(wc), xp.empty(channels, np.float32)
            ops = {f"forward_n{width}": (lambda width=width: kernels.conv3x3(
                       y, xc, wc, b_dev, 1, True, nhwc=False, wlayout=1, block_channels=width)) for width in (16, 32, 64)}
            ops.update({f"bf16_forward_n{width}": (lambda width=width: kernels.conv3x3(
                y, xc, wc, b_dev, 1, True, nhwc=False, wlayout=1, block_channels=width, operands="bf16"))
                for width in (16, 32, 64)})
            ops.update({"input_grad": lambda: kernels.conv3x3(y, dyc, wc, b_dev, 1, False, nhwc=False, wlayout=2),
                        # the input gradient through the ReLU that made the layer's input, mask in the epilogue
                        "input_grad_masked": lambda: kernels.conv3x3(y, dyc, wc, b_dev, 1, False, nhwc=False,
                                                                     wlayout=2, mask=xc),
                        # a decoder layer with a skip (Eq. 3): deconv + bias + ReLU, then + skip and ReLU, both
                        # maps written (training keeps the layer's output for its backward)
                        "deconv_skip_sum": lambda: kernels.conv3x3(y, xc, wc, b_dev, 1, True, nhwc=False, wlayout=2,
                                                                   addend=dyc, relu_sum=True, y_layer=y_layer),
                        "weight_grad": lambda: kernels.conv3x3_wgrad(dw, db, xc, dyc, 1, nhwc=False, wlayout=1)})
            y_layer = xp.empty_like(xc)
            xt, wt, dyt = (torch.from_numpy(a.astype(np.float32)).to(device) for a in (x, w, dy))
            forward = lambda: torch.relu(torch.nn.functional.conv2d(xt, wt, bt, padding=1))   # noqa: E731
            xb, wb, bb = (t.to(torch.bfloat16).to(memory_format=torch.channels_last) if t.ndim == 4 else
                          t.to(torch.bfloat16) for t in (xt, wt, bt))
            forward_bf16 = lambda: torch.relu(torch.nn.functional.conv2d(xb, wb, bb, padding=1))   # noqa: E731
            reference = {**{f"forward_n{width}": forward for width in (16, 32, 64)},
                         **{f"bf16_forward_n{width}": forward_bf16 for width in (16, 32, 64)},
                         "input_grad": lambda: torch.nn.grad.conv2d_input(xt.shape, wt, dyt, padding=1),
                         "input_grad_masked": lambda: torch.nn.grad.conv2d_input(xt.shape, wt, dyt, padding=1) * (xt > 0),
                         "deconv_skip_sum": lambda: deconv_skip_sum(xt, wt, bt, dyt),
                         "weight_grad": lambda: (torch.nn.grad.conv2d_weight(xt, wt.shape, dyt, padding=1),
                                                 dyt.sum((0, 2, 3)))}
            for name in ops:           # forward at each block width; the input gradient at the autotuned one
                ours = timed(ops[name], gpu, args.warmup, args.repeats)
                theirs = timed(reference[name], gpu, args.warmup, args.repeats)
                row[f"nchw_{name}"] = dict(redcore_s=ours, torch_s=theirs, redcore_tflops=flop / ours / 1e12,
                                           torch_tflops=flop / theirs / 1e12, ratio=theirs / ours)
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    worst = max(max(v for k, v in r.items() if "error_over_bound" in k) for r in rows)
    return 0 if worst <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
