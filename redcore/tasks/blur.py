r"""Deblurring's corruption (paper §5.5): MATLAB's fspecial kernels and imfilter(..., 'conv', 'replicate').

The authors' demo blurs the 8-bit image with fspecial('disk', 7) and rounds the result to 8 bits; their
Gaussian model is fspecial('gaussian', 25, 1.6).  A motion kernel after fspecial('motion', 15, 45) is the
third choice here.  The kernels follow MATLAB's documented constructions:

- disk(r): a (2 ceil(r - 1/2) + 1)^2 grid whose every weight is the area of the unit pixel square that the
  disk of radius r covers (the arc integrated exactly), normalised to sum 1.
- gaussian(n, s): exp(-(x^2 + y^2) / (2 s^2)) on an n x n grid centred at 0, values below eps * max zeroed,
  normalised to sum 1.
- motion(len, theta): a line of `len` pixels at `theta` degrees anticlockwise, one pixel wide, each weight
  1 + eps - (distance from the pixel centre to the line segment), clipped at 0, normalised.
"""
import numpy as np

from ..metrics import to_uint8

EPS = np.finfo(np.float64).eps

# The blur of each level name of the task: (kernel constructor, its arguments).
BLURS = {
    "disk": ("disk", (7,)),                 # the authors' demo: fspecial('disk', 7)
    "gaussian": ("gaussian", (25, 1.6)),    # the authors' Gaussian model: fspecial('gaussian', 25, 1.6)
    "motion": ("motion", (15, 45)),         # fspecial('motion', 15, 45): 15 pixels at 45 degrees
}


def disk_kernel(radius):
    """fspecial('disk', radius): pixel-area weights of a disk, (2c+1, 2c+1) with c = ceil(radius - 1/2)."""
    r = float(radius)
    if r <= 0:
        raise ValueError(f"the disk radius must be positive; got {radius}")
    c = int(np.ceil(r - 0.5))
    y, x = np.mgrid[-c:c + 1, -c:c + 1].astype(np.float64)
    big, small = np.maximum(np.abs(x), np.abs(y)), np.minimum(np.abs(x), np.abs(y))
    r2 = r * r
    with np.errstate(invalid="ignore"):
        # In the octant frame (big >= small >= 0) the arc leaves the pixel between heights m1 and m2.
        m1 = np.where(r2 < (big + 0.5) ** 2 + (small - 0.5) ** 2, small - 0.5, np.sqrt(r2 - (big + 0.5) ** 2))
        m2 = np.where(r2 > (big - 0.5) ** 2 + (small + 0.5) ** 2, small + 0.5, np.sqrt(r2 - (big - 0.5) ** 2))
        # Area under the arc between m1 and m2, beyond x = big - 1/2, plus the part below m1.
        arc = (r2 * (0.5 * (np.arcsin(m2 / r) - np.arcsin(m1 / r))
                     + 0.25 * (np.sin(2 * np.arcsin(m2 / r)) - np.sin(2 * np.arcsin(m1 / r))))
               - (big - 0.5) * (m2 - m1) + (m1 - small + 0.5))
    on_edge = (((r2 < (big + 0.5) ** 2 + (small + 0.5) ** 2) & (r2 > (big - 0.5) ** 2 + (small - 0.5) ** 2))
               | ((small == 0) & (big - 0.5 < r) & (big + 0.5 >= r)))
    grid = np.where(on_edge, np.nan_to_num(arc), 0.0)
    grid += ((big + 0.5) ** 2 + (small + 0.5) ** 2 < r2)        # pixels wholly inside
    grid[c, c] = min(np.pi * r2, np.pi / 2)
    if c > 0 and r > c - 0.5 and r2 < (c - 0.5) ** 2 + 0.25:
        # The disk just reaches into the four axis-end pixels: move that sliver out of their neighbours.
        m1 = np.sqrt(r2 - (c - 0.5) ** 2)
        m1n = m1 / r
        sliver = 2 * (r2 * (0.5 * np.arcsin(m1n) + 0.25 * np.sin(2 * np.arcsin(m1n))) - m1 * (c - 0.5))
        for end, inner in (((2 * c, c), (2 * c - 1, c)), ((c, 2 * c), (c, 2 * c - 1)),
                           ((c, 0), (c, 1)), ((0, c), (1, c))):
            grid[end] = sliver
            grid[inner] -= sliver
    grid[c, c] = min(grid[c, c], 1.0)
    return grid / grid.sum()


