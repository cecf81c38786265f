"""Bad input, faults and misuse: each gets one clear sentence, and nothing is lost or silently wrong.

Every case here failed once (a segmentation fault, a white or black image with exit 0, a lost or poisoned
training run); each test says what it guards.  Small images and tiny networks: the file runs in seconds.
"""
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

import redcore
from conftest import load_example
from redcore import cli
from redcore.data import read_folder, read_image
from redcore.io import TEMP_PREFIX, load_arrays, lock_folder, save_arrays

train = load_example("train")
TINY = ["--depth", "4", "--filters", "4", "--batch", "2", "--patch", "20", "--val-crop", "32", "--val-every", "2",
        "--ckpt-every", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def builtin_data(monkeypatch):
    monkeypatch.setenv("REDCORE_DATA", "/nonexistent-data-folder")   # training uses the built-in images


def one_sentence(err):
    """The text of a single error line."""
    assert err.count("\n") == 1 and err.startswith("error"), err
    return err


def tiny_net(**kw):
    return redcore.REDNet(depth=4, filters=4, seed=1, **kw)


# ---- installation --------------------------------------------------------------------------------------
def test_a_source_tree_without_its_kernels_says_how_to_install_them(tmp_path):
    """The kernels live in kernels/, which setup.py maps into redcore; the examples import redcore from their
    own tree, so a clone that was never installed (or a second clone beside an installed one) failed with
    Python's bare "cannot import name 'kernels' from 'redcore'".  Without the install's import hook, the
    example must end with one sentence naming the remedy."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "examples", "train.py")
    code = ("import runpy, sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', '')]\n"
            f"sys.argv = [{script!r}, '--steps', '1', '--backend', 'cpu', '--out', {str(tmp_path / 'run')!r}]\n"
            f"sys.exit(runpy.run_path({script!r}, run_name='__main__'))\n")
    env = dict(os.environ, REDCORE_DATA="/nonexistent-data-folder")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    err = one_sentence(proc.stderr)
    assert "kernels/cpu" in err and f"pip install -e .` in {root}" in err, err
    assert not os.path.exists(tmp_path / "run" / "checkpoint.npz")


# ---- memory safety ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_adam_refuses_gradients_that_do_not_fit_before_any_kernel_runs(backend):
    """A gradient smaller than its parameter made the cpu kernel read past its end (stray values or a crash)."""
    net = tiny_net(backend=backend)
    opt = redcore.Adam(net.params, lr=1e-3)
    before = net.params.flat.copy()
    short = {k: v.reshape(-1)[:-1].copy() for k, v in net.grads.items()}
    with pytest.raises(ValueError, match=r"gradient of conv1\.weight is float32 \(35,\), its parameter float32"):
        opt.step(short)
    with pytest.raises(ValueError, match="float64"):
        opt.step({k: v.astype(np.float64) for k, v in net.grads.items()})
    with pytest.raises(ValueError, match="not C-contiguous"):
        opt.step({k: np.asfortranarray(np.stack([v, v], -1))[..., 0] if v.ndim == 4 else v
                  for k, v in net.grads.items()})
    with pytest.raises(ValueError, match="no gradient for"):
        opt.step({})
    assert np.array_equal(net.params.flat, before) and opt.t == 0


@pytest.mark.parametrize("name", ["cpu", "cuda-emulation"])
def test_kernel_entry_points_check_what_they_pair(name):
    """The Numba and CUDA kernels walk flat buffers of their first argument's size: every entry that pairs
    arrays checks their shapes and dtypes first (cuda-emulation runs the cuda backend's own entry points)."""
    try:
        be = redcore.get_backend(name)
    except RuntimeError as e:
        pytest.skip(str(e))
    xp = be.xp
    p = xp.zeros(10, np.float32)
    with pytest.raises(ValueError, match=r"the gradient is float32 \(9,\), the parameter float32 \(10,\)"):
        be.adam_update_(p, xp.zeros(9, np.float32), xp.zeros(10, np.float32), xp.zeros(10, np.float32),
                        1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="one shape and dtype"):
        be.relu_backward_(xp.ones((1, 2, 4, 4), np.float32), xp.ones((1, 2, 4, 3), np.float32))
    with pytest.raises(ValueError, match="one shape and dtype"):
        be.add_relu(xp.ones((1, 2, 4, 4), np.float32), xp.ones((1, 2, 4, 4), np.float64))
    with pytest.raises(ValueError, match="C biases"):
        be.add_bias(xp.ones((1, 2, 4, 4), np.float32), xp.ones(3, np.float32))


# ---- images in, images out -------------------------------------------------------------------------------
def ramp16():
    return np.linspace(0, 65535, 48 * 40).reshape(48, 40).astype(np.uint16)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_images_are_read_at_their_scale(tmp_path, ext):
    """A 16-bit photo came back almost all white (Pillow's convert('L') clips at 255), with exit 0."""
    path = tmp_path / f"deep{ext}"
    Image.fromarray(ramp16()).save(path)
    for mode in ("gray", "y", "as read", "with alpha"):
        np.testing.assert_allclose(read_image(path, mode), ramp16() / 65535.0, atol=1e-7)
    assert read_image(path, "rgb").shape == (48, 40, 3)
    (tmp_path / "train").mkdir()
    Image.fromarray(ramp16()).save(tmp_path / "train" / f"a{ext}")
    np.testing.assert_allclose(read_folder(str(tmp_path / "train"))[0], ramp16() / 65535.0, atol=1e-7)
    out = redcore.restore(str(path), "denoise", 25)
    assert 0.3 < out.mean() / 255 < 0.7              # a mid-gray ramp stays mid-gray, not white


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((30, 40), np.uint8)
    stored[:5] = 255                                  # a white band at the top of the stored pixels
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6                                  # "rotate 90 degrees clockwise to display"
    im.save(tmp_path / "turned.png", exif=exif)
    shown = read_image(tmp_path / "turned.png")
    assert shown.shape == (40, 30) and shown[:, -5:].min() == 1.0 and shown[:, :-5].max() == 0.0


def test_alpha_and_icc_profile_are_carried_through(tmp_path, capsys):
    from PIL import ImageCms
    rng = np.random.default_rng(0)
    rgba = (rng.random((36, 28, 4)) * 255).astype(np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgba).save(tmp_path / "in.png", icc_profile=icc)
    assert cli.main(["restore", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--task", "denoise",
                     "--quiet"]) == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA" and out.info.get("icc_profile") == icc
        assert np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])
    assert cli.main(["restore", str(tmp_path / "in.png"), str(tmp_path / "big.png"), "--task", "sr", "--level", "2",
                     "--quiet"]) == 0
    with Image.open(tmp_path / "big.png") as big:
        assert big.mode == "RGBA" and big.size == (56, 72)
    gray_alpha = redcore.restore(np.dstack([rgba[..., 0], rgba[..., 3]]), "denoise", 25)
    assert gray_alpha.shape == (36, 28, 2) and np.array_equal(gray_alpha[..., 1], rgba[..., 3])
    assert cli.main(["restore", str(tmp_path / "in.png"), str(tmp_path / "out.jpg"), "--task", "denoise"]) == 2
    assert "a JPEG cannot hold" in one_sentence(capsys.readouterr().err)
    assert not (tmp_path / "out.jpg").exists()


