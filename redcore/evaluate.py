"""Evaluation harness: the paper's tables for any task, with the corrupted input and a classical baseline.

    python -m redcore.evaluate --task denoise --level 25 --data Set12 [--weights model.npz] [--ensemble]

For every image of the set: read it the way the task's protocol says (gray, or the 8-bit Y channel for SR and
JPEG), crop it where the protocol crops (SR: a multiple of the scale), corrupt it with a seed of its own
(seed, image index), then score the corrupted input, the task's classical baseline (redcore.baselines) and,
given --weights, the network (full frame, or overlapping tiles with --tile) by PSNR and SSIM against the clean
image, shaving the protocol's border.  Prints a per-image and average table and writes it as CSV and JSON.
"""
import argparse
import csv
import io
import json
import os
import sys
import time

import numpy as np

from . import baselines, tasks
from .argtypes import positive_int
from .backends import BACKEND_CHOICES, PRECISION_HELP, PRECISIONS, with_precision
from .tasks import level_label
from .data import load_test_set
from .inference import restore_array
from .io import atomic_write
from .metrics import psnr, ssim, to_uint8


def evaluate(task, level, names, images, net=None, ensemble=False, tile=None, baseline=True, seed=0,
             log=print, keep_images=False):
    """Score each method on each image.  Returns a dict: methods, per-image rows, averages (and images)."""
    task = tasks.get(task) if isinstance(task, str) else task
    level = task.parse_level(level)
    shave = task.shave(level)
    methods = ["bicubic" if task.name == "sr" else "input"]
    base = baselines.BASELINES.get(task.name) if baseline else None
    if base is not None:
        methods.append(base[0])
    net_label = "RED-Net x8" if ensemble else "RED-Net"
    # Inpainting: the network is blind (paper §5.6), the harmonic baseline knows the mask; with the mask known
    # too, the intact pixels are kept and the network's taken inside it (as `redcore restore --mask` does).
    mask_label = f"{net_label}, mask known" if net is not None and task.name == "inpaint" else None
    if net is not None:
        methods.append(net_label)
    if mask_label:
        methods.append(mask_label)
    rows, seconds, kept = [], {m: 0.0 for m in methods}, []
    for index, (name, image) in enumerate(zip(names, images)):
        clean = task.prepare(image, level)
        corrupted, info = task.corrupt(clean, level, np.random.default_rng([seed, index]))
        outputs = {methods[0]: corrupted}
        if base is not None:
            start = time.perf_counter()
            try:
                outputs[base[0]] = base[1](corrupted, level, info)
            except RuntimeError as e:        # an optional package is missing: say so once, go on without it
                log(f"note: {e}; the {base[0]} column is left out")
                methods.remove(base[0])
                base = None
            else:
                seconds[base[0]] += time.perf_counter() - start
        if net is not None:
            start = time.perf_counter()
            outputs[net_label] = restore_array(net, corrupted, ensemble=ensemble, tile=tile)
            seconds[net_label] += time.perf_counter() - start
            if mask_label:
                mask = info["mask"] if corrupted.ndim == 2 else info["mask"][..., None]
                outputs[mask_label] = np.where(mask, outputs[net_label], corrupted)
        row = {"image": name}
        for m, out in outputs.items():
            row[m] = {"psnr": psnr(out, clean, shave), "ssim": ssim(out, clean, shave)}
        rows.append(row)
        if keep_images:
            kept.append({"image": name, "clean": clean, **outputs})
    average = {m: {k: float(np.mean([r[m][k] for r in rows])) for k in ("psnr", "ssim")} for m in methods}
    result = {"task": task.name, "level": level if not isinstance(level, tuple) else list(level),
              "shave": shave, "seed": seed, "ensemble": bool(ensemble and net is not None), "tile": tile,
              "methods": methods, "images": rows, "average": average,
              "seconds": {m: round(seconds[m], 3) for m in methods}}
    if keep_images:
        result["outputs"] = kept
    return result


def format_table(result, title=""):
    """The result as a text table: one row per image and the average, 'PSNR / SSIM' per method."""
    methods = result["methods"]
    width = max([len("average")] + [len(r["image"]) for r in result["images"]])
    cell = 16
    lines = [title] if title else []
    lines.append(f"{'image':<{width}}  " + "  ".join(f"{m:>{cell}}" for m in methods))
    for r in result["images"] + [dict(image="average", **result["average"])]:
        if r["image"] == "average":
            lines.append("-" * len(lines[-1]))
        lines.append(f"{r['image']:<{width}}  " + "  ".join(
            f"{r[m]['psnr']:>7.2f} / {r[m]['ssim']:.4f}" for m in methods))
    return "\n".join(lines)


