"""JPEG deblocking's corruption (paper §5.4): encode and decode with Pillow's libjpeg (baseline IJG encoder).

A gray image is encoded as one component, so there is no chroma subsampling; an RGB image is encoded with
Pillow's default 4:2:0 subsampling unless `subsampling` says otherwise (the protocol of the literature
compresses the 8-bit Y channel, which is a gray image).
"""
import io

import numpy as np

from ..metrics import to_uint8


def jpeg_compress(clean, quality, subsampling=None):
    """clean (H, W) or (H, W, 3) in [0, 1] -> the decoded JPEG of its 8-bit form at `quality`, in [0, 1]."""
    from PIL import Image
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an integer in 1..100; got {quality}")
    clean = np.asarray(clean)
    if clean.ndim == 3 and clean.shape[2] == 1:
        return jpeg_compress(clean[..., 0], quality, subsampling)[..., None]
    image = Image.fromarray(to_uint8(clean))
    buffer = io.BytesIO()
    options = {} if subsampling is None or clean.ndim == 2 else {"subsampling": subsampling}
    image.save(buffer, format="JPEG", quality=quality, **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.asarray(decoded, dtype=np.float32) / np.float32(255.0)
    return out.astype(clean.dtype if clean.dtype.kind == "f" else np.float32, copy=False)
