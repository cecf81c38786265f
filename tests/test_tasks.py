"""The five corruptions (redcore.tasks): their statistics, known values, and MATLAB-exact constructions."""
import numpy as np
import pytest
import scipy.ndimage
from conftest import data_set
from hypothesis import given
from hypothesis import strategies as st

from redcore import data
from redcore import metrics
from redcore import tasks
from redcore.tasks.blur import disk_kernel, gaussian_kernel, imfilter_conv_replicate, motion_kernel
from redcore.tasks.resize import contributions, imresize


def textured(h=96, w=80, seed=0):
    return data.builtin_images(count=1, size=max(h, w), seed=seed)[0][:h, :w]


# ---- denoising ---------------------------------------------------------------------------------------
def test_gaussian_noise_has_the_asked_sigma_and_is_reproducible():
    clean = np.full((256, 256), 0.5, np.float32)
    noisy = tasks.add_gaussian_noise(clean, 25, np.random.default_rng(1))
    residual = (noisy - clean) * 255
    assert noisy.dtype == np.float32
    assert abs(residual.std() - 25) < 0.3 and abs(residual.mean()) < 0.3
    np.testing.assert_array_equal(noisy, tasks.add_gaussian_noise(clean, 25, np.random.default_rng(1)))
    # Not clipped: the protocol scores the raw noisy image at about 20*log10(255/sigma).
    assert noisy.min() < 0.5 - 3 * 25 / 255 and abs(metrics.psnr(noisy, clean) - 20 * np.log10(255 / 25)) < 0.05


def test_blind_noise_draws_one_sigma_per_image_within_the_range():
    clean = np.zeros((6, 1, 128, 128), np.float32)
    noisy, sigmas = tasks.add_blind_noise(clean, (0, 55), np.random.default_rng(3))
    assert sigmas.shape == (6,) and np.all((0 <= sigmas) & (sigmas <= 55)) and np.ptp(sigmas) > 5
    np.testing.assert_allclose(noisy.reshape(6, -1).std(axis=1) * 255, sigmas, rtol=0.03, atol=0.1)


@pytest.mark.parametrize("sigma_range", [(0, 75), (5, 55)])
def test_the_log_sigma_draw_has_the_density_it_claims(sigma_range):
    """draw="log": sigma + s0 log-uniform, so P(sigma <= x) = ln((x + s0) / (low + s0)) / ln((high + s0) /
    (low + s0)).  Each empirical fraction of n draws is binomial, standard deviation sqrt(p (1 - p) / n): it
    must lie within 5 of them (a one-in-a-million miss), while a uniform draw's lies 38 or more of them away."""
    low, high = sigma_range
    n, s0 = 20000, tasks.noise.SIGMA_OFFSET
    drawn = tasks.draw_sigmas(sigma_range, n, np.random.default_rng(5), "log")
    assert drawn.shape == (n,) and np.all((low <= drawn) & (drawn <= high))
    uniform = tasks.draw_sigmas(sigma_range, n, np.random.default_rng(5), "uniform")
    for x in np.linspace(low, high, 6)[1:-1]:
        p = np.log((x + s0) / (low + s0)) / np.log((high + s0) / (low + s0))
        bound = 5 * np.sqrt(p * (1 - p) / n)
        assert abs(np.mean(drawn <= x) - p) < bound
        assert abs(np.mean(uniform <= x) - p) > 4 * bound         # the test tells the two draws apart
    # The uniform draw is the stream it always was (the shipped cards' commands replay it).
    np.testing.assert_array_equal(uniform, np.random.default_rng(5).uniform(low, high, size=n))


def test_the_denoise_task_draws_its_blind_sigma_as_configured():
    clean = np.zeros((32, 32), np.float32)
    for draw in tasks.SIGMA_DRAWS:
        _, info = tasks.Denoise(sigma_draw=draw).corrupt(clean, "0-75", np.random.default_rng(9))
        assert info["sigma"] == tasks.draw_sigmas((0, 75), 1, np.random.default_rng(9), draw)[0]
    assert tasks.get("denoise").sigma_draw == "uniform"
    with pytest.raises(ValueError, match="unknown sigma draw 'normal'"):
        tasks.Denoise(sigma_draw="normal")


