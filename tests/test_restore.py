"""redcore.restore and the `redcore` command: image forms in and out, colour handling, tiles, the model
registry, and one clear sentence for bad input."""
import json

import numpy as np
import pytest
from PIL import Image

import redcore
from redcore import cli, tasks, zoo
from redcore.tasks.resize import imresize


def net_file(tmp_path, kernel_size=3, identity=False, name="net.npz"):
    net = redcore.REDNet(depth=4, filters=4, kernel_size=kernel_size, backend="numpy", dtype="float64", seed=2)
    if identity:
        net.params.flat[...] = 0          # residual branch zero: the output is the input
    path = str(tmp_path / name)
    net.save(path)
    return path


@pytest.fixture
def rgb8():
    return (np.random.default_rng(0).random((40, 36, 3)) * 255).astype(np.uint8)


def test_forms_in_and_out(tmp_path, rgb8):
    model = net_file(tmp_path)
    gray = rgb8[..., 0]
    out = redcore.restore(gray, "denoise", 25, model=model)
    assert out.shape == gray.shape and out.dtype == np.uint8
    f = redcore.restore(gray / 255.0, "denoise", 25, model=model)
    assert f.dtype == np.float32 and f.min() >= 0 and f.max() <= 1
    np.testing.assert_allclose(f * 255, out, atol=0.51)
    rgb = redcore.restore(rgb8, "denoise", 25, model=model)          # channel by channel
    assert rgb.shape == rgb8.shape
    np.testing.assert_array_equal(rgb[..., 1], redcore.restore(rgb8[..., 1], "denoise", 25, model=model))
    Image.fromarray(rgb8).save(tmp_path / "in.png")
    np.testing.assert_array_equal(redcore.restore(str(tmp_path / "in.png"), "denoise", 25, model=model), rgb)


def test_super_resolution_enlarges_and_carries_the_chroma(tmp_path, rgb8):
    identity = net_file(tmp_path, identity=True)
    out = redcore.restore(rgb8, "sr", 3, model=identity)
    assert out.shape == (120, 108, 3)
    bicubic = np.clip(imresize(rgb8 / 255.0, 3), 0, 1) * 255     # an identity net leaves the bicubic image
    assert np.abs(out.astype(np.float64) - bicubic).max() <= 1.0
    jpeg = redcore.restore(rgb8, "jpeg", 10, model=identity)      # on Y, Cb Cr carried: the image comes back
    assert np.abs(jpeg.astype(int) - rgb8).max() <= 1


def test_tiles_and_ensemble_options(tmp_path):
    pointwise = net_file(tmp_path, kernel_size=1)
    img = np.random.default_rng(1).random((300, 70)).astype(np.float32)
    full = redcore.restore(img, "deblur", "disk", model=pointwise, tile=None)
    np.testing.assert_allclose(redcore.restore(img, "deblur", "disk", model=pointwise, tile=128), full, atol=1e-6)
    np.testing.assert_allclose(redcore.restore(img, "deblur", "disk", model=pointwise, ensemble=True), full, atol=1e-6)


