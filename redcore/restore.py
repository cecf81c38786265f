"""restore(): one call from a corrupted image to a restored one, with a shipped model or your own.

    import redcore
    clean = redcore.restore("photo.png", task="denoise", level=25)          # a path -> uint8 array
    big = redcore.restore(small_rgb, task="sr", level=3, ensemble=True)     # (H, W, 3) in [0, 1] -> (3H, 3W, 3)

Colour.  The shipped models are gray (one channel).  Denoising, deblurring and inpainting corrupt every
channel alike, so a colour image runs channel by channel; super-resolution and JPEG deblocking run on the
luma Y of BT.601 (the protocols of their papers) and carry Cb and Cr over (bicubic-enlarged for
super-resolution).  Super-resolution takes the low-resolution image and returns it `level` times larger: the
bicubic enlargement, then the network, as in the paper.

Large images run in overlapping tiles (`tile`, default 512 for images larger than that) so that memory
stays bounded; `ensemble=True` averages the 8 flips/rotations (§3.5).  Only inference code is imported here.
"""
import os

import numpy as np

from . import tasks
from .inference import count_tiles, restore_array
from .model import REDNet
from .metrics import rgb_to_ycbcr, ycbcr_to_rgb
from .tasks.resize import imresize
from .zoo import cards, find

LUMA_TASKS = ("sr", "jpeg")      # run on Y; the others run channel by channel
DEFAULT_TILE = 512


def _as_float(image):
    """(float32 image in [0, 1], 'uint8' | 'float' | 'path') for an array or a path; an alpha channel, if
    any, stays the last channel."""
    if isinstance(image, (str, os.PathLike)):
        from .data import read_image
        return read_image(image, "with alpha"), "path"
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ValueError(f"an image must be (H, W) gray or (H, W, 3) colour, with an alpha channel (H, W, 2) or "
                         f"(H, W, 4); got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0), "uint8"
    if arr.dtype.kind != "f":
        raise ValueError(f"an image array must be uint8 or float in [0, 1]; got {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("the image holds NaN or infinite values")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"a float image must hold values in [0, 1]; this one spans {arr.min():.4g}..{arr.max():.4g} "
                         "(divide 0..255 values by 255, or pass uint8)")
    return arr.astype(np.float32), "float"


def _from_float(img, form):
    if form in ("uint8", "path"):
        return np.floor(np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    return img.astype(np.float32)


def _whole(value):
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _tile_for(h, w, tile):
    """tile="auto": DEFAULT_TILE for images larger than it, else full frame; anything else as given."""
    if tile is None or (_whole(tile) and tile > 0):
        return tile
    if tile != "auto":
        raise ValueError(f"tile must be 'auto', None (full frame) or a positive number of pixels; got {tile!r:.40}")
    return DEFAULT_TILE if max(h, w) > DEFAULT_TILE else None


def restore_level(task, level):
    """The task's canonical level for restoring one image (its default when None): one level, not a range."""
    level = task.parse_level(task.default_level if level is None else level)
    if isinstance(level, (tuple, tasks.LevelMix)):
        raise ValueError(f"a range or mix of levels ({tasks.level_label(level)}) is for training a blind network; "
                         "restore takes the one level of this image (e.g. the noise sigma, --level 25)")
    return level


def model_for(task, level, model=None, backend="cpu"):
    """The network to use: `model` (a REDNet, a shipped name or a path), else the shipped one for the task."""
    if model is not None and not isinstance(model, (str, os.PathLike)):
        if not isinstance(model, REDNet):
            raise ValueError(f"model must be a REDNet, a shipped model's name or a weight file; got "
                             f"{type(model).__name__} {model!r:.40}")
        return model
    if model is None:
        model = find(task.name, level)
        if model is None:
            shipped = ", ".join(f"{c['task']} {c['level']}" for c in cards().values()) or "none yet"
            raise ValueError(f"no shipped model restores {task.name} at level {level} (shipped: {shipped}); "
                             "train one (examples/train.py) and pass its weight file (model= or --model)")
    return REDNet.load(model, backend=backend)


def restore(image, task, level=None, model=None, ensemble=False, tile="auto", overlap=32, backend="cpu",
            progress=None):
    """The restored image, in the form it came: uint8 in -> uint8 out, float in [0, 1] -> float32, a path ->
    uint8 array; an alpha channel ((H, W, 2), (H, W, 4), or in the file) comes back unchanged.  task: denoise,
    sr, jpeg, deblur or inpaint; level: the task's level (default: its usual one);
    model: a shipped name, a weight file or a REDNet (default: the shipped model for task and level);
    tile: "auto" (512 for larger images), None (full frame) or a size; progress: called once per tile."""
    task = tasks.get(task)
    level = restore_level(task, level)
    if not (_whole(overlap) and overlap >= 0):
        raise ValueError(f"overlap must be a whole number of pixels >= 0; got {overlap!r:.40}")
    img, form = _as_float(image)
    img, alpha = _split_alpha(img)
    net = model_for(task, level, model, backend)
    if task.name == "sr":
        # The network sharpens the bicubic enlargement (paper §5.3): enlarge first, all channels.
        img = np.clip(imresize(img, level), 0, 1).astype(np.float32)
    tile = _tile_for(*img.shape[:2], tile)
    if img.ndim == 3 and task.name in LUMA_TASKS and net.config["channels"] == 1:
        ycbcr = rgb_to_ycbcr(img)
        ycbcr[..., 0] = restore_array(net, ycbcr[..., 0], ensemble, tile, overlap, progress)
        out = np.clip(ycbcr_to_rgb(ycbcr), 0, 1)
    else:
        out = restore_array(net, img, ensemble, tile, overlap, progress)
    if alpha is not None:            # carried through; enlarged like the image for super-resolution
        alpha = np.clip(imresize(alpha, level), 0, 1) if task.name == "sr" else alpha
        out = np.dstack([out, alpha])
    return _from_float(out, form)


def _split_alpha(img):
    """(the image without its alpha channel, the alpha channel or None): (H, W, 2) and (H, W, 4) have one."""
    if img.ndim == 3 and img.shape[2] in (2, 4):
        color = img[..., 0] if img.shape[2] == 2 else img[..., :3]
        return np.ascontiguousarray(color), np.ascontiguousarray(img[..., -1])
    return img, None


def passes(image_shape, task, level, channels=1, ensemble=False, tile="auto", overlap=32):
    """How many forward passes restore() makes (for a progress bar)."""
    task = tasks.get(task)
    level = restore_level(task, level)
    h, w = image_shape[:2]
    if task.name == "sr":
        h, w = h * level, w * level
    tile = _tile_for(h, w, tile)
    colors = 1 if len(image_shape) == 2 else image_shape[2] - (image_shape[2] in (2, 4))    # alpha is not run
    runs = 1 if task.name in LUMA_TASKS or channels == 3 else colors
    return runs * count_tiles((h, w), tile, overlap, ensemble)