def bomb(path):
    """A PNG whose header declares 40000 x 40000 pixels (1.6 billion) in a file of a few hundred bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 99))
                     + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_refused_everywhere(tmp_path, capsys):
    path = bomb(tmp_path / "bomb.png")
    assert cli.main(["restore", str(path), str(tmp_path / "o.png"), "--task", "denoise"]) == 2
    assert "refused as a possible decompression bomb" in one_sentence(capsys.readouterr().err)
    with pytest.raises(ValueError, match="decompression bomb"):
        redcore.restore(str(path), "denoise", 25)
    (tmp_path / "data").mkdir()
    bomb(tmp_path / "data" / "x.png")
    assert train.main(TINY + ["--steps", "1", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r")]) == 2
    assert "decompression bomb" in one_sentence(capsys.readouterr().err)


@pytest.mark.parametrize("image,message", [(np.full((16, 16), 200.0), r"values in \[0, 1\]; this one spans 200..200"),
                                           (np.full((16, 16), -0.5), r"values in \[0, 1\]"),
                                           (np.full((16, 16), np.nan), "NaN")])
def test_float_images_outside_0_1_are_refused(image, message):
    """0..255 floats came back all white."""
    with pytest.raises(ValueError, match=message):
        redcore.restore(image, "denoise", 25)


def test_restore_never_replaces_its_input_unless_asked(tmp_path, capsys):
    path = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(1).random((24, 24)) * 255).astype(np.uint8)).save(path)
    original = path.read_bytes()
    assert cli.main(["restore", str(path), str(path), "--task", "denoise"]) == 2
    assert "is the input: refusing to replace it" in one_sentence(capsys.readouterr().err)
    assert path.read_bytes() == original
    assert cli.main(["restore", str(path), str(path), "--task", "denoise", "--overwrite", "--quiet"]) == 0
    assert path.read_bytes() != original


def test_a_long_output_name_works(tmp_path):
    """The temporary file was named after the output plus a prefix: a valid 250-character name failed."""
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(path)
    long = tmp_path / ("a" * 250 + ".png")
    assert cli.main(["restore", str(path), str(long), "--task", "denoise", "--quiet"]) == 0
    assert long.is_file() and not [n for n in os.listdir(tmp_path) if n.startswith(TEMP_PREFIX)]


def test_ctrl_c_ends_with_one_line_and_130(tmp_path, capsys, monkeypatch):
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(sys.modules["redcore.restore"], "restore_array", interrupted)
    assert cli.main(["restore", str(path), str(tmp_path / "o.png"), "--task", "denoise", "--quiet"]) == 130
    assert capsys.readouterr().err == "interrupted: no file was left half-written\n"
    assert os.listdir(tmp_path) == ["x.png"]


# ---- weight files ----------------------------------------------------------------------------------------
def weight_file(path, config=None, change=None, header=None):
    """A weight file of a tiny net, its config and arrays edited: config updates, change(arrays) edits."""
    net = tiny_net(backend="numpy")
    arrays = net.state_dict()
    if change:
        change(arrays)
    save_arrays(path, header or {"kind": "redcore.REDNet", "config": {**net.config, **(config or {})}}, arrays)
    return str(path)


@pytest.mark.parametrize("config,message", [
    ({"filters": "8"}, "filters must be int; got '8'"),
    ({"residual": "no"}, "residual must be bool; got 'no'"),
    ({"depth": 4.0}, "depth must be int"),
    ({"downsample": [1, "2"]}, "downsample must be a list of integers"),
    ({"padding": 3}, "padding must be str"),
    ({"dtype": "int8"}, "dtype must be 'float32' or 'float64'"),
    ({"colour": 1}, r"unknown fields \['colour'\]"),
    ({"depth": 4000}, r"depth must be 1..1000"),
    ({"filters": 5000, "depth": 30}, r"declares a network of 6.* parameters .* more than"),
])
def test_a_bad_config_is_one_sentence_before_anything_is_built(tmp_path, config, message):
    path = weight_file(tmp_path / "w.npz", config)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            redcore.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20          # a 25 KB file once cost 1.65 GB before it failed


@pytest.mark.parametrize("header,message", [({"kind": "redcore.REDNet", "config": None}, "must be a JSON object"),
                                            ({"kind": "redcore.REDNet", "config": [4, 4]}, "got list"),
                                            ({"kind": "redcore.REDNet"}, "holds no network config")])
def test_a_config_of_the_wrong_kind_is_one_sentence(tmp_path, header, message):
    with pytest.raises(ValueError, match=message):
        redcore.load(weight_file(tmp_path / "w.npz", header=header))


def nan_weight(a):
    a["conv1.weight"][0, 0, 0, 0] = np.nan


@pytest.mark.parametrize("change,message", [
    (nan_weight, r"conv1\.weight holds NaN or infinite values"),
    (lambda a: a.update({"deconv2.bias": a["deconv2.bias"].astype(np.float64)}),
     r"deconv2\.bias is float64 \(1,\), its config declares float32"),
    (lambda a: a.pop("conv2.weight"), r"missing \['conv2\.weight'\]"),
    (lambda a: a.update({"conv2.weight": a["conv2.weight"][:2]}), r"conv2\.weight is float32 \(2, 4, 3, 3\)"),
    (lambda a: a.update({"extra": np.zeros(3, np.float32)}), r"unexpected \['extra'\]"),
])
def test_bad_arrays_are_one_sentence(tmp_path, capsys, change, message):
    """NaN weights gave an all-black image with exit 0."""
    path = weight_file(tmp_path / "w.npz", change=change)
    with pytest.raises(ValueError, match=message):
        redcore.load(path)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "x.png")
    assert cli.main(["restore", str(tmp_path / "x.png"), str(tmp_path / "o.png"), "--task", "denoise",
                     "--model", path]) == 2
    one_sentence(capsys.readouterr().err)
    assert not (tmp_path / "o.png").exists()


# ---- levels and arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("level,message", [("0-55", "a range or mix of levels .* is for training a blind network"),
                                           ("inf", "unknown level 'inf'"), ("nan", "unknown level 'nan'"),
                                           ("-5", "unknown level '-5'"), ("0-inf", "unknown level '0-inf'")])
def test_levels_are_refused_with_a_sentence_in_restore(tmp_path, capsys, level, message):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "x.png")
    assert cli.main(["restore", str(tmp_path / "x.png"), str(tmp_path / "o.png"), "--task", "denoise",
                     "--level", level]) == 2
    assert __import__("re").search(message, one_sentence(capsys.readouterr().err))


def test_a_mix_of_levels_is_for_training_not_for_restoring(tmp_path, capsys):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "x.png")
    assert cli.main(["restore", str(tmp_path / "x.png"), str(tmp_path / "o.png"), "--task", "sr", "--level", "2,3"]) == 2
    assert "a range or mix of levels (2,3) is for training a blind network" in one_sentence(capsys.readouterr().err)


@pytest.mark.parametrize("level", ["inf", "nan", "-5"])
def test_levels_are_refused_with_a_sentence_in_training(tmp_path, capsys, level):
    assert train.main(TINY + ["--steps", "1", "--level", level, "--out", str(tmp_path)]) == 2
    assert f"unknown level '{level}'" in one_sentence(capsys.readouterr().err)


def test_the_blind_range_trains(tmp_path):
    assert train.main(TINY + ["--steps", "1", "--level", "0-55", "--out", str(tmp_path)]) == 0


@pytest.mark.parametrize("option,value,message", [
    ("--lr", "0", "0 is out of range: give a number > 0"), ("--lr", "nan", "nan is out of range: give a number > 0"),
    ("--lr", "-1e-4", "-1e-4 is out of range: give a number > 0"),
    ("--batch", "0", "0 is out of range: give a number >= 1"), ("--patch", "0", "0 is out of range: give a number >= 1"),
    ("--ckpt-every", "0", "0 is out of range: give a number >= 1"),
    ("--val-every", "0", "0 is out of range: give a number >= 1"),
    ("--val-crop", "-1", "-1 is out of range: give a number >= 0"),
    ("--steps", "0", "0 is out of range: give a number >= 1"), ("--depth", "abc", "'abc' is not an integer")])
def test_training_arguments_are_checked_by_the_parser(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as stop:
        train.main(TINY + [f"{option}={value}", "--out", str(tmp_path / "r")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.endswith(f"error: argument {option}: {message}\n")
    assert not (tmp_path / "r").exists()


def test_api_arguments_are_one_sentence():
    net = tiny_net()
    image = np.zeros((16, 16), np.float32)
    with pytest.raises(ValueError, match="finite lr > 0"):
        redcore.Adam(net.params, lr=float("nan"))
    with pytest.raises(ValueError, match="finite lr > 0"):
        redcore.Adam(net.params, lr="fast")
    with pytest.raises(ValueError, match="non-empty dict of parameter arrays"):
        redcore.Adam({})
    with pytest.raises(ValueError, match="the prediction is empty"):
        redcore.mse_loss(np.zeros((0, 1, 4, 4), np.float32), np.zeros((0, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="overlap must be a whole number of pixels >= 0; got -5"):
        redcore.restore(image, "denoise", 25, model=net, overlap=-5)
    with pytest.raises(ValueError, match="tile must be 'auto', None .* got 'abc'"):
        redcore.restore(image, "denoise", 25, model=net, tile="abc")
    with pytest.raises(ValueError, match="model must be a REDNet, a shipped model's name or a weight file; got int"):
        redcore.restore(image, "denoise", 25, model=42)


# ---- training runs ---------------------------------------------------------------------------------------
def test_a_run_never_overwrites_another(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train.main(TINY + ["--steps", "2", "--out", out]) == 0
    ckpt = os.path.join(out, "checkpoint.npz")
    kept = open(ckpt, "rb").read()
    capsys.readouterr()
    assert train.main(TINY + ["--steps", "2", "--out", out]) == 2
    assert "holds another run's checkpoint: pass --resume" in one_sentence(capsys.readouterr().err)
    assert open(ckpt, "rb").read() == kept
    assert train.main(TINY + ["--steps", "1", "--seed", "3", "--out", out, "--overwrite"]) == 0
    assert open(ckpt, "rb").read() != kept


def test_resume_checks_the_task_and_level(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train.main(TINY + ["--steps", "1", "--out", out]) == 0
    capsys.readouterr()
    assert train.main(TINY + ["--task", "sr", "--level", "2", "--steps", "2", "--resume", "--out", out]) == 2
    assert "trains denoise 25, not sr 2" in one_sentence(capsys.readouterr().err)
    assert train.main(TINY + ["--level", "50", "--steps", "2", "--resume", "--out", out]) == 2
    assert "trains denoise 25, not denoise 50" in one_sentence(capsys.readouterr().err)


def test_a_second_process_on_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(str(holder.pid))
        assert train.main(TINY + ["--steps", "1", "--out", str(out)]) == 2
        assert f"in use by another training (process {holder.pid})" in one_sentence(capsys.readouterr().err)
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over, and released when the run ends
    assert train.main(TINY + ["--steps", "1", "--out", str(out)]) == 0
    assert not (out / ".lock").exists()
    release = lock_folder(str(out))         # held by this live process: another process is refused
    other = subprocess.run([sys.executable, "-c", f"from redcore.io import lock_folder; lock_folder({str(out)!r})"],
                           capture_output=True, text=True)
    assert other.returncode != 0 and f"in use by another training (process {os.getpid()})" in other.stderr
    release()
    assert not (out / ".lock").exists()


def test_orphaned_temporary_files_are_cleaned_at_the_next_start(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    orphan = out / f"{TEMP_PREFIX}abc123"
    orphan.write_bytes(b"half a checkpoint")
    assert train.main(TINY + ["--steps", "1", "--out", str(out)]) == 0
    assert not orphan.exists()


def test_a_checkpoint_missing_a_key_is_one_sentence(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(TINY + ["--steps", "1", "--out", str(out)]) == 0
    header, arrays = load_arrays(out / "checkpoint.npz")
    for drop in ("optim.m.conv1.weight", "model.deconv2.bias"):
        damaged = {k: v for k, v in arrays.items() if k != drop}
        save_arrays(out / "checkpoint.npz", header, damaged)
        capsys.readouterr()
        assert train.main(TINY + ["--steps", "2", "--resume", "--out", str(out)]) == 2
        err = one_sentence(capsys.readouterr().err)
        assert ("incomplete checkpoint" in err) if drop.startswith("optim") else ("missing ['deconv2.bias']" in err)


def test_a_full_disk_ends_with_one_sentence_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert train.main(TINY + ["--steps", "2", "--out", str(out)]) == 0
    kept = {name: (out / name).read_bytes() for name in ("checkpoint.npz", "curves.png", "validation.png")}

    def full(image, f, *args, **kwargs):
        f.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Image.Image, "save", full)     # pictures fail half-way ...
    capsys.readouterr()
    assert train.main(TINY + ["--steps", "4", "--resume", "--out", str(out)]) == 4
    assert "No space left on device" in one_sentence(capsys.readouterr().err)
    assert (out / "curves.png").read_bytes() == kept["curves.png"]          # ... and leave the old ones whole
    assert (out / "validation.png").read_bytes() == kept["validation.png"]
    monkeypatch.undo()
    assert not [n for n in os.listdir(out) if n.startswith(TEMP_PREFIX)]

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", no_space)                              # the checkpoint itself fails
    before = (out / "checkpoint.npz").read_bytes()
    assert train.main(TINY + ["--steps", "5", "--resume", "--out", str(out)]) == 4
    assert "the previous checkpoint is kept" in one_sentence(capsys.readouterr().err)
    assert (out / "checkpoint.npz").read_bytes() == before


@pytest.mark.parametrize("text,message", [("{not json", "not JSON"), ("[1, 2]", "not a JSON object"),
                                          ('{"format_version": "1"}', "integer format_version")])
def test_a_damaged_header_is_one_sentence(tmp_path, text, message):
    np.savez(tmp_path / "w.npz", __header__=np.array(text), x=np.zeros(2))
    with pytest.raises(ValueError, match=f"damaged header: .*{message}"):
        redcore.load(str(tmp_path / "w.npz"))


def test_ctrl_c_in_training_ends_with_one_line_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert train.main(TINY + ["--steps", "2", "--out", str(out)]) == 0
    kept = (out / "checkpoint.npz").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "train_step", interrupted)
    capsys.readouterr()
    assert train.main(TINY + ["--steps", "4", "--resume", "--out", str(out)]) == 130
    assert capsys.readouterr().err == f"interrupted: the last checkpoint ({out / 'checkpoint.npz'}) is kept\n"
    assert (out / "checkpoint.npz").read_bytes() == kept and not (out / ".lock").exists()
