"""Running a trained RED-Net on whole images: full frame or overlapping tiles, and the x8 self-ensemble.

Images are (H, W) or (H, W, C) float arrays in [0, 1]; the result has the same shape, clipped to [0, 1].
Tiles bound the memory of a large image: each tile of `tile` x `tile` pixels runs on its own, neighbours
overlap by `overlap` pixels, and the overlaps are blended with weights that ramp linearly across them, so no
seam shows.  The outer quarter of each overlap is dropped, so a net that sees at most overlap/4 pixels around
each output pixel (its receptive radius) gives exactly its full-frame result; a deeper one (RED30 sees 30
pixels) differs from it only near the seams, by what its zero padding there changes.

On a cpu net that cuts batches over threads, each image or tile runs as a batch of overlapping bands, one per
thread (single-threaded kernels on each core beat every kernel threaded over one image); a band reaches the
net's receptive radius beyond its cut, so the bands give exactly the whole frame's output.

The x8 ensemble (paper §3.5) runs the net on the 8 flips/rotations of the image, undoes each transform on the
output and averages.
"""
import weakref

import numpy as np

from .capture import CapturedForward, why_not_captured
from .symmetries import dihedral, inverse_dihedral

_captured = weakref.WeakKeyDictionary()     # net -> its CapturedForward (plans by input shape: tiles share one)


BAND_WASTE = 0.2     # bands run where their context adds at most this share of pixels (bench/README.md)


def _forward_chw(net, x):
    """The net on one (C, H, W) image, holding only the feature maps that feed its skips; on the cuda
    backend's tensor-core path as a captured plan per image or tile shape (redcore/capture.py); on a cpu
    backend that cuts batches over threads, as overlapping bands, one per thread (_band_plan)."""
    plan = _band_plan(net, x.shape[1:])
    if plan is None:
        return _forward_batch(net, x[None])[0]
    axis, length, bands = plan

    def part(a, b):                       # index of rows (axis 0) or columns (axis 1) a:b of a (C, H, W) array
        return (slice(None),) * (1 + axis) + (slice(a, b),)
    y = _forward_batch(net, np.stack([x[part(start, start + length)] for start, _, _ in bands]))
    out = np.empty(x.shape, y.dtype)
    for piece, (start, lo, hi) in zip(y, bands):
        out[part(lo, hi)] = piece[part(lo - start, hi - start)]
    return out


def _forward_batch(net, x):
    """The net on a batch (N, C, H, W) of equal images, returned as a NumPy array."""
    x = np.ascontiguousarray(x)
    if why_not_captured(net) is None:
        if net not in _captured:
            _captured[net] = CapturedForward(net)
        return _captured[net](x)
    return net.backend.to_numpy(net.forward(x, keep=False))


def _bands(size, parts, radius):
    """Cut an axis of `size` pixels into `parts` bands [lo, hi), each computed in a window of one common
    length that reaches `radius` pixels beyond the band on both sides, or to the image's edge where that is
    nearer.  An output pixel depends only on the input within `radius` of it, and where the window stops at
    the image's edge the padding is the whole frame's, so each band's pixels are exactly the whole frame's.
    Returns the window length and [(window start, lo, hi)] (a window runs from its start for that length)."""
    cuts = np.linspace(0, size, parts + 1).round().astype(int)
    reach = [(max(0, lo - radius), min(size, hi + radius)) for lo, hi in zip(cuts[:-1], cuts[1:])]
    length = int(max(b - a for a, b in reach))
    starts = [min(a, size - length) for a, _ in reach]     # a window that would run past the end ends there
    return length, [(int(start), int(lo), int(hi)) for start, lo, hi in zip(starts, cuts[:-1], cuts[1:])]


