"""The data pipeline: reading images in each protocol's colour, lazy folders, reproducible patch batches."""
import numpy as np
import pytest
from PIL import Image

from redcore import data
from redcore import metrics
from redcore import tasks


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "a_color.png")
    Image.fromarray(rng.integers(0, 256, (64, 70), dtype=np.uint8)).save(tmp_path / "b_gray.bmp")
    Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)).save(tmp_path / "c.jpg", quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_read_image_modes(folder):
    rgb8 = np.asarray(Image.open(folder / "a_color.png"))
    rgb = data.read_image(folder / "a_color.png", "rgb")
    assert rgb.shape == (40, 30, 3) and rgb.dtype == np.float32
    np.testing.assert_array_equal(rgb * 255, rgb8)
    y = data.read_image(folder / "a_color.png", "y")           # 8-bit studio-range Y, as MATLAB's rgb2ycbcr(uint8)
    np.testing.assert_allclose(y * 255, np.floor(metrics.rgb_to_y(rgb8 / 255.0) * 255 + 0.5), atol=1e-4)
    assert data.read_image(folder / "a_color.png", "as read").shape == (40, 30, 3)
    gray = data.read_image(folder / "b_gray.bmp", "as read")
    assert gray.shape == (64, 70)
    np.testing.assert_array_equal(data.read_image(folder / "b_gray.bmp", "y"), gray)      # gray stays as it is
    assert data.read_image(folder / "b_gray.bmp", "rgb").shape == (64, 70, 3)
    with pytest.raises(ValueError, match="not a readable image"):
        data.read_image(folder / "notes.txt")
    with pytest.raises(FileNotFoundError, match="no such image"):
        data.read_image(folder / "missing.png")
    with pytest.raises(ValueError, match="unknown image mode 'cmyk'"):
        data.read_image(folder / "b_gray.bmp", "cmyk")


def test_folders_and_test_sets(folder, tmp_path_factory):
    assert [p.rsplit("/", 1)[1] for p in data.image_paths(str(folder))] == ["a_color.png", "b_gray.bmp", "c.jpg"]
    names, images = data.load_test_set(str(folder), mode="gray")
    assert names == ["a_color", "b_gray", "c"] and all(im.ndim == 2 for im in images)
    with pytest.raises(ValueError, match="holds no images"):
        data.read_folder(str(tmp_path_factory.mktemp("empty")))
    with pytest.raises(FileNotFoundError, match="no image folder 'NoSuchSet'"):
        data.load_test_set("NoSuchSet")


def test_image_folder_reads_lazily_and_bounds_its_cache(folder):
    images = data.ImageFolder(str(folder), mode="rgb", cache_size=2)
    assert len(images) == 3 and images.sizes == [(40, 30), (64, 70), (60, 60)]
    assert len(images._cache) == 0                       # sizes came from the headers only
    first = images[0]
    assert images[0] is first                            # cached
    images[1], images[2]
    assert len(images._cache) == 2 and 0 not in images._cache
    np.testing.assert_array_equal(images[0], first)      # read again, same pixels


def test_patch_batches_are_reproducible_and_augmented(folder):
    images = data.ImageFolder(str(folder), mode="rgb")
    sampler = data.PatchSampler(images, patch=32, batch=8, seed=3)
    assert sampler.usable == [1, 2]                      # the 40x30 image is too small for 32x32 patches
    a, b = sampler.batch(5), sampler.batch(5)
    assert a.shape == (8, 3, 32, 32) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sampler.batch(6))
    gray = data.PatchSampler([np.arange(64 * 64, dtype=np.float32).reshape(64, 64)], patch=64, batch=64, seed=0)
    # Whole-image patches of one image: the batch holds its 8 symmetries, each of them.
    seen = {tuple(p[0, 0, :2]) for p in gray.batch(0)}
    assert len(seen) == 8
    with pytest.raises(ValueError, match="at least 100x100"):
        data.PatchSampler(images, patch=100)


@pytest.mark.parametrize("task,level,size", [("denoise", 25, 30), ("denoise", "0-55", 30), ("sr", 4, 28),
                                             ("jpeg", 10, 30), ("deblur", "motion", 30), ("inpaint", "text10", 30)])
def test_task_batches(task, level, size):
    images = data.builtin_images(count=3, size=64)
    sampler = data.PatchSampler(images, patch=30, batch=4, seed=1)
    corrupted, clean = sampler.task_batch(2, tasks.get(task), level)
    assert corrupted.shape == clean.shape == (4, 1, size, size) and corrupted.dtype == np.float32
    assert not np.array_equal(corrupted, clean)
    again, _ = sampler.task_batch(2, tasks.get(task), level)
    np.testing.assert_array_equal(corrupted, again)


def test_dihedral_inverse():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    transformed = [data.dihedral(x, t) for t in range(8)]
    assert len({t.tobytes() + bytes(t.shape) for t in transformed}) == 8
    for t in range(8):
        np.testing.assert_array_equal(data.inverse_dihedral(data.dihedral(x, t), t), x)
    hwc = np.arange(3 * 4 * 2).reshape(3, 4, 2)
    np.testing.assert_array_equal(data.dihedral(hwc, 5, axes=(0, 1))[..., 1], data.dihedral(hwc[..., 1], 5))