# ---- super-resolution --------------------------------------------------------------------------------
@given(h=st.integers(4, 40), w=st.integers(4, 40), scale=st.sampled_from([2, 3, 4]), seed=st.integers(0, 99))
def test_imresize_equals_a_matlab_exact_port(h, w, scale, seed):
    """resize-right (Shocher et al.) reproduces MATLAB's imresize; with its symmetric padding ours matches it."""
    from resize_right import interp_methods, resize
    x = np.random.default_rng(seed).random((h * scale, w * scale))
    ours = imresize(x, shape=(h, w))
    theirs = resize(x, out_shape=(h, w), interp_method=interp_methods.cubic, pad_mode="symmetric")
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    up = resize(theirs, out_shape=x.shape, interp_method=interp_methods.cubic, pad_mode="symmetric")
    np.testing.assert_allclose(imresize(ours, shape=x.shape), up, atol=1e-12)


def test_imresize_keeps_constants_and_reproduces_a_ramp_inside():
    for scale in (2, 3, 4):
        const = np.full((36, 48), 0.37)
        np.testing.assert_allclose(imresize(const, 1 / scale), 0.37, atol=1e-12)
        np.testing.assert_allclose(imresize(const, scale), 0.37, atol=1e-12)
        # Bicubic reproduces linear functions: down then up of a ramp is exact away from the mirrored border.
        yy, xx = np.mgrid[0:48, 0:48].astype(np.float64)
        ramp = 0.01 * xx + 0.005 * yy
        back = imresize(imresize(ramp, shape=(48 // scale, 48 // scale)), shape=(48, 48))
        border = 4 * scale
        np.testing.assert_allclose(back[border:-border, border:-border], ramp[border:-border, border:-border],
                                   atol=1e-12)
        assert np.abs(back - ramp).max() > 1e-3          # ... and not at the border, where the mirror bends it


def test_imresize_sizes_and_weights():
    assert imresize(np.zeros((10, 7)), 0.5).shape == (5, 4)        # MATLAB: ceil(scale * size)
    assert imresize(np.zeros((10, 7, 3)), 2).shape == (20, 14, 3)
    weights, idx = contributions(12, 4, 1 / 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1)
    assert idx.min() >= 0 and idx.max() < 12            # mirrored into the image
    # 4 * 3 + 2 taps, less the columns that are zero in every row (here where the kernel crosses 0 at |x| = 1, 2).
    assert weights.shape[1] == 9 and np.all(np.any(weights != 0, axis=0))
    with pytest.raises(ValueError, match="exactly one"):
        imresize(np.zeros((4, 4)))


def test_sr_task_crops_to_the_scale_and_rounds_to_8_bits():
    task = tasks.get("sr")
    clean = task.prepare(textured(50, 47), 3)
    assert clean.shape == (48, 45)
    corrupted, _ = task.corrupt(clean, 3, None)
    assert corrupted.shape == clean.shape
    np.testing.assert_array_equal(corrupted * 255, np.round(corrupted * 255))
    with pytest.raises(ValueError, match="multiples of 3"):
        tasks.bicubic_degrade(textured(50, 47), 3)


def test_bicubic_on_set5_matches_the_literature():
    """The figures every SR paper prints for bicubic on Set5 (Y, shave = scale): 33.66 / 30.39 / 28.42 dB."""
    names, images = data.load_test_set(data_set("test", "Set5"), mode="y")
    task = tasks.get("sr")
    for scale, published in ((2, 33.66), (3, 30.39), (4, 28.42)):
        scores = []
        for img in images:
            clean = task.prepare(img, scale)
            scores.append(metrics.psnr(task.corrupt(clean, scale, None)[0], clean, shave=scale))
        assert abs(np.mean(scores) - published) < 0.01, (scale, np.mean(scores))


# ---- JPEG --------------------------------------------------------------------------------------------
def test_jpeg_is_lossy_at_q10_and_near_lossless_at_q95():
    clean = metrics.to_uint8(textured(128, 128)) / np.float32(255)
    q10, q95 = (tasks.jpeg_compress(clean, q) for q in (10, 95))
    assert q10.shape == clean.shape and q10.dtype == clean.dtype
    assert metrics.psnr(q10, clean) < 34 < 40 < metrics.psnr(q95, clean)
    # 8x8 blocks: at q10 the error jumps across block borders more than inside them.
    err = q10 - clean
    across = np.abs(np.diff(err, axis=1))[:, 7::8].mean()
    inside = np.abs(np.diff(err, axis=1))[:, 3::8].mean()
    assert across > inside
    color = tasks.jpeg_compress(np.stack([clean] * 3, -1), 30)
    assert color.shape == (128, 128, 3)
    with pytest.raises(ValueError, match="quality"):
        tasks.jpeg_compress(clean, 0)


def test_jpeg_q10_on_classic5_matches_the_literature():
    names, images = data.load_test_set(data_set("test", "classic5"), mode="y")
    score = np.mean([metrics.psnr(tasks.jpeg_compress(img, 10), img) for img in images])
    assert abs(score - 27.82) < 0.05, score


# ---- deblurring --------------------------------------------------------------------------------------
def pixel_disk_area(radius, samples=2000):
    """Area of each unit pixel covered by the disk, by midpoint quadrature along x (MATLAB's documented
    definition of fspecial('disk')), normalised."""
    c = int(np.ceil(radius - 0.5))
    out = np.zeros((2 * c + 1, 2 * c + 1))
    for i, y0 in enumerate(range(-c, c + 1)):
        for j, x0 in enumerate(range(-c, c + 1)):
            xs = x0 - 0.5 + (np.arange(samples) + 0.5) / samples
            half = np.sqrt(np.maximum(radius ** 2 - xs ** 2, 0))
            out[i, j] = np.clip(np.minimum(y0 + 0.5, half) - np.maximum(y0 - 0.5, -half), 0, None).mean()
    return out / out.sum()


@pytest.mark.parametrize("radius", [1, 2.5, 3, 7])
def test_disk_kernel_is_the_covered_pixel_area(radius):
    kernel = disk_kernel(radius)
    assert kernel.shape == (2 * int(np.ceil(radius - 0.5)) + 1,) * 2
    np.testing.assert_allclose(kernel.sum(), 1, atol=1e-12)
    np.testing.assert_allclose(kernel, pixel_disk_area(radius), atol=1e-6)


def test_gaussian_and_motion_kernels():
    g = gaussian_kernel(25, 1.6)
    t = np.arange(25) - 12
    expected = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.6 ** 2))
    expected[expected < np.finfo(float).eps * expected.max()] = 0
    np.testing.assert_allclose(g, expected / expected.sum(), rtol=1e-12)
    np.testing.assert_allclose(motion_kernel(9, 0), np.full((1, 9), 1 / 9), rtol=1e-12)
    np.testing.assert_allclose(motion_kernel(9, 90), np.full((9, 1), 1 / 9), rtol=1e-12)
    m = motion_kernel(15, 45)
    np.testing.assert_allclose(m.sum(), 1, atol=1e-12)
    np.testing.assert_allclose(m, m[::-1, ::-1], atol=1e-15)       # symmetric about its centre
    anti = np.fliplr(m)                                            # 45 degrees: bottom-left to top-right
    assert np.trace(anti) > 0.5 and np.trace(m) < 0.2


@pytest.mark.parametrize("name", ["disk", "gaussian", "motion"])
def test_imfilter_is_convolution_with_replicated_edges(name):
    img = textured(60, 50).astype(np.float64)
    kernel = tasks.blur_kernel(name)
    np.testing.assert_allclose(imfilter_conv_replicate(img, kernel),
                               scipy.ndimage.convolve(img, kernel, mode="nearest"), atol=1e-12)
    blurred = tasks.blur(img.astype(np.float32), name)
    np.testing.assert_array_equal(blurred * 255, np.round(blurred * 255))          # rounded to 8 bits
    np.testing.assert_allclose(tasks.blur(np.full((30, 30), 0.4), name), np.round(0.4 * 255) / 255)
    assert metrics.psnr(blurred, img) < 35


def assert_patches_are_cut_from_the_whole_image(task, level, p, corrupt_whole, seed):
    """With an image just a p x p patch plus task.context(level) on each side, every training patch is its
    centre under one of the 8 flips and rotations: the patch's input must equal the whole (transformed) image
    corrupted by corrupt_whole(image, one level of the mix), cut at the patch, bit for bit."""
    from redcore.symmetries import dihedral
    m = task.context(level)
    img = textured(p + 2 * m, p + 2 * m, seed=seed).astype(np.float32)
    corrupted, clean = data.PatchSampler([img], patch=p, batch=12, seed=1).task_batch(0, task, level)
    assert corrupted.shape == clean.shape == (12, 1, p, p)
    for c, x in zip(corrupted[:, 0], clean[:, 0]):
        t = next(t for t in range(8) if np.array_equal(dihedral(img, t)[m:-m, m:-m], x))
        assert any(np.array_equal(c, corrupt_whole(dihedral(img, t), one)[m:-m, m:-m])
                   for one in task.each_level(level))


@pytest.mark.parametrize("level", ["disk", "gaussian", "motion", "disk,gaussian,motion"])
def test_deblurring_patches_are_blurred_as_inside_a_whole_image(level):
    """A training patch is blurred with the pixels around it (Task.context: the widest kernel's half-width),
    as the same pixels of a whole test image are, not with replicated edges of its own."""
    task = tasks.get("deblur")
    assert task.context(level) == {"disk": 7, "gaussian": 12, "motion": 5}.get(level, 12)
    assert_patches_are_cut_from_the_whole_image(task, level, 20, tasks.blur, seed=2)
    with pytest.raises(ValueError, match="at least 44x44 pixels, the 20x20 patch with the 12-pixel margin"):
        data.PatchSampler([textured(40, 40)], patch=20, batch=2).task_batch(0, task, "gaussian")


@pytest.mark.parametrize("level", ["2", "3", "4", "2,3,4"])
def test_super_resolution_patches_are_degraded_as_inside_a_whole_image(level):
    """As for deblurring: the bicubic down- and up-sampling read 4 x scale pixels around each pixel, so a
    training patch is degraded inside a margin that large (a multiple of every scale of the mix)."""
    task = tasks.get("sr")
    assert task.context(level) == {"2": 8, "3": 12, "4": 16}.get(level, 24)
    assert_patches_are_cut_from_the_whole_image(task, level, 24, tasks.bicubic_degrade, seed=3)


# ---- inpainting --------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["text10", "text20", "scratches"])
def test_inpainting_masks_cover_a_part_and_leave_the_rest(level):
    clean = textured(128, 128)
    task = tasks.get("inpaint")
    corrupted, info = task.corrupt(clean, level, np.random.default_rng(5))
    mask = info["mask"]
    assert mask.shape == clean.shape and 0.03 < mask.mean() < 0.5
    np.testing.assert_array_equal(corrupted[~mask], clean[~mask])
    assert np.abs(corrupted[mask] - clean[mask]).mean() > 0.05
    again, _ = task.corrupt(clean, level, np.random.default_rng(5))
    np.testing.assert_array_equal(corrupted, again)
    rgb, info = task.corrupt(np.stack([clean] * 3, -1), level, np.random.default_rng(5))
    assert rgb.shape == (128, 128, 3) and info["mask"].shape == (128, 128)


def test_scratches_on_a_patch_are_a_window_of_a_test_size_canvas():
    """A training patch's scratches are those of a 256x256 picture (drawn with the same random stream), seen
    through a window: the window's offset is the stream's next two draws.  Test-size images (Set12 and BSD68
    are at least 256 a side) are drawn on themselves, so their protocol is the plain `scratches`."""
    patch, canvas = np.full((50, 40), 0.5, np.float32), np.full((256, 256), 0.5, np.float32)
    in_patch = tasks.get("inpaint").corrupt(patch, "scratches", np.random.default_rng(3))[1]["mask"]
    rng = np.random.default_rng(3)
    _, on_canvas = tasks.scratches(canvas, rng)
    top, left = int(rng.integers(256 - 50 + 1)), int(rng.integers(256 - 40 + 1))
    np.testing.assert_array_equal(in_patch, on_canvas[top:top + 50, left:left + 40])
    image = textured(256, 300)
    protocol, _ = tasks.get("inpaint").corrupt(image, "scratches", np.random.default_rng(4))
    np.testing.assert_array_equal(protocol, tasks.scratches(image, np.random.default_rng(4))[0])
    with pytest.raises(ValueError, match="smaller than the 256x300 image"):
        tasks.scratches(image, np.random.default_rng(4), canvas=(256, 256))


def test_training_patches_see_the_scratch_density_of_test_images():
    """The fraction of pixels scratched in 50x50 training patches matches that of 256x256 images.  Drawn on
    the patch alone it was a fifth of it (one short scribble per patch).  Tolerance: 4 standard errors of
    the difference of the two sample means, from their own spreads."""
    task, rng = tasks.get("inpaint"), np.random.default_rng(0)
    full = [task.corrupt(np.full((256, 256), 0.5, np.float32), "scratches", rng)[1]["mask"].mean()
            for _ in range(30)]
    patches = [task.corrupt(np.full((50, 50), 0.5, np.float32), "scratches", rng)[1]["mask"].mean()
               for _ in range(300)]
    spread = np.sqrt(np.var(full, ddof=1) / len(full) + np.var(patches, ddof=1) / len(patches))
    assert abs(np.mean(patches) - np.mean(full)) < 4 * spread, (np.mean(patches), np.mean(full), spread)
    alone = [tasks.scratches(np.full((50, 50), 0.5, np.float32), rng)[1].mean() for _ in range(300)]
    assert np.mean(alone) < 0.5 * np.mean(full)          # the mismatch this fixes, still detectable


def inked_row_runs(mask):
    """Heights of the bands of consecutive rows that hold ink: one per line of text."""
    rows = np.concatenate([[False], mask.any(axis=1), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(rows))
    return edges[1::2] - edges[::2]


@pytest.mark.parametrize("font_size", [10, 20, 30])
def test_text_level_is_its_height_in_pixels(font_size):
    """text10 / text20 mean letters 10 / 20 pixels high (paper §5.6): every whole line of text (not cut by
    the image's top or bottom) spans 0.75..1.15 x font_size rows from the tops of its tallest letters to the
    bottoms of its descenders (the font's ascent + descent is about font_size), and the letters themselves
    (connected components of the mask) grow in proportion."""
    clean = np.zeros((200, 200), np.float32)
    _, mask = tasks.overlay_text(clean, np.random.default_rng(0), font_size=font_size)
    lines = inked_row_runs(mask)[1:-1]                 # the first and last lines may be cut by the border
    assert len(lines) >= 2
    assert np.all((lines >= 0.75 * font_size) & (lines <= 1.15 * font_size)), (font_size, lines)
    _, small = tasks.overlay_text(clean, np.random.default_rng(0), font_size=font_size // 2)
    letter_height = lambda m: np.median([s[0].stop - s[0].start
                                        for s in scipy.ndimage.find_objects(scipy.ndimage.label(m)[0])])
    assert 1.5 <= letter_height(mask) / letter_height(small) <= 2.5


# ---- the registry ------------------------------------------------------------------------------------
def test_task_levels_and_errors():
    assert tasks.get("denoising") is tasks.get("denoise")
    assert tasks.get("denoise").parse_level("25") == 25
    assert tasks.get("denoise").parse_level("0-55") == (0.0, 55.0)
    assert tasks.get("sr").parse_level("x3") == 3 and tasks.get("jpeg").parse_level("q20") == 20
    assert tasks.get("inpaint").parse_level(20) == "text20"
    with pytest.raises(ValueError, match="unknown task 'dehaze': choose one of denoise, sr"):
        tasks.get("dehaze")
    with pytest.raises(ValueError, match="unknown level '5' for task 'sr'"):
        tasks.get("sr").parse_level(5)
    with pytest.raises(ValueError, match="unknown level 'box' for task 'deblur'"):
        tasks.get("deblur").parse_level("box")


# ---- one network for several levels -----------------------------------------------------------------
@pytest.mark.parametrize("task,spelled,levels", [("sr", "2,3,4", (2, 3, 4)), ("jpeg", "10-40", tuple(range(10, 41))),
                                                 ("deblur", "disk,gaussian,motion", ("disk", "gaussian", "motion")),
                                                 ("inpaint", "text10,scratches", ("text10", "scratches"))])
def test_a_mix_of_levels_draws_one_per_image(task, spelled, levels):
    """A network for several levels (paper Tables 3, 8) trains on a mix: each image gets one level drawn
    from it by the image's seeded generator, so pairs stay reproducible; a mix covers its levels only."""
    t = tasks.get(task)
    mix = t.parse_level(spelled)
    assert isinstance(mix, tasks.LevelMix) and mix.levels == levels and tasks.level_label(mix) == spelled
    drawn = {t.one_level(mix, np.random.default_rng(seed)) for seed in range(200)}
    assert drawn == set(levels) or (task == "jpeg" and len(drawn) > 20 and drawn <= set(levels))
    assert all(tasks.covers(t, spelled, level) for level in levels)
    outside = {"sr": 5, "jpeg": 45, "deblur": None, "inpaint": "text20"}[task]
    if outside is not None and task != "sr":
        assert not tasks.covers(t, spelled, outside)
    clean = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    a, _ = t.corrupt(clean, mix, np.random.default_rng(7))
    b, _ = t.corrupt(clean, mix, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_a_super_resolution_mix_crops_to_a_size_every_scale_divides():
    sr = tasks.get("sr")
    assert sr.prepare(np.zeros((50, 50)), "2,3,4").shape == (48, 48) and sr.shave("2,3") == 3
    sampler = data.PatchSampler(data.builtin_images(count=2, size=100), patch=50, batch=6, seed=0)
    noisy, clean = sampler.task_batch(0, sr, sr.parse_level("2,3,4"))
    assert noisy.shape == clean.shape == (6, 1, 48, 48)
    small = data.PatchSampler(data.builtin_images(count=2, size=64), patch=50, batch=6, seed=0)
    with pytest.raises(ValueError, match="no training image is at least 98x98 pixels, the 50x50 patch with the 24"):
        small.task_batch(0, sr, "2,3,4")


def test_blind_denoising_covers_its_range():
    assert tasks.covers("denoise", "0-75", 37) and tasks.covers("denoise", "0-75", "75")
    assert not tasks.covers("denoise", "0-75", 80) and not tasks.covers("denoise", "25", 37)


def test_a_blind_network_is_scored_at_each_table_level_it_covers():
    """The levels a blind range or mix is scored at (its card's table, and --val-levels each): those of the
    task's tables that it covers; a single level stands alone."""
    assert tasks.get("denoise").scored_levels("0-75") == (10, 15, 25, 30, 50, 70)
    assert tasks.get("denoise").scored_levels("0-40") == (10, 15, 25, 30)
    assert tasks.get("denoise").scored_levels("0-5") == ()
    assert tasks.get("denoise").scored_levels("37") == (37,)
    assert tasks.get("jpeg").scored_levels("10-40") == (10, 20, 30, 40)
    assert tasks.get("sr").scored_levels("2,4") == (2, 4)
    assert tasks.get("deblur").scored_levels("disk,gaussian,motion") == ("disk", "gaussian", "motion")
