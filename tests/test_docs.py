"""The README works as written: its code blocks run, its test command is CI's, its table and docs/models.md
are what the model cards generate, and every link in the README and docs/ resolves."""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
README = os.path.join(ROOT, "README.md")


def blocks(language):
    text = open(README, encoding="utf-8").read()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_readme_is_a_front_page():
    lines = open(README, encoding="utf-8").read().splitlines()
    assert len(lines) <= 180, f"README.md has {len(lines)} lines: results belong in docs/"


def test_the_readme_test_command_is_what_ci_runs():
    command = [b.strip() for b in blocks("bash") if "pytest" in b]
    assert command == ['pip install -e ".[test]" && python -m pytest -q tests']
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().splitlines()
    assert ci[-1] == command[0]


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_every_python_block_of_the_readme_runs_as_written(tmp_path, index):
    done = subprocess.run([sys.executable, "-c", blocks("python")[index]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "each block prints what it did"


def test_the_readme_commands_run_as_written(tmp_path):
    """The bash blocks of `redcore` commands, run in a folder where docs/ is the repository's."""
    os.symlink(os.path.join(ROOT, "docs"), tmp_path / "docs")
    commands = [line.split("#")[0].strip() for b in blocks("bash") for line in b.splitlines()
                if line.startswith("redcore ")]
    assert len(commands) >= 3
    # the `redcore` script pip installed beside this interpreter, whether or not its folder is on PATH
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env=env)
        assert done.returncode == 0, f"{command}: {done.stderr[-1000:]}"
    assert (tmp_path / "restored.png").is_file() and (tmp_path / "restored_compare.png").is_file()


def test_the_generated_files_are_up_to_date():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_targets_table_measures_each_level_against_its_target():
    """docs/models.md's table against the published figures: the blind card of each task is found, an absolute
    target and a margin over the card's baseline give the gap, inpainting's SSIM condition can fail a level
    whose PSNR passes, and a level the card lacks shows as not scored (never as met)."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_docs
    cards = {
        "per-level": {"task": "jpeg", "tests": [{"set": "classic5", "psnr": 99.0}]},     # not blind: ignored
        "jpeg-blind": {"task": "jpeg", "covers": "10-40", "tests": [
            {"set": "classic5", "level": 10, "psnr": 29.41}, {"set": "classic5", "level": 20, "psnr": 31.60}]},
        "inpaint-blind": {"task": "inpaint", "covers": "text10,text20,scratches", "tests": [
            {"set": "Set12", "level": "text10", "psnr": 35.0, "ssim": 0.97, "baseline_psnr": 31.9,
             "baseline_ssim": 0.96},
            {"set": "Set12", "level": "text20", "psnr": 35.0, "ssim": 0.95, "baseline_psnr": 31.9,
             "baseline_ssim": 0.96}]},
    }
    rows = {(r.task, r.set, r.level): r for r in make_docs.target_rows(cards)}
    assert rows["jpeg", "classic5", 10].model == "jpeg-blind"
    assert (rows["jpeg", "classic5", 10].gap, rows["jpeg", "classic5", 10].met) == (0.01, True)
    assert (rows["jpeg", "classic5", 20].gap, rows["jpeg", "classic5", 20].met) == (-0.03, False)
    assert rows["jpeg", "classic5", 30].psnr is None and rows["jpeg", "classic5", 30].met is False
    assert rows["inpaint", "Set12", "text10"].goal == pytest.approx(34.9) and rows["inpaint", "Set12", "text10"].met
    text20 = rows["inpaint", "Set12", "text20"]
    assert text20.gap == 0.1 and not text20.met                             # PSNR enough, SSIM below harmonic's
    assert rows["inpaint", "Set12", "scratches"].goal is None               # no test, so no baseline either
    assert all(r.model is None and not r.met for r in rows.values() if r.task in ("denoise", "sr", "deblur"))
    table = make_docs.targets_table(cards)
    assert "| jpeg | `jpeg-blind` | classic5 | 30 | not scored |" in table and "none ships" in table


def test_every_relative_link_resolves():
    pages = [README] + [os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs"))
                        if f.endswith(".md")]
    for page in pages:
        text = open(page, encoding="utf-8").read()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(page), target))
            assert os.path.exists(path), f"{os.path.relpath(page, ROOT)} links to {target}, which does not exist"


def test_every_path_and_name_in_the_docs_exists():
    """docs/ cites code and tests as `path::name` (a function, a class or Class.method): each must exist."""
    import ast
    cited = 0
    for page in [README] + [os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs"))
                            if f.endswith(".md")]:
        for path, name in re.findall(r"`([\w./-]+\.py)::([\w.]+)`", open(page, encoding="utf-8").read()):
            source = os.path.join(ROOT, path)
            assert os.path.isfile(source), f"{os.path.relpath(page, ROOT)} cites {path}, which does not exist"
            scope = ast.parse(open(source, encoding="utf-8").read()).body
            for part in name.split("."):
                found = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part]
                assert found, f"{os.path.relpath(page, ROOT)} cites {path}::{name}, which does not define {part}"
                scope = found[0].body
            cited += 1
    assert cited >= 50                                     # docs/backprop.md cites every formula's code and test


def test_a_benchmark_record_becomes_the_speed_table(tmp_path):
    """bench/train_step.py --json, on a tiny network and shapes, writes a record that tools/make_docs.py turns
    into docs/speed.md's table: each redcore figure beside the PyTorch yardstick of its own run and mode, the
    ratio of their medians, and the command that measured them.  (The figures of so small a run mean nothing;
    what is checked is the chain from measurement to table.)"""
    pytest.importorskip("torch", reason="the benchmark's yardstick is PyTorch (pip install torch==2.13.0)")
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_docs
    record_path = tmp_path / "cpu.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "train_step.py"), "--configs", "red10",
                           "--backends", "cpu", "--batch", "2", "--size", "24", "--repeats", "3", "--warmup", "0",
                           "--threads", "1", "--infer-sizes", "30x34", "--infer-configs", "red20", "--json",
                           str(record_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.load(open(record_path))
    assert all(r["median"] == sorted(r["times"])[1] for r in record["results"])
    medians = {(r["framework"], r["mode"]): r["median"] for r in record["results"]}
    rows = make_docs.speed_rows(record)
    assert [(row.measured, row.yardstick, row.backend) for row in rows] == [
        ("training step, batch 2 of 24x24", "torch", "cpu"), ("inference, one 30x34 image", "torch", "cpu")]
    assert [row.network for row in rows] == ["RED10, 64 filters, valid", "RED20, 64 filters, same"]
    for row, mode in zip(rows, ("train", "infer")):
        assert (row.yardstick_s, row.seconds) == (medians["torch", mode], medians["cpu", mode])
        assert row.ratio == pytest.approx(medians["torch", mode] / medians["cpu", mode])
    doc = make_docs.speed_doc({"cpu.json": record})
    assert "| RED10, 64 filters, valid | training step, batch 2 of 24x24 | `torch` |" in doc
    assert "--configs red10 --backends cpu" in doc and record["machine"]["date"] in doc
    # a redcore figure whose yardstick is missing from its run is refused, not compared with another run's
    record["results"] = [r for r in record["results"] if not (r["framework"] == "torch" and r["mode"] == "infer")]
    with pytest.raises(SystemExit, match="without its yardstick torch"):
        make_docs.speed_rows(record)


def test_a_skip_training_record_becomes_its_table(tmp_path):
    """bench/skip_training.py, on tiny networks and built-in images, trains a network with the paper's skips,
    with block skips and without, from He weights and from those with the last layer zeroed, each in its own
    process (the kinds' nets without skips are one net, trained once per start), and writes a record
    and a plot that tools/make_docs.py turns into docs/skip-connections.md's table: each network's best
    validation beside the difference the skips made against the network of its own depth and initial weights.
    (So short a training means nothing; what is checked is the chain from training to table.)"""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_docs
    record_path, picture = tmp_path / "tiny.json", tmp_path / "tiny.png"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "skip_training.py"), "--depths", "6",
                           "--inits", "he", "zero-last", "--skip-kinds", "symmetric", "block", "--filters", "2", "--steps", "4", "--batch", "2",
                           "--val-every", "2", "--window", "3", "--record", str(record_path), "--picture", str(picture)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "REDCORE_DATA": str(tmp_path / "none")})   # the built-in images
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.load(open(record_path))
    assert [(r["depth"], r["skip_kind"], r["skip_step"], r["init"]) for r in record["runs"]] == [
        (6, kind, step, init) for init in ("he", "zero-last")
        for kind, step in (("symmetric", 2), ("symmetric", 0), ("block", 2))]
    for r in record["runs"]:
        assert [step for step, _ in r["validation"]] == [2, 4]
        assert [step for step, _ in r["loss_windows"]] == [3, 4]               # windows of 3 steps, then 1
        assert (r["best_step"], r["best_psnr"]) in [tuple(v) for v in r["validation"]]
        assert r["best_psnr"] == max(v for _, v in r["validation"])
    assert "built-in" in record["setup"]["data"]
    from PIL import Image
    assert Image.open(picture).size[0] == 720
    doc = make_docs.skip_doc({"tiny.json": record})
    for skip, plain, block in (record["runs"][:3], record["runs"][3:]):    # each against its own init's
        for skipped in (skip, block):
            assert (f"| {skipped['name']} | **{skipped['best_psnr']:.2f}** ({skipped['best_step']}) | "
                    f"{skipped['best_psnr'] - plain['best_psnr']:+.2f} dB |") in doc
        assert f"| {plain['name']} | **{plain['best_psnr']:.2f}** ({plain['best_step']}) |  |" in doc
    assert record["runs"][4]["name"] == "RED6, no skips, last layer zero"
    assert record["runs"][5]["name"] == "RED6, block skips every 2 layers, last layer zero"
    assert record["machine"]["picture"].endswith("tiny.png")                 # relative to docs/
    assert "--depths 6 --inits he zero-last" in doc and f"]({record['machine']['picture']})" in doc


def test_a_failed_training_is_recorded_and_the_others_stand(tmp_path):
    """A training that fails (a diverged loss, or here a depth of 7, which is no RED-Net) does not cost the
    others: the record keeps each finished run and, for the failed one, the trainer's last words; the table
    says so, the plot leaves it out, and the bench exits 1 naming it.  When every training fails there is no
    record, and the error gives the first one's words."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_docs
    record_path, picture = tmp_path / "tiny.json", tmp_path / "tiny.png"
    bench = [sys.executable, os.path.join(ROOT, "bench", "skip_training.py"), "--skip-steps", "0", "--filters", "2",
             "--steps", "2", "--batch", "2", "--val-every", "2", "--window", "2", "--record", str(record_path),
             "--picture", str(picture)]
    env = {**os.environ, "REDCORE_DATA": str(tmp_path / "none")}            # the built-in images
    done = subprocess.run(bench + ["--depths", "6", "7"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 1 and "1 of 2 trainings failed (RED7, no skips)" in done.stderr, done.stderr[-2000:]
    ok, failed = json.load(open(record_path))["runs"]
    assert [step for step, _ in ok["validation"]] == [2] and "failed" not in ok
    assert failed["name"] == "RED7, no skips" and "depth must be an even integer" in failed["failed"]
    assert "validation" not in failed and picture.exists()
    doc = make_docs.skip_doc({"tiny.json": json.load(open(record_path))})
    assert "| RED7, no skips | failed: exit 2: error: depth must be an even integer" in doc
    assert f"| RED6, no skips | **{ok['best_psnr']:.2f}** (2) |" in doc
    record_path.unlink()
    done = subprocess.run(bench + ["--depths", "7"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 1 and "every training failed; the first: exit 2: error: depth" in done.stderr
    assert not record_path.exists()
