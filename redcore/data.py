"""Images in, training patches out: reading folders, a small built-in image set, reproducible patch batches.

Images are float32 arrays in [0, 1], (H, W) gray.  Batches are (N, 1, p, p) float32 host arrays; the model
moves them to its backend (REDNet.forward does the one transfer).
"""
import os

import numpy as np

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


def read_gray(path):
    """An image file as a gray (H, W) float32 array in [0, 1] (color is converted to luma, ITU-R BT.601)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise FileNotFoundError(f"no such image: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path} is not a readable image: {e}") from None


def read_folder(folder, limit=None):
    """All images in `folder` (sorted by name) as gray arrays; a clear error when there are none."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such image folder: {folder}")
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [read_gray(os.path.join(folder, f)) for f in names[:limit]]


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


# The 8 symmetries of the square (identity, 3 rotations, and their mirror images): the paper's augmentation.
def dihedral(img, t):
    """Transform t in 0..7 of an (..., H, W) array: rotate by 90 t degrees, mirrored when t >= 4."""
    out = np.rot90(img, t % 4, axes=(-2, -1))
    return out[..., ::-1] if t >= 4 else out


class PatchSampler:
    """Random p x p patches with the x8 flip/rotation augmentation, drawn reproducibly per step.

    batch(step) depends only on (seed, step): training resumed at step s draws exactly the patches (and the
    noise) it would have drawn without the interruption.
    """

    def __init__(self, images, patch=50, batch=16, seed=0):
        images = [im for im in images if min(im.shape[:2]) >= patch]
        if not images:
            raise ValueError(f"no training image is at least {patch}x{patch} pixels")
        self.images, self.patch, self.batch_size, self.seed = images, patch, batch, seed

    def rng(self, step):
        return np.random.default_rng([self.seed, step])

    def batch(self, step, rng=None):
        """Clean patches (batch, 1, patch, patch) float32 for this step (and the rng, for further draws)."""
        rng = self.rng(step) if rng is None else rng
        p = self.patch
        out = np.empty((self.batch_size, 1, p, p), np.float32)
        for n in range(self.batch_size):
            img = self.images[rng.integers(len(self.images))]
            i, j = rng.integers(img.shape[0] - p + 1), rng.integers(img.shape[1] - p + 1)
            out[n, 0] = dihedral(img[i:i + p, j:j + p], int(rng.integers(8)))
        return out

    def denoising_batch(self, step, sigma):
        """(noisy, clean) for this step: clean patches and Gaussian noise of `sigma` drawn from one seeded stream."""
        rng = self.rng(step)
        clean = self.batch(step, rng)
        return add_gaussian_noise(clean, sigma, rng), clean


def add_gaussian_noise(clean, sigma, rng):
    """clean + N(0, (sigma/255)^2), not clipped (the usual denoising protocol)."""
    return (clean + rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255.0)).astype(np.float32)


def psnr(restored, clean, peak=1.0):
    """PSNR in dB of `restored` against `clean` (both in [0, peak]); the restored image is clipped first."""
    err = np.mean((np.clip(restored, 0, peak).astype(np.float64) - clean.astype(np.float64)) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(peak ** 2 / err))
