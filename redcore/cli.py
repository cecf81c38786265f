"""The `redcore` command: restore images, list the shipped models, run the evaluation harness.

    redcore restore noisy.png clean.png --task denoise --level 25 [--ensemble] [--tile 512] [--compare]
    redcore restore small.png big.png --task sr --level 3
    redcore restore text.png clean.png --task inpaint --mask damaged.png
    redcore models
    redcore eval --task jpeg --level 10 --data classic5 --weights model.npz

Training stays in examples/ (examples/train.py --task ..., examples/train_denoise.py).
"""
import argparse
import os
import sys

import numpy as np

from .argtypes import count
from .backends import BACKEND_CHOICES, PRECISION_HELP, PRECISIONS, with_precision

FORMATS = {".png": "PNG", ".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}


def _check_writable(path):
    """Refuse an output path before any work: an unknown extension or a folder that is missing or read-only."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"cannot write {path}: unknown image extension {ext or '(none)'!r} "
                         f"(use one of {', '.join(FORMATS)})")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {path}: the folder {folder} is not writable")


def _write_image(path, array, icc_profile=None):
    """Write an 8-bit image atomically (gray, gray + alpha, RGB or RGBA by its channels); the format follows
    the extension; an ICC colour profile read from the input is embedded unchanged."""
    from PIL import Image

    from .io import atomic_write
    _check_writable(path)
    ext = os.path.splitext(path)[1].lower()
    options = {"quality": 95} if FORMATS[ext] == "JPEG" else {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    atomic_write(path, lambda f: Image.fromarray(array).save(f, format=FORMATS[ext], **options))


def _icc_profile(path):
    """The ICC colour profile embedded in an image file, or None."""
    from PIL import Image
    with Image.open(path) as im:
        return im.info.get("icc_profile")


def cmd_restore(args):
    from tqdm import tqdm

    from . import tasks
    from .data import read_image
    from .pictures import captioned_strip
    from .restore import passes, restore, restore_level
    backend = with_precision(args.backend, args.precision)
    task = tasks.get(args.task)
    level = restore_level(task, args.level)
    _check_writable(args.output)
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"no such image: {args.input}")
    if not args.overwrite and os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        raise ValueError(f"the output {args.output} is the input: refusing to replace it (pass --overwrite to do so)")
    image = np.floor(read_image(args.input, "with alpha") * 255 + 0.5).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] in (2, 4) and FORMATS[os.path.splitext(args.output)[1].lower()] == "JPEG":
        raise ValueError(f"{args.input} has an alpha channel, which a JPEG cannot hold: write {args.output} as "
                         ".png or .tif to keep it")
    icc_profile = _icc_profile(args.input)
    tile = None if args.tile == 0 else (args.tile or "auto")
    total = passes(image.shape, task.name, level, ensemble=args.ensemble, tile=tile)
    with tqdm(total=total, unit="tile", disable=args.quiet or total < 2, dynamic_ncols=True) as bar:
        out = restore(image, task.name, level, model=args.model, ensemble=args.ensemble, tile=tile,
                      backend=backend, progress=lambda: bar.update())
    if args.mask:
        # Pixels outside the mask are known to be intact: keep them exactly, take the network's pixels inside.
        mask = read_image(args.mask, "gray") > 0.5
        if mask.shape != out.shape[:2]:
            raise ValueError(f"the mask {args.mask} is {mask.shape[1]}x{mask.shape[0]}, the image "
                             f"{out.shape[1]}x{out.shape[0]}")
        keep = ~mask if out.ndim == 2 else ~mask[..., None]
        out = np.where(keep, image if image.shape == out.shape else out, out)
    _write_image(args.output, out, icc_profile)
    written = [args.output]
    if args.compare:
        stem, ext = os.path.splitext(args.output)
        _write_image(stem + "_compare" + ext, captioned_strip([image, out], [f"input {os.path.basename(args.input)}",
                                                                            f"restored ({task.name} {level})"]),
                     icc_profile)
        written.append(stem + "_compare" + ext)
    if not args.quiet:
        print(f"wrote {' and '.join(written)}")
    return 0


def cmd_models(args):
    from .zoo import card_line, card_table, card_text, cards, path_of
    known = cards()
    if args.name:
        path_of(args.name)                   # an unknown name: the error lists the shipped ones
        print(card_text(args.name, known[args.name]))
    elif not known:
        print("no shipped models yet: train one with examples/train.py and load it by path")
    elif args.markdown:
        print(card_table(known))
    else:
        for name, card in sorted(known.items()):
            print(card_line(name, card))
    return 0


def cmd_data(args):
    from tqdm import tqdm

    from . import datasets
    from .data import default_data_root
    spec = datasets.manifest()
    sets = args.sets.split(",") if args.sets else datasets.set_names(spec)
    if args.download:
        root = args.download
        with tqdm(unit="file", disable=args.quiet) as bar:
            def progress(done, total):
                bar.total, bar.n = total, done
                bar.refresh()
            fetched = datasets.download(root, sets, args.source, spec, progress=progress)
        if not args.quiet:
            print(f"fetched {fetched} files from {spec['origin']} into {root}; use it with REDCORE_DATA={root}")
        report = {folder: [] for folder in sets}      # download checked every file, or raised
    else:
        root = default_data_root()
        if root is None:
            print("no data folder: set REDCORE_DATA, or fetch the sets with `redcore data --download DIR`")
            return 1
        report = datasets.verify(root, spec, sets)
    for folder, bad in report.items():
        count = len(spec["sets"][folder]["files"])
        state = "all present and verified" if not bad else f"{len(bad)} missing or damaged (e.g. {bad[0]})"
        print(f"{os.path.join(root, folder)}: {count} files, {state}")
    return 0 if not any(report.values()) else 1


def build_parser():
    p = argparse.ArgumentParser(prog="redcore", description="Image restoration with RED-Net, framework-free.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("restore", help="restore one image", description="Restore one image with a shipped "
                       "model (or --model FILE): denoise, sr, jpeg, deblur or inpaint.")
    r.add_argument("input", help="the corrupted image (PNG, BMP, JPEG, TIFF)")
    r.add_argument("output", help="where to write the result (its extension picks the format)")
    r.add_argument("--task", required=True, help="denoise, sr, jpeg, deblur or inpaint")
    r.add_argument("--level", help="noise sigma, SR scale, JPEG quality, blur (disk|gaussian|motion) or "
                                   "text10|text20|scratches (default: the task's usual level)")
    r.add_argument("--model", help="a shipped model name or a weight file (default: the shipped model for the task)")
    r.add_argument("--ensemble", action="store_true", help="average the 8 flips/rotations (slower, a little better)")
    r.add_argument("--tile", type=count, help="tile size in pixels (default: 512 for larger images; 0: full frame)")
    r.add_argument("--backend", default="cpu", choices=BACKEND_CHOICES,
                   help="compute backend (default: %(default)s)")
    r.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    r.add_argument("--mask", help="inpainting: a PNG, white where the image is damaged; pixels outside stay as they are")
    r.add_argument("--compare", action="store_true", help="also write OUTPUT_compare: input | result side by side")
    r.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    r.add_argument("--overwrite", action="store_true", help="allow OUTPUT to be the INPUT file itself")
    r.set_defaults(run=cmd_restore)
    m = sub.add_parser("models", help="list the shipped models, or print one model's whole card")
    m.add_argument("name", nargs="?", help="a shipped model: print its whole card (data, steps, hardware, the "
                                          "command that trained it, test figures)")
    m.add_argument("--markdown", action="store_true", help="one Markdown table (the README's)")
    m.set_defaults(run=cmd_models)
    d = sub.add_parser("data", help="check the standard image sets, or download them",
                       description="Check the training and test sets under REDCORE_DATA (or ../shared/data) "
                                   "file by file against their SHA-256, or download them (docs/data.md).")
    d.add_argument("--download", metavar="DIR", help="fetch the missing or damaged files into DIR, checking each")
    d.add_argument("--sets", help="comma-separated: train400, test/Set12, test/BSD68, test/Set5, test/classic5 "
                                  "(default: all)")
    d.add_argument("--source", help="the base URL to fetch from (default: the DnCNN repository, pinned)")
    d.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    d.set_defaults(run=cmd_data)
    sub.add_parser("eval", help="run the evaluation harness (python -m redcore.evaluate --help)", add_help=False)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["eval"]:
        from .evaluate import main as evaluate_main
        return evaluate_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, RuntimeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:           # files are written atomically: nothing half-written is left
        print("interrupted: no file was left half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
