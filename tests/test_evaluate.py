"""Whole-image inference (tiles, x8 ensemble), the classical baselines, and the evaluation harness end to end."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

import redcore
from redcore import baselines
from redcore import data
from redcore import evaluate
from redcore import inference
from redcore import metrics
from redcore import tasks
from redcore.inference import count_tiles, restore_array


def small_net(kernel_size=3, channels=1, seed=0):
    return redcore.REDNet(depth=4, filters=4, kernel_size=kernel_size, channels=channels, backend="numpy",
                          dtype="float64", seed=seed)


def identity_net(path=None):
    """A RED-Net whose residual branch is zero: its output is its input."""
    net = small_net()
    net.params.flat[...] = 0
    if path:
        net.save(path)
    return net


# ---- inference ---------------------------------------------------------------------------------------
def test_tiles_blend_without_seams():
    """A 1x1-kernel net sees one pixel at a time, so tiling must not change its output at all."""
    net = small_net(kernel_size=1)
    image = data.builtin_images(count=1, size=100)[0][:100, :77]
    full = restore_array(net, image)
    for tile, overlap in ((40, 8), (64, 16), (33, 16)):
        np.testing.assert_allclose(restore_array(net, image, tile=tile, overlap=overlap), full, atol=1e-6)
    assert count_tiles((100, 77), tile=40, overlap=8) == 9 and count_tiles((100, 77)) == 1
    with pytest.raises(ValueError, match="larger than twice the overlap"):
        restore_array(net, image, tile=30, overlap=16)


def test_tiles_are_exact_for_a_receptive_radius_within_a_quarter_overlap():
    """4 layers of 3x3 see 4 pixels around each output pixel: with overlap 16 (4 pixels dropped per edge)
    the tiled result is the full-frame one; with overlap 8 the seams show."""
    net = small_net()
    image = data.builtin_images(count=1, size=96)[0][:96, :90]
    full = restore_array(net, image)
    np.testing.assert_allclose(restore_array(net, image, tile=40, overlap=16), full, atol=1e-6)
    assert np.abs(restore_array(net, image, tile=40, overlap=8) - full).max() > 1e-4


@pytest.mark.parametrize("size,parts,radius", [(321, 2, 20), (512, 2, 20), (100, 3, 5), (50, 4, 20), (7, 2, 9)])
def test_bands_cover_the_axis_with_their_receptive_context(size, parts, radius):
    """The bands cut the axis into `parts` pieces; each is computed in a window of the common length that
    holds every input pixel within `radius` of it (all of them its output depends on) inside the image."""
    length, bands = inference._bands(size, parts, radius)
    assert [lo for _, lo, _ in bands[1:]] == [hi for _, _, hi in bands[:-1]] and bands[0][1] == 0
    assert bands[-1][2] == size and len(bands) == parts
    for start, lo, hi in bands:
        assert 0 <= start and start + length <= size
        assert start <= max(0, lo - radius) and start + length >= min(size, hi + radius)


def test_one_image_runs_as_bands_with_the_whole_frame_result(monkeypatch):
    """On a cpu net that splits batches over 2 threads, one image runs as 2 overlapping bands, one per thread,
    and gives the whole frame's output: float64, so the only differences are rounding (the windows' Winograd
    tiles fall elsewhere; sums of 72 terms over 6 layers round far below 1e-12).  A band reaching one pixel
    short of the receptive radius (6 layers of 3x3) is wrong at its edge by far more."""
    whole, split = (redcore.REDNet(depth=6, filters=8, skip_step=1, dtype="float64", seed=5, threads=t)
                    for t in (1, 2))
    assert (split.batch_threads(), whole.batch_threads(), split.receptive_radius) == (2, 1, 6)
    tall = data.builtin_images(count=1, size=80)[0][:70, :50].astype(np.float64)
    for image, axis in ((tall, 0), (tall.T, 1)):
        plan = inference._band_plan(split, image.shape)
        assert plan is not None and plan[0] == axis and inference._band_plan(whole, image.shape) is None
        reference = whole.forward(image[None, None], keep=False)[0, 0]
        np.testing.assert_allclose(inference._forward_chw(split, image[None])[0], reference, rtol=0, atol=1e-12)
        np.testing.assert_allclose(restore_array(split, image), restore_array(whole, image), rtol=0, atol=1e-12)
    bands = inference._bands
    monkeypatch.setattr(inference, "_bands", lambda size, parts, radius: bands(size, parts, radius - 1))
    reference = whole.forward(tall[None, None], keep=False)[0, 0]
    assert np.abs(inference._forward_chw(split, tall[None])[0] - reference).max() > 1e-6


def test_small_images_and_downsampling_nets_run_whole():
    """Bands only where their context adds at most BAND_WASTE of the pixels, and only with a fixed radius."""
    net = redcore.REDNet(depth=6, filters=8, dtype="float64", threads=2)
    size = 12 / inference.BAND_WASTE              # 2 bands of size/2 + 6 rows (an even size): 12 extra rows
    assert inference._band_plan(net, (int(size) + 2, 40)) is not None
    assert inference._band_plan(net, (int(size) - 2, 40)) is None
    strided = redcore.REDNet(depth=6, filters=8, downsample=(2,), threads=2)
    assert strided.receptive_radius is None and inference._band_plan(strided, (400, 400)) is None
    assert inference._band_plan(small_net(), (400, 400)) is None          # numpy backend: no batch split


# The eight symmetries of a rectangle's pixel grid and their inverses, written with NumPy's flips and
# transposes: independent of redcore's rot90-then-mirror helpers, which the ensemble uses.
SYMMETRIES = [
    (lambda a: a, lambda a: a),
    (lambda a: a[:, ::-1].T, lambda a: a.T[:, ::-1]),         # rotate 90 degrees anticlockwise
    (lambda a: a[::-1, ::-1], lambda a: a[::-1, ::-1]),       # rotate 180
    (lambda a: a.T[:, ::-1], lambda a: a[:, ::-1].T),         # rotate 270
    (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),             # mirror left-right
    (lambda a: a[::-1, :], lambda a: a[::-1, :]),             # mirror top-bottom
    (lambda a: a.T, lambda a: a.T),                           # transpose
    (lambda a: a[::-1, ::-1].T, lambda a: a[::-1, ::-1].T),   # anti-transpose
]


def test_ensemble_averages_the_eight_symmetries():
    net = small_net(seed=4)
    image = data.builtin_images(count=1, size=40)[0][:40, :33]
    for forward, inverse in SYMMETRIES:
        assert np.array_equal(inverse(forward(image)), image)
    assert len({forward(image).tobytes() for forward, _ in SYMMETRIES}) == 8
    manual = np.mean([inverse(net.forward(np.ascontiguousarray(forward(image))[None, None])[0, 0])
                      for forward, inverse in SYMMETRIES], axis=0)
    np.testing.assert_allclose(restore_array(net, image, ensemble=True), np.clip(manual, 0, 1), atol=1e-6)
    assert not np.allclose(restore_array(net, image), restore_array(net, image, ensemble=True), atol=1e-4)
    assert count_tiles((40, 33), ensemble=True) == 8


def test_gray_net_on_colour_runs_per_channel():
    net = small_net(seed=2)
    rgb = np.random.default_rng(0).random((24, 20, 3)).astype(np.float32)
    out = restore_array(net, rgb)
    assert out.shape == rgb.shape
    np.testing.assert_allclose(out[..., 1], restore_array(net, rgb[..., 1]), atol=1e-6)
    with pytest.raises(ValueError, match="restores 3-channel images; got 1 channels"):
        restore_array(small_net(channels=3), rgb[..., 0])


# ---- baselines ---------------------------------------------------------------------------------------
def test_bm3d_baseline_denoises():
    pytest.importorskip("bm3d", reason="the optional bm3d package is not installed")
    clean = data.builtin_images(count=1, size=64)[0]
    noisy, info = tasks.get("denoise").corrupt(clean, 25, np.random.default_rng(0))
    assert metrics.psnr(baselines.bm3d_denoise(noisy, 25, info), clean) > metrics.psnr(noisy, clean) + 5


@pytest.mark.parametrize("level", ["disk", "gaussian", "motion"])
def test_cls_deconvolution_sharpens(level):
    # A random texture of some smoothness (a blur of 1 pixel): detail the blurs remove and the inverse restores.
    from redcore.tasks.blur import gaussian_kernel, imfilter_conv_replicate
    field = imfilter_conv_replicate(np.random.default_rng(0).random((128, 128)), gaussian_kernel(9, 1.0))
    clean = (metrics.to_uint8((field - field.min()) / np.ptp(field)) / 255.0).astype(np.float32)
    blurred, info = tasks.get("deblur").corrupt(clean, level, None)
    assert metrics.psnr(baselines.cls_deblur(blurred, level, info), clean) > metrics.psnr(blurred, clean) + 0.5


def test_harmonic_inpainting_restores_a_linear_ramp_exactly():
    """A linear function is harmonic, so filling any interior hole of a ramp from its border is exact."""
    yy, xx = np.mgrid[0:40, 0:50]
    ramp = (0.2 + 0.01 * xx + 0.005 * yy).astype(np.float64)
    mask = np.zeros(ramp.shape, bool)
    mask[10:30, 5:20] = True
    mask[5:35, 30] = True
    corrupted = np.where(mask, 0.9, ramp)
    np.testing.assert_allclose(baselines.harmonic_inpaint(corrupted, "text10", {"mask": mask}, tol=1e-12), ramp, atol=1e-6)


# ---- the harness -------------------------------------------------------------------------------------
@pytest.fixture
def two_images(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    for i, img in enumerate(data.builtin_images(count=2, size=48)):
        Image.fromarray(metrics.to_uint8(img)).save(folder / f"img{i}.png")
    return folder


def test_harness_end_to_end_with_an_identity_model(two_images, tmp_path, capsys):
    weights = str(tmp_path / "identity.npz")
    identity_net(weights)
    out = tmp_path / "results"
    assert evaluate.main(["--task", "jpeg", "--level", "10", "--data", str(two_images), "--weights", weights,
                   "--out", str(out), "--save-images", "--no-baseline"]) == 0
    printed = capsys.readouterr().out
    assert "jpeg 10 on set (2 images)" in printed and "average" in printed
    result = json.loads((out / "jpeg-10-set-identity.json").read_text())
    assert result["methods"] == ["input", "RED-Net"] and len(result["images"]) == 2
    for row in result["images"]:                 # the identity model gives back its input
        assert row["RED-Net"]["psnr"] == pytest.approx(row["input"]["psnr"], abs=1e-4)
        assert 12 < row["input"]["psnr"] < 45      # lossy, not garbage
    rows = list(csv.reader((out / "jpeg-10-set-identity.csv").open()))
    assert rows[0] == ["image", "input psnr", "input ssim", "RED-Net psnr", "RED-Net ssim"]
    assert [r[0] for r in rows[1:]] == ["img0", "img1", "average"]
    assert (out / "jpeg-10-set-identity-images" / "img0_RED-Net.png").exists()


def test_a_network_run_keeps_the_baseline_file(two_images, tmp_path, monkeypatch):
    """Scoring a network (with or without the baseline, with or without the ensemble) writes beside the
    baseline's tables, named after the weights, and leaves them as they were; a run that scored the baseline
    keeps its scores in the baselines' cache (which tools/ship_model.py reads), one without it does not."""
    monkeypatch.chdir(tmp_path)
    weights = str(tmp_path / "identity.npz")
    identity_net(weights)
    out = tmp_path / "results"
    common = ["--task", "deblur", "--level", "gaussian", "--data", str(two_images), "--out", str(out)]
    assert evaluate.main(common) == 0
    baseline = (out / "deblur-gaussian-set.json").read_bytes()
    assert json.loads(baseline)["methods"] == ["input", "CLS deconv."]
    assert evaluate.main(common + ["--weights", weights, "--no-baseline"]) == 0
    assert evaluate.main(common + ["--weights", weights, "--ensemble"]) == 0
    assert (out / "deblur-gaussian-set.json").read_bytes() == baseline
    assert json.loads((out / "deblur-gaussian-set-identity.json").read_text())["methods"] == ["input", "RED-Net"]
    assert json.loads((out / "deblur-gaussian-set-identity-x8.json").read_text())["methods"] == \
        ["input", "CLS deconv.", "RED-Net x8"]
    cached = baselines.cached_scores("deblur", "gaussian", "set", 0, 2)
    assert cached == ("CLS deconv.", json.loads(baseline)["average"]["CLS deconv."])


