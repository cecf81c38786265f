"""Ship a trained network: evaluate it on the task's test sets and add it, with its model card, to
redcore/weights/ (the registry that redcore.load, redcore.restore and `redcore models` read).

    python tools/ship_model.py runs/red20-denoise-25/checkpoint.npz --name red20-denoise-sigma25 \\
        --hardware "2-core AMD EPYC (CPU), 2 MPI ranks" --command "mpiexec -n 2 python examples/train.py ..."

The card records the network, the training data, steps and wall time (from the checkpoint), the hardware and
the command given here, and, per test set, the network's PSNR/SSIM beside the corrupted input and the task's
classical baseline (its scores are read from the baselines' cache, runs/baselines/, where `redcore eval` or an
earlier ship kept them for the same set and seed (bench/eval_baselines.sh fills it), else computed and kept, or
carried from the card this one replaces with --baseline card).  The weights are stored without the
optimizer state (an .npz with a JSON header, no pickle), in float16 where that costs at most FLOAT16_COST_DB on
every test set and level (the network rounded to float16 is scored beside the float32 one; the card gives the
measured cost, and its figures are those of the weights shipped).  A training that went on in a run started by --init
from an earlier one (e.g. after a move between machines) is shipped from the last run's checkpoint with
--steps-before (the earlier steps), --batch and --lr (the first run's settings) and --train-seconds (the total).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import redcore  # noqa: E402
from redcore import baselines, tasks, zoo  # noqa: E402
from redcore.data import load_test_set  # noqa: E402
from redcore.evaluate import evaluate  # noqa: E402
from redcore.io import atomic_write, load_arrays  # noqa: E402

TEST_SETS = {"denoise": ["Set12", "BSD68"], "sr": ["Set5"], "jpeg": ["classic5"], "deblur": ["Set12"],
             "inpaint": ["Set12"]}
FLOAT16_COST_DB = 0.01     # the most PSNR that storing the weights in float16 may cost on any test (issue 26)


def step_words(step, steps_before=0):
    """A step of the checkpoint's own count as the card writes it: '30200', or '1500 + 30200' where the
    network had trained steps_before steps before that count began (a run started by --init from another)."""
    return f"{steps_before} + {step}" if steps_before else f"{step}"


def patch_sizes(train_args, resumes, steps_before=0):
    """The training patches in words, e.g. '50x50 patches, 100x100 from step 38500': a resume may change
    --patch (resumes recorded before the patch was kept in the record count as unchanged)."""
    size = train_args.get("patch", 50)
    words = f"{size}x{size} patches"
    for r in resumes:
        if r.get("patch", size) != size:
            size = r["patch"]
            words += f", {size}x{size} from step {step_words(r['step'], steps_before)}"
    return words


def carried_baseline(card, set_name, level, images, seed):
    """(baseline's name, {"psnr", "ssim"}) from a shipped card's entry for this set, level and number of images,
    as save_scores keeps them, or None.  An entry without a seed was scored with seed 0, the only seed any
    card was shipped with before cards recorded it."""
    for test in card["tests"]:
        if ((test["set"], test.get("level", card["level"]), test["images"], test.get("seed", 0))
                == (set_name, level, images, seed) and "baseline" in test):
            return test["baseline"], {"psnr": test["baseline_psnr"], "ssim": test["baseline_ssim"]}
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a checkpoint.npz or model.npz written by examples/train.py")
    p.add_argument("--name", required=True, help="the model's name, e.g. red20-denoise-sigma25")
    p.add_argument("--hardware", required=True, help="what it was trained on")
    p.add_argument("--command", required=True, help="the exact command that reproduces it")
    p.add_argument("--seed", type=int, default=0, help="corruption seed of the evaluation")
    p.add_argument("--ensemble", action="store_true", help="also report the x8 ensemble")
    p.add_argument("--baseline", choices=("run", "cached", "card"), default="run",
                   help="run: score the task's classical baseline where runs/baselines holds no scores for it; "
                        "cached: report it only where scores are cached and leave it out elsewhere (BM3D "
                        "takes some 15 CPU minutes per level on BSD68); card: where none are cached, carry "
                        "them from the card this one replaces (the same name), which scored the same images "
                        "with the same seed (default: %(default)s)")
    p.add_argument("--train-seconds", type=float, help="training wall time, where the checkpoint predates its record")
    p.add_argument("--data", help="training data, where the checkpoint predates its record")
    p.add_argument("--fine-tuned-from", default=None,
                   help="the model it started from (default: the checkpoint's --init, as given to train.py)")
    p.add_argument("--schedule", help="how batch and step size changed across resumes (default: from the "
                   "checkpoint's record of its resumes, where it has one)")
    p.add_argument("--steps-before", type=int, default=0,
                   help="steps the network trained before the checkpoint's count began (where its run started "
                   "by --init from an earlier run of the same training): added to the card's steps, and written "
                   "'N + step' where the card names a step")
    p.add_argument("--batch", type=int, help="the batch size the training began with, where that was an earlier "
                   "run than the checkpoint's (default: the checkpoint's first run)")
    p.add_argument("--lr", type=float, help="the step size the training began with (the same)")
    p.add_argument("--best", action="store_true",
                   help="ship best.npz beside the checkpoint (the best validation) instead of its last weights")
    args = p.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # a log file shows each test set as it is scored
    if args.steps_before < 0:
        p.error(f"--steps-before {args.steps_before} is negative")
    replaced = zoo.cards().get(args.name)
    if args.baseline == "card" and replaced is None:
        p.error(f"--baseline card: no shipped model is named {args.name!r}, so there is no card to carry "
                "the baseline's scores from")

    header, _ = load_arrays(args.checkpoint)
    state = header.get("state", {})
    train_args = state.get("args", {})
    task = tasks.get(train_args.get("task", "denoise"))
    level = task.parse_level(train_args.get("level", task.default_level))
    steps = state.get("step")
    if args.best:
        net = redcore.load(os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "best.npz"))
        steps = state.get("best_step", steps)
    else:
        net = redcore.load(args.checkpoint)
    if steps is not None:
        steps += args.steps_before
    cfg = net.config
    blind = isinstance(level, (tuple, tasks.LevelMix))        # one network for a range or mix of levels
    test_levels = task.scored_levels(level)
    card = {
        "file": f"{args.name}.npz", "task": task.name, "level": tasks.level_label(level) if blind else level,
        "channels": cfg["channels"],
        "network": (f"RED{cfg['depth']}, {cfg['filters']} filters of {cfg['kernel_size']}x{cfg['kernel_size']}, "
                    f"{'block ' if cfg.get('skip_kind') == 'block' else ''}skip step {cfg['skip_step']}, padding {cfg['padding']}, {net.num_params:,} parameters"),
        "data": f"{os.path.basename(args.data or train_args.get('data_used') or train_args.get('data') or '(not recorded)')} "
                f"({patch_sizes(train_args, state.get('resumes', []), args.steps_before)}, x8 augmentation)",
        "fine_tuned_from": args.fine_tuned_from or train_args.get("init"),
        "steps": steps, "batch": args.batch or train_args.get("batch"), "lr": args.lr or train_args.get("lr"),
        "train_seconds": (round(args.train_seconds or state["seconds"], 1)
                          if args.train_seconds or "seconds" in state else None),
        "hardware": args.hardware, "command": args.command, "tests": [],
    }
    schedule = args.schedule or "; ".join(f"from step {step_words(r['step'], args.steps_before)}: "
                                          f"batch {r['batch']}, lr {r['lr']:g}" for r in state.get("resumes", []))
    if schedule:
        card["schedule"] = schedule
    if blind:
        card["covers"] = tasks.level_label(level)
    # the network with its weights rounded to float16, scored beside it: stored so if that costs <= FLOAT16_COST_DB
    half = redcore.REDNet(**cfg)
    half.load_state_dict({k: v.astype(np.float16).astype(v.dtype) for k, v in net.state_dict().items()})
    runs = []
    for set_name, level in ((name, lv) for name in TEST_SETS[task.name] for lv in test_levels):
        names, images = load_test_set(set_name, mode="y" if task.color == "y" else "as read")
        label = tasks.level_label(level)
        cached = baselines.cached_scores(task.name, label, set_name, args.seed, len(names))
        if cached is None and args.baseline == "card":
            cached = carried_baseline(replaced, set_name, level, len(names), args.seed)
        result = evaluate(task, level, names, images, net=net, ensemble=False,
                          baseline=cached is None and args.baseline == "run",
                          seed=args.seed, log=print)
        method = baselines.BASELINES.get(task.name, (None,))[0]
        if cached is None and method in result["average"]:
            baselines.save_scores(task.name, label, set_name, args.seed, result["average"][method], len(names))
        print(f"{set_name} {label}: the float16 weights")
        rounded = evaluate(task, level, names, images, net=half, ensemble=False, baseline=False, seed=args.seed)
        runs.append((set_name, level, names, images, cached, result, rounded))
    cost = max(r["average"]["RED-Net"]["psnr"] - r16["average"]["RED-Net"]["psnr"] for *_, r, r16 in runs)
    float16 = cost <= FLOAT16_COST_DB
    shipped = half if float16 else net
    # four places when float16 loses: a cost just over the limit would print as the limit at three
    card["storage"] = (f"float16: {max(cost, 0):.3f} dB below the float32 weights at most, on every test"
                       if float16 else f"float32: float16 would cost up to {cost:.4f} dB (more than {FLOAT16_COST_DB})")
    print(card["storage"])
    for set_name, level, names, images, cached, result, rounded in runs:
        avg, given = (rounded if float16 else result)["average"], result["average"]   # the inputs, baselines: given
        entry = {"set": set_name, **({"level": level} if blind else {}), "images": len(names), "seed": args.seed,
                 "psnr": round(avg["RED-Net"]["psnr"], 2),
                 "ssim": round(avg["RED-Net"]["ssim"], 4), "input_psnr": round(given[result["methods"][0]]["psnr"], 2),
                 "input_ssim": round(given[result["methods"][0]]["ssim"], 4)}
        base = cached or ((result["methods"][1], given[result["methods"][1]]) if len(result["methods"]) > 2 else None)
        if base:
            entry.update(baseline=base[0], baseline_psnr=round(base[1]["psnr"], 2),
                         baseline_ssim=round(base[1]["ssim"], 4))
        if "RED-Net, mask known" in avg:          # inpainting: also with the intact pixels kept
            entry["psnr_mask_known"] = round(avg["RED-Net, mask known"]["psnr"], 2)
            entry["ssim_mask_known"] = round(avg["RED-Net, mask known"]["ssim"], 4)
        if args.ensemble:
            ens = evaluate(task, level, names, images, net=shipped, ensemble=True, baseline=False, seed=args.seed)
            entry["psnr_x8"] = round(ens["average"]["RED-Net x8"]["psnr"], 2)
        card["tests"].append(entry)
        print(f"{set_name}: {entry}")
    os.makedirs(zoo.WEIGHTS_DIR, exist_ok=True)
    shipped.save(os.path.join(zoo.WEIGHTS_DIR, card["file"]), float16=float16)
    cards = zoo.cards()
    cards[args.name] = card
    atomic_write(zoo.INDEX, lambda f: f.write(json.dumps(cards, indent=1, sort_keys=True).encode()))
    print(zoo.card_line(args.name, card))
    return 0


if __name__ == "__main__":
    sys.exit(main())
