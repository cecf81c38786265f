"""Train a RED-Net for any of the paper's tasks by hand: forward, MSE (Eq. 4), backward, Adam (Eq. 5-7).

    python examples/train.py --task denoise --level 25                  # built-in images or train400, RED10
    python examples/train.py --task sr --level 3 --depth 20 --steps 20000
    python examples/train.py --task jpeg --level 10 --backend cuda
    mpiexec -n 4 python examples/train.py --task deblur --level disk --distributed --batch 64

The pairs come from redcore.tasks: clean patches corrupted on the fly (SR: the patch reduced and enlarged by
MATLAB's bicubic; JPEG: encoded at the quality; deblur: the kernel; inpaint: text or scratches), read in the
task's colour (the Y channel for SR and JPEG).  examples/train_denoise.py is this script for denoising, with
--sigma.

Patches of 50x50 with the x8 flip/rotation augmentation (--patch; a --resume may change it: fine-tuning on
bigger patches, whose pixels see less of the zero padding, as most of a whole test image's do); a PSNR
validation every --val-every steps on fixed noisy crops (Set12 when the data folder has it, else held-out
built-in images), printed beside the noisy input's PSNR; a checkpoint (atomic, no pickle) every --ckpt-every
steps that --resume continues exactly: the patches and noise of step s depend only on (--seed, s).  Pictures:
a loss/PSNR curve and a noisy | restored | clean strip at each validation, beside the checkpoint.

--distributed (under mpiexec or srun): every rank draws its shard of the --batch patches (seeds (seed, step,
rank)), the gradients are averaged by one all-reduce per step (MPI; NCCL with --backend cuda, one GPU per
rank) and every rank takes the same Adam step; the parameters are compared across ranks by checksum every
--check-every steps.  Rank 0 alone prints, validates and writes files; --resume restores every rank from it.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import redcore  # noqa: E402  (first: it sets the thread pools' idle policy before numpy loads its BLAS)
import numpy as np  # noqa: E402
from redcore import data  # noqa: E402
from redcore import distributed  # noqa: E402
from redcore import tasks  # noqa: E402
from redcore import threads  # noqa: E402
from redcore.argtypes import count, positive_float, positive_int  # noqa: E402
from redcore.backends import BACKEND_CHOICES, PRECISION_HELP, PRECISIONS, get_backend, with_precision  # noqa: E402
from redcore.io import atomic_write, load_checkpoint, lock_folder, remove_orphans, save_checkpoint  # noqa: E402
from redcore.metrics import psnr  # noqa: E402
from redcore.pictures import captioned_strip  # noqa: E402
from redcore.capture import why_not_captured  # noqa: E402
from redcore.training import CapturedStep, train_step  # noqa: E402
from redcore.model import INITS, PRESETS  # noqa: E402


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.compute = with_precision(args.backend, args.precision)     # the backend that computes
    except ValueError as e:
        parser.error(f"--{e}")
    return args


def build_parser():
    # Each default is said once: "(default: %(default)s)" where it is a value, in words where it depends.
    p = argparse.ArgumentParser(description="Train a RED-Net for one restoration task with redcore.",
                                epilog="Levels: " + "; ".join(f"{t.name}: {t.level_help}" for t in tasks.TASKS.values()))
    p.add_argument("--task", default="denoise", help="denoise, sr, jpeg, deblur or inpaint (default: %(default)s)")
    p.add_argument("--level", default=None, help="the corruption's level (default: the task's usual one; see below)")
    p.add_argument("--backend", default="cpu", choices=BACKEND_CHOICES,
                   help="compute backend (default: %(default)s; cpu-im2col / cpu-winograd2 / cpu-winograd4: one "
                        "convolution method on every layer; cuda-emulation: the CUDA kernels compiled for the CPU, "
                        "slow, for testing)")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help=PRECISION_HELP)
    p.add_argument("--depth", type=positive_int, default=10,
                   help="layers, even: 10, 20, 30 are the paper's RED10/20/30 (default: %(default)s)")
    p.add_argument("--filters", type=positive_int, default=64,
                   help="feature maps per layer; the release uses 128 (default: %(default)s)")
    p.add_argument("--kernel-size", type=positive_int, default=3, help="k of every k x k layer (default: %(default)s)")
    p.add_argument("--skip-step", type=count, default=None,
                   help="skip from every n-th conv layer, 0: none (default: the paper's preset: none for RED10, "
                        "else 2)")
    p.add_argument("--skip-kind", default="symmetric", choices=["symmetric", "block"],
                   help="symmetric: conv{i} to its mirrored deconv, the paper's; block: each run of --skip-step "
                        "layers gets its input added, ResNet-style, for comparison (docs/skip-connections.md) "
                        "(default: %(default)s)")
    p.add_argument("--padding", default="same", choices=["same", "valid"],
                   help="same: pad k//2, every map keeps its size (the release); valid: pad 0, the encoder shrinks "
                        "the maps and the decoder grows them back, paper §3.2 (default: %(default)s)")
    p.add_argument("--batch", type=positive_int, default=16, help="patches per step (default: %(default)s)")
    p.add_argument("--patch", type=positive_int, default=50, help="patch size in pixels (default: %(default)s, "
                                                                    "as the paper)")
    p.add_argument("--steps", type=positive_int, default=300, help="total training steps (default: %(default)s)")
    p.add_argument("--seconds", type=positive_float, default=None,
                   help="stop after this many seconds of this run, at a step boundary, as --steps would: validated, "
                        "checkpointed, saved (a GPU lease's budget; --resume continues)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="Adam step size alpha (default: 1e-4 as in the paper; with --resume, the checkpoint's)")
    p.add_argument("--warmup", type=count, default=0,
                   help="raise the step size linearly over this run's first N steps: use it with --init or a new "
                        "--batch, whose fresh or stale Adam moments move every weight by the full step size at "
                        "first (default: %(default)s)")
    p.add_argument("--data", default=None,
                   help="folder of training images (default: train400 of $REDCORE_DATA or ../shared/data if "
                        "present, else a built-in set of synthetic images; docs/data.md)")
    p.add_argument("--val", default=None,
                   help="folder of validation images (default: Set12 beside --data, else 3 built-in images)")
    p.add_argument("--val-every", type=positive_int, default=100, help="steps between validations (default: %(default)s)")
    p.add_argument("--val-crop", type=count, default=128,
                   help="validate on the central crop of this size, 0: whole images (default: %(default)s)")
    p.add_argument("--val-levels", choices=("drawn", "each"), default="drawn",
                   help="for a blind network (a range or mix of levels): drawn: each validation image at one "
                        "level drawn for it (what the shipped cards' commands did); each: every image at each "
                        "level its model card is scored at, so the best validation is the best on their mean, "
                        "at one validation per level (default: %(default)s)")
    p.add_argument("--ckpt-every", type=positive_int, default=100, help="steps between checkpoints (default: %(default)s)")
    p.add_argument("--out", default=None,
                   help="folder for the checkpoint, model, pictures and summary (default: runs/TASK-LEVEL)")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUT/checkpoint.npz")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out that holds another run's checkpoint, replacing it")
    p.add_argument("--init", default=None,
                   help="start from these weights instead of random ones (fine-tuning): a shipped model's name or a "
                        ".npz saved by REDNet.save or train.py, of the same network (depth, filters, ...)")
    p.add_argument("--start", choices=INITS[::-1], default="identity",
                   help="the random weights a run without --init or --resume starts from: identity: He's, with the "
                        "last layer's zero, so the net starts as output = input and trains faster, with skips or "
                        "without (docs/skip-connections.md); identity-skips: also zero the layer where each skip's "
                        "sum lands, so every skip's span starts as the identity (Fixup's zero-init, for --skip-kind "
                        "block); he: every layer He's, as redcore before 2026-12-07 (default: %(default)s)")
    p.add_argument("--sigma-draw", choices=tasks.SIGMA_DRAWS, default="uniform",
                   help="denoising over a blind range: how each patch's sigma is drawn: uniform, or log: sigma + 10 "
                        "log-uniform, low sigmas more often, so that the MSE weighs every level's dB about "
                        "equally (redcore.tasks.noise.draw_sigmas) (default: %(default)s)")
    p.add_argument("--seed", type=count, default=0,
                   help="seed of the initialisation, patches and noise (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, log lines only")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="cpu backend: use this many cores: each batch split over as many threads, one core each "
                        "(redcore.threads); 1: one core, e.g. beside another training (default: "
                        "NUMBA_NUM_THREADS, the cores)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of mpiexec/srun (MPI; NCCL with --backend cuda)")
    p.add_argument("--check-every", type=positive_int, default=100,
                   help="with --distributed: steps between checks that every rank holds the same parameters "
                        "(default: %(default)s)")
    p.add_argument("--comm-timeout", type=positive_float, default=distributed.DEFAULT_TIMEOUT,
                   help="with --distributed: seconds a collective may wait before the job is ended "
                        "(default: %(default)s)")
    return p


def init_weights(net, source):
    """Copy the weights of a trained network of the same configuration into net (fine-tuning from it)."""
    src = redcore.load(source)
    differ = ", ".join(f"{k} {theirs} (this run: {ours})"
                       for k, (theirs, ours) in net.config_differences(src.config).items())
    if differ:
        raise ValueError(f"--init {source} is another network: {differ}")
    net.load_state_dict(src.state_dict())


def load_images(args, task):
    """(training images, validation images, a sentence saying where they came from)."""
    train_dir = args.data or data.default_train_folder()
    mode = "y" if task.color == "y" else "gray"
    args.data_used = os.path.normpath(train_dir) if train_dir else "built-in synthetic images"   # for model cards
    if train_dir:
        train = data.read_folder(train_dir, mode=mode)
        val_dir = args.val or next((d for d in (os.path.join(train_dir, "..", "test", "Set12"),
                                                os.path.join(train_dir, "..", "Set12")) if os.path.isdir(d)), None)
        val = data.read_folder(val_dir, mode=mode) if val_dir else data.builtin_images(count=3, seed=7)
        return train, val, f"training on {len(train)} images from {train_dir}; validating on " + \
            (f"{len(val)} images of {os.path.normpath(val_dir)}" if val_dir else "3 built-in images")
    train, val = data.builtin_images(count=12), data.builtin_images(count=3, seed=7)
    if args.val:
        val = data.read_folder(args.val, mode=mode)
    return train, val, "no data folder: training on 12 built-in synthetic images, validating on 3 more"


def center_crop(img, size):
    if not size:
        return img
    h, w = img.shape
    s = min(size, h, w)
    return img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def validation_pairs(task, level, images, crop, how, seed):
    """Fixed (corrupted, clean, shave) triples: central crops corrupted once, from a seed of their own.
    how="each": a blind range or mix scores every image at each level its card is scored at (a range that
    covers none of them draws a level per image); "drawn": one level drawn per image."""
    levels = (task.scored_levels(level) if how == "each" else ()) or (level,)
    vrng = np.random.default_rng([seed, 2**31 - 1])
    pairs = []
    for img in images:
        for lv in levels:
            clean = task.prepare(center_crop(img, crop), lv)
            pairs.append((np.asarray(task.corrupt(clean, lv, vrng)[0], np.float32), clean, task.shave(lv)))
    return pairs, levels


def validate(net, val_pairs):
    """(mean PSNR of the restored images, restored images): one image at a time, full frame."""
    restored = []
    for corrupted, _, _ in val_pairs:
        restored.append(np.clip(net.backend.to_numpy(net.forward(corrupted[None, None], keep=False))[0, 0], 0, 1))
    return float(np.mean([psnr(r, c, shave) for r, (_, c, shave) in zip(restored, val_pairs)])), restored


def save_pictures(out, history, strip, input_psnr):
    """curves.png (loss on a log scale, validation PSNR in dB against the corrupted input's) and
    validation.png (captioned corrupted | restored | clean), each written atomically."""
    from redcore.pictures import training_curves
    curves = training_curves(history, input_psnr)
    atomic_write(os.path.join(out, "curves.png"), lambda f: curves.save(f, format="PNG"))
    from PIL import Image
    picture = Image.fromarray(strip)
    atomic_write(os.path.join(out, "validation.png"), lambda f: picture.save(f, format="PNG"))


def main(argv=None):
    args = parse_args(argv)
    comm = distributed.SingleProcess()
    try:
        task = tasks.get(args.task)
        level = task.parse_level(task.default_level if args.level is None else args.level)
        if args.sigma_draw != "uniform":
            if task.name != "denoise" or not isinstance(level, tuple):
                raise ValueError(f"--sigma-draw {args.sigma_draw} draws the sigma of denoising over a blind range "
                                 f"(--task denoise --level 0-75), not of {task.name} {tasks.level_label(level)}")
            task = tasks.Denoise(sigma_draw=args.sigma_draw)
        args.out = args.out or os.path.join("runs", f"{task.name}-{tasks.level_label(level)}")
        if args.distributed:
            comm = distributed.init(args.backend, args.comm_timeout)
        if args.batch % comm.size:
            raise ValueError(f"--batch {args.batch} does not split over {comm.size} ranks: give a multiple of {comm.size}")
        backend = args.compute
        if args.threads:
            threads.use_cores(args.threads)         # --threads 1: one core, beside other work
            if args.threads == 1 and get_backend(backend).name == "cpu":
                backend = threads.single_core_backend(get_backend(backend))
        preset_skip = PRESETS.get(f"red{args.depth}", {}).get("skip_step", 2)
        net = redcore.REDNet(depth=args.depth, filters=args.filters, kernel_size=args.kernel_size,
                             skip_step=preset_skip if args.skip_step is None else args.skip_step,
                             padding=args.padding, backend=backend, seed=args.seed, threads=args.threads,
                             init=args.start, skip_kind=args.skip_kind)
        if args.init and not args.resume:
            init_weights(net, args.init)
        train, val, where = load_images(args, task)
        sampler = data.PatchSampler(train, patch=args.patch, batch=args.batch // comm.size, seed=args.seed)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        if comm.rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    lead = comm.rank == 0            # rank 0 alone prints, validates and writes
    opt = redcore.Adam(net.params, lr=args.lr or 1e-4)
    ckpt = os.path.join(args.out, "checkpoint.npz")

    val_pairs, val_levels = validation_pairs(task, level, val, args.val_crop, args.val_levels, args.seed)
    noisy_psnr = float(np.mean([psnr(n, c, shave) for n, c, shave in val_pairs]))
    if len(val_levels) > 1:
        where += " at each of " + ", ".join(tasks.level_label(lv) for lv in val_levels)
    args.data_described = where + (f", central {args.val_crop}x{args.val_crop} crops" if args.val_crop else "")

    state, problem, release = {"step": 0, "history": [], "args": vars(args)}, None, lambda: None
    if lead:
        try:
            state, release = open_run(args, net, opt, task, level, ckpt, state)
        except (OSError, ValueError, RuntimeError) as e:
            problem = str(e)
    if args.distributed:             # every rank starts from rank 0's weights, moments and state
        problem = comm.broadcast_object(problem)
        if problem is None:
            state = distributed.sync_from_rank0(net, opt, comm, state)
    if problem is not None:
        if lead:
            print(f"error: {problem}", file=sys.stderr)
        release()
        return 2
    start = state["step"]
    if lead:
        draw = f", sigma drawn {args.sigma_draw}" if args.sigma_draw != "uniform" else ""
        print(f"{net}\n{where}; task {task.name} {tasks.level_label(level)}{draw}: corrupted validation input {noisy_psnr:.2f} dB"
              + (f"\ndata-parallel: {comm.name}, {args.batch // comm.size} patches per rank" if args.distributed else "")
              + (f"\nresuming at step {start}" if start else ""))
    restore_sigterm = stop_on_sigterm()
    try:
        return train_loop(args, task, level, net, opt, comm, sampler, val_pairs, noisy_psnr, state, ckpt)
    except KeyboardInterrupt:
        if lead:
            print(f"interrupted: {what_is_kept(ckpt)}", file=sys.stderr)
        return 130
    except Terminated:
        if lead:
            print(f"terminated: {what_is_kept(ckpt)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as e:           # in a distributed job one rank's failure must end every rank
        if args.distributed:
            comm.abort(f"rank {comm.rank}: {type(e).__name__}: {e}")
            return 1
        if isinstance(e, OSError):   # a full disk, say: every file is written atomically, the old ones stand
            kept = "the previous checkpoint is kept" if os.path.isfile(ckpt) else "no checkpoint was written"
            print(f"error: could not write to {args.out} ({e.strerror or e}); {kept}", file=sys.stderr)
            return 4
        raise
    finally:
        restore_sigterm()
        release()


class Terminated(BaseException):
    """SIGTERM arrived (`kill`, a batch scheduler's time limit): the run ends as Ctrl-C ends it.  A
    BaseException, as KeyboardInterrupt is, so that no `except Exception` on the way swallows it."""


def stop_on_sigterm():
    """End the training on SIGTERM with the sentence Ctrl-C gets.  Needed because a training started in the
    background by a script ignores SIGINT (the shell sets it so), which leaves `kill` as the way to stop it.
    Returns the function that puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None                  # only the main thread may set a handler

    def stop(signum, frame):
        raise Terminated
    previous = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, previous)


def open_run(args, net, opt, task, level, ckpt, state):
    """Claim --out for this process (a lock, released by the function returned) and load what --resume
    continues: (state, release).  Refuses with one sentence a folder another training is using, an existing
    checkpoint without --resume or --overwrite, and a checkpoint of another task, level or network."""
    os.makedirs(args.out, exist_ok=True)
    release = lock_folder(args.out)
    try:
        remove_orphans(args.out)             # temporary files of a run that was killed mid-write
        if not args.resume:
            if os.path.isfile(ckpt) and not args.overwrite:
                raise ValueError(f"{args.out} holds another run's checkpoint: pass --resume to continue it, "
                                 "--overwrite to start afresh and replace it, or give another --out")
            return state, release
        if not os.path.isfile(ckpt):
            raise ValueError(f"--resume found no checkpoint at {ckpt}")
        state = load_checkpoint(ckpt, net, opt)
        check_same_task(state, task, level, ckpt)
        if args.lr:                          # a step size given with --resume replaces the checkpoint's
            opt.lr = args.lr
        # state["args"] stays the first run's; each resume records what it changed
        state.setdefault("resumes", []).append({"step": state["step"], "batch": args.batch, "lr": opt.lr,
                                                "warmup": args.warmup, "patch": args.patch,
                                                "val_levels": args.val_levels})
        before = ([state.get("args", {})] + state["resumes"][:-1])[-1]    # the run this one continues
        if before.get("val_levels", "drawn") != args.val_levels:  # a best validated another way: measure anew
            state.pop("best_val_psnr", None)
        return state, release
    except BaseException:
        release()
        raise


def check_same_task(state, task, level, ckpt):
    """ValueError unless the checkpoint trained this task at this level (its network is checked on loading)."""
    first = state.get("args", {})
    try:
        saved_task = tasks.get(first.get("task", "denoise"))
        saved_level = saved_task.parse_level(saved_task.default_level if first.get("level") is None
                                             else first["level"])
    except ValueError:
        raise ValueError(f"{ckpt} names a task or level this redcore does not know "
                         f"({first.get('task')} {first.get('level')})") from None
    if (saved_task.name, saved_level) != (task.name, level):
        raise ValueError(f"{ckpt} trains {saved_task.name} {tasks.level_label(saved_level)}, not {task.name} "
                         f"{tasks.level_label(level)}: give the same --task and --level, or another --out")


def what_is_kept(ckpt):
    """The end of a stop's sentence: which checkpoint survives it."""
    return f"the last checkpoint ({ckpt}) is kept" if os.path.isfile(ckpt) else "no checkpoint was written"


def weights_are_sound(net, probe):
    """The parameters are finite and the net gives a finite output for the image `probe` (H, W): an update
    that blew the weights up (to 1e38, say) is caught before it is written anywhere."""
    xp = net.backend.xp
    if not bool(xp.isfinite(net.params.flat).all()):
        return False
    return bool(xp.isfinite(net.forward(probe[None, None], keep=False)).all())


def train_loop(args, task, level, net, opt, comm, sampler, val_pairs, noisy_psnr, state, ckpt):
    from tqdm import tqdm
    lead, start = comm.rank == 0, state["step"]
    shard = comm.rank if args.distributed else None
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, disable=args.no_progress or not lead,
               unit="step", dynamic_ncols=True)
    t_last, loss, strip = time.perf_counter(), float("nan"), None
    t_run = t_last                   # --seconds counts from here
    t_saved = t_last                 # training wall time accumulates in state["seconds"] across resumes
    lr = opt.lr                      # the run's step size; a warm-up scales it inside one step at a time
    # On the cuda backend's tensor-core path the step is recorded once and replayed (a CUDA graph on a GPU).
    captured = CapturedStep(net, opt) if not args.distributed and why_not_captured(net) is None else None
    if captured is not None and lead:
        (bar.write if not args.no_progress else print)("each step replays one captured graph of kernel launches")
    for step in bar:
        # Adam's first steps (Eq. 5-7 with bias correction) move every weight by about the full step size,
        # whatever its gradient: a trained network given fresh moments (--init) is thrown off by that.
        opt.lr = lr * min(1.0, (step - start + 1) / args.warmup) if args.warmup > 0 else lr
        noisy, clean = sampler.task_batch(step, task, level, shard=shard)
        try:
            loss = captured(noisy, clean) if captured is not None else \
                train_step(net, opt, noisy, clean, comm)      # Eq. 4, backward, all-reduce, Eq. 5-7
        except FloatingPointError as e:
            message = f"at step {step + 1} on rank {comm.rank}: {e}; {what_is_kept(ckpt)}"
            if args.distributed:
                raise FloatingPointError(message) from None
            print(f"error {message}", file=sys.stderr)
            return 3
        opt.lr = lr                  # outside the step (checkpoints) the step size is the run's, not a warm-up's
        if args.distributed and (step + 1) % args.check_every == 0:
            if not comm.all_equal(distributed.checksum(net.backend, net.params.flat)):
                raise RuntimeError(f"the ranks' parameters differ after step {step + 1}: stopping")
        now = time.perf_counter()
        rate = args.batch / max(now - t_last, 1e-9)
        t_last = now
        out_of_time = args.seconds is not None and now - t_run >= args.seconds
        if args.distributed and args.seconds is not None:     # every rank stops at the same step
            out_of_time = comm.broadcast_object(out_of_time)
        if not lead:
            if out_of_time:
                break
            continue
        bar.set_postfix(loss=f"{loss:.4g}", patches_per_s=f"{rate:.1f}")
        entry = {"step": step + 1, "loss": loss}
        done = step + 1 == args.steps or out_of_time          # --seconds ends a run as --steps does
        if (step + 1) % args.val_every == 0 or done:
            entry["val_psnr"], restored = validate(net, val_pairs)
            msg = (f"step {step + 1}: loss {loss:.4g}, validation PSNR {entry['val_psnr']:.2f} dB "
                   f"(corrupted input {noisy_psnr:.2f} dB, gain {entry['val_psnr'] - noisy_psnr:+.2f} dB)")
            (bar.write if not args.no_progress else print)(msg)
            sys.stdout.flush()   # a log redirected to a file shows each validation as it happens
            n, c, shave = val_pairs[0]
            scores = [psnr(image, c, shave) for image in (n, restored[0])]
            strip = captioned_strip([np.clip(n, 0, 1), restored[0], c],
                                    [f"corrupted {scores[0]:.2f} dB", f"restored {scores[1]:.2f} dB", "clean"])
            if entry["val_psnr"] > state.get("best_val_psnr", -np.inf):   # keep the best network seen
                state["best_val_psnr"], state["best_step"] = entry["val_psnr"], step + 1
                net.save(os.path.join(args.out, "best.npz"))
        state["history"].append(entry)
        if (step + 1) % args.ckpt_every == 0 or done:
            if not weights_are_sound(net, val_pairs[0][0]):
                message = f"at step {step + 1}: the update gave NaN/Inf weights or outputs (lower --lr); " \
                          f"{what_is_kept(ckpt)}"
                if args.distributed:         # ends every rank (the others wait in the next all-reduce)
                    raise FloatingPointError(message)
                print(f"error {message}", file=sys.stderr)
                return 3
            state["step"] = step + 1
            state["seconds"] = state.get("seconds", 0.0) + (time.perf_counter() - t_saved)
            t_saved = time.perf_counter()
            save_checkpoint(ckpt, net, opt, state)
            if strip is not None:
                save_pictures(args.out, state["history"], strip, noisy_psnr)
        if out_of_time:
            (bar.write if not args.no_progress else print)(f"--seconds {args.seconds:g} reached at step {step + 1}")
            break
    bar.close()
    if not lead:
        return 0
    net.save(os.path.join(args.out, "model.npz"))
    last_val = next((e["val_psnr"] for e in reversed(state["history"]) if "val_psnr" in e), None)
    summary = {"task": task.name, "level": tasks.level_label(level), "steps": state["step"], "final_loss": loss,
               "noisy_psnr": noisy_psnr, "val_psnr": last_val,
               "backend": net.backend.name, "ranks": comm.size, "losses": [e["loss"] for e in state["history"]],
               "data": args.data_described,
               "validation": [[e["step"], e["val_psnr"]] for e in state["history"] if "val_psnr" in e]}
    atomic_write(os.path.join(args.out, "summary.json"), lambda f: f.write(json.dumps(summary, indent=1).encode()))
    print(f"saved {os.path.join(args.out, 'model.npz')}: validation {last_val:.2f} dB vs corrupted {noisy_psnr:.2f} dB"
          if last_val is not None else f"saved {os.path.join(args.out, 'model.npz')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
