"""The paper's §4.2 argument, measured: in a deep RED-Net the gradient reaching a bottom layer with a skip
(conv2) is a skip path plus a main path (Eq. 12-13); the paper argues the skip path keeps it from vanishing.

    python bench/skip_paths.py                      # RED30 (skip step 2), 32 filters, 200 training steps
    python bench/skip_paths.py --filters 128 --steps 0

Prints ||dW_skip|| / ||dW_main|| for conv2's weights (and for every layer with a skip), at initialisation and
after training on Gaussian denoising (sigma 25), each the median over a few batches.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import redcore  # noqa: E402
import numpy as np  # noqa: E402
from redcore import data  # noqa: E402


def path_ratios(net, sampler, sigma, steps):
    """For every conv{i} with a skip: median over batches of ||dW from the skip path|| / ||dW from the main path||."""
    ratios = {}
    for s in steps:
        noisy, clean = sampler.denoising_batch(s, sigma)
        _, dy = redcore.mse_loss(net.forward(noisy), clean)
        net.backward(dy, record_paths=True)
        for i in net.path_grads:
            main, skip = net.path_weight_grads(i)
            ratios.setdefault(i, []).append(np.linalg.norm(skip) / max(np.linalg.norm(main), 1e-30))
    return {i: float(np.median(r)) for i, r in sorted(ratios.items())}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depth", type=int, default=30)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--steps", type=int, default=200, help="training steps between the two measurements")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--backend", default="cpu")
    args = p.parse_args()
    net = redcore.REDNet(depth=args.depth, filters=args.filters, skip_step=2, backend=args.backend)
    train_dir = data.default_train_folder()
    images = data.read_folder(train_dir) if train_dir else data.builtin_images()
    sampler = data.PatchSampler(images, patch=50, batch=args.batch, seed=1)
    probe = range(10**6, 10**6 + 5)         # fixed probe batches, disjoint from the training steps
    print(f"{net}\n||dW_skip|| / ||dW_main|| per conv layer with a skip (median of {len(probe)} batches)")
    at_init = path_ratios(net, sampler, 25, probe)
    opt = redcore.Adam(net.params, lr=args.lr)
    for s in range(args.steps):
        noisy, clean = sampler.denoising_batch(s, 25)
        _, dy = redcore.mse_loss(net.forward(noisy), clean)
        net.backward(dy)
        opt.step(net.grads)
    trained = path_ratios(net, sampler, 25, probe)
    print(f"{'layer':8s} {'at init':>10s} {f'after {args.steps} steps':>18s}")
    for i in at_init:
        print(f"conv{i:<4d} {at_init[i]:10.3f} {trained[i]:18.3f}")


if __name__ == "__main__":
    main()
