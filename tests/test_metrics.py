"""PSNR, SSIM and the BT.601 colour conversion against scikit-image (a test-only reference)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from redcore import metrics


def pair(h, w, c, noise, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if c == 1 else (h, w, c)
    ref = rng.random(shape)
    return np.clip(ref + noise * rng.standard_normal(shape), 0, 1), ref


@given(h=st.integers(11, 60), w=st.integers(11, 60), c=st.sampled_from([1, 3]),
       noise=st.floats(0.001, 0.5), seed=st.integers(0, 999))
def test_psnr_and_ssim_match_scikit_image(h, w, c, noise, seed):
    x, ref = pair(h, w, c, noise, seed)
    assert abs(metrics.psnr(x, ref) - peak_signal_noise_ratio(ref, x, data_range=1.0)) < 1e-4
    theirs = structural_similarity(ref, x, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                   data_range=1.0, channel_axis=-1 if c == 3 else None)
    assert abs(metrics.ssim(x, ref) - theirs) < 1e-4


@pytest.mark.parametrize("shave", [2, 3, 4])
def test_shave_drops_the_border(shave):
    x, ref = pair(40, 36, 1, 0.1, shave)
    inner = (slice(shave, -shave), slice(shave, -shave))
    assert metrics.psnr(x, ref, shave=shave) == pytest.approx(peak_signal_noise_ratio(ref[inner], x[inner], data_range=1))
    assert metrics.ssim(x, ref, shave=shave) == pytest.approx(structural_similarity(
        ref[inner], x[inner], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1), abs=1e-4)
    x[:shave] = 0          # whatever happens in the border does not count
    assert metrics.psnr(x, ref, shave=shave) == pytest.approx(peak_signal_noise_ratio(ref[inner], x[inner], data_range=1))


def test_known_values_and_errors():
    ref = np.full((16, 16), 0.5)
    assert metrics.psnr(ref + 1 / 255, ref) == pytest.approx(20 * np.log10(255), abs=1e-9)   # one gray level
    assert metrics.psnr(ref, ref) == float("inf") and metrics.ssim(ref, ref) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="different shapes"):
        metrics.psnr(ref, ref[:8])
    with pytest.raises(ValueError, match="nothing left after shaving 8"):
        metrics.psnr(ref, ref, shave=8)
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(ref[:8, :8], ref[:8, :8])


def test_ycbcr_is_matlabs_bt601():
    rgb = np.random.default_rng(0).random((9, 7, 3))
    np.testing.assert_allclose(metrics.rgb_to_ycbcr(rgb) * 255, rgb2ycbcr(rgb), atol=1e-10)
    np.testing.assert_allclose(metrics.ycbcr_to_rgb(metrics.rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
    np.testing.assert_allclose(metrics.rgb_to_y(np.ones((2, 2, 3))), 235 / 255)
    assert metrics.rgb_to_ycbcr(rgb.astype(np.float32)).dtype == np.float32
    np.testing.assert_array_equal(metrics.to_uint8(np.array([-1, 0.5 / 255, 1.5 / 255, 2])), [0, 1, 2, 255])