def gaussian_kernel(size, sigma):
    """fspecial('gaussian', size, sigma): (size, size) Gaussian, tiny values zeroed, sum 1."""
    size, sigma = int(size), float(sigma)
    if size < 1 or sigma <= 0:
        raise ValueError(f"a Gaussian kernel needs size >= 1 and sigma > 0; got {size}, {sigma}")
    half = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - half
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < EPS * h.max()] = 0.0
    return h / h.sum()


def motion_kernel(length, theta):
    """fspecial('motion', length, theta): a one-pixel-wide line of `length` pixels at `theta` degrees."""
    length = max(1.0, float(length))
    half = (length - 1) / 2.0
    phi = np.mod(float(theta), 180.0) / 180.0 * np.pi
    cos_phi, sin_phi = np.cos(phi), np.sin(phi)
    x_sign = np.sign(cos_phi)
    width = 1.0
    # One quadrant of the kernel; the eps keeps theta = 0 and 90 from growing a spurious extra row.
    sx = np.fix(half * cos_phi + width * x_sign - length * EPS)
    sy = np.fix(half * sin_phi + width - length * EPS)
    x, y = np.meshgrid(np.arange(0, sx + x_sign / 2, x_sign), np.arange(0, sy + 0.5))
    dist = y * cos_phi - x * sin_phi                      # distance across the line
    beyond_end = (np.sqrt(x * x + y * y) >= half) & (np.abs(dist) <= width)
    along = half - np.abs((x[beyond_end] + dist[beyond_end] * sin_phi) / cos_phi)
    dist[beyond_end] = np.sqrt(dist[beyond_end] ** 2 + along ** 2)
    dist = np.maximum(width + EPS - np.abs(dist), 0.0)
    rows, cols = dist.shape
    h = np.zeros((2 * rows - 1, 2 * cols - 1))
    h[:rows, :cols] = np.rot90(dist, 2)                   # the quadrant and its point reflection
    h[rows - 1:, cols - 1:] = dist
    h /= h.sum() + EPS * length * length
    return np.flipud(h) if cos_phi > 0 else h


def blur_kernel(name):
    """The kernel of a deblurring level name: 'disk', 'gaussian' or 'motion' (see BLURS)."""
    if name not in BLURS:
        raise ValueError(f"unknown blur {name!r}: choose one of {', '.join(BLURS)}")
    kind, args = BLURS[name]
    return {"disk": disk_kernel, "gaussian": gaussian_kernel, "motion": motion_kernel}[kind](*args)


def imfilter_conv_replicate(img, kernel):
    """MATLAB's imfilter(img, kernel, 'conv', 'replicate'): same-size convolution, edges replicated.

    out[i, j] = sum_{a, b} kernel[a, b] img[i - a + ca, j - b + cb], (ca, cb) = floor((size + 1) / 2) - 1, the
    kernel's centre as MATLAB picks it.  (H, W) or (H, W, C): each channel on its own.
    """
    img = np.asarray(img, np.float64)
    kh, kw = kernel.shape
    ca, cb = (kh + 1) // 2 - 1, (kw + 1) // 2 - 1
    flipped = kernel[::-1, ::-1]                        # convolution = correlation with the flipped kernel
    # After flipping, tap (a', b') reads img[i + a' - (kh - 1 - ca), j + b' - (kw - 1 - cb)].
    top, left = kh - 1 - ca, kw - 1 - cb
    pad = [(top, ca), (left, cb)] + [(0, 0)] * (img.ndim - 2)
    padded = np.pad(img, pad, mode="edge")
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    for a in range(kh):
        for b in range(kw):
            if flipped[a, b] != 0:
                out += flipped[a, b] * padded[a:a + h, b:b + w]
    return out


def blur(clean, name, rng=None, noise_sigma=0.0):
    """The deblurring input: clean (H, W[, C]) in [0, 1] blurred by the named kernel, rounded to 8 bits as the
    authors' demo does, plus optional Gaussian noise of noise_sigma (8-bit scale, needs rng)."""
    clean = np.asarray(clean)
    out = to_uint8(imfilter_conv_replicate(clean, blur_kernel(name))).astype(np.float64) / 255.0
    if noise_sigma:
        if rng is None:
            raise ValueError("blur with noise needs a random generator")
        out = out + rng.standard_normal(out.shape) * (noise_sigma / 255.0)
    return out.astype(clean.dtype if clean.dtype.kind == "f" else np.float32)
