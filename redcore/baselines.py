"""Classical baselines that the evaluation harness puts beside RED-Net, one per task where one is at hand.

| task    | baseline                                                                     |
|---------|------------------------------------------------------------------------------|
| denoise | BM3D (Dabov et al. 2007) through the `bm3d` package, an optional dependency  |
| sr      | bicubic: the corrupted input itself, so the input column is the baseline     |
| jpeg    | BM3D used as a deblocker: the decoded image denoised at a sigma per quality  |
| deblur  | regularised inverse filter (constrained least squares with a Laplacian prior) |
| inpaint | harmonic inpainting: masked pixels solve Laplace's equation from their border |

Each takes the corrupted image (H, W) or (H, W, C) in [0, 1], the task's level and the corruption's info (the
noise sigma, the blur kernel, the mask: what a non-blind method is allowed to know), and returns an image of
the same shape clipped to [0, 1].

Their scores on a test set are kept in a cache of their own (runs/baselines/), written by whoever scores them
(`redcore eval`, tools/ship_model.py) and read back before BM3D runs again for an hour: save_scores and
cached_scores.
"""
import json
import os

import numpy as np

from .io import atomic_write

CACHE_FOLDER = os.path.join("runs", "baselines")


def bm3d_denoise(noisy, level, info):
    """BM3D with the true noise sigma (the usual non-blind comparison)."""
    try:
        import bm3d
    except ImportError:
        raise RuntimeError("the BM3D baseline needs the bm3d package: pip install -e .[baselines]") from None
    sigma = info["sigma"] / 255.0
    if noisy.ndim == 3:
        return np.stack([bm3d_denoise(noisy[..., c], level, info) for c in range(noisy.shape[2])], axis=-1)
    return np.clip(bm3d.bm3d(noisy.astype(np.float64), sigma_psd=sigma), 0, 1).astype(noisy.dtype)


def _otf(kernel, shape):
    """The transfer function of a centred kernel on an image of `shape` (MATLAB's psf2otf)."""
    padded = np.zeros(shape)
    kh, kw = kernel.shape
    padded[:kh, :kw] = kernel
    padded = np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.rfft2(padded)


# The regulariser's weight per blur, the best of 3e-4, 3e-3, 0.03, 0.1, 0.3 on 10 train400 images (not on a
# test set).  Disk and motion kernels have zeros in their spectrum, so the weight must be large there: the
# inverse would amplify the 8-bit rounding and the image border, where replication is not periodic.
CLS_WEIGHTS = {"disk": 0.1, "motion": 0.3, "gaussian": 3e-4}


def cls_deblur(blurred, level, info, weight=None):
    r"""Constrained least squares deconvolution with the known kernel k:

        X = conj(K) Y / (|K|^2 + weight |L|^2),     L the 3x3 Laplacian,

    on the image extended by edge replication (the blur's own boundary rule), so the periodic FFT sees no
    seam inside the picture.
    """
    kernel = info["kernel"]
    weight = CLS_WEIGHTS.get(level, 0.1) if weight is None else weight
    if blurred.ndim == 3:
        return np.stack([cls_deblur(blurred[..., c], level, info, weight) for c in range(blurred.shape[2])], -1)
    pad = 2 * max(kernel.shape)
    extended = np.pad(blurred.astype(np.float64), pad, mode="edge")
    k_otf = _otf(kernel, extended.shape)
    laplacian = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float64)
    l_otf = _otf(laplacian, extended.shape)
    restored = np.fft.irfft2(np.conj(k_otf) * np.fft.rfft2(extended) / (np.abs(k_otf) ** 2 + weight * np.abs(l_otf) ** 2),
                             s=extended.shape)
    return np.clip(restored[pad:-pad, pad:-pad], 0, 1).astype(blurred.dtype)


def harmonic_inpaint(corrupted, level, info, iterations=2000, tol=1e-6):
    """Fill the masked pixels with the harmonic function that matches the known pixels around them: Jacobi
    iterations of the 4-neighbour mean over the mask (edge pixels mirror their outside neighbours)."""
    mask = np.asarray(info["mask"], bool)
    if corrupted.ndim == 3:
        return np.stack([harmonic_inpaint(corrupted[..., c], level, info, iterations, tol)
                         for c in range(corrupted.shape[2])], -1)
    u = corrupted.astype(np.float64).copy()
    known = ~mask
    u[mask] = u[known].mean() if known.any() else 0.5
    for _ in range(iterations):
        p = np.pad(u, 1, mode="edge")
        mean = 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])
        change = np.abs(mean[mask] - u[mask]).max(initial=0.0)
        u[mask] = mean[mask]
        if change < tol:
            break
    return np.clip(u, 0, 1).astype(corrupted.dtype)


# BM3D as a JPEG deblocker: the sigma (8-bit scale) per quality, the best of 4-10 values on 10 train400 images
# (not on a test set; q10: 4..30, 17 best, +1.03 dB there); blocking and ringing behave like noise of about
# this level to BM3D's collaborative filter.
DEBLOCK_SIGMAS = {10: 17, 20: 11, 30: 9, 40: 7}


def bm3d_deblock(decoded, level, info):
    """BM3D on the decoded JPEG at the sigma DEBLOCK_SIGMAS gives its quality (a classical deblocker; the
    sigma of the nearest tuned quality for others)."""
    quality = int(level)
    sigma = DEBLOCK_SIGMAS[min(DEBLOCK_SIGMAS, key=lambda q: abs(q - quality))]
    return bm3d_denoise(decoded, level, {"sigma": sigma})


# task name -> (column label, function); tasks absent here have no classical column.
BASELINES = {
    "denoise": ("BM3D", bm3d_denoise),
    "jpeg": ("BM3D deblock", bm3d_deblock),
    "deblur": ("CLS deconv.", cls_deblur),
    "inpaint": ("harmonic", harmonic_inpaint),
}


def _cache_path(task, level, set_name, seed, folder):
    return os.path.join(folder or CACHE_FOLDER, f"{task}-{level}-{set_name}-seed{seed}.json")


def save_scores(task, level, set_name, seed, scores, images, folder=None):
    """Keep the task's baseline's average scores ({"psnr", "ssim"}) on a test set of `images` images corrupted
    with `seed`.  task, level: the task's name and level label ("denoise", "25")."""
    if task not in BASELINES:
        raise ValueError(f"the task {task!r} has no classical baseline to keep scores of")
    path = _cache_path(task, level, set_name, seed, folder)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    entry = {"task": task, "level": level, "set": set_name, "seed": seed, "method": BASELINES[task][0],
             "images": images, "psnr": float(scores["psnr"]), "ssim": float(scores["ssim"])}
    atomic_write(path, lambda f: f.write(json.dumps(entry, indent=1).encode()))


def cached_scores(task, level, set_name, seed, images, folder=None):
    """(baseline's name, {"psnr", "ssim"}) kept by save_scores for exactly this task, level, set, seed and
    number of images, or None."""
    path = _cache_path(task, level, set_name, seed, folder)
    if not os.path.isfile(path) or task not in BASELINES:
        return None
    with open(path, encoding="utf-8") as f:
        entry = json.load(f)
    if (entry.get("method"), entry.get("seed"), entry.get("images")) != (BASELINES[task][0], seed, images):
        return None
    return entry["method"], {"psnr": entry["psnr"], "ssim": entry["ssim"]}