def _band_plan(net, shape):
    """(axis, window length, bands) that run one image of `shape` (H, W) as a batch of bands across the
    longer axis, one per thread of the net's batch split, so that each core runs single-threaded kernels on
    its band (faster than every kernel threaded over one image: bench/README.md); None where the image runs
    whole: a backend or net without the split, down-sampling (no fixed receptive radius), or an image so small
    that the bands' context would add more than BAND_WASTE of its pixels."""
    radius = getattr(net, "receptive_radius", None)
    parts = net.batch_threads() if radius is not None else 1
    if parts < 2:
        return None
    axis = 0 if shape[0] >= shape[1] else 1
    length, bands = _bands(shape[axis], parts, radius)
    if parts * length > (1 + BAND_WASTE) * shape[axis]:
        return None
    return axis, length, bands


def _blend_weights(start, length, size, overlap):
    """1-D weights of a tile covering [start, start + length) of an axis of `size` pixels.

    Along an edge inside the image the first overlap/4 pixels get weight 0 (their output saw the tile's zero
    padding instead of the image), then the weight rises linearly over the rest of the overlap, so that
    two neighbours' weights sum to 1 across it.  Along the image's own border the weight is 1.
    """
    margin = overlap // 4
    d = np.arange(length, dtype=np.float64)
    ramp = lambda dist: np.clip((dist - margin + 1) / (overlap - 2 * margin + 1), 0.0, 1.0)  # noqa: E731
    w = np.ones(length)
    if start > 0:
        w = np.minimum(w, ramp(d))
    if start + length < size:
        w = np.minimum(w, ramp(length - 1 - d))
    return w


def _tile_starts(size, tile, overlap):
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def run_tiled(net, x, tile=None, overlap=32, progress=None):
    """The net on a (C, H, W) image, full frame (tile=None) or in overlapping tile x tile pieces."""
    c, h, w = x.shape
    if tile is None or (h <= tile and w <= tile):
        out = _forward_chw(net, x)
        if progress is not None:
            progress()
        return out
    if tile <= 2 * overlap:
        raise ValueError(f"a tile of {tile} pixels must be larger than twice the overlap ({overlap})")
    out = np.zeros(x.shape, np.float64)
    total = np.zeros((h, w), np.float64)
    rows, cols = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    for i in rows:
        for j in cols:
            piece = x[:, i:i + tile, j:j + tile]
            weight = np.outer(_blend_weights(i, piece.shape[1], h, overlap),
                              _blend_weights(j, piece.shape[2], w, overlap))
            out[:, i:i + tile, j:j + tile] += _forward_chw(net, piece) * weight
            total[i:i + tile, j:j + tile] += weight
            if progress is not None:
                progress()
    return out / total


def count_tiles(shape, tile=None, overlap=32, ensemble=False):
    """How many forward passes restore_array makes for an image of `shape` (for progress bars)."""
    h, w = shape[:2]
    n = 1 if tile is None else len(_tile_starts(h, tile, overlap)) * len(_tile_starts(w, tile, overlap))
    return n * (8 if ensemble else 1)


def restore_array(net, image, ensemble=False, tile=None, overlap=32, progress=None):
    """net applied to image (H, W) or (H, W, C) in [0, 1]; returns the same shape, clipped to [0, 1].

    A gray (1-channel) net restores a colour image channel by channel.  ensemble=True averages the 8
    flips/rotations (§3.5).  progress, if given, is called once per forward pass.
    """
    image = np.asarray(image, np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"an image must be (H, W) or (H, W, C); got shape {image.shape}")
    chw = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    channels = net.config["channels"]
    if chw.shape[0] != channels:
        if channels != 1:
            raise ValueError(f"this network restores {channels}-channel images; got {chw.shape[0]} channels")
        out = np.stack([restore_array(net, chw[c], ensemble, tile, overlap, progress) for c in range(chw.shape[0])])
        return np.moveaxis(out, 0, -1) if image.ndim == 3 else out[0]
    transforms = range(8) if ensemble else (0,)
    out = np.zeros(chw.shape, np.float64)
    for t in transforms:
        y = run_tiled(net, np.ascontiguousarray(dihedral(chw, t)), tile, overlap, progress)
        out += inverse_dihedral(y, t)
    out = np.clip(out / len(transforms), 0.0, 1.0).astype(np.float32)
    return out[0] if image.ndim == 2 else np.moveaxis(out, 0, -1)
