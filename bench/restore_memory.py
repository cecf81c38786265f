"""Peak memory and time of redcore.restore on a large photo (tiled), in a fresh process.

    python bench/restore_memory.py                                   # 4000x3000 RGB, RED20-64, jpeg (Y), tiles 512
    python bench/restore_memory.py --task denoise --depth 30 --filters 128

The network has random weights (memory and time do not depend on them); the photo is a synthetic RGB image.
Peak memory is the process's maximum resident set size (getrusage), which includes Python, NumPy, Numba and
the BLAS; the image buffers alone are printed beside it.
"""
import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import redcore  # noqa: E402
import numpy as np  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=4000)
    p.add_argument("--height", type=int, default=3000)
    p.add_argument("--task", default="jpeg")
    p.add_argument("--level", default=None)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--tile", type=int, default=512)
    args = p.parse_args()
    net = redcore.REDNet(depth=args.depth, filters=args.filters, skip_step=0 if args.depth == 10 else 2)
    rng = np.random.default_rng(0)
    photo = (rng.random((args.height // 8, args.width // 8, 3)) * 255).astype(np.uint8)
    photo = np.repeat(np.repeat(photo, 8, axis=0), 8, axis=1)          # blocks: a cheap stand-in for a photo
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    t0 = time.perf_counter()
    out = redcore.restore(photo, args.task, args.level, model=net, tile=args.tile)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"{args.width}x{args.height} RGB, task {args.task}, {net.config['depth']} layers x {args.filters} filters, "
          f"tiles {args.tile}: {seconds:.1f} s, peak RSS {peak:.0f} MiB (before the call {before:.0f} MiB; "
          f"the photo in and out as uint8: {2 * photo.nbytes / 2**20:.0f} MiB), output {out.shape} {out.dtype}")


if __name__ == "__main__":
    main()
