"""Images in, training patches out: reading folders, a small built-in image set, reproducible patch batches.

Images are float32 arrays in [0, 1], (H, W) gray.  Batches are (N, 1, p, p) float32 host arrays; the model
moves them to its backend (REDNet.forward does the one transfer).
"""
import os
from collections import OrderedDict

import numpy as np

from .symmetries import dihedral, inverse_dihedral  # noqa: F401  (the x8 augmentation, §3.5)
from .metrics import rgb_to_y, to_uint8
from .tasks.noise import add_gaussian_noise

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def default_data_root():
    """`REDCORE_DATA`, else ../shared/data beside the project, else None."""
    env = os.environ.get("REDCORE_DATA")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
    return os.path.normpath(here) if os.path.isdir(here) else None


def default_train_folder():
    """The shared training set (train400 under default_data_root()), or None where it is absent."""
    root = default_data_root()
    folder = os.path.join(root, "train400") if root else None
    return folder if folder and os.path.isdir(folder) else None


def read_image(path, mode="gray"):
    """An image file as a float32 array in [0, 1].

    mode "gray": (H, W), colour converted to luma by Pillow (ITU-R BT.601 weights, full range);
    "y": (H, W), the studio-range Y of BT.601 rounded to 8 bits, as MATLAB's rgb2ycbcr of a uint8 image (the
    SR and JPEG protocols), a gray file as it is; "rgb": (H, W, 3), a gray file repeated; "as read": (H, W) for
    gray files, (H, W, 3) for colour; "with alpha": "as read" with the alpha channel of a file that has one
    appended, (H, W, 2) or (H, W, 4).  16-bit files are read at their scale (x / 65535); an EXIF orientation
    is applied, so the array is upright as viewers show it.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError
    if mode not in READ_MODES:
        raise ValueError(f"unknown image mode {mode!r}: choose one of {', '.join(READ_MODES)}")
    try:
        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened)
            if im.mode in WIDE_GRAY_MODES:
                gray = _wide_gray(im, path)
                return np.repeat(gray[..., None], 3, axis=2) if mode == "rgb" else gray
            is_gray = im.mode in ("L", "1", "LA") or (
                im.mode in ("P", "PA") and all(r == g == b for r, g, b in _palette_rgb(im)))
            has_alpha = im.mode in ("LA", "RGBA", "PA", "La", "RGBa") or "transparency" in im.info
            if mode == "with alpha" and has_alpha:
                return np.asarray(im.convert("LA" if is_gray else "RGBA"), dtype=np.float32) / np.float32(255.0)
            if mode == "gray" or (is_gray and mode in ("y", "as read", "with alpha")):
                return np.asarray(im.convert("L"), dtype=np.float32) / np.float32(255.0)
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such image: {path}") from None
    except Image.DecompressionBombError:
        raise ValueError(f"{path} declares more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} million pixels: refused "
                         "as a possible decompression bomb") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path} is not a readable image: {e}") from None
    return to_uint8(rgb_to_y(rgb)).astype(np.float32) / np.float32(255.0) if mode == "y" else rgb


READ_MODES = ("gray", "y", "rgb", "as read", "with alpha")
# Gray images of more than 8 bits as Pillow opens them: 16-bit PNG / TIFF ("I;16*"; "I" from older Pillows
# and 32-bit integer TIFFs) and 32-bit float TIFF ("F").  Pillow's convert("L") would clip them at 255.
WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _wide_gray(im, path):
    """A 16-bit gray image scaled by 1/65535, a float one taken as it is if it lies in [0, 1]; (H, W) float32."""
    a = np.asarray(im)
    if im.mode == "F":
        if not (np.all(np.isfinite(a)) and a.min() >= 0 and a.max() <= 1):
            raise ValueError(f"{path} is a float image with values outside [0, 1] (or NaN): redcore reads "
                             "float images in [0, 1] only")
        return a.astype(np.float32)
    if a.min() < 0 or a.max() > 65535:
        raise ValueError(f"{path} holds integers outside 0..65535 (a {im.mode} image): only 8- and 16-bit "
                         "images are read")
    return (a.astype(np.float64) / 65535.0).astype(np.float32)


def _palette_rgb(im):
    values = im.getpalette() or []
    return list(zip(values[0::3], values[1::3], values[2::3]))


def read_gray(path):
    """An image file as a gray (H, W) float32 array in [0, 1] (colour converted to luma, ITU-R BT.601)."""
    return read_image(path, "gray")


def image_paths(folder):
    """The image files in `folder`, sorted by name; a clear error when the folder is missing or holds none."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such image folder: {folder}")
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.join(folder, f) for f in names]


def read_folder(folder, limit=None, mode="gray"):
    """All images in `folder` (sorted by name), read in `mode` (see read_image)."""
    return [read_image(p, mode) for p in image_paths(folder)[:limit]]


class ImageFolder:
    """The images of a folder, read from disk when asked for and kept in a small cache (a sequence).

    For training sets too large to hold: `sizes` comes from the file headers without decoding the pixels,
    and at most `cache_size` decoded images stay in memory.
    """

    def __init__(self, folder, mode="gray", cache_size=64):
        from PIL import Image
        self.paths, self.mode, self.cache_size = image_paths(folder), mode, int(cache_size)
        self.sizes = []
        for path in self.paths:
            try:
                with Image.open(path) as im:
                    self.sizes.append((im.height, im.width))
            except OSError as e:
                raise ValueError(f"{path} is not a readable image: {e}") from None
        self._cache = OrderedDict()

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        img = read_image(self.paths[i], self.mode)
        self._cache[i] = img
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return img


