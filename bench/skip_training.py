"""The paper's central claim, trained: with its symmetric skip connections a deep RED-Net "converges much faster
and attains a higher-quality local optimum" (the abstract), so that a deeper network trains better, not worse.

    python bench/skip_training.py                  # RED20 and RED30 of 16 filters, skip step 2 and none, 1500 steps
    python bench/skip_training.py --depths 10 20 30 --filters 32 --steps 3000 --level 50
    python bench/skip_training.py --depths 30 --inits he zero-last    # also from an output that starts at the input
    python bench/skip_training.py --depths 30 --skip-kinds symmetric block --inits he zero-last   # ResNet-style too
    python bench/skip_training.py --depths 20 30 --skip-kinds symmetric block --skip-steps 2 --inits zero-sums

Every training is `examples/train.py` (denoising, one network per configuration) in its own process on one
thread, --jobs at a time.  All use one seed: the same initial weights (the skips add no parameters) and the
same batches, so the skip connections are the only difference between a pair.  --inits zero-last also trains
each network from the same He weights with its last layer's set to zero (examples/train.py --start identity),
so that it starts as the identity (output = input, the residual of §3.3 alone) whatever its skips add up to
inside; --inits zero-sums zeroes also every layer where a skip's sum lands (--start identity-skips), so that
every skip's span starts as the identity too: the zero-init by which Fixup and SkipInit train ResNet-style
blocks without batch normalisation.  --skip-kinds block also trains the same sums wired ResNet-style
(examples/train.py --skip-kind block: each run of skip-step layers gets its own input added, where the paper
links each conv to its mirrored deconv), the same parameters and batches again.  Writes the record
bench/results/skip-training/DATE-....json (the loss as means over --window steps, the validation PSNR of every
--val-every steps, the seconds) and its plot docs/skip-training-DATE-....png;
`python tools/make_docs.py` tables the records in docs/skip-connections.md.  A training that fails (a diverged
loss) is kept in the record with the trainer's last words, and the bench then exits 1; --redraw RECORD draws a
record's plot again without training.  bench/skip_paths.py measures the
mechanism the paper gives (Eq. 12-13); bench/README.md says what the records show.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)

from train_step import cpu_name  # noqa: E402

RECORDS = os.path.join(HERE, "results", "skip-training")


# --inits choice: (examples/train.py --start, what the run's name adds)
INITS = {"he": ("he", ""), "zero-last": ("identity", ", last layer zero"),
         "zero-sums": ("identity-skips", ", sum layers zero")}


def run_name(depth, skip_step, init="he", skip_kind="symmetric"):
    kind = "block skips" if skip_kind == "block" else "skips"
    return f"RED{depth}, " + (f"{kind} every {skip_step} layers" if skip_step else "no skips") + INITS[init][1]


def train(args, depth, skip_kind, skip_step, init, out):
    """One training in its own process: (its summary.json or None, wall seconds, None or why it failed: the
    trainer's last words, such as a diverged loss)."""
    command = [sys.executable, os.path.join(ROOT, "examples", "train.py"), "--task", "denoise",
               "--level", str(args.level), "--depth", str(depth), "--filters", str(args.filters),
               "--skip-step", str(skip_step), "--skip-kind", skip_kind, "--steps", str(args.steps),
               "--batch", str(args.batch),
               "--patch", str(args.patch), "--lr", str(args.lr),
               "--val-every", str(args.val_every), "--ckpt-every", str(args.steps), "--seed", str(args.seed),
               "--threads", "1", "--backend", args.backend, "--no-progress", "--out", out, "--overwrite",
               "--start", INITS[init][0]]
    if args.data:
        command += ["--data", args.data]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        last = ((done.stderr or done.stdout).strip().splitlines() or ["(no output)"])[-1]
        return None, seconds, f"exit {done.returncode}: {last}"
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        return json.load(f), seconds, None


def window_means(losses, window):
    """[(last step of the window, mean loss over it)]: per-step losses of one batch are too noisy to compare."""
    return [(min(i + window, len(losses)), sum(losses[i:i + window]) / len(losses[i:i + window]))
            for i in range(0, len(losses), window)]


def draw(record, picture):
    """The record's plot: loss windows and validation PSNR against the step, one labelled line per run (a
    failed run has none)."""
    from redcore.pictures import compared_curves
    runs, window = [r for r in record["runs"] if "failed" not in r], record["setup"]["window"]
    histories = [(r["name"], [{"step": s, "loss": v} for s, v in r["loss_windows"]] +
                  [{"step": s, "val_psnr": v} for s, v in r["validation"]]) for r in runs]
    compared_curves(histories, runs[0]["noisy_psnr"],
                    loss_label=f"training loss (MSE, Eq. 4; mean over {window} steps; log scale)").save(picture)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depths", type=int, nargs="+", default=[20, 30], help="RED depths (default: 20 30)")
    p.add_argument("--skip-steps", type=int, nargs="+", default=[2, 0],
                   help="skip steps to compare at each depth, 0: none (default: 2 0, the paper's and none)")
    p.add_argument("--skip-kinds", nargs="+", choices=["symmetric", "block"], default=["symmetric"],
                   help="how the skips are wired: symmetric (the paper's, conv to mirrored deconv), block "
                   "(ResNet-style, around each run of skip-step layers) (default: symmetric)")
    p.add_argument("--inits", nargs="+", choices=list(INITS), default=["he"],
                   help="initial weights: he (examples/train.py --start he), zero-last (the same with the last "
                   "layer's zero: --start identity), zero-sums (also every layer where a skip's sum lands: "
                   "--start identity-skips, Fixup's zero-init) (default: he)")
    p.add_argument("--filters", type=int, default=16, help="feature maps per layer (default: 16)")
    p.add_argument("--steps", type=int, default=1500, help="training steps of each run (default: 1500)")
    p.add_argument("--batch", type=int, default=16, help="patches per step (default: 16)")
    p.add_argument("--patch", type=int, default=50, help="patch size in pixels (default: 50, as the paper)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam's step size (default: 1e-4, as the paper)")
    p.add_argument("--level", default="25", help="the noise's sigma (default: 25)")
    p.add_argument("--val-every", type=int, default=100, help="steps between validations (default: 100)")
    p.add_argument("--window", type=int, default=50, help="steps per plotted loss mean (default: 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="trainings at a time, one thread each (default: 2)")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--data", help="training images (default: examples/train.py's: train400, else built-in)")
    p.add_argument("--record", help="the record's path (default: bench/results/skip-training/DATE-....json)")
    p.add_argument("--picture", help="the plot's path (default: docs/skip-training-RECORD.png, RECORD the "
                   "record's file name without .json)")
    p.add_argument("--redraw", metavar="RECORD", help="train nothing: draw this record's plot again (where its "
                   "machine.picture says, under docs/), after a change to redcore.pictures")
    args = p.parse_args()
    if args.redraw:
        with open(args.redraw, encoding="utf-8") as f:
            record = json.load(f)
        picture = args.picture or os.path.join(ROOT, "docs", record["machine"]["picture"])
        draw(record, picture)
        print(f"wrote {os.path.relpath(picture)}")
        return
    # (depth, skip kind, skip step, init); without skips the kind makes no network of its own
    configs = list(dict.fromkeys((d, k if s else "symmetric", s, i) for i in args.inits for d in args.depths
                                 for k in args.skip_kinds for s in args.skip_steps))

    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(args.jobs) as pool:
        futures = {(d, k, s, i): pool.submit(train, args, d, k, s, i, os.path.join(scratch, f"red{d}-{k}{s}-{i}"))
                   for d, k, s, i in configs}
        finished = {key: f.result() for key, f in futures.items()}
    if all(summary is None for summary, _, _ in finished.values()):
        sys.exit("error: every training failed; the first: " + next(iter(finished.values()))[2])

    runs = []
    for (depth, skip_kind, skip_step, init), (summary, seconds, failure) in finished.items():
        if summary is None:           # a training that diverged (or broke) is a result too: the others stand
            runs.append(dict(name=run_name(depth, skip_step, init, skip_kind), depth=depth, skip_step=skip_step,
                             skip_kind=skip_kind, init=init, seconds=round(seconds, 1), failed=failure))
            print(f"{runs[-1]['name']:45s} failed ({failure})")
            continue
        validation = summary["validation"]
        best_step, best = max(validation, key=lambda v: v[1])
        runs.append(dict(name=run_name(depth, skip_step, init, skip_kind), depth=depth, skip_step=skip_step,
                         skip_kind=skip_kind, init=init,
                         seconds=round(seconds, 1), noisy_psnr=summary["noisy_psnr"],
                         loss_windows=window_means(summary["losses"], args.window), validation=validation,
                         best_psnr=best, best_step=best_step))
        print(f"{runs[-1]['name']:45s} final loss {runs[-1]['loss_windows'][-1][1]:.4g} (mean of the last "
              f"{args.window} steps), best validation {best:.2f} dB at step {best_step}, {seconds:.0f} s")

    machine = dict(date=time.strftime("%Y-%m-%d"), cpu=cpu_name(), backend=args.backend,
                   command=" ".join(["python bench/skip_training.py"] + sys.argv[1:]))
    setup = dict(task="denoise", level=args.level, filters=args.filters, steps=args.steps, batch=args.batch,
                 patch=args.patch, lr=args.lr, seed=args.seed, jobs=args.jobs, window=args.window, val_every=args.val_every,
                 data=next(summary for summary, _, _ in finished.values() if summary)["data"])
    inits = "" if args.inits == ["he"] else "-" + "-".join(args.inits)
    kinds = "" if args.skip_kinds == ["symmetric"] else "-" + "-".join(args.skip_kinds)
    record = args.record or os.path.join(RECORDS, f"{machine['date']}-red{'-'.join(map(str, args.depths))}-"
                                                  f"{args.filters}-filters-sigma{args.level}{kinds}{inits}.json")
    picture = args.picture or os.path.join(ROOT, "docs", f"skip-training-{os.path.basename(record)[:-5]}.png")
    machine["picture"] = os.path.relpath(picture, os.path.join(ROOT, "docs"))
    os.makedirs(os.path.dirname(os.path.abspath(record)), exist_ok=True)
    with open(record, "w", encoding="utf-8") as f:
        json.dump(dict(machine=machine, setup=setup, runs=runs), f, indent=1)

    draw(dict(setup=setup, runs=runs), picture)
    print(f"wrote {os.path.relpath(record)} and {os.path.relpath(picture)}")
    failed = [r["name"] for r in runs if "failed" in r]
    if failed:
        sys.exit(f"error: {len(failed)} of {len(runs)} trainings failed ({'; '.join(failed)}): the record says why")


if __name__ == "__main__":
    main()