@pytest.mark.parametrize("task,level,column", [("denoise", "25", "BM3D"), ("sr", "2", None),
                                                ("jpeg", "10", "BM3D deblock"),
                                                ("deblur", "gaussian", "CLS deconv."),
                                                ("inpaint", "scratches", "harmonic")])
def test_harness_baselines_beat_the_input(two_images, task, level, column):
    if column and column.startswith("BM3D"):
        pytest.importorskip("bm3d", reason="the optional bm3d package is not installed")
    names, images = data.load_test_set(str(two_images), mode="y" if tasks.get(task).color == "y" else "as read")
    result = evaluate.evaluate(task, level, names, images, net=identity_net(), ensemble=True, log=lambda m: None)
    first = "bicubic" if task == "sr" else "input"
    assert result["methods"][0] == first and result["ensemble"]
    if column:
        assert result["average"][column]["psnr"] > result["average"][first]["psnr"]
    # inpainting also scores the network with the intact pixels kept (identity net: the input itself)
    assert ("RED-Net x8, mask known" in result["methods"]) == (task == "inpaint")
    if task == "inpaint":
        assert result["average"]["RED-Net x8, mask known"]["psnr"] == pytest.approx(result["average"]["input"]["psnr"])
    assert result["shave"] == (2 if task == "sr" else 0)


def test_harness_refuses_bad_input(two_images, capsys):
    assert evaluate.main(["--task", "dehaze", "--data", str(two_images)]) == 2
    assert "unknown task 'dehaze'" in capsys.readouterr().err
    assert evaluate.main(["--task", "sr", "--level", "7", "--data", str(two_images)]) == 2
    assert "unknown level '7' for task 'sr'" in capsys.readouterr().err
    assert evaluate.main(["--task", "jpeg", "--data", str(two_images), "--weights", str(two_images / "img0.png")]) == 2
    assert "img0.png" in capsys.readouterr().err


@pytest.mark.parametrize("cfg", [dict(depth=10, skip_step=2), dict(depth=8, skip_step=1, downsample=(2,))])
def test_inference_forward_keeps_only_the_skip_maps(cfg):
    net = redcore.REDNet(filters=4, backend="numpy", dtype="float64", seed=3, **cfg)
    x = np.random.default_rng(0).random((2, 1, 17, 15))
    full = net.forward(x)
    lean = net.forward(x, keep=False)
    np.testing.assert_array_equal(lean, full)
    assert net.cache is None
    with pytest.raises(RuntimeError, match="needs a forward pass first"):
        net.backward(np.ones_like(full))