def write_results(result, stem):
    """stem.json and stem.csv, each written atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    public = {k: v for k, v in result.items() if k != "outputs"}
    atomic_write(stem + ".json", lambda f: f.write(json.dumps(public, indent=1).encode()))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["image"] + [f"{m} {k}" for m in result["methods"] for k in ("psnr", "ssim")])
    for r in result["images"] + [dict(image="average", **result["average"])]:
        writer.writerow([r["image"]] + [f"{r[m][k]:.4f}" for m in result["methods"] for k in ("psnr", "ssim")])
    atomic_write(stem + ".csv", lambda f: f.write(text.getvalue().encode()))


def save_images(result, folder):
    """Every image of the evaluation as an 8-bit PNG: <image>_<method>.png and <image>_clean.png."""
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    for entry in result["outputs"]:
        for key, img in entry.items():
            if key != "image":
                path = os.path.join(folder, f"{entry['image']}_{key.replace(' ', '_').replace('.', '')}.png")
                atomic_write(path, lambda f, img=img: Image.fromarray(to_uint8(img)).save(f, format="PNG"))


RESULTS_FOLDER = os.path.join("runs", "eval")      # --out's default


def result_stem(task, level, set_name, weights=None, ensemble=False):
    """The results' file name, without extension: <task>-<level>-<set> for the input and the baseline, and
    -<weights>[-x8] added where a network was scored, so that evaluating a network never overwrites the
    baseline's tables."""
    stem = f"{task.name}-{level_label(level)}-{set_name}"
    if weights:
        stem += "-" + os.path.splitext(os.path.basename(os.path.normpath(weights)))[0] + ("-x8" if ensemble else "")
    return stem


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m redcore.evaluate",
        description="PSNR/SSIM tables of a restoration task on a test set: the corrupted input, the task's "
                    "classical baseline and (with --weights) a trained RED-Net.",
        epilog="Tasks and their levels: " + "; ".join(f"{t.name}: {t.level_help}" for t in tasks.TASKS.values()))
    p.add_argument("--task", required=True, help="denoise, sr, jpeg, deblur or inpaint")
    p.add_argument("--level", help="the corruption's level (default: the task's usual one, e.g. 25 for denoise)")
    p.add_argument("--data", help="a folder of test images, or a set name under $REDCORE_DATA/test "
                                  "(default: the paper's set for the task: Set12, Set5 or classic5)")
    p.add_argument("--weights", help="a network saved by REDNet.save or a training checkpoint (.npz), a shipped "
                                     "model's name, or 'shipped': the one `redcore restore` uses for this level")
    p.add_argument("--ensemble", action="store_true", help="average the 8 flips/rotations (paper §3.5)")
    p.add_argument("--tile", type=positive_int, help="restore in overlapping tiles of this size (default: full frame)")
    p.add_argument("--backend", default="cpu", choices=BACKEND_CHOICES,
                   help="compute backend (default: %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--no-baseline", action="store_true", help="leave out the classical baseline (BM3D is slow)")
    p.add_argument("--limit", type=positive_int, help="only the first N images of the set")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption (image i uses (seed, i))")
    p.add_argument("--out", default=RESULTS_FOLDER,
                   help="folder for the CSV/JSON (default %(default)s), named <task>-<level>-<set>[-<weights>[-x8]]")
    p.add_argument("--save-images", action="store_true", help="also write every input and output as PNG")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        task = tasks.get(args.task)
        level = task.parse_level(args.level if args.level is not None else task.default_level)
        data = args.data or task.default_set
        names, images = load_test_set(data, mode="y" if task.color == "y" else "as read")
        if args.limit:
            names, images = names[:args.limit], images[:args.limit]
        net = None
        if args.weights == "shipped":     # exactly the network `redcore restore` would use
            from .zoo import find
            args.weights = find(task.name, level)
            if args.weights is None:
                raise ValueError(f"no shipped network restores {task.name} {level_label(level)} (redcore models)")
        if args.weights:
            from .model import REDNet      # here: the harness without --weights needs no network code
            net = REDNet.load(args.weights, backend=with_precision(args.backend, args.precision))
        result = evaluate(task, level, names, images, net=net, ensemble=args.ensemble, tile=args.tile,
                          baseline=not args.no_baseline, seed=args.seed, keep_images=args.save_images)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    set_name = os.path.basename(os.path.normpath(data))
    title = (f"{task.name} {level_label(level)} on {set_name} ({len(names)} images): PSNR (dB) / SSIM"
             + (f", {task.shave(level)} border pixels shaved" if task.shave(level) else ""))
    print(format_table(result, title))
    stem = os.path.join(args.out, result_stem(task, level, set_name, args.weights, args.ensemble))
    write_results(result, stem)
    method = baselines.BASELINES.get(task.name, (None,))[0]
    if method in result["average"]:            # kept for tools/ship_model.py, which then skips BM3D
        baselines.save_scores(task.name, level_label(level), set_name, args.seed, result["average"][method],
                              len(names))
    if args.save_images:
        save_images(result, stem + "-images")
    print(f"wrote {stem}.csv and {stem}.json" + (f" and images in {stem}-images" if args.save_images else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
