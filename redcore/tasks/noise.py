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


SIGMA_DRAWS = ("uniform", "log")
SIGMA_OFFSET = 10.0     # the "log" draw's sigma_0: sigma + sigma_0 is log-uniform, so the density is finite at 0


def check_sigma_draw(draw):
    """draw, or ValueError unless it names one of SIGMA_DRAWS."""
    if draw not in SIGMA_DRAWS:
        raise ValueError(f"unknown sigma draw {draw!r}: choose one of {', '.join(SIGMA_DRAWS)}")
    return draw


def draw_sigmas(sigma_range, n, rng, draw="uniform"):
    """n noise sigmas from sigma_range = (low, high).  uniform: every sigma equally often (DnCNN-B's draw).
    log: sigma + SIGMA_OFFSET log-uniform, a density proportional to 1 / (sigma + SIGMA_OFFSET), so that
    low sigmas are drawn more often.  Why: a restored patch's squared error grows about in proportion to
    sigma (the blind denoiser's MSE at sigma 70 is about 7 times its MSE at sigma 10), so under a uniform
    draw the MSE of Eq. 4 weighs each level about in proportion to sigma; drawing a level with a density
    proportional to 1 / sigma weighs every level's relative error, its dB, about equally."""
    low, high = sigma_range
    if not 0 <= low <= high:
        raise ValueError(f"a blind noise range needs 0 <= low <= high; got {sigma_range}")
    if check_sigma_draw(draw) == "uniform":
        return rng.uniform(low, high, size=n)
    a, b = low + SIGMA_OFFSET, high + SIGMA_OFFSET
    return np.minimum(a * (b / a) ** rng.uniform(0.0, 1.0, size=n) - SIGMA_OFFSET, high)


def add_blind_noise(clean, sigma_range, rng, draw="uniform"):
    """Blind denoising: each image of the batch clean (N, ...) gets noise of a sigma drawn from sigma_range =
    (low, high) (draw_sigmas: uniformly, or log-uniformly); returns (noisy, sigmas)."""
    clean = np.asarray(clean)
    sigmas = draw_sigmas(sigma_range, clean.shape[0], rng, draw)
    return add_gaussian_noise(clean, sigmas.reshape((-1,) + (1,) * (clean.ndim - 1)), rng), sigmas
