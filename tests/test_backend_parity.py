"""The fast backends against the float64 NumPy reference: every primitive on drawn shapes (odd sizes,
strides, paddings), and a whole RED-Net's forward, gradients and Adam steps.

Backends: "cpu" (Numba + BLAS; im2col here, as these nets are narrower than its Winograd threshold),
"cpu-winograd2" (the same with Winograd F(2x2, 3x3) on every 3x3 stride-1 layer; F(4x4, 3x3), whose float32
trajectory over Adam steps is looser, is held to its own bounds in tests/test_fast_path.py); "cuda-emulation", the cuda backend's code with the CUDA kernels of
kernels/cuda compiled for the CPU (kernels/cuda/README.md), so the kernels' logic is checked without a GPU;
and "cuda" itself where CuPy and a GPU are present (skipped otherwise, with the reason).

Tolerances.  float64 kernels must agree with the reference to rounding (1e-10 relative): same formula,
other summation order.  float32 kernels sum K = C k^2 up to ~1e3 products per output: the error of a float32
dot product grows like sqrt(K) * 2^-24 relative to the sum of |terms|, about 1e-5 here, so float32 results
are compared at 1e-4 relative to the largest value of the reference array (5e-4 for a whole 10-layer net).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import redcore
from redcore.backends import get_backend
from relu_margin import draw_clear_of_kinks
from strategies import conv_case

ref = get_backend("numpy")


def _fast_backend(name):
    try:
        return get_backend(name)
    except RuntimeError as e:            # no CuPy, no GPU, or no C++ compiler: say which
        pytest.skip(str(e))


FAST = ["cpu", "cpu-winograd2", "cuda-emulation", "cuda"]


@pytest.fixture(params=FAST, scope="module")
def fast(request):
    return _fast_backend(request.param)


def host(a):
    """A backend array on the host (CuPy arrays have .get())."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def close(got, want, rtol, scale=None):
    """max |got - want| <= rtol * scale; scale defaults to max |want|, the size of the reference's values."""
    scale = np.abs(want).max() if scale is None else scale
    err = np.abs(host(got).astype(np.float64) - want).max() / (scale + 1e-30)
    assert err <= rtol, f"shape {want.shape}: max error {err:.2e} relative to {scale:.3g}, allowed {rtol:.0e}"


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-4)])
@given(case=conv_case(max_batch=3, max_channels=5, max_kernel=5, max_size=17))
def test_conv_primitives_match_reference(fast, dtype, rtol, case):
    n, c_in, c_out, k, s, p, h, w, seed = case
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, k, k))
    y = ref.conv2d(x, wt, s, p)
    dy = rng.standard_normal(y.shape)
    xd, wd, dyd = (fast.asarray(a, dtype) for a in (x, wt, dy))
    close(fast.conv2d(xd, wd, s, p), y, rtol)
    close(fast.conv2d_backward_input(dyd, wd, (h, w), s, p), ref.conv2d_backward_input(dy, wt, (h, w), s, p), rtol)
    close(fast.conv2d_backward_weight(dyd, xd, k, s, p), ref.conv2d_backward_weight(dy, x, k, s, p), rtol)
    # db[o] sums N H_o W_o terms that may cancel: a float32 sum's error is relative to sum |terms|, not to the
    # sum itself (with one output channel, max |db| can be far below it: a case failed at 1.8e-4 so measured)
    close(fast.bias_backward(dyd), ref.bias_backward(dy), rtol, scale=np.abs(dy).sum(axis=(0, 2, 3)).max())


@given(st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
       st.integers(0, 2**31 - 1))
def test_elementwise_kernels_match_reference(fast, shape, seed):
    rng = np.random.default_rng(seed)
    a, b, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    bias = rng.standard_normal(shape[1]).astype(np.float32)
    dev = lambda v: fast.asarray(v.copy(), np.float32)     # noqa: E731  (a fresh device copy)
    assert np.array_equal(host(fast.relu_(dev(a))), ref.relu_(a.copy()))
    assert np.array_equal(host(fast.add_relu(dev(a), dev(b))), ref.add_relu(a, b))
    assert np.array_equal(host(fast.relu_backward_(dev(g), dev(a))), ref.relu_backward_(g.copy(), a))
    assert np.array_equal(host(fast.add_bias(dev(a), dev(bias))), ref.add_bias(a.copy(), bias))
    assert np.array_equal(host(fast.add_bias(dev(a), dev(bias), relu=True)), ref.add_bias(a.copy(), bias, relu=True))


