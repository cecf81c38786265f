"""Image quality metrics of the restoration literature, and the colour conversion its protocols use.

Images are float arrays in [0, 1] (the 8-bit peak 255 maps to 1), (H, W) gray or (H, W, 3) colour.  The
metrics are pure functions of their inputs: they neither clip nor round (restoration clips its own output to
[0, 1], see redcore.evaluate; a corrupted input is scored as it is, so Gaussian noise of sigma 25 scores
20*log10(255/25) = 20.17 dB, as the literature reports).
"""
import numpy as np

# ITU-R BT.601 for [0, 1] RGB, as MATLAB's rgb2ycbcr: Y in [16, 235]/255, Cb and Cr in [16, 240]/255.
_YCBCR_MATRIX = np.array([[65.481, 128.553, 24.966],
                          [-37.797, -74.203, 112.0],
                          [112.0, -93.786, -18.214]]) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0


def _float_like(out, like):
    """out in the float dtype of `like` (float64 for integer input)."""
    return out.astype(like.dtype if like.dtype.kind == "f" else np.float64, copy=False)


def rgb_to_ycbcr(rgb):
    """(H, W, 3) RGB in [0, 1] -> YCbCr in [0, 1] (BT.601 studio range, as MATLAB's rgb2ycbcr)."""
    rgb = np.asarray(rgb)
    return _float_like(rgb.astype(np.float64) @ _YCBCR_MATRIX.T + _YCBCR_OFFSET, rgb)


def ycbcr_to_rgb(ycbcr):
    """Inverse of rgb_to_ycbcr (not clipped)."""
    ycbcr = np.asarray(ycbcr)
    return _float_like((ycbcr.astype(np.float64) - _YCBCR_OFFSET) @ np.linalg.inv(_YCBCR_MATRIX).T, ycbcr)


def rgb_to_y(img):
    """The Y channel (H, W) of an RGB image; a gray image is returned unchanged."""
    img = np.asarray(img)
    return rgb_to_ycbcr(img)[..., 0] if img.ndim == 3 else img


def to_uint8(img):
    """[0, 1] -> uint8 with MATLAB's im2uint8 rounding (clip, then round half away from zero)."""
    return np.floor(np.clip(np.asarray(img, np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _shaved(x, ref, shave):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    if x.shape != ref.shape:
        raise ValueError(f"cannot compare images of different shapes {x.shape} and {ref.shape}")
    if shave:
        if min(x.shape[:2]) <= 2 * shave:
            raise ValueError(f"an image of {x.shape[0]}x{x.shape[1]} has nothing left after shaving {shave} pixels")
        x, ref = x[shave:-shave, shave:-shave], ref[shave:-shave, shave:-shave]
    return x, ref


def psnr(x, ref, shave=0, peak=1.0):
    """Peak signal-to-noise ratio in dB: 10 log10(peak^2 / mean((x - ref)^2)), `shave` border pixels dropped."""
    x, ref = _shaved(x, ref, shave)
    mse = np.mean((x - ref) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak ** 2 / mse))


def gaussian_window(sigma=1.5, radius=5):
    """Normalised 1-D Gaussian of 2 radius + 1 taps (Wang et al.: 11 taps, sigma 1.5)."""
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-t ** 2 / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter_valid(img, g):
    """Separable 'valid' correlation of (H, W) img with g along both axes."""
    k = len(g)
    rows = sum(g[a] * img[a:img.shape[0] - k + 1 + a, :] for a in range(k))
    return sum(g[b] * rows[:, b:rows.shape[1] - k + 1 + b] for b in range(k))


def ssim(x, ref, shave=0, peak=1.0, sigma=1.5, radius=5, k1=0.01, k2=0.03):
    """Structural similarity of Wang, Bovik, Sheikh & Simoncelli (2004), their Gaussian-window formulation.

    Local statistics under an 11x11 Gaussian window (sigma 1.5), population (co)variances, and

        SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),

    C1 = (k1 peak)^2, C2 = (k2 peak)^2, averaged over every window that lies inside the image (the 'valid'
    positions, as Wang's ssim.m); colour images average the channels.
    """
    x, ref = _shaved(x, ref, shave)
    if x.ndim == 3:
        return float(np.mean([ssim(x[..., c], ref[..., c], 0, peak, sigma, radius, k1, k2)
                              for c in range(x.shape[2])]))
    if min(x.shape) < 2 * radius + 1:
        raise ValueError(f"SSIM needs images of at least {2 * radius + 1}x{2 * radius + 1} pixels; got {x.shape}")
    g = gaussian_window(sigma, radius)
    c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(ref, g)
    var_x = _filter_valid(x * x, g) - mu_x ** 2
    var_y = _filter_valid(ref * ref, g) - mu_y ** 2
    cov = _filter_valid(x * ref, g) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(s.mean())
