"""examples/train_denoise.py end to end on the built-in images: it trains, writes its files, resumes exactly,
and refuses bad input with one sentence."""
import json
import os

import numpy as np
import pytest

import redcore
from conftest import load_example
from redcore import tasks
from redcore.io import TEMP_PREFIX, load_arrays, load_checkpoint

train_denoise = load_example("train_denoise")

TINY = ["--depth", "4", "--filters", "4", "--batch", "2", "--patch", "20", "--val-crop", "32",
        "--val-every", "2", "--ckpt-every", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def builtin_data(monkeypatch):
    monkeypatch.setenv("REDCORE_DATA", "/nonexistent-data-folder")   # force the built-in image set


def test_trains_and_resumes_exactly(tmp_path):
    straight, resumed = str(tmp_path / "a"), str(tmp_path / "b")
    assert train_denoise.main(TINY + ["--steps", "6", "--out", straight]) == 0
    assert train_denoise.main(TINY + ["--steps", "3", "--out", resumed]) == 0
    assert train_denoise.main(TINY + ["--steps", "6", "--out", resumed, "--resume"]) == 0
    a, b = redcore.load(os.path.join(straight, "model.npz")), redcore.load(os.path.join(resumed, "model.npz"))
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    for name in ("checkpoint.npz", "curves.png", "validation.png", "summary.json"):
        assert os.path.isfile(os.path.join(straight, name)), name
    summary = json.load(open(os.path.join(straight, "summary.json")))
    assert summary["steps"] == 6 and np.isfinite(summary["final_loss"])
    assert [step for step, _ in summary["validation"]] == [2, 4, 6]       # every --val-every, and the last
    assert summary["validation"][-1][1] == summary["val_psnr"]


def test_bad_input_gets_one_sentence(tmp_path, capsys):
    assert train_denoise.main(TINY + ["--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no such image folder" in capsys.readouterr().err
    assert train_denoise.main(TINY + ["--resume", "--out", str(tmp_path / "fresh")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert train_denoise.main(TINY + ["--depth", "5", "--out", str(tmp_path)]) == 2
    assert "even" in capsys.readouterr().err


def test_cuda_trains_on_a_device_or_says_what_is_missing_in_one_sentence(tmp_path, capsys):
    """Where CuPy and a GPU work, --backend cuda trains (exit 0, a loadable model); elsewhere the error names
    what is missing (CuPy, a device, a driver) in one line and exits 2."""
    try:
        redcore.get_backend("cuda")
        why_not = None
    except RuntimeError as e:
        why_not = str(e)
    code = train_denoise.main(TINY + ["--backend", "cuda", "--steps", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    if why_not is None:
        assert code == 0, err
        assert redcore.load(str(tmp_path / "model.npz")).num_params > 0
    else:
        assert code == 2 and err == f"error: {why_not}\n"


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_nan_loss_stops_and_keeps_the_checkpoint(tmp_path, capsys):
    """A step size of 1e30 blows the weights up at the first step: training stops with one sentence naming
    NaN/Inf before that state is written anywhere.  Resumed from a sound checkpoint, the checkpoint stays the
    sound one, byte for byte; started afresh, no checkpoint is written at all.  (Afresh from He weights:
    from the identity start, --start's default, the first step moves only the zero last layer, whose 1e30
    weights still give finite outputs, and the second step is the one that overflows.)"""
    out = str(tmp_path / "run")
    ckpt = os.path.join(out, "checkpoint.npz")
    assert train_denoise.main(TINY + ["--steps", "2", "--out", out]) == 0
    with open(ckpt, "rb") as f:
        sound = f.read()
    capsys.readouterr()
    assert train_denoise.main(TINY + ["--steps", "5", "--lr", "1e30", "--resume", "--out", out]) == 3
    err = capsys.readouterr().err
    assert "NaN" in err and f"the last checkpoint ({ckpt}) is kept" in err and err.count("\n") == 1
    with open(ckpt, "rb") as f:
        assert f.read() == sound
    fresh = str(tmp_path / "fresh")
    assert train_denoise.main(TINY + ["--steps", "5", "--lr", "1e30", "--start", "he", "--out", fresh]) == 3
    assert "no checkpoint was written" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(fresh, "checkpoint.npz"))


train = load_example("train")


@pytest.mark.parametrize("task,level", [("sr", "3"), ("jpeg", "10"), ("deblur", "motion"), ("inpaint", "text20"),
                                        ("denoise", "0-55")])
def test_general_trainer_runs_every_task(tmp_path, task, level):
    out = tmp_path / task
    argv = ["--task", task, "--level", level, "--depth", "4", "--filters", "4", "--batch", "2", "--patch", "24",
            "--val-crop", "48", "--steps", "2", "--val-every", "2", "--no-progress", "--out", str(out)]
    assert train.main(argv) == 0
    summary = json.load(open(out / "summary.json"))
    assert summary["task"] == task and summary["level"] == ("0-55" if level == "0-55" else level)
    assert len(summary["losses"]) == 2 and np.isfinite(summary["val_psnr"])
    config = redcore.load(str(out / "model.npz")).config
    assert config["depth"] == 4 and config["init"] == "identity"            # --start's default


def test_general_trainer_refuses_an_unknown_task_or_level(tmp_path, capsys):
    assert train.main(["--task", "dehaze", "--out", str(tmp_path)]) == 2
    assert "unknown task 'dehaze'" in capsys.readouterr().err
    assert train.main(["--task", "jpeg", "--level", "0", "--out", str(tmp_path)]) == 2
    assert "unknown level '0' for task 'jpeg'" in capsys.readouterr().err
    for task, level in (("sr", "3"), ("denoise", "25")):       # the log draw needs a blind noise range
        assert train.main(["--task", task, "--level", level, "--sigma-draw", "log", "--out", str(tmp_path)]) == 2
        assert "--sigma-draw log draws the sigma of denoising over a blind range" in capsys.readouterr().err


def test_init_starts_from_trained_weights_and_refuses_another_network(tmp_path, capsys):
    """--init copies a trained network's weights in before step 1 (fine-tuning): after one step of --lr 1e-6 the
    saved model is the source moved by at most 1e-6 per weight (Adam's first step is +-lr exactly, Eq. 5-7
    with bias correction: m_hat / sqrt(v_hat) = +-1); a source of another shape is refused with one sentence
    naming what differs."""
    source = tmp_path / "source"
    argv = ["--task", "sr", "--level", "2", "--depth", "4", "--filters", "4", "--batch", "2", "--patch", "24",
            "--val-crop", "48", "--val-every", "2", "--no-progress"]
    assert train.main(argv + ["--steps", "2", "--seed", "1", "--out", str(source)]) == 0
    tuned = tmp_path / "tuned"
    assert train.main(argv + ["--steps", "1", "--lr", "1e-6", "--init", str(source / "model.npz"),
                              "--out", str(tuned)]) == 0
    a, b = redcore.load(str(source / "model.npz")), redcore.load(str(tuned / "model.npz"))
    fresh = redcore.REDNet(depth=4, filters=4, skip_step=2)
    assert any(not np.array_equal(a.params[k], fresh.params[k]) for k in a.params)
    for k in a.params:
        # one step of at most lr, plus the float32 rounding of the stored weight (at most an ulp of it)
        assert np.all(np.abs(a.params[k] - b.params[k]) <= 1e-6 * (1 + 1e-5) + np.spacing(np.abs(a.params[k]))), k
    assert train.main(argv + ["--filters", "8", "--steps", "1", "--init", str(source / "model.npz"),
                              "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "is another network: filters 4 (this run: 8)" in err and err.count("\n") == 1


def test_warmup_keeps_fine_tuning_from_throwing_a_trained_network_off(tmp_path, capsys):
    """Adam's first step moves every weight with a gradient by about the full step size (Eq. 5-7: m_hat/sqrt(v_hat)
    = +-1).  --warmup N scales the step size by (i + 1)/N over the run's first N steps, so the first step of a
    fine-tuning run moves no weight by more than lr/N; the checkpoint keeps the run's step size."""
    argv = ["--task", "denoise", "--level", "25", "--depth", "4", "--filters", "4", "--batch", "2", "--patch", "20",
            "--val-crop", "32", "--val-every", "1", "--ckpt-every", "1", "--no-progress", "--lr", "1e-3"]
    source = tmp_path / "source"
    assert train.main(argv + ["--steps", "2", "--out", str(source)]) == 0
    start = redcore.load(str(source / "model.npz"))
    moved = {}
    for warmup in (0, 10):
        out = tmp_path / f"warmup{warmup}"
        assert train.main(argv + ["--steps", "1", "--warmup", str(warmup), "--init", str(source / "model.npz"),
                                  "--out", str(out)]) == 0
        tuned = redcore.load(str(out / "model.npz"))
        moved[warmup] = max(np.abs(tuned.params[k] - start.params[k]).max() for k in start.params)
        with np.load(out / "checkpoint.npz") as ck:
            assert float(ck["optim.lr"]) == 1e-3
    assert 0.9e-3 < moved[0] < 1.1e-3          # the full step size
    assert 0.9e-4 < moved[10] < 1.1e-4         # a tenth of it
    with pytest.raises(SystemExit) as stop:
        train.main(argv + ["--steps", "1", "--warmup", "-1", "--out", str(tmp_path / "bad")])
    assert stop.value.code == 2
    assert "--warmup: -1 is out of range: give a number >= 0" in capsys.readouterr().err


def test_a_resume_on_bigger_patches_is_recorded_for_the_model_card(tmp_path):
    """Fine-tuning on bigger patches (--resume with a new --patch) is kept in the checkpoint's record of
    resumes, and tools/ship_model.py's card says from which step they were used."""
    ship_model = load_example("ship_model")
    argv = ["--task", "denoise", "--level", "25", "--depth", "4", "--filters", "4", "--val-crop", "32",
            "--val-every", "2", "--ckpt-every", "1", "--no-progress", "--out", str(tmp_path)]
    assert train.main(argv + ["--batch", "4", "--patch", "20", "--steps", "2"]) == 0
    assert train.main(argv + ["--batch", "1", "--patch", "40", "--steps", "3", "--resume"]) == 0
    header, _ = redcore.io.load_arrays(str(tmp_path / "checkpoint.npz"))
    state = header["state"]
    assert [(r["step"], r["batch"], r["patch"]) for r in state["resumes"]] == [(2, 1, 40)]
    assert ship_model.patch_sizes(state["args"], state["resumes"]) == "20x20 patches, 40x40 from step 2"
    assert ship_model.patch_sizes(state["args"], state["resumes"], 1500) == "20x20 patches, 40x40 from step 1500 + 2"
    # a record from before the patch was kept in it: the first run's size throughout
    assert ship_model.patch_sizes({"patch": 50}, [{"step": 9, "batch": 64}]) == "50x50 patches"


def test_help_gives_every_option_a_text_and_each_default_once():
    for action in train.build_parser()._actions:
        text = (action.help or "").replace("%(default)s", "")
        assert text and text != "==SUPPRESS==", f"{action.option_strings} has no help text"
        assert text.count("default") <= 1, f"{action.option_strings}: {text}"
        if action.default not in (None, False, "==SUPPRESS==") and action.option_strings != ["-h", "--help"]:
            assert "%(default)s" in action.help, f"{action.option_strings} does not say its default {action.default!r}"


def test_seconds_ends_a_run_as_steps_does_and_resume_goes_on(tmp_path):
    """--seconds (a GPU lease's budget) stops at a step boundary, validated, checkpointed and saved; the
    summary and the checkpoint hold the step it stopped at, and --resume continues from there."""
    out = tmp_path / "run"
    assert train.main(TINY + ["--steps", "100000", "--seconds", "1", "--out", str(out)]) == 0
    stopped = json.loads((out / "summary.json").read_text())["steps"]
    assert 0 < stopped < 100000
    net = redcore.REDNet(depth=4, filters=4)
    assert load_checkpoint(str(out / "checkpoint.npz"), net, redcore.Adam(net.params))["step"] == stopped
    assert (out / "model.npz").is_file() and (out / "curves.png").is_file()
    assert train.main(TINY + ["--steps", str(stopped + 2), "--resume", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == stopped + 2


def test_threads_1_keeps_the_training_on_one_core(tmp_path):
    """`--threads 1` caps Numba's and BLAS's threads at one (redcore.threads.use_cores), so that two trainings
    side by side on two cores do not each take both, and runs the single-threaded kernels (single_core_backend).
    Run in a child process with 2 threads of each to start from, so that the cap is seen (and this process's
    thread pools are left as they are)."""
    import subprocess
    import sys
    script = f"""
import numba, sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
from threadpoolctl import threadpool_info
from conftest import load_example
def counts():
    return numba.get_num_threads(), sorted({{i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}})
assert counts() == (2, [2]), counts()
from redcore import threads
made, single_core_backend = [], threads.single_core_backend
threads.single_core_backend = lambda backend: made.append(single_core_backend(backend)) or made[-1]
train = load_example("train")
assert train.main({TINY!r} + ["--steps", "1", "--threads", "1", "--out", {str(tmp_path / "one")!r}]) == 0
assert counts() == (1, [1]), counts()
assert len(made) == 1 and made[0].single_threaded, made     # the net ran on the single-core backend
"""
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2",
           "REDCORE_DATA": "/nonexistent-data-folder"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    from redcore.threads import use_cores
    with pytest.raises(ValueError, match="the cores to use must be a whole number >= 1; got 0"):
        use_cores(0)


def test_sigterm_ends_a_training_with_one_sentence_and_keeps_its_checkpoint(tmp_path):
    """`kill` (SIGTERM) ends a training as Ctrl-C does: one sentence on what is kept, exit status 128 + 15, and
    a checkpoint that resumes.  A training started in the background by a script ignores SIGINT, so this is
    how one is stopped.  Run in a child process, which is killed once its first checkpoint is written."""
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "run"
    command = [sys.executable, os.path.join(os.path.dirname(__file__), "..", "examples", "train.py")] + TINY + [
        "--steps", "100000", "--out", str(out)]
    child = subprocess.Popen(command, env={**os.environ, "REDCORE_DATA": "/nonexistent-data-folder"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.npz").is_file():
            assert child.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        err = child.communicate(timeout=60)[1]
    finally:
        child.kill()
    assert child.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert f"terminated: the last checkpoint ({out / 'checkpoint.npz'}) is kept" in err, err[-2000:]
    assert "Traceback" not in err
    stopped = load_arrays(str(out / "checkpoint.npz"))[0]["state"]["step"]
    assert stopped >= 1
    assert not [f for f in os.listdir(out) if f.startswith(TEMP_PREFIX)], os.listdir(out)   # no half-written file
    assert train.main(TINY + ["--steps", str(stopped + 1), "--resume", "--out", str(out)]) == 0   # it resumes
    assert json.loads((out / "summary.json").read_text())["steps"] == stopped + 1


def test_a_blind_network_validates_at_each_scored_level():
    """--val-levels each: every validation image at every level of the mix, each pair scored with its own
    shave (x2 shaves 2 pixels, x4 four), so the best validation is the best on the card's mean; drawn: one
    level per image, shaved by the mix's largest scale (as before)."""
    sr = tasks.get("sr")
    images = [np.random.default_rng(i).random((40, 44)) for i in range(2)]
    each, levels = train.validation_pairs(sr, sr.parse_level("2,3,4"), images, 0, "each", seed=0)
    assert levels == (2, 3, 4)
    assert [shave for *_, shave in each] == [2, 3, 4, 2, 3, 4]
    for (corrupted, clean, shave), scale in zip(each, [2, 3, 4] * 2):
        assert clean.shape == corrupted.shape and all(n % scale == 0 for n in clean.shape)
    drawn, levels = train.validation_pairs(sr, sr.parse_level("2,3,4"), images, 0, "drawn", seed=0)
    assert levels == (sr.parse_level("2,3,4"),)        # the mix itself: each image draws its own level
    assert len(drawn) == 2 and [shave for *_, shave in drawn] == [4, 4]
    single, levels = train.validation_pairs(sr, 3, images, 0, "each", seed=0)
    assert levels == (3,) and len(single) == 2


def test_a_resume_that_validates_another_way_measures_the_best_anew(tmp_path, monkeypatch):
    """A best validation measured at drawn levels does not compare with one at each level: a resume with
    another --val-levels keeps the best only from its own validations (best.npz is then rewritten), and a
    resume with the same keeps the earlier best.  The first runs score an unbeatable 1e9 dB."""
    real_validate = train.validate
    for resumed_with, best in (("each", 4), ("drawn", 2)):
        out = str(tmp_path / resumed_with)
        argv = ["--task", "sr", "--level", "2,3", "--depth", "4", "--filters", "4", "--batch", "2", "--patch",
                "24", "--val-crop", "24", "--val-every", "2", "--ckpt-every", "2", "--no-progress", "--out", out]
        monkeypatch.setattr(train, "validate", lambda net, pairs: (1e9, real_validate(net, pairs)[1]))
        assert train.main(argv + ["--steps", "2", "--val-levels", "drawn"]) == 0
        monkeypatch.setattr(train, "validate", real_validate)
        assert train.main(argv + ["--steps", "4", "--resume", "--val-levels", resumed_with]) == 0
        state = load_arrays(os.path.join(out, "checkpoint.npz"))[0]["state"]
        assert state["best_step"] == best and state["resumes"][-1]["val_levels"] == resumed_with
