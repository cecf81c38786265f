"""Denoising's corruption: additive white Gaussian noise (paper §5.2), of one sigma or blind over a range.

Sigma is on the 8-bit scale: the noise added to a [0, 1] image has standard deviation sigma / 255.  The result is
not clipped, as in the usual protocol (the noisy input then scores 20*log10(255/sigma) dB).
"""
import numpy as np


def add_gaussian_noise(clean, sigma, rng):
    """clean + N(0, (sigma/255)^2) per pixel, same shape and float dtype; sigma a number or an array that
    broadcasts against clean (one sigma per patch for blind training)."""
    clean = np.asarray(clean)
    dtype = clean.dtype if clean.dtype.kind == "f" else np.float32
    noise = rng.standard_normal(clean.shape, dtype=np.float64 if dtype == np.float64 else np.float32)
    return (clean + noise * (np.asarray(sigma, dtype) / dtype.type(255.0))).astype(dtype, copy=False)


def add_blind_noise(clean, sigma_range, rng):
    """Blind denoising: each image of the batch clean (N, ...) gets noise of a sigma drawn uniformly from
    sigma_range = (low, high); returns (noisy, sigmas)."""
    low, high = sigma_range
    if not 0 <= low <= high:
        raise ValueError(f"a blind noise range needs 0 <= low <= high; got {sigma_range}")
    clean = np.asarray(clean)
    sigmas = rng.uniform(low, high, size=clean.shape[0])
    return add_gaussian_noise(clean, sigmas.reshape((-1,) + (1,) * (clean.ndim - 1)), rng), sigmas