UNIT_ROUNDOFF_32 = 2.0 ** -24


def adam_step_bound(t, betas=(0.9, 0.999)):
    """The largest |m_hat| / sqrt(v_hat) of Adam's step t, whatever the gradients: by Cauchy-Schwarz,
    sum_s a_s |g_s| <= sqrt(sum_s a_s^2 / b_s) sqrt(sum_s b_s g_s^2) with the bias-corrected moments
    m_hat = sum_s a_s g_s and v_hat = sum_s b_s g_s^2.  The step alpha_t m_t / (sqrt(v_t) + eps) equals
    lr m_hat / (sqrt(v_hat) + eps), so it is at most lr times this (1, 1.0014, 1.0036 at t = 1, 2, 3)."""
    beta1, beta2 = betas
    s = np.arange(1, t + 1)
    a = (1 - beta1) * beta1 ** (t - s) / (1 - beta1 ** t)
    b = (1 - beta2) * beta2 ** (t - s) / (1 - beta2 ** t)
    return float(np.sqrt(np.sum(a * a / b)))


def adam_rounding_bound(w_new, lr, t, betas=(0.9, 0.999)):
    """How far a float32 Adam update may land from the float64 update of the same gradients, per weight.

    Storing the new weight rounds it: half an ulp, <= u |w| (u = 2^-24).  The step lr m_hat / (sqrt(v_hat)
    + eps) is at most lr adam_step_bound(t), and a kernel that keeps its hyper-parameters in float32 (the
    CUDA kernel's `real`) rounds beta2 by up to u, which 1 - beta2 magnifies to u beta2 / (1 - beta2) = 999 u
    relative in v and half of that in sqrt(v); beta1 likewise gives u beta1 / (1 - beta1) = 9 u in m.  The
    update's ~10 float32 operations and the storage of m and v over 3 steps add at most ~20 u more.  So
    |step error| <= (999/2 + 9 + 20) u lr adam_step_bound(t).  (Simulated in float32 over 20000 random
    gradient sequences: at most 115 u lr, nearly all of it beta2's rounding, 1.3e-5 relative in 1 - beta2.)"""
    beta1, beta2 = betas
    relative = 0.5 * beta2 / (1 - beta2) + beta1 / (1 - beta1) + 20
    return UNIT_ROUNDOFF_32 * (np.abs(w_new) + relative * lr * adam_step_bound(t, betas))


@pytest.mark.parametrize("cfg", [dict(), dict(skip_step=0, padding="valid"), dict(downsample=(1, 4)),
                                 dict(skip_kind="block", skip_step=1)],
                         ids=["skips-same", "red10-valid", "downsample", "block-skips"])
