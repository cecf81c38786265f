"""Pictures a person reads: image strips with a caption over each panel, and training curves with labelled
axes, units and values.  Pillow only (no plotting library at run time).

    strip = captioned_strip([noisy, restored, clean], ["corrupted 20.16 dB", "restored 28.43 dB", "clean"])
    image = training_curves(history, input_psnr=20.16)      # a PIL image: loss (log scale) and PSNR (dB)
    image = compared_curves([("RED20", history20), ("RED30", history30)], input_psnr=20.16)   # one line each
"""
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CAPTION = 16            # pixels of caption above each panel
GAP = 8                 # white pixels between panels


def _font(size=12):
    return ImageFont.load_default(size=size)


def _as_uint8(panel):
    a = np.asarray(panel)
    if a.dtype != np.uint8:
        a = np.floor(np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    return a


def captioned_strip(panels, captions):
    """Panels side by side, each under its caption, as a uint8 array ((H, W) gray, or (H, W, 3) when any panel
    is colour; panels of another height are enlarged by pixel repetition to the tallest, as a smaller input of
    super-resolution is).  Panels: uint8 arrays, or floats in [0, 1]."""
    panels = [_as_uint8(p) for p in panels]
    height = max(p.shape[0] for p in panels)
    color = any(p.ndim == 3 for p in panels)
    fitted = []
    for p in panels:
        if p.ndim == 3 and p.shape[2] in (2, 4):         # alpha is not shown: the colours are
            p = p[..., 0] if p.shape[2] == 2 else p[..., :3]
        if p.shape[0] != height:
            f = height // p.shape[0]
            p = np.repeat(np.repeat(p, f, axis=0), f, axis=1)[:height]
        if color and p.ndim == 2:
            p = np.dstack([p] * 3)
        fitted.append(p)
    width = sum(p.shape[1] for p in fitted) + GAP * (len(fitted) - 1)
    canvas = Image.new("RGB" if color else "L", (width, height + CAPTION), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for p, caption in zip(fitted, captions):
        canvas.paste(Image.fromarray(p), (x, CAPTION))
        while len(caption) > 1 and draw.textlength(caption, font=_font()) > p.shape[1] - 4:
            caption = caption[:-2] + "\u2026"           # shortened to its panel's width
        draw.text((x + 2, 1), caption, fill="black", font=_font())
        x += p.shape[1] + GAP
    return np.asarray(canvas)


def _ticks(low, high, count=5):
    """About `count` round values spanning [low, high]."""
    if high <= low:
        high = low + 1
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step + 1e-9) + 1)]


LABEL_GAP = 14       # pixels between two tick labels of the 11-point font, so that they do not overlap


def _log_ticks(lo, hi, min_gap):
    """Tick values of a log axis spanning 10^lo .. 10^hi whose labels stand at least min_gap (in log10 units)
    apart: the first of 1, 2, 5 x 10^k; 10^k; 10^k every 2, 3, 5 or 10 decades (wide ranges); every digit x 10^k,
    10^k and the even digits, or round values within a decade (narrow ones) that gives 3 such ticks, else 2,
    else the round values."""
    decades = range(math.floor(lo) - 1, math.ceil(hi) + 1)
    within = lambda values: [v for v in values if lo <= math.log10(v) <= hi]           # noqa: E731
    candidates = [within(m * 10.0 ** k for k in decades for m in (1, 2, 5))]
    candidates += [within(10.0 ** k for k in decades if k % every == 0) for every in (1, 2, 3, 5, 10)]
    candidates += [within(m * 10.0 ** k for k in decades for m in mantissas)
                   for mantissas in (range(1, 10), (1, 2, 4, 6, 8))]
    candidates += [[v for v in _ticks(10 ** lo, 10 ** hi) if v > 0 and lo <= math.log10(v) <= hi]]
    spaced = [c for c in candidates if all(math.log10(b / a) >= min_gap for a, b in zip(c, c[1:]))]
    for least in (3, 2):
        for values in spaced:
            if len(values) >= least:
                return values
    return candidates[-1]