def test_bad_input_is_one_sentence(tmp_path):
    model = net_file(tmp_path)
    with pytest.raises(ValueError, match="unknown task 'unblur'"):
        redcore.restore(np.zeros((8, 8)), "unblur", model=model)
    with pytest.raises(ValueError, match="must be \\(H, W\\) gray or \\(H, W, 3\\) colour, with an alpha channel"):
        redcore.restore(np.zeros((8, 8, 5)), "denoise", model=model)     # (8, 8, 4) is RGBA, restored
    with pytest.raises(ValueError, match="NaN"):
        redcore.restore(np.full((8, 8), np.nan), "denoise", model=model)
    with pytest.raises(ValueError, match="uint8 or float"):
        redcore.restore(np.zeros((8, 8), np.int32), "denoise", model=model)
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        redcore.restore(np.zeros((8, 8)), "denoise", model="no-such-model")
    valid = redcore.REDNet(depth=4, filters=2, padding="valid", backend="numpy")
    with pytest.raises(ValueError, match="too small for this 4-layer RED-Net"):
        redcore.restore(np.zeros((3, 3)), "denoise", model=valid)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A registry holding one model, as redcore/weights/ will."""
    folder = tmp_path / "weights"
    folder.mkdir()
    net_file(folder, identity=True, name="tiny-denoise-25.npz")
    card = {"file": "tiny-denoise-25.npz", "task": "denoise", "level": 25, "network": "RED4, 4 filters",
            "data": "none", "steps": 0, "tests": [{"set": "Set12", "psnr": 20.0, "input_psnr": 20.17,
                                                    "baseline": "BM3D", "baseline_psnr": 30.02}]}
    (folder / "models.json").write_text(json.dumps({"tiny-denoise-25": card}))
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(folder))
    monkeypatch.setattr(zoo, "INDEX", str(folder / "models.json"))
    return folder


def test_registry_and_commands(shipped, tmp_path, capsys, rgb8):
    assert zoo.find("denoise", 25) == "tiny-denoise-25" and zoo.find("sr", 2) is None
    assert redcore.load("tiny-denoise-25").config["depth"] == 4
    assert cli.main(["models"]) == 0
    assert "tiny-denoise-25" in capsys.readouterr().out
    assert cli.main(["models", "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| model |") and table[2].startswith("| `tiny-denoise-25` | denoise 25 |")
    assert "| **20.00** |" in table[2] and "BM3D 30.02 |" in table[2]
    Image.fromarray(rgb8).save(tmp_path / "photo.png")
    out = tmp_path / "out.png"
    assert cli.main(["restore", str(tmp_path / "photo.png"), str(out), "--task", "denoise", "--level", "25",
                     "--compare", "--quiet"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), rgb8)           # the identity model
    assert Image.open(tmp_path / "out_compare.png").size == (2 * 36 + 8, 40 + 16)     # panels under captions
    assert cli.main(["models", "tiny-denoise-25"]) == 0
    card = capsys.readouterr().out
    assert card.startswith("tiny-denoise-25: denoise 25") and "network" in card and "BM3D 30.02" in card
    assert cli.main(["models", "nope"]) == 2 and "unknown model 'nope'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown model 'nope': the shipped models are tiny-denoise-25"):
        redcore.load("nope")


def test_mask_keeps_the_pixels_outside_it(tmp_path, rgb8, capsys):
    model = net_file(tmp_path)
    Image.fromarray(rgb8).save(tmp_path / "photo.png")
    mask = np.zeros(rgb8.shape[:2], np.uint8)
    mask[10:20, 5:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert cli.main(["restore", str(tmp_path / "photo.png"), str(tmp_path / "o.png"), "--task", "inpaint",
                     "--model", model, "--mask", str(tmp_path / "mask.png"), "--quiet"]) == 0
    out = np.asarray(Image.open(tmp_path / "o.png"))
    np.testing.assert_array_equal(out[mask == 0], rgb8[mask == 0])
    assert not np.array_equal(out[mask > 0], rgb8[mask > 0])


def test_command_errors_exit_2_and_leave_no_file(tmp_path, capsys, rgb8):
    model = net_file(tmp_path)
    Image.fromarray(rgb8).save(tmp_path / "photo.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    cases = [
        (["restore", str(tmp_path / "missing.png"), str(tmp_path / "a.png"), "--task", "denoise"], "no such image"),
        (["restore", str(tmp_path / "broken.png"), str(tmp_path / "a.png"), "--task", "denoise"], "not a readable image"),
        (["restore", str(tmp_path / "photo.png"), str(tmp_path / "a.png"), "--task", "dehaze"], "unknown task"),
        (["restore", str(tmp_path / "photo.png"), str(tmp_path / "a.png"), "--task", "sr", "--level", "5"], "unknown level"),
        (["restore", str(tmp_path / "photo.png"), str(tmp_path / "nodir" / "a.png"), "--task", "denoise",
          "--model", model], "does not exist"),
        (["restore", str(tmp_path / "photo.png"), str(tmp_path / "a.webm"), "--task", "denoise", "--model", model],
         "unknown image extension"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "net.npz", "photo.png"]


def test_ship_model_adds_a_card_and_restore_finds_it(tmp_path, monkeypatch, capsys):
    """tools/ship_model.py evaluates a trained net on its task's test set and registers it; restore() then
    uses it by default."""
    from conftest import data_set, load_example as script
    data_set("test", "classic5")

    run = tmp_path / "run"
    assert script("train").main(["--task", "jpeg", "--level", "10", "--depth", "4", "--filters", "4", "--batch", "2",
                                 "--patch", "24", "--steps", "2", "--no-progress", "--out", str(run)]) == 0
    assert script("train").main(["--task", "jpeg", "--level", "10", "--depth", "4", "--filters", "4", "--batch", "4",
                                 "--patch", "24", "--steps", "3", "--lr", "5e-5", "--resume", "--no-progress",
                                 "--out", str(run)]) == 0
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr(zoo, "INDEX", str(tmp_path / "weights" / "models.json"))
    assert script("ship_model").main([str(run / "checkpoint.npz"), "--name", "tiny-jpeg-q10",
                                      "--hardware", "test machine", "--command", "the test"]) == 0
    card = zoo.cards()["tiny-jpeg-q10"]
    assert card["task"] == "jpeg" and card["level"] == 10 and card["steps"] == 3 and card["train_seconds"] is not None
    assert card["batch"] == 2 and card["schedule"] == "from step 2: batch 4, lr 5e-05"     # the resume's changes
    # a run that began by --init from an earlier one: the card counts from that one's start, with its settings
    assert script("ship_model").main([str(run / "checkpoint.npz"), "--name", "tiny-jpeg-q10", "--steps-before", "5",
                                      "--batch", "8", "--lr", "1e-3", "--hardware", "test machine",
                                      "--command", "the test"]) == 0
    card = zoo.cards()["tiny-jpeg-q10"]
    assert (card["steps"], card["batch"], card["lr"]) == (8, 8, 1e-3)
    assert card["schedule"] == "from step 5 + 2: batch 4, lr 5e-05"
    test = card["tests"][0]
    assert test["set"] == "classic5" and test["images"] == 5 and abs(test["input_psnr"] - 27.82) < 0.01
    # stored in float16 where that costs <= 0.01 dB; the card's figures are those of the weights shipped
    from redcore.data import load_test_set
    from redcore.evaluate import evaluate
    from redcore.io import load_arrays
    header, _ = load_arrays(tmp_path / "weights" / "tiny-jpeg-q10.npz")
    assert card["storage"].split(":")[0] == header.get("stored", "float32")
    shipped = redcore.load("tiny-jpeg-q10")
    names, images = load_test_set("classic5", mode="y")
    again = evaluate(tasks.get("jpeg"), 10, names, images, net=shipped, baseline=False)["average"]["RED-Net"]["psnr"]
    assert round(again, 2) == test["psnr"]
    img = (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)
    assert redcore.restore(img, "jpeg", 10).shape == (32, 32)
    # --baseline cached: the baseline's figures only where runs/baselines holds them; it never runs
    from redcore import baselines

    def never(*args):
        raise AssertionError("the baseline ran")
    monkeypatch.setattr(baselines, "CACHE_FOLDER", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(baselines.BASELINES, "jpeg", ("BM3D deblock", never))
    # --baseline card: carried from the card it replaces, which scored the same images with the same seed
    before = zoo.cards()["tiny-jpeg-q10"]["tests"][0]
    assert before["seed"] == 0 and before["baseline"] == "BM3D deblock"
    assert script("ship_model").main([str(run / "checkpoint.npz"), "--name", "tiny-jpeg-q10", "--baseline", "card",
                                      "--hardware", "test machine", "--command", "the test"]) == 0
    test = zoo.cards()["tiny-jpeg-q10"]["tests"][0]
    assert [test[k] for k in ("baseline", "baseline_psnr", "baseline_ssim")] == \
        [before[k] for k in ("baseline", "baseline_psnr", "baseline_ssim")]
    assert script("ship_model").main([str(run / "checkpoint.npz"), "--name", "tiny-jpeg-q10", "--baseline", "card",
                                      "--seed", "1", "--hardware", "test machine", "--command", "the test"]) == 0
    assert "baseline" not in zoo.cards()["tiny-jpeg-q10"]["tests"][0]      # another draw of the corruption
    with pytest.raises(SystemExit):
        script("ship_model").main([str(run / "checkpoint.npz"), "--name", "tiny-jpeg-q20", "--baseline", "card",
                                   "--hardware", "test machine", "--command", "the test"])
    assert "no shipped model is named 'tiny-jpeg-q20'" in capsys.readouterr().err
    assert script("ship_model").main([str(run / "checkpoint.npz"), "--name", "tiny-jpeg-q10", "--baseline", "cached",
                                      "--hardware", "test machine", "--command", "the test"]) == 0
    test = zoo.cards()["tiny-jpeg-q10"]["tests"][0]
    assert "baseline" not in test and abs(test["input_psnr"] - 27.82) < 0.01


def test_the_baselines_cache_keeps_only_what_was_scored(tmp_path):
    """redcore.baselines keeps a baseline's scores per task, level, set, seed and image count, in a cache of its
    own: a network's scores can no longer pass for the baseline's, and another draw or subset misses."""
    from redcore import baselines
    scores = {"psnr": 26.78, "ssim": 0.7671}
    assert baselines.cached_scores("denoise", "50", "Set12", 0, 12, folder=tmp_path) is None
    baselines.save_scores("denoise", "50", "Set12", 0, scores, 12, folder=tmp_path)
    assert baselines.cached_scores("denoise", "50", "Set12", 0, 12, folder=tmp_path) == ("BM3D", scores)
    for other in [("denoise", "50", "Set12", 1, 12), ("denoise", "50", "Set12", 0, 2), ("denoise", "25", "Set12", 0, 12),
                  ("denoise", "50", "BSD68", 0, 12)]:
        assert baselines.cached_scores(*other, folder=tmp_path) is None, other
    with pytest.raises(ValueError, match="'sr' has no classical baseline"):
        baselines.save_scores("sr", "2", "Set5", 0, scores, 5, folder=tmp_path)


def test_a_blind_network_restores_every_level_it_covers(tmp_path, monkeypatch):
    """A per-level network wins at its level (it ships only where it beats the blind one); elsewhere the
    network whose range covers the level restores it, and `redcore eval --weights shipped` scores that one."""
    folder = tmp_path / "weights"
    folder.mkdir()
    net_file(folder, identity=True, name="tiny-denoise-25.npz")
    net_file(folder, identity=True, name="tiny-denoise-blind.npz")
    base = {"task": "denoise", "network": "RED4, 4 filters", "data": "none", "steps": 0, "tests": []}
    index = {"tiny-denoise-25": {**base, "file": "tiny-denoise-25.npz", "level": 25},
             "tiny-denoise-blind": {**base, "file": "tiny-denoise-blind.npz", "level": "0-75", "covers": "0-75"}}
    (folder / "models.json").write_text(json.dumps(index))
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(folder))
    monkeypatch.setattr(zoo, "INDEX", str(folder / "models.json"))
    assert zoo.find("denoise", 25) == "tiny-denoise-25"
    assert zoo.find("denoise", 37) == zoo.find("denoise", 70.5) == "tiny-denoise-blind"
    assert zoo.find("denoise", 80) is None
    assert "any level in 0-75" in zoo.card_line("tiny-denoise-blind", index["tiny-denoise-blind"])
    # the pictures of docs/models.md: a blind card's tested levels, less those a per-level network takes
    tested = {**index["tiny-denoise-blind"], "tests": [{"level": lv} for lv in (10, 25, 37, 37)]}
    assert zoo.levels_used("tiny-denoise-blind", tested) == [10, 37]
    assert zoo.levels_used("tiny-denoise-25", index["tiny-denoise-25"]) == [25]
    # the models table names a shipped parent in code type, a retired one as text that says so
    index["tiny-denoise-blind"].update(fine_tuned_from="tiny-denoise-25",
                                       tests=[{"set": "S", "level": 10, "psnr": 30.0, "input_psnr": 28.0}])
    index["tiny-denoise-25"].update(fine_tuned_from="tiny-gone",
                                    tests=[{"set": "S", "level": 25, "psnr": 29.0, "input_psnr": 20.0}])
    from_scratch = {**index["tiny-denoise-25"], "fine_tuned_from": None}    # a card's null parent
    assert "None" not in zoo.card_table({**index, "tiny-denoise-25": from_scratch})
    text = zoo.card_text("tiny-denoise-25", from_scratch)
    assert "fine_tuned_from  none (trained from scratch)" in text and "None" not in text
    table = zoo.card_table(index)
    assert "from `tiny-denoise-25`" in table and "from tiny-gone (retired" in table and "`tiny-gone`" not in table
    image = (np.random.default_rng(0).random((20, 20)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(redcore.restore(image, "denoise", 37), image)      # the identity net
    with pytest.raises(ValueError, match="no shipped model restores denoise at level 80"):
        redcore.restore(image, "denoise", 80)
    from redcore import evaluate
    (tmp_path / "set").mkdir()
    Image.fromarray(image).save(tmp_path / "set" / "a.png")
    out = tmp_path / "results"
    assert evaluate.main(["--task", "denoise", "--level", "37", "--data", str(tmp_path / "set"), "--weights",
                          "shipped", "--no-baseline", "--out", str(out)]) == 0
    assert (out / "denoise-37-set-tiny-denoise-blind.json").is_file()
    assert evaluate.main(["--task", "denoise", "--level", "80", "--data", str(tmp_path / "set"), "--weights",
                          "shipped", "--no-baseline", "--out", str(out)]) == 2
