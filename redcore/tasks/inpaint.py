"""Inpainting's corruption (paper §5.6): text overlaid on the image, or random scratches.

Each returns (corrupted, mask): mask is True where the overlay touched a pixel.  The network sees only the
corrupted image, as in the paper; the mask is for metrics and for the classical baseline.  Text is drawn with
the scalable font that ships inside Pillow (ImageFont.load_default(size), Pillow >= 10.1 with FreeType), so the
corruption is the same on every machine; its anti-aliased edges blend the text colour into the image.
"""
import numpy as np

# Random words are drawn from these; any text would do, this keeps the corruption free of data files.
WORDS = ("image restoration deep convolutional encoder decoder network symmetric skip connections "
         "denoising super resolution deblurring inpainting compression artifacts residual learning very "
         "deep layers gradient training filters features details edges textures clean noisy corrupted "
         "the of and to in is with for on by from").split()


def _blend(clean, alpha, colors):
    """clean * (1 - alpha) + colour * alpha per pixel; alpha (H, W) in [0, 1], colors (H, W[, C])."""
    a = alpha if clean.ndim == 2 else alpha[..., None]
    return (clean * (1 - a) + colors * a).astype(clean.dtype, copy=False)


def _check_image(clean):
    clean = np.asarray(clean)
    if clean.ndim not in (2, 3) or clean.dtype.kind != "f":
        raise ValueError(f"inpainting takes an (H, W) or (H, W, 3) float image in [0, 1]; got "
                         f"{clean.dtype} of shape {clean.shape}")
    return clean


def overlay_text(clean, rng, font_size=20, line_spacing=1.6):
    """Lines of random words in random colours over the whole image, font_size pixels high (10 or 20 in the
    paper).  Returns (corrupted, mask)."""
    from PIL import Image, ImageDraw, ImageFont
    clean = _check_image(clean)
    h, w = clean.shape[:2]
    font = ImageFont.load_default(size=font_size)
    alpha = Image.new("L", (w, h), 0)
    colors = np.zeros(clean.shape, np.float32)
    draw = ImageDraw.Draw(alpha)
    y = float(rng.uniform(-font_size / 2, font_size / 2))
    while y < h:
        x = float(rng.uniform(-2 * font_size, font_size))
        while x < w:
            word = WORDS[rng.integers(len(WORDS))]
            layer = Image.new("L", (w, h), 0)
            ImageDraw.Draw(layer).text((x, y), word, fill=255, font=font)
            word_alpha = np.asarray(layer) > 0
            colors[word_alpha] = rng.uniform(0, 1, size=clean.shape[2:] or None)
            draw.text((x, y), word, fill=255, font=font)
            x += draw.textlength(word + " ", font=font)
        y += font_size * line_spacing
    alpha = np.asarray(alpha, np.float32) / 255.0
    return _blend(clean, alpha, colors), alpha > 0


# Scratches are drawn as on an image at least this many pixels a side (see scratches' `canvas`): Set12 and
# BSD68 images are all larger, so their corruption is as drawn on themselves.
SCRATCH_CANVAS = 256


def scratches(clean, rng, count=None, max_width=3, canvas=None):
    """Random thin strokes: `count` smooth random polylines (default one per 40x40 pixels of area), widths
    1..max_width pixels, random colours.  Returns (corrupted, mask).

    A stroke's segments grow with the size of the picture it is drawn on (up to 8% of its longer side), so a
    50x50 training patch drawn on its own would get short curly scribbles where a crop of a 256x256 test
    image shows long, nearly straight strokes.  `canvas` (H, W), at least the image's size, draws the strokes
    as on a picture of that size, count and lengths included, and gives the image a random window of them;
    the default is the image itself."""
    from PIL import Image, ImageDraw
    clean = _check_image(clean)
    h, w = clean.shape[:2]
    ch, cw = (h, w) if canvas is None else (int(canvas[0]), int(canvas[1]))
    if ch < h or cw < w:
        raise ValueError(f"the scratch canvas {ch}x{cw} is smaller than the {h}x{w} image")
    count = max(1, ch * cw // 1600) if count is None else int(count)
    alpha = np.zeros((ch, cw), np.float32)
    colors = np.zeros((ch, cw) + clean.shape[2:], np.float32)
    for _ in range(count):
        layer = Image.new("L", (cw, ch), 0)
        # A random walk whose heading turns a little at each of its segments: a curved scratch.
        x, y = rng.uniform(0, cw), rng.uniform(0, ch)
        heading, points = rng.uniform(0, 2 * np.pi), []
        for _ in range(int(rng.integers(4, 12))):
            points.append((x, y))
            step = rng.uniform(4, 0.08 * max(ch, cw) + 4)
            heading += rng.normal(0, 0.5)
            x, y = x + step * np.cos(heading), y + step * np.sin(heading)
        points.append((x, y))
        ImageDraw.Draw(layer).line(points, fill=255, width=int(rng.integers(1, max_width + 1)), joint="curve")
        stroke = np.asarray(layer) > 0
        colors[stroke] = rng.uniform(0, 1, size=clean.shape[2:] or None)
        alpha[stroke] = 1.0
    if (ch, cw) != (h, w):
        top, left = int(rng.integers(ch - h + 1)), int(rng.integers(cw - w + 1))
        alpha, colors = alpha[top:top + h, left:left + w], colors[top:top + h, left:left + w]
    return _blend(clean, alpha, colors), alpha > 0