def test_network_and_adam_match_reference(fast, cfg):
    """Forward, every gradient and three Adam steps of a 10-layer net: float32 vs numpy float64.

    The Adam kernel is checked on its own: each float32 step must equal, to the rounding bound derived in
    adam_rounding_bound, a float64 Adam fed the same float32 gradients from the same weights ("mirror").

    Against the float64 reference's own trajectory, a weight whose exact gradient is 0 or below float32's
    resolution of the layer's gradient (<= 1e-6 of its largest entry, e.g. a tap that only ever sees zero
    padding, where a float32 sum leaves 1e-9 instead of 0) may rightly move differently: Adam's step
    m / (sqrt(v) + eps) has the same size whatever the gradient's magnitude, so the float32 net may step by
    up to lr adam_step_bound(t) where the reference does not, or the other way (Winograd's transforms leave
    ~1e-9 at such taps: differences of ~0.45 lr are seen).  Those weights are held to the sum of the two
    steps' bounds, 2 lr adam_step_bound(t); every other weight to 1e-4 of the largest value.  Such steps
    move the next forward by more than rounding (up to 6e-5 of the output, depending on the BLAS kernels'
    summation order), so after each step the reference takes the float32 net's weights: every step's forward
    and gradients are checked from the same weights, to rounding."""
    base = dict(depth=10, filters=8, seed=1, **cfg)
    n64 = redcore.REDNet(backend="numpy", dtype="float64", **base)
    n32 = redcore.REDNet(backend=fast, dtype="float32", **base)
    n32.load_state_dict({k: v.astype(np.float32) for k, v in n64.state_dict().items()})
    lr = 1e-3
    o64, o32 = redcore.Adam(n64.params, lr=lr), redcore.Adam(n32.params, lr=lr)
    mirror_params = {k: host(p).astype(np.float64) for k, p in n32.params.items()}
    mirror = redcore.Adam(mirror_params, lr=lr)
    rng = np.random.default_rng(2)
    unresolved = {k: np.zeros(p.shape, bool) for k, p in n64.params.items()}
    for step in range(3):
        t = step + 1
        # data that keeps every ReLU input clear of the kink, where float32 and float64 may rightly differ
        x = draw_clear_of_kinks(n64, lambda: rng.random((3, 1, 19, 21)))
        target = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
        y64, y32 = n64.forward(x), n32.forward(x.astype(np.float32))
        close(y32, y64, 5e-5)
        l64, d64 = redcore.mse_loss(y64, target)
        l32, d32 = redcore.mse_loss(y32, target.astype(np.float32), backend=fast)
        assert abs(l32 - l64) <= 1e-4 * l64
        dx64, dx32 = n64.backward(d64), n32.backward(d32)
        close(dx32, dx64, 5e-4)
        for k in n64.grads:
            close(n32.grads[k], n64.grads[k], 5e-4)
            unresolved[k] |= np.abs(n64.grads[k]) <= 1e-6 * np.abs(n64.grads[k]).max()
        for k, p in n32.params.items():               # the mirror starts this step from the float32 weights
            mirror_params[k][...] = host(p)
        mirror.step({k: host(g).astype(np.float64) for k, g in n32.grads.items()})
        o64.step(n64.grads)
        o32.step(n32.grads)
        for k in n64.params:
            got, want, tiny = host(n32.params[k]).astype(np.float64), n64.params[k], unresolved[k]
            err = np.abs(got - mirror_params[k])
            bound = adam_rounding_bound(mirror_params[k], lr, t)
            assert np.all(err <= bound), f"{k}: Adam step {t} off its float64 mirror by {(err / bound).max():.1f}x the bound"
            # (dead ReLU channels of this small random net leave whole filters at 0: up to ~1/4 of a layer)
            assert tiny.mean() < 0.5, f"{k}: {tiny.mean():.0%} of the gradient is below float32 resolution"
            close(np.where(tiny, want, got), want, 1e-4)
            assert np.all(np.abs(got - want)[tiny] <= 2 * lr * adam_step_bound(t)), k
        n64.load_state_dict({k: v.astype(np.float64) for k, v in n32.state_dict().items()})


@given(case=conv_case(max_batch=3, max_channels=5, max_kernel=5, max_size=17), budget=st.integers(1, 4000))
def test_conv_primitives_in_row_bands_match_reference(fast, case, budget):
    """Large images are processed in bands of output rows (so a photo's im2col buffer stays small): force
    bands with a tiny column budget and compare with the reference."""
    n, c_in, c_out, k, s, p, h, w, seed = case
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, k, k))
    y = ref.conv2d(x, wt, s, p)
    dy = rng.standard_normal(y.shape)
    xd, wd, dyd = (fast.asarray(a, np.float64) for a in (x, wt, dy))
    old, fast.cols_budget = fast.cols_budget, budget
    try:
        close(fast.conv2d(xd, wd, s, p), y, 1e-10)
        close(fast.conv2d_backward_input(dyd, wd, (h, w), s, p), ref.conv2d_backward_input(dy, wt, (h, w), s, p), 1e-10)
        close(fast.conv2d_backward_weight(dyd, xd, k, s, p), ref.conv2d_backward_weight(dy, x, k, s, p), 1e-10)
    finally:
        fast.cols_budget = old
