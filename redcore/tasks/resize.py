r"""Super-resolution's corruption: MATLAB-compatible bicubic imresize, down then up (paper §5.3).

MATLAB's imresize(I, s, 'bicubic') resizes each axis as a weighted sum of input samples:

    out[i] = sum_p w[i, p] in[idx[i, p]],       u_i = i / s + (1 - 1/s) / 2      (1-based, pixel centres)

with the cubic kernel of Keys (a = -0.5)

    h(x) = 1.5|x|^3 - 2.5|x|^2 + 1                 |x| <= 1
           -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2         1 < |x| <= 2,

widened to h_s(x) = s h(s x) when reducing (s < 1: the antialiasing low-pass), taps
idx = floor(u - width/2) + 0 .. ceil(width) + 1, weights normalised to sum 1 per output sample, and indices
outside the image mirrored (1, 2, .., n, n, n-1, .., 1: MATLAB's symmetric boundary).  The axis with the
smaller scale is resized first, as MATLAB does.
"""
import math

import numpy as np


def cubic(x):
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def contributions(in_len, out_len, scale, antialias=True):
    """Weights (out_len, P) and 0-based input indices (out_len, P) of one axis, as MATLAB's imresize."""
    width = 4.0
    if scale < 1 and antialias:
        kernel, width = (lambda x: scale * cubic(scale * x)), width / scale
    else:
        kernel = cubic
    u = np.arange(1, out_len + 1, dtype=np.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]              # 1-based, may fall outside 1..in_len
    weights = kernel(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)                         # drop tap columns that are zero everywhere
    return weights[:, keep], idx[:, keep]


def _resize_axis(img, axis, out_len, scale, antialias):
    weights, idx = contributions(img.shape[axis], out_len, scale, antialias)
    moved = np.moveaxis(img, axis, 0)
    out = np.einsum("op,op...->o...", weights, moved[idx])
    return np.moveaxis(out, 0, axis)


def imresize(img, scale=None, shape=None, antialias=True):
    """Bicubic resize of an (H, W) or (H, W, C) float image, as MATLAB's imresize(img, scale, 'bicubic').

    Give `scale` (output size ceil(scale * size), as MATLAB) or `shape` (H_out, W_out).  The result is float64
    and not clipped (bicubic overshoots at edges); MATLAB would round it to 8 bits for uint8 input.
    """
    img = np.asarray(img, np.float64)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize takes an (H, W) or (H, W, C) image; got shape {img.shape}")
    if (scale is None) == (shape is None):
        raise ValueError("imresize takes exactly one of scale and shape")
    if shape is None:
        if scale <= 0:
            raise ValueError(f"scale must be positive; got {scale}")
        scales = (float(scale), float(scale))
        shape = tuple(int(math.ceil(scale * n)) for n in img.shape[:2])
    else:
        shape = tuple(int(n) for n in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be two positive sizes; got {shape}")
        scales = (shape[0] / img.shape[0], shape[1] / img.shape[1])
    for axis in sorted((0, 1), key=lambda a: scales[a]):        # the smaller scale first, as MATLAB
        img = _resize_axis(img, axis, shape[axis], scales[axis], antialias)
    return img


def modcrop(img, scale):
    """The top-left part of img whose height and width are multiples of scale (the SR protocol's crop)."""
    h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
    if h == 0 or w == 0:
        raise ValueError(f"an image of {img.shape[0]}x{img.shape[1]} is smaller than the scale {scale}")
    return img[:h, :w]


def bicubic_degrade(clean, scale, quantize=True):
    """The SR input: clean (sizes multiples of scale) reduced by 1/scale, then enlarged back by scale, and
    rounded to 8 bits like every other corrupted input (quantize=False keeps the float result).

    With clean the 8-bit Y of Set5 this input scores 33.66 / 30.39 / 28.42 dB at x2 / x3 / x4 (Y, `scale`
    pixels shaved), the bicubic figures of the literature, to 0.01 dB."""
    if clean.shape[0] % scale or clean.shape[1] % scale:
        raise ValueError(f"super-resolution x{scale} needs sizes that are multiples of {scale}; got "
                         f"{clean.shape[0]}x{clean.shape[1]} (crop it with modcrop first)")
    small = imresize(clean, shape=(clean.shape[0] // scale, clean.shape[1] // scale))
    large = imresize(small, shape=clean.shape[:2])
    if quantize:
        large = np.floor(np.clip(large, 0.0, 1.0) * 255.0 + 0.5) / 255.0     # MATLAB's im2uint8 rounding
    return large.astype(clean.dtype if clean.dtype.kind == "f" else np.float32)