def load_test_set(name_or_folder, mode="gray"):
    """(names, images) of a test set: a folder path, or a set name under default_data_root()/test."""
    folder = name_or_folder
    if not os.path.isdir(folder):
        root = default_data_root()
        candidate = os.path.join(root, "test", name_or_folder) if root else None
        if candidate is None or not os.path.isdir(candidate):
            where = f" or {os.path.join(root, 'test')}" if root else " (no data folder: set REDCORE_DATA)"
            raise FileNotFoundError(f"no image folder {name_or_folder!r} here{where}")
        folder = candidate
    paths = image_paths(folder)
    return [os.path.splitext(os.path.basename(p))[0] for p in paths], [read_image(p, mode) for p in paths]


def builtin_images(count=12, size=128, seed=2016):
    """A small synthetic image set, so training runs on a fresh machine without data: piecewise-smooth
    scenes of shaded ellipses and polygons over gradients, with some striped and checkered textures (edges,
    flat areas and fine detail, which is what a denoiser must learn to tell from noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for _ in range(count):
        a, b = rng.uniform(-0.5, 0.5, 2)
        img = 0.5 + a * (xx - 0.5) + b * (yy - 0.5)
        for _ in range(rng.integers(4, 9)):
            cx, cy, rx, ry = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3)
            theta = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
            v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
            kind = rng.integers(0, 3)
            inside = (u / rx) ** 2 + (v / ry) ** 2 <= 1 if kind == 0 else (np.abs(u) <= rx) & (np.abs(v) <= ry)
            if kind == 2:     # a textured rectangle: stripes or checkers
                period = rng.uniform(0.02, 0.08)
                tex = np.sin(2 * np.pi * u / period) > 0
                if rng.random() < 0.5:
                    tex ^= np.sin(2 * np.pi * v / period) > 0
                fill = np.where(tex, rng.uniform(0, 1), rng.uniform(0, 1))
            else:
                fill = rng.uniform(0, 1) + rng.uniform(-0.3, 0.3) * u
            img = np.where(inside, fill, img)
        images.append(np.clip(img, 0, 1).astype(np.float32))
    return images


class PatchSampler:
    """Random p x p patches with the x8 flip/rotation augmentation, drawn reproducibly per step.

    images: a list of (H, W) or (H, W, C) arrays, or an ImageFolder (read lazily).  batch(step) depends only on
    (seed, step): training resumed at step s draws exactly the patches (and the corruption) it would have drawn
    without the interruption.  Batches are host float32 arrays (N, C, p, p); the model moves them to its
    backend in one place (REDNet.forward).
    """

    def __init__(self, images, patch=50, batch=16, seed=0):
        sizes = getattr(images, "sizes", None) or [im.shape[:2] for im in images]
        self.usable = [i for i, (h, w) in enumerate(sizes) if min(h, w) >= patch]
        if not self.usable:
            raise ValueError(f"no training image is at least {patch}x{patch} pixels")
        self.images, self.patch, self.batch_size, self.seed = images, patch, batch, seed
        self.sizes = list(sizes)

    def rng(self, step, shard=None):
        """The stream of this step; shard r (a rank of data-parallel training) draws from its own."""
        return np.random.default_rng([self.seed, step] if shard is None else [self.seed, step, shard])

    def batch(self, step, rng=None, margin=0):
        """Clean patches (batch, C, patch + 2 margin, ...) float32 for this step (and the rng, for further
        draws); images smaller than that are left out."""
        rng = self.rng(step) if rng is None else rng
        p = self.patch + 2 * margin
        usable = [i for i in self.usable if min(self.sizes[i]) >= p] if margin else self.usable
        if not usable:
            raise ValueError(f"no training image is at least {p}x{p} pixels, the {self.patch}x{self.patch} "
                             f"patch with the {margin}-pixel margin its corruption reads")
        out = None
        for n in range(self.batch_size):
            img = self.images[usable[rng.integers(len(usable))]]
            img = img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)       # (C, H, W)
            if out is None:
                out = np.empty((self.batch_size, img.shape[0], p, p), np.float32)
            i, j = rng.integers(img.shape[1] - p + 1), rng.integers(img.shape[2] - p + 1)
            out[n] = dihedral(img[:, i:i + p, j:j + p], int(rng.integers(8)))
        return out

    def denoising_batch(self, step, sigma, shard=None):
        """(noisy, clean) for this step (and shard): clean patches and Gaussian noise of `sigma` drawn from one
        seeded stream."""
        rng = self.rng(step, shard)
        clean = self.batch(step, rng)
        return add_gaussian_noise(clean, sigma, rng), clean

    def task_batch(self, step, task, level, shard=None):
        """(corrupted, clean) for this step (and shard) and any task of redcore.tasks: each clean patch is cut
        with the margin its corruption reads (Task.context), prepared (SR crops it to a multiple of the scale),
        corrupted from the step's seeded stream, and trimmed back to the patch."""
        rng = self.rng(step, shard)
        m = task.context(level)
        clean = self.batch(step, rng, margin=m)
        pairs = []
        for patch in clean:
            image = patch[0] if patch.shape[0] == 1 else np.moveaxis(patch, 0, -1)
            image = task.prepare(image, level)
            corrupted, _ = task.corrupt(image, level, rng)
            if m:                       # the margin was read by the corruption, and is trimmed off now
                corrupted, image = (a[m:a.shape[0] - m, m:a.shape[1] - m] for a in (corrupted, image))
            pairs.append([np.asarray(a, np.float32).reshape(image.shape[:2] + (-1,)) for a in (corrupted, image)])
        corrupted, clean = (np.ascontiguousarray(np.stack([p[k] for p in pairs]).transpose(0, 3, 1, 2))
                            for k in (0, 1))
        return corrupted, clean