def _plot(draw, box, series, ylabel, log=False, reference=None, reference_label="", x_range=None):
    """One panel of training_curves: axes, ticks with values, the curves, and an optional reference line.
    series: [(xs, ys, colour)], drawn on one pair of axes.  x_range: the steps the x axis spans (default: those
    of the series), so that panels over one training line up."""
    left, top, right, bottom = box
    font = _font(11)
    curves = [(np.asarray(xs, float), np.log10(np.maximum(ys, 1e-30)) if log else np.asarray(ys, float), colour)
              for xs, ys, colour in series]
    lo, hi = min(float(v.min()) for _, v, _ in curves), max(float(v.max()) for _, v, _ in curves)
    if reference is not None and not log:
        lo, hi = min(lo, reference), max(hi, reference)
    pad = 0.05 * (hi - lo or 1)
    lo, hi = lo - pad, hi + pad
    x0, x1 = map(float, x_range or (min(x.min() for x, _, _ in curves), max(x.max() for x, _, _ in curves)))
    x1 = x1 if x1 > x0 else x0 + 1
    to_x = lambda v: left + (v - x0) / (x1 - x0) * (right - left)           # noqa: E731
    to_y = lambda v: bottom - (v - lo) / (hi - lo) * (bottom - top)          # noqa: E731
    draw.rectangle([left, top, right, bottom], outline="black")
    if log:
        values_in = _log_ticks(lo, hi, min_gap=LABEL_GAP * (hi - lo) / (bottom - top))
        yticks = [math.log10(v) for v in values_in]
        ylabels = [f"{v:g}" for v in values_in]
    else:
        yticks = [t for t in _ticks(lo, hi) if lo <= t <= hi]
        ylabels = [f"{t:g}" for t in yticks]
    for t, label in zip(yticks, ylabels):
        y = to_y(t)
        draw.line([left - 4, y, left, y], fill="black")
        draw.line([left + 1, y, right - 1, y], fill=(225, 225, 225))
        draw.text((left - 6 - draw.textlength(label, font=font), y - 6), label, fill="black", font=font)
    for t in _ticks(x0, x1):
        if x0 <= t <= x1:
            x = to_x(t)
            draw.line([x, bottom, x, bottom + 4], fill="black")
            label = f"{t:g}"
            draw.text((x - draw.textlength(label, font=font) / 2, bottom + 6), label, fill="black", font=font)
    draw.text((left, top - 16), ylabel, fill="black", font=_font(12))
    if reference is not None:
        y = to_y(reference)
        for x in range(int(left), int(right), 8):
            draw.line([x, y, min(x + 4, right), y], fill=(120, 120, 120))
        below = y + 16 <= bottom                   # the label under its line, or over it at the panel's foot
        draw.text((left + 4, y + 2 if below else y - 15), reference_label, fill=(90, 90, 90), font=font)
    for xs, values, colour in curves:
        points = list(zip((to_x(v) for v in xs), (to_y(v) for v in values)))
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points[-1:]:                   # the last value, marked
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)


LOSS_LABEL = "training loss (MSE, Eq. 4; log scale)"
PSNR_LABEL = "validation PSNR (dB)"
# One colour per compared run (compared_curves): distinct in print and for the common colour-vision deficiencies.
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (230, 159, 0), (0, 0, 0)]


def _curve_panels(runs, input_psnr, width, loss_label, legend_rows):
    """The two panels training_curves and compared_curves draw, over one step axis.  runs: [(history,
    {"loss": colour, "val_psnr": colour}, suffix: a callable giving the panel label's tail from its points)]."""
    panel_h, margin_left, margin = 220, 70, 34
    top0 = margin + 16 * legend_rows
    canvas = Image.new("RGB", (width, top0 + 2 * panel_h + margin + 20), "white")
    draw = ImageDraw.Draw(canvas)
    steps = [e["step"] for history, _, _ in runs for e in history]
    for row, (key, label, log) in enumerate([("loss", loss_label, True), ("val_psnr", PSNR_LABEL, False)]):
        top = top0 + row * (panel_h + margin)
        box = (margin_left, top, width - 20, top + panel_h - 20)
        series, tail = [], ""
        for history, colours, suffix in runs:
            points = [(e["step"], e[key]) for e in history if e.get(key) is not None]
            if points:
                series.append((*zip(*points), colours[key]))
                tail += suffix(points)
        if not series:
            draw.text((margin_left, top - 16), f"{label}: no values yet", fill="black", font=_font(12))
            continue
        ref = input_psnr if key == "val_psnr" else None
        _plot(draw, box, series, label + tail, log, ref,
              f"corrupted input {input_psnr:.2f} dB" if ref is not None else "", (min(steps), max(steps)))
    draw.text((width // 2 - 40, canvas.height - 18), "training step", fill="black", font=_font(12))
    return canvas, draw


def training_curves(history, input_psnr=None, width=720):
    """A PIL image of two plots over the training step: the training loss on a log scale, and the validation
    PSNR in dB with the corrupted input's PSNR as a dashed reference line.  history: [{"step", "loss"[,
    "val_psnr"]}]."""
    last = lambda points: f"  last: {points[-1][1]:.4g} at step {points[-1][0]}"      # noqa: E731
    canvas, _ = _curve_panels([(history, {"loss": (200, 40, 40), "val_psnr": (40, 90, 200)}, last)],
                              input_psnr, width, LOSS_LABEL, legend_rows=0)
    return canvas


def compared_curves(runs, input_psnr=None, width=720, loss_label=LOSS_LABEL):
    """training_curves for several trainings on one pair of plots, each run a line of its own colour (PALETTE,
    in order) named in a legend above the plots.  runs: [(name, history)]."""
    if len(runs) > len(PALETTE):
        raise ValueError(f"compared_curves draws at most {len(PALETTE)} runs; got {len(runs)}")
    rows = (len(runs) + 1) // 2
    canvas, draw = _curve_panels([(history, {"loss": c, "val_psnr": c}, lambda points: "")
                                  for (_, history), c in zip(runs, PALETTE)], input_psnr, width, loss_label, rows)
    for i, ((name, _), colour) in enumerate(zip(runs, PALETTE)):     # the legend: two names a row
        x, y = 70 + (i % 2) * (width - 90) // 2, 6 + 16 * (i // 2)
        draw.line([x, y + 7, x + 24, y + 7], fill=colour, width=3)
        draw.text((x + 30, y), name, fill="black", font=_font(12))
    return canvas
