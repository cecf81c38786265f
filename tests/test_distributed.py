"""Data-parallel training (redcore.distributed) under a real MPI: 2 ranks with batch 8 each equal 1 process with
batch 16 on the same patches; the NCCL code path over a CPU stand-in of NCCL; failures and hangs end the job
with a clear message; the training script with --distributed, checksums and exact resume."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install mpich mpi4py)")
from redcore.distributed import find_mpiexec  # noqa: E402  (after the skip: a clear reason first)
MPIEXEC = find_mpiexec()
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason=f"no mpiexec on PATH nor beside {sys.executable} "
                                                        "(pip install mpich)")

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi_worker.py")
TRAIN = os.path.join(HERE, "..", "examples", "train_denoise.py")


def mpirun(n, *args, timeout=120, env=None):
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("mode", ["mpi", "nccl-standin"])
def test_two_ranks_of_8_equal_one_process_of_16(tmp_path, mode):
    out = tmp_path / "result.json"
    done = mpirun(2, WORKER, str(out), mode)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["ranks"] == 2 and result["checksums_equal"]
    assert result["parameter_change"] > 1e-4                  # the 3 steps did move the parameters ...
    assert result["max_difference"] <= 1e-12, result          # ... the same way as one process (float64)


@pytest.mark.parametrize("mode,message", [("fail", "rank 1: ValueError: a deliberate failure"),
                                          ("hang", "the gradient all-reduce did not complete within 3 s")])
def test_a_failing_or_hanging_rank_ends_the_job(tmp_path, mode, message):
    done = mpirun(2, WORKER, str(tmp_path / "r.json"), mode, timeout=60)
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "r.json").exists()


def run_script(ranks, out, *extra, timeout=120):
    env = dict(os.environ, REDCORE_DATA="/nonexistent-data-folder")
    args = [TRAIN, "--depth", "4", "--filters", "4", "--batch", "4", "--patch", "20", "--val-crop", "32",
            "--val-every", "3", "--ckpt-every", "3", "--check-every", "1", "--no-progress", "--out", str(out), *extra]
    if ranks:
        return mpirun(ranks, *args, "--distributed", env=env, timeout=timeout)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_training_script_distributed_resumes_exactly(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for out, steps in ((straight, 6), (resumed, 3)):
        done = run_script(2, out, "--steps", str(steps))
        assert done.returncode == 0, done.stderr
    done = run_script(2, resumed, "--steps", "6", "--resume")
    assert done.returncode == 0, done.stderr
    assert "resuming at step 3" in done.stdout and done.stdout.count("saved ") == 1   # rank 0 alone speaks
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["ranks"] == 2 and len(summary["losses"]) == 6
    a, b = (np.load(d / "model.npz") for d in (straight, resumed))
    for key in a.files:
        if key != "__header__":
            np.testing.assert_array_equal(a[key], b[key])


def test_training_script_refuses_a_batch_that_does_not_split(tmp_path):
    done = run_script(2, tmp_path / "x", "--steps", "2", "--batch", "5")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --batch 5 does not split over 2 ranks: give a multiple of 2"


def test_a_blown_up_update_ends_every_rank_without_writing_it(tmp_path):
    """Rank 0 finds the NaN/Inf weights before its checkpoint; the other ranks must not wait for it in the
    next all-reduce (here until --comm-timeout), so the job ends at once with rank 0's sentence.  (From He
    weights, whose first update moves every layer by 1e30; from the identity start only the last layer moves.)"""
    done = run_script(2, tmp_path / "run", "--steps", "6", "--lr", "1e30", "--start", "he", "--ckpt-every", "1",
                      "--comm-timeout", "60", timeout=50)
    assert done.returncode != 0
    assert "NaN/Inf weights or outputs" in done.stderr and "no checkpoint was written" in done.stderr
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_a_run_folder_in_use_refuses_every_rank(tmp_path):
    out = tmp_path / "run"
    assert run_script(2, out, "--steps", "3").returncode == 0
    done = run_script(2, out, "--steps", "3")
    assert done.returncode == 2
    assert done.stderr.count("holds another run's checkpoint") == 1              # rank 0 alone speaks
