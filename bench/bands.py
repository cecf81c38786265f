"""One image whole (every kernel threaded over it) against as bands (one band per thread, single-threaded kernels).

    python bench/bands.py                                    # RED20-64 (the shipped models' shape), the sizes below
    python bench/bands.py --sizes 256x256,321x481 --repeats 9 --depth 30 --filters 128

redcore.inference runs one image on a cpu net as overlapping bands, one per thread of the net's batch split,
where the bands' context rows (the receptive radius on each side of a cut) add at most BAND_WASTE of the
image's pixels.  This measures both ways, each in its own process (in one process the whole-frame runs came
out slower after band runs), alternating which goes first, and prints the median of each, the speed-up and
the share of pixels the bands add: the figures BAND_WASTE is chosen from (bench/README.md).  Random weights:
the time does not depend on them.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import redcore  # noqa: E402
from redcore import inference  # noqa: E402


def size_list(text):
    """'HxW,HxW' -> [(H, W), ...] (argparse type)."""
    try:
        sizes = [tuple(int(v) for v in s.split("x")) for s in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes are HxW pairs of positive numbers, comma-separated; got {text!r}")
    return sizes


def timed(net, x, bands):
    """Seconds of one forward of x (C, H, W), as bands (a batch of them) or whole."""
    saved = inference.BAND_WASTE
    inference.BAND_WASTE = float("inf") if bands else -1.0      # always / never cut into bands
    try:
        t0 = time.perf_counter()
        inference._forward_chw(net, x)
        return time.perf_counter() - t0
    finally:
        inference.BAND_WASTE = saved


def network(args):
    """The timed net: --depth layers of --filters, random weights (skips as the paper's RED10 / RED20 / RED30)."""
    return redcore.REDNet(depth=args.depth, filters=args.filters, skip_step=0 if args.depth == 10 else 2)


def worker(args):
    """In the subprocess: median seconds of one way (--worker bands|whole) on one image size, as JSON."""
    net = network(args)
    h, w = args.sizes[0]
    x = np.random.default_rng(0).random((1, h, w), dtype=np.float32)
    bands = args.worker == "bands"
    timed(net, x, bands)                                        # compile and warm
    print(json.dumps(float(np.median([timed(net, x, bands) for _ in range(args.repeats)]))))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=size_list, default="128x128,160x160,192x192,224x224,256x256,321x481,512x512")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7, help="timed runs per process (after one warm-up)")
    p.add_argument("--rounds", type=int, default=2, help="processes per way and size, alternating")
    p.add_argument("--worker", choices=["bands", "whole"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    net = network(args)
    parts = net.batch_threads()
    if parts < 2:
        sys.exit(f"this net runs batches whole ({parts} thread): bands need NUMBA_NUM_THREADS >= 2")
    print(f"RED{args.depth}-{args.filters}, {parts} threads, receptive radius {net.receptive_radius}, median of "
          f"{args.repeats} in each of {args.rounds} processes per way; BAND_WASTE = {inference.BAND_WASTE}")
    print(f"{'image':>9s} {'whole':>8s} {'bands':>8s} {'speed-up':>9s} {'pixels added':>13s}  used")
    for h, w in args.sizes:
        times = {"bands": [], "whole": []}
        for r in range(args.rounds):
            for way in (("whole", "bands") if r % 2 == 0 else ("bands", "whole")):
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", way, "--sizes", f"{h}x{w}",
                       "--depth", str(args.depth), "--filters", str(args.filters), "--repeats", str(args.repeats)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                times[way].append(json.loads(out.stdout.strip().splitlines()[-1]))
        whole, split = np.median(times["whole"]), np.median(times["bands"])
        length, _ = inference._bands(max(h, w), parts, net.receptive_radius)
        used = inference._band_plan(net, (h, w)) is not None
        added = parts * length / max(h, w) - 1
        print(f"{h:4d}x{w:<4d} {whole:7.3f}s {split:7.3f}s {whole / split:8.2f}x {added:12.0%}  "
              f"{'bands' if used else 'whole'}", flush=True)


if __name__ == "__main__":
    main()
