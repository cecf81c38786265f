"""redcore.pictures: captioned image strips and training curves that a person can read."""
import numpy as np
import pytest

from redcore.pictures import CAPTION, GAP, captioned_strip, training_curves


def test_a_strip_puts_each_panel_under_its_caption():
    rng = np.random.default_rng(0)
    a, b = rng.random((40, 30)), rng.random((40, 20))
    strip = captioned_strip([a, b], ["corrupted 20.17 dB", "restored 29.88 dB"])
    assert strip.shape == (40 + CAPTION, 30 + GAP + 20) and strip.dtype == np.uint8
    np.testing.assert_array_equal(strip[CAPTION:, :30], np.floor(a * 255 + 0.5))
    np.testing.assert_array_equal(strip[CAPTION:, 30 + GAP:], np.floor(b * 255 + 0.5))
    assert strip[:CAPTION, :30].min() < 128 and strip[:CAPTION, 30 + GAP:].min() < 128     # ink in each caption
    small, rgb = np.zeros((10, 10), np.uint8), np.full((20, 20, 4), 200, np.uint8)
    mixed = captioned_strip([small, rgb], ["input", "a caption far too long for its panel"])
    assert mixed.shape == (20 + CAPTION, 20 + GAP + 20, 3)          # enlarged x2, alpha dropped, in colour
    assert (mixed[CAPTION:, 20 + GAP:] == 200).all()


def test_training_curves_draw_both_plots_and_the_input_reference():
    history = [{"step": s, "loss": 100.0 / s} for s in range(1, 101)]
    for entry in history[9::10]:
        entry["val_psnr"] = 24 + entry["step"] / 25
    def dashed_rows(image):
        a = np.asarray(image)
        gray = (a[..., 0] == 120) & (a[..., 1] == 120) & (a[..., 2] == 120)
        return np.flatnonzero(gray.sum(axis=1) > 20)
    low, high = training_curves(history, input_psnr=22.0), training_curves(history, input_psnr=25.0)
    a = np.asarray(low)
    red = (a[..., 0] == 200) & (a[..., 1] == 40)
    blue = (a[..., 0] == 40) & (a[..., 2] == 200)
    assert red.any() and blue.any()
    assert np.flatnonzero(red.any(axis=1)).max() < np.flatnonzero(blue.any(axis=1)).min()   # loss above PSNR
    assert len(dashed_rows(low)) == 1 and dashed_rows(low)[0] > dashed_rows(high)[0]        # 22 dB lower down


def test_both_curves_share_the_step_axis():
    """The validation points (every 10th step from 10) sit under the loss's steps, not stretched to the panel's
    left edge: the first is 9/99 of the panel width right of the loss curve's start (step 1)."""
    history = [{"step": s, "loss": 100.0 / s} for s in range(1, 101)]
    for entry in history[9::10]:
        entry["val_psnr"] = 24 + entry["step"] / 25
    a = np.asarray(training_curves(history, input_psnr=22.0))
    red_cols = np.flatnonzero(((a[..., 0] == 200) & (a[..., 1] == 40)).any(axis=0))
    blue_cols = np.flatnonzero(((a[..., 0] == 40) & (a[..., 2] == 200)).any(axis=0))
    width = red_cols.max() - red_cols.min()
    assert abs((blue_cols.min() - red_cols.min()) - width * 9 / 99) <= 3          # 3 px: line width and dot
    assert abs(blue_cols.max() - red_cols.max()) <= 3


def test_compared_curves_draw_each_run_in_its_colour_with_a_legend():
    from redcore.pictures import PALETTE, compared_curves
    runs = [(f"run {i}", [{"step": s, "loss": (i + 1) * 10.0 / s, "val_psnr": 20 + i + s / 50} for s in range(1, 51)])
            for i in range(3)]
    a = np.asarray(compared_curves(runs, input_psnr=19.0))
    for colour in PALETTE[:3]:
        rows = np.flatnonzero((a == colour).all(axis=2).any(axis=1))
        legend, plots = rows[rows < 40], rows[rows >= 40]
        assert len(legend) and len(plots)
        assert plots.max() - plots.min() > a.shape[0] / 3        # a line in the loss plot and one in the PSNR plot
    assert not (a == PALETTE[3]).all(axis=2).any()                # no fourth run drawn
    with pytest.raises(ValueError, match="at most"):
        compared_curves([("x", runs[0][1])] * (len(PALETTE) + 1))


@pytest.mark.parametrize("lo,hi", [(0.5, 8.9), (0.6, 2.4), (1.2, 1.9), (-1.3, 11.0), (1.01, 1.08)])
def test_log_axis_labels_never_overlap(lo, hi):
    """A loss falling from 3e8 to 5 (8 decades on a ~180 px panel) put 25 labels, 1-2-5 in each decade, 5 px
    apart; the ticks thin to powers of ten, every few decades where needed, so adjacent labels keep LABEL_GAP
    pixels of the panel apart, and an axis still gets at least 2 labelled ticks, 1-2-5 ones where they fit."""
    from redcore.pictures import LABEL_GAP, _log_ticks
    height = 180                                              # pixels of a panel's axis
    min_gap = LABEL_GAP * (hi - lo) / height
    values = _log_ticks(lo, hi, min_gap)
    logs = np.log10(values)
    assert len(values) >= 2 and ((logs >= lo) & (logs <= hi)).all()
    assert (np.diff(logs) >= min_gap - 1e-12).all(), values
    one_two_five = [m * 10.0 ** k for k in range(-3, 13) for m in (1, 2, 5) if lo <= np.log10(m * 10.0 ** k) <= hi]
    if len(one_two_five) >= 3 and np.log10(2) >= min_gap:    # they fit: they are the ticks
        np.testing.assert_allclose(values, one_two_five)
    else:
        assert len(values) < len(one_two_five) or len(one_two_five) < 3
