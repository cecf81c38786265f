"""The CUDA sources of kernels/cuda without a GPU: they compile with nvcc for sm_80 and sm_90, and their
logic, compiled for the CPU by the emulation harness (kernels/cuda/emulation.py), matches the NumPy
reference kernel by kernel, including sizes that do not divide the block size, and runs the training script.
(test_backend_parity.py runs the whole cuda backend on the emulation against the reference as well.)"""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import load_example

from redcore import cuda_kernels
from redcore.backends import get_backend
from redcore.cuda_kernels.emulation import EmulatedRuntime, compiler, kernel_signatures

pytestmark = pytest.mark.skipif(compiler() is None, reason="the CUDA emulation needs a C++20 compiler (g++)")
ref = get_backend("numpy")


@pytest.fixture(scope="module")
def runtime():
    return EmulatedRuntime()


def find_nvrtc():
    """libnvrtc (the compiler CuPy's RawModule uses on a GPU): the nvidia-cuda-nvrtc-cu12 wheel's, or the
    system's; None where neither is installed."""
    import ctypes.util
    import glob
    import os
    try:
        import nvidia.cuda_nvrtc
        found = sorted(glob.glob(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib", "libnvrtc.so.*")))
        if found:
            return found[0]
    except ImportError:
        pass
    return ctypes.util.find_library("nvrtc")


def nvrtc_compile(library, source, options):
    """(status, log) of compiling `source` with NVRTC and `options`, as cupy.RawModule does (no GPU needed)."""
    import ctypes
    lib = ctypes.CDLL(library)
    program = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"kernel.cu", 0, None, None) == 0
    encoded = [o.encode() for o in options]
    status = lib.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(program, log)
    lib.nvrtcDestroyProgram(ctypes.byref(program))
    return status, log.value.decode(errors="replace")


@pytest.mark.skipif(find_nvrtc() is None, reason="libnvrtc is not installed (pip install nvidia-cuda-nvrtc-cu12)")
@pytest.mark.parametrize("source", cuda_kernels.SOURCES)
@pytest.mark.parametrize("real", ["float", "double"])
def test_sources_compile_with_nvrtc_and_no_toolkit_headers(source, real):
    """On a GPU CuPy compiles the sources with NVRTC, which finds no CUDA header unless a toolkit lies beside it
    (a pip-installed CuPy has none): so the sources include none, and compile with NVRTC's own built-ins for
    sm_80 and sm_90 here, with no include path."""
    for arch in ("compute_80", "compute_90"):
        status, log = nvrtc_compile(find_nvrtc(), cuda_kernels.read_source(source), [f"-Dreal={real}",
                                                                                     f"--gpu-architecture={arch}"])
        assert status == 0, log


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("source", cuda_kernels.SOURCES)
@pytest.mark.parametrize("real", ["float", "double"])
def test_sources_compile_with_nvcc(source, real, tmp_path):
    out = tmp_path / "kernels.fatbin"
    cmd = ["nvcc", "--fatbin", f"-Dreal={real}", "-Werror", "all-warnings",
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
           cuda_kernels.source_path(source), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0


def test_every_kernel_is_found_and_launchable(runtime):
    names = {name for src in cuda_kernels.SOURCES for name, _, _ in kernel_signatures(cuda_kernels.read_source(src))}
    assert names == {"im2col", "col2im", "add_bias", "relu", "add_relu", "relu_backward", "bias_backward",
                     "mse_loss", "sum_partials", "add_inplace", "copy", "zero", "adam_update",
                     "conv3x3_wgrad_reduce"} | {
        f"conv3x3{kind}_{operands}{width}" for operands in ("tf32", "bf16") for kind, widths in
        (("", ("", "_n32", "_n64")), ("_wgrad", ("",)), ("_pack", ("",))) for width in widths}
    for src in cuda_kernels.SOURCES:
        for dtype in (np.float32, np.float64):
            module = runtime.module(src, dtype)
            for name, _, _ in module.kernels:
                assert module.get_function(name).name == name


def test_launches_are_checked_like_a_strict_cupy(runtime):
    relu = runtime.module("elementwise.cu", np.float32).get_function("relu")
    y = np.array([-1.0, 2.0], np.float32)
    with pytest.raises(TypeError, match="must be a NumPy int64 scalar"):
        relu((1,), (32,), (y, 2))                                   # a Python int: CuPy would misread it
    with pytest.raises(TypeError, match="C-contiguous float32 array"):
        relu((1,), (32,), (y.astype(np.float64), np.int64(2)))
    with pytest.raises(TypeError, match="C-contiguous float32 array"):
        relu((1,), (32,), (np.zeros((4, 4), np.float32)[:, ::2], np.int64(2)))
    with pytest.raises(TypeError, match="takes 2 arguments"):
        relu((1,), (32,), (y,))
    relu((1,), (32,), (y, np.int64(2)))
    np.testing.assert_array_equal(y, [0, 2])


@settings(max_examples=12)     # each example starts some 10^4 OS threads
@given(n=st.integers(1, 3), c=st.integers(1, 4), plane=st.integers(1, 700), seed=st.integers(0, 2**31 - 1))
def test_reductions_with_sizes_that_do_not_divide_the_block(runtime, n, c, plane, seed):
    """bias_backward (one block per channel) and mse_loss (block sums, then sum_partials adds them in one block)
    use shared memory and __syncthreads: the emulation runs their 256 threads concurrently at a barrier."""
    rng = np.random.default_rng(seed)
    be = get_backend("cuda-emulation")
    dy = rng.standard_normal((n, c, plane, 1))
    np.testing.assert_allclose(be.bias_backward(dy), ref.bias_backward(dy), rtol=1e-12, atol=1e-12)
    pred, target = rng.standard_normal((n, c, plane, 1)), rng.standard_normal((n, c, plane, 1))
    for reduction in ("batch", "mean"):
        loss, dpred = be.mse_loss(pred, target, reduction)
        loss_ref, dpred_ref = ref.mse_loss(pred, target, reduction)
        assert loss == pytest.approx(loss_ref, rel=1e-12)
        np.testing.assert_allclose(dpred, dpred_ref, rtol=1e-14)


def test_loss_of_more_blocks_than_one_block_has_threads(runtime):
    """sum_partials adds the block sums of mse_loss with one block of 256 threads, each taking every 256th sum:
    301 blocks make some threads take two.  In double, each of the T squares errs by at most 2 2^-53 relative
    (difference, square) and a sum of T positive terms by T 2^-53, whatever the order: the bound below.  And it
    is the same on a second run (fixed order)."""
    be = get_backend("cuda-emulation")
    rng = np.random.default_rng(5)
    pred, target = (rng.standard_normal((1, 1, 301, 256)) for _ in range(2))
    loss, _ = be.mse_loss(pred, target, "mean")
    want = np.mean((pred - target) ** 2)
    assert abs(loss - want) <= (pred.size + 2) * 2.0 ** -53 * want
    assert be.mse_loss(pred, target, "mean")[0] == loss


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_adam_kernel_matches_the_reference_update(dtype, rtol):
    be = get_backend("cuda-emulation")
    rng = np.random.default_rng(0)
    p, g, m = (rng.standard_normal(1001).astype(dtype) for _ in range(3))
    v = rng.random(1001).astype(dtype)
    want = [a.astype(np.float64) for a in (p, g, m, v)]
    be.adam_update_(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8)
    ref.adam_update_(want[0], want[1], want[2], want[3], 1e-3, 0.9, 0.999, 1e-8)
    for got, exp in ((p, want[0]), (m, want[2]), (v, want[3])):
        np.testing.assert_allclose(got, exp, rtol=rtol, atol=rtol)


def test_training_script_runs_on_the_emulated_cuda_backend_like_the_cpu(tmp_path, monkeypatch):
    """The whole training code path (forward, loss kernel, backward, Adam kernel, validation, checkpoint) on the
    emulated CUDA kernels gives the cpu backend's losses (both exact float32: --precision fp32)."""
    monkeypatch.setenv("REDCORE_DATA", "/nonexistent-data-folder")
    train_denoise = load_example("train_denoise")
    tiny = ["--depth", "4", "--filters", "4", "--batch", "2", "--patch", "20", "--val-crop", "32",
            "--val-every", "3", "--ckpt-every", "3", "--steps", "3", "--no-progress"]
    summaries = {}
    for backend in ("cpu", "cuda-emulation"):
        out = tmp_path / backend
        assert train_denoise.main(tiny + ["--backend", backend, "--precision", "fp32", "--out", str(out)]) == 0
        summaries[backend] = json.loads((out / "summary.json").read_text())
        assert (out / "checkpoint.npz").exists()
    assert summaries["cuda-emulation"]["final_loss"] == pytest.approx(summaries["cpu"]["final_loss"], rel=1e-4)
    assert summaries["cuda-emulation"]["val_psnr"] == pytest.approx(summaries["cpu"]["val_psnr"], abs=1e-3)


# ---- the tensor-core convolutions (conv_tc.cu) ------------------------------------------------------------
# Rounding to nearest errs by at most u relative: TF32 keeps 10 mantissa bits (u = 2^-11), bfloat16 7 (2^-8);
# a product of two rounded operands then by (1 + u)^2 - 1 = 2u + u^2 of |w x| (exact in float: 11 x 11 or
# 8 x 8 significant bits).
UNIT = {"tf32": 2.0 ** -11, "bf16": 2.0 ** -8}
TF32_UNIT = UNIT["tf32"]


def product_error(operands):
    return 2 * UNIT[operands] + UNIT[operands] ** 2


def tensor_core_conv(x, w, b, pad, relu=False, block_channels=None, operands="tf32"):
    """conv_tc.cu's conv3x3 on the emulation, in and out in NCHW / PyTorch layouts (float64 in)."""
    kernels = get_backend("cuda-emulation").kernels
    n, c, h, wd = x.shape
    k = w.shape[0]
    y = np.zeros((n, h + 2 * pad - 2, wd + 2 * pad - 2, k), np.float32)
    kernels.conv3x3(y, np.ascontiguousarray(x.transpose(0, 2, 3, 1), np.float32),
                         np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(9, c, k), np.float32),
                         b.astype(np.float32), pad, relu, block_channels=block_channels, operands=operands)
    return y.transpose(0, 3, 1, 2).astype(np.float64)


def tf32_bound(x, w, b, pad, c, operands="tf32"):
    """|tensor-core result - exact| per output: each product errs by at most 2u + u^2 of |w x|, and the float
    sum of 9 C terms and the bias by at most (9 C + 1) 2^-24 of the sum of their magnitudes:
    (2u + u^2 + (9 C + 1) 2^-24) times conv(|x|, |w|) + |b|."""
    magnitude = ref.conv2d(np.abs(x), np.abs(w), 1, pad) + np.abs(b)[None, :, None, None]
    return (product_error(operands) + (9 * c + 1) * 2.0 ** -24) * magnitude


@pytest.mark.parametrize("n,h,w,c,k,pad,relu", [(2, 9, 19, 13, 20, 1, False), (1, 5, 5, 1, 1, 0, True),
                                                (1, 7, 6, 8, 16, 2, False), (1, 8, 8, 64, 64, 1, True),
                                                (1, 4, 17, 128, 128, 1, False), (3, 3, 3, 5, 3, 0, False)])
@pytest.mark.parametrize("block_channels", [16, 32, 64])
@pytest.mark.parametrize("operands", ["tf32", "bf16"])
def test_tensor_core_conv_matches_the_reference_within_tf32_rounding(n, h, w, c, k, pad, relu, block_channels,
                                                                     operands):
    """Sizes that do not divide the tiles (16 pixels, 16 / 32 / 64 channels, 8 or 16 input channels), batch 1,
    one channel, 64 and 128, every padding RED uses (valid 0, same 1, full 2); bias and ReLU fused; each of
    the three block widths, both operand types."""
    rng = np.random.default_rng(c * 31 + k)
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3)), rng.standard_normal(k)
    want = ref.conv2d(x, wt, 1, pad) + b[None, :, None, None]
    bound = tf32_bound(x, wt, b, pad, c, operands)
    if relu:
        want = np.maximum(want, 0)                    # max(., 0) is 1-Lipschitz: the bound still holds
    got = tensor_core_conv(x, wt, b, pad, relu, block_channels, operands)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= bound), f"{(np.abs(got - want) / bound).max():.2f}x the bound"
    # and rounded they are: float32 operands would err by ~1e-7 of the magnitude, these by ~1e-4 (tf32) or
    # ~1e-3 (bf16); bf16 errs more than tf32 would (a tf32 bound would not hold it)
    magnitude = bound / (product_error(operands) + (9 * c + 1) * 2.0 ** -24)
    assert (np.abs(got - want) / magnitude).max() > (1e-5 if operands == "tf32" else 1e-4)


@pytest.mark.parametrize("pad", [0, 1])
def test_tensor_core_conv_gives_the_input_gradient_with_flipped_weights(pad):
    """dL/dx of a stride-1 conv with padding p is the conv of dy with the weights flipped and transposed,
    w'[c, o, u, v] = w[o, c, 2 - u, 2 - v], padding 2 - p (the transposed convolution's full padding for a
    valid conv): the same kernel serves the backward pass."""
    rng = np.random.default_rng(pad)
    n, c, k, h, w = 2, 6, 10, 9, 11
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3))
    dy = rng.standard_normal(ref.conv2d(x, wt, 1, pad).shape)
    flipped = np.ascontiguousarray(wt[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    want = ref.conv2d_backward_input(dy, wt, (h, w), 1, pad)
    got = tensor_core_conv(dy, flipped, np.zeros(c), 2 - pad)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= tf32_bound(dy, flipped, np.zeros(c), 2 - pad, k))


@pytest.mark.parametrize("pad", [0, 1, 2])
def test_tensor_core_conv_reads_nchw_maps_and_the_models_weight_layouts(pad):
    """The training path calls the kernel on the model's (N, C, H, W) maps with the weights as stored: a conv
    weight (K, C, 3, 3) (wlayout 1), or a (C, K, 3, 3) weight read flipped (wlayout 2), which gives the input
    gradient of the conv with that weight and the transposed conv's forward.  Same TF32 bound."""
    kernels = get_backend("cuda-emulation").kernels
    rng = np.random.default_rng(10 + pad)
    n, c, k, h, w = 2, 11, 18, 7, 21
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3)), rng.standard_normal(k)
    y = np.zeros((n, k, h + 2 * pad - 2, w + 2 * pad - 2), np.float32)
    kernels.conv3x3(y, x.astype(np.float32), wt.astype(np.float32), b.astype(np.float32), pad, False,
                         nhwc=False, wlayout=1)
    want = ref.conv2d(x, wt, 1, pad) + b[None, :, None, None]
    assert np.all(np.abs(y - want) <= tf32_bound(x, wt, b, pad, c))
    # wlayout 2: wt2 (C, K', 3, 3) read flipped is the conv with w'[o, c, u, v] = wt2[c, o, 2 - u, 2 - v]
    wt2 = rng.standard_normal((c, 5, 3, 3))
    flipped = np.ascontiguousarray(wt2.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    y2 = np.zeros((n, 5) + y.shape[2:], np.float32)
    kernels.conv3x3(y2, x.astype(np.float32), wt2.astype(np.float32), np.zeros(5, np.float32), pad, True,
                         nhwc=False, wlayout=2)
    want2 = np.maximum(ref.conv2d(x, flipped, 1, pad), 0)
    assert np.all(np.abs(y2 - want2) <= tf32_bound(x, flipped, np.zeros(5), pad, c))


def wgrad_bound(x, dy, pad, operands="tf32"):
    """|tensor-core dW - exact| per element: each product of rounded operands errs by <= 2u + u^2 of |x dy|,
    and however the tensor cores and the split reduction order the float sum of its T = N H_o W_o terms, it
    errs by <= T 2^-24 of the sum of their magnitudes: (2u + u^2 + T 2^-24) conv2d_backward_weight(|dy|, |x|)."""
    terms = dy.shape[0] * dy.shape[2] * dy.shape[3]
    return (product_error(operands) + terms * 2.0 ** -24) * ref.conv2d_backward_weight(np.abs(dy), np.abs(x), 3, 1, pad)


@pytest.mark.parametrize("n,h,w,c,k,pad", [(2, 9, 19, 13, 20, 1), (1, 5, 5, 1, 1, 0), (3, 6, 7, 17, 3, 2),
                                           (1, 8, 8, 64, 64, 1), (2, 4, 33, 1, 16, 1)])
@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("operands", ["tf32", "bf16"])
def test_tensor_core_weight_gradient_matches_the_reference_within_tf32_rounding(n, h, w, c, k, pad, nhwc, operands):
    """conv3x3_wgrad_tf32 + conv3x3_wgrad_reduce: dW and the fused bias gradient on shapes that do not divide
    the tiles (4 x 16 pixels, 16 channels), one channel in or out, several images and split partial sums,
    both activation layouts and both weight layouts; the bias gradient sums float32 dy in float (T 2^-24)."""
    kernels = get_backend("cuda-emulation").kernels
    rng = np.random.default_rng(n * 1000 + c * 10 + k + pad)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32).astype(np.float64)
    dy = rng.standard_normal((n, k, h + 2 * pad - 2, w + 2 * pad - 2)).astype(np.float32).astype(np.float64)
    to_layout = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1), np.float32)) if nhwc else \
        (lambda a: a.astype(np.float32))
    splits = kernels.wgrad_splits(n, dy.shape[2], dy.shape[3], c, k)
    want_w, want_b = ref.conv2d_backward_weight(dy, x, 3, 1, pad), dy.sum(axis=(0, 2, 3))
    terms = n * dy.shape[2] * dy.shape[3]
    for wlayout in (0, 1):
        dw = np.full((9, c, k) if wlayout == 0 else (k, c, 3, 3), np.nan, np.float32)
        db = np.full(k, np.nan, np.float32)
        kernels.conv3x3_wgrad(dw, db, to_layout(x), to_layout(dy), pad, nhwc=nhwc, wlayout=wlayout, operands=operands)
        got = dw.transpose(2, 1, 0).reshape(k, c, 3, 3) if wlayout == 0 else dw
        assert np.all(np.abs(got - want_w) <= wgrad_bound(x, dy, pad, operands)), f"{splits} splits"
        assert np.all(np.abs(db - want_b) <= terms * 2.0 ** -24 * np.abs(dy).sum(axis=(0, 2, 3)))


def rounded(a, operands):
    """a rounded as the kernels round operands: TF32 by cvt.rna (to nearest, ties away from zero: add half an
    ulp of 13 dropped bits to the magnitude), bfloat16 to nearest even (16 dropped bits)."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    if operands == "tf32":
        bits = (bits + 0x1000) & 0xFFFFE000
    else:
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("operands", ["tf32", "bf16"])
def test_tensor_cores_see_exactly_the_rounded_operands(operands):
    """Sharper than the bounds above: against the float64 convolution of the operands rounded as the PTX says
    (cvt.rna for TF32, nearest even for bf16), the kernels err only by their float sums, (T + 1) 2^-24 of the
    magnitude.  An operand passed unrounded (which the tensor cores truncate) or rounded the wrong way fails."""
    kernels = get_backend("cuda-emulation").kernels
    rng = np.random.default_rng(21)
    n, c, k, h, w = 2, 24, 20, 6, 19
    x, wt, dy = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3)), rng.standard_normal((n, k, h, w))
    x, wt, dy = (a.astype(np.float32).astype(np.float64) for a in (x, wt, dy))
    y = np.zeros((n, k, h, w), np.float32)
    kernels.conv3x3(y, x.astype(np.float32), wt.astype(np.float32), np.zeros(k, np.float32), 1, False, nhwc=False,
                    wlayout=1, operands=operands)
    want = ref.conv2d(rounded(x, operands), rounded(wt, operands), 1, 1)
    assert np.all(np.abs(y - want) <= (9 * c + 1) * 2.0 ** -24 * ref.conv2d(np.abs(x), np.abs(wt), 1, 1) * 1.01)
    dw, db = np.zeros((k, c, 3, 3), np.float32), np.zeros(k, np.float32)
    kernels.conv3x3_wgrad(dw, db, x.astype(np.float32), dy.astype(np.float32), 1, nhwc=False, wlayout=1,
                          operands=operands)
    want = ref.conv2d_backward_weight(rounded(dy, operands), rounded(x, operands), 3, 1, 1)
    terms = n * h * w
    assert np.all(np.abs(dw - want) <= (terms + 1) * 2.0 ** -24 * ref.conv2d_backward_weight(np.abs(dy), np.abs(x), 3, 1, 1) * 1.01)


@pytest.mark.parametrize("operands", ["tf32", "bf16"])
@pytest.mark.parametrize("wlayout", [0, 1, 2])
def test_packed_weights_are_the_rounded_operands_in_the_staging_order(operands, wlayout):
    """conv3x3_pack: row (chunk, tap, o) of the packed copy holds the K rounded operands W(tap, chunk K + k, o),
    zero beyond C and beyond K (rows up to K rounded to 64), a bf16 pair to a 32-bit word, low channel low."""
    kernels = get_backend("cuda-emulation").kernels
    rng = np.random.default_rng(wlayout)
    c, k, op_k = 11, 70, {"tf32": 8, "bf16": 16}[operands]
    taps = rng.standard_normal((9, c, k))                      # W(tap, c, o), then in the layout asked for
    w = {0: taps, 1: taps.reshape(3, 3, c, k).transpose(3, 2, 0, 1),
         2: taps[::-1].reshape(3, 3, c, k).transpose(2, 3, 0, 1)}[wlayout]
    packed = kernels.conv3x3_pack(np.ascontiguousarray(w, np.float32), wlayout, c, k, operands)
    chunks = -(-c // op_k)
    want = np.zeros((chunks * op_k, 9, 128))
    want[:c, :, :k] = rounded(taps, operands).transpose(1, 0, 2)
    want = want.reshape(chunks, op_k, 9, 128).transpose(0, 2, 3, 1)          # (chunk, tap, o, k)
    got = packed.view(np.float32) if operands == "tf32" else \
        (packed.view(np.uint16).astype(np.uint32) << 16).view(np.float32)    # little-endian: low half first
    np.testing.assert_array_equal(got.reshape(want.shape), want)


def test_tensor_core_weight_gradient_is_deterministic_and_accumulates():
    """The partial sums are added in a fixed order: two runs give the same bits.  accumulate=True adds the
    gradient to what dw and db hold (micro-batches, a layer used twice)."""
    kernels = get_backend("cuda-emulation").kernels
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((3, 8, 9, 9)).astype(np.float32), rng.standard_normal((3, 16, 9, 9)).astype(np.float32)
    assert kernels.wgrad_splits(3, 9, 9, 8, 16) == 9            # 3 images x 3 x 1 tiles: a split per tile
    runs = []
    for _ in range(2):
        dw, db = np.zeros((16, 8, 3, 3), np.float32), np.zeros(16, np.float32)
        kernels.conv3x3_wgrad(dw, db, x, dy, 1, nhwc=False, wlayout=1)
        runs.append((dw, db))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    start_w, start_b = rng.standard_normal((16, 8, 3, 3)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    dw, db = start_w.copy(), start_b.copy()
    kernels.conv3x3_wgrad(dw, db, x, dy, 1, nhwc=False, wlayout=1, accumulate=True)
    # float addition of the same two float32 values: exactly the sum rounded once
    np.testing.assert_array_equal(dw, start_w + runs[0][0])
    np.testing.assert_array_equal(db, start_b + runs[0][1])


def test_the_fastest_width_is_timed_once_per_shape_where_there_is_a_clock():
    """On a GPU the launcher times the three block widths once per shape and keeps the fastest (as
    cudnn.benchmark does); the emulation has no clock worth trusting and takes the narrowest width >= K."""
    from redcore.backends.cuda_backend import CudaKernels
    calls = []

    class Clocked(EmulatedRuntime):
        def time(self, run):               # the widths are tried in the order 16, 32, 64: 32 is fastest
            calls.append(run)
            run()
            return [3.0, 1.0, 2.0][len(calls) - 1]

    for runtime, k, want in ((EmulatedRuntime(), 20, 32), (EmulatedRuntime(), 70, 64), (EmulatedRuntime(), 3, 16)):
        kernels = CudaKernels(runtime)
        x, w, b = np.zeros((1, 4, 5, 5), np.float32), np.zeros((k, 4, 3, 3), np.float32), np.zeros(k, np.float32)
        kernels.conv3x3(np.zeros((1, k, 5, 5), np.float32), x, w, b, 1, False, nhwc=False, wlayout=1)
        assert list(kernels._choices.values()) == [want]
    kernels = CudaKernels(Clocked())
    x, w, b = np.zeros((1, 4, 5, 5), np.float32), np.zeros((8, 4, 3, 3), np.float32), np.zeros(8, np.float32)
    for _ in range(3):
        kernels.conv3x3(np.zeros((1, 8, 5, 5), np.float32), x, w, b, 1, False, nhwc=False, wlayout=1)
    assert len(calls) == 3 and list(kernels._choices.values()) == [32]


def test_tensor_core_launchers_refuse_mismatched_shapes():
    kernels = get_backend("cuda-emulation").kernels
    x = np.zeros((1, 4, 6, 6), np.float32)
    with pytest.raises(ValueError, match="conv3x3 takes tf32 or bf16 operands, float32"):
        kernels.conv3x3(np.zeros((1, 8, 6, 6), np.float32), x, np.zeros((8, 5, 3, 3), np.float32),
                             np.zeros(8, np.float32), 1, False, nhwc=False, wlayout=1)
    with pytest.raises(ValueError, match="conv3x3_wgrad takes tf32 or bf16 operands, float32"):
        kernels.conv3x3_wgrad(np.zeros((8, 4, 3, 3), np.float32), np.zeros(8, np.float32), x,
                                   np.zeros((1, 8, 5, 6), np.float32), 1, nhwc=False, wlayout=1)
    y, w, b = np.zeros((1, 8, 6, 6), np.float32), np.zeros((8, 4, 3, 3), np.float32), np.zeros(8, np.float32)
    with pytest.raises(ValueError, match=r"addend \(1, 8, 5, 6\)"):           # a skip of the wrong size
        kernels.conv3x3(y, x, w, b, 1, True, nhwc=False, wlayout=1, addend=np.zeros((1, 8, 5, 6), np.float32))
    with pytest.raises(ValueError, match="relu_sum only with an addend"):
        kernels.conv3x3(y, x, w, b, 1, True, nhwc=False, wlayout=1, relu_sum=True)


def test_epilogue_bits_are_the_kernels_own():
    """CudaKernels spells the epilogue's steps with the bits conv_tc.cu defines (EPI_*), one for one."""
    from redcore.backends import cuda_backend
    defined = dict(re.findall(r"#define (EPI_\w+) (\d+)", cuda_kernels.read_source("conv_tc.cu")))
    assert {name: int(bit) for name, bit in defined.items()} == {
        name: getattr(cuda_backend, name) for name in dir(cuda_backend) if name.startswith("EPI_")}
    assert len(defined) == 5 and sorted(int(bit) for bit in defined.values()) == [1, 2, 4, 8, 16]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def cuda_tool(name):
    """A CUDA binary tool on PATH, or from the pip wheels .ci/run installs (nvidia-cuda-cuobjdump and
    nvidia-cuda-nvdisasm put theirs in nvidia/cu13/bin), or None."""
    found = shutil.which(name)
    if found is None:
        try:
            import nvidia
        except ImportError:
            return None
        for root in nvidia.__path__:
            path = os.path.join(root, "cu13", "bin", name)
            if os.access(path, os.X_OK):
                return path
    return found


def sass_by_function(fatbin):
    """[(kernel name, its SASS)] of a fatbin, one per kernel and architecture, by cuobjdump (which runs
    nvdisasm beside it)."""
    tool = cuda_tool("cuobjdump")
    env = dict(os.environ, PATH=os.path.dirname(tool) + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run([tool, "-sass", str(fatbin)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    parts = re.split(r"\n\s*Function : (\w+)\n", done.stdout)
    return list(zip(parts[1::2], parts[2::2]))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_tensor_core_conv_compiles_to_tensor_core_instructions_without_spills(tmp_path):
    """The PTX holds the TF32 m16n8k8 and bf16 m16n8k16 mma.sync (tensor cores from sm_80), the TF32 rounding,
    ldmatrix.x4 and cp.async; ptxas reports no register spills and no stack frame for any kernel of conv_tc.cu on
    sm_80 and sm_90;
    and the SASS of every convolution kernel holds tensor-core HMMAs of its type, the forward ones' fragments
    loaded by LDSM (ldmatrix) and their weights copied by LDGSTS (cp.async, 16 bytes), where cuobjdump is
    installed (.ci/run installs it)."""
    source = cuda_kernels.source_path("conv_tc.cu")
    ptx = tmp_path / "conv_tc.ptx"
    done = subprocess.run(["nvcc", "-ptx", "-arch=sm_80", source, "-o", str(ptx)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = ptx.read_text()
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in text
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in text
    assert "cvt.rna.tf32.f32" in text
    assert "ldmatrix.sync.aligned.m8n8.x4.shared.b16" in text
    assert "cp.async.cg.shared.global" in text and "cp.async.wait_all" in text
    fatbin = tmp_path / "conv_tc.fatbin"
    done = subprocess.run(["nvcc", "--fatbin", "-Xptxas", "-v", "-gencode", "arch=compute_80,code=sm_80",
                           "-gencode", "arch=compute_90,code=sm_90", source, "-o", str(fatbin)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    kernels = [name for name, _, _ in kernel_signatures(cuda_kernels.read_source("conv_tc.cu"))]
    spills = [line for line in done.stderr.splitlines() if "spill" in line]
    assert len(spills) == 2 * len(kernels) and all("0 bytes spill stores, 0 bytes spill loads" in line for line in spills)
    # and no stack frame: an accumulator indexed by a loop the compiler did not unroll lives in local memory
    assert all(line.strip().startswith("0 bytes stack frame") for line in spills), \
        [line for line in spills if not line.strip().startswith("0 bytes stack frame")]
    if cuda_tool("cuobjdump") is None:
        return
    sass = sass_by_function(fatbin)
    assert sorted(name for name, _ in sass) == sorted(2 * kernels), f"cuobjdump listed {[n for n, _ in sass]}"
    for name, code in sass:
        if name == "conv3x3_wgrad_reduce" or "pack" in name:
            assert "HMMA" not in code
            continue
        hmma = "HMMA.1688.F32.TF32" if "tf32" in name else "HMMA.16816.F32.BF16"
        assert hmma in code, f"{name}: no {hmma} in its SASS"
        if "wgrad" not in name:
            assert "LDSM.16.M88.4" in code, f"{name}: its fragments are not loaded by ldmatrix"
            assert "LDGSTS.E.BYPASS.128" in code, f"{name}: its weights are not copied by 16-byte cp.async"


def test_kernel_workbench_runs_its_checks_and_its_timing_code():
    """bench/conv_workbench.py, which a short GPU lease runs first, is run here on the emulation with its timing
    code too (against PyTorch on the CPU: the figures mean nothing, the code paths are the GPU's): every
    kernel within its TF32 bound, every timed entry present, exit 0."""
    pytest.importorskip("torch", reason="the workbench times against PyTorch, which is not installed")
    import os
    import sys
    bench = os.path.join(os.path.dirname(__file__), "..", "bench", "conv_workbench.py")
    done = subprocess.run([sys.executable, bench, "--device", "emulation", "--time-emulation", "--repeats", "1",
                           "--warmup", "0"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["layer"] for r in rows] == ["64->64", "128->128"]
    for r in rows:
        assert max(v for k, v in r.items() if "error_over_bound" in k) <= 1
        assert {"nchw_forward_n16", "nchw_forward_n32", "nchw_forward_n64", "nchw_bf16_forward_n64",
                "nchw_input_grad", "nchw_weight_grad"} <= set(r) and r["ratio"] > 0


def test_the_emulation_runs_block_threads_together_where_a_called_function_synchronises():
    """A kernel whose __syncthreads or __shared__ memory sits in a __device__ function it calls (the templates
    of conv_tc.cu) needs its block's threads run concurrently, as one that holds them itself does."""
    from redcore.cuda_kernels.emulation import synchronising
    source = """
    template <int N> __device__ void tile(float* y) { __syncthreads(); y[threadIdx.x] = N; }
    __device__ float twice(float v) { return 2 * v; }
    extern "C" __global__ void wide(float* y) { tile<4>(y); }
    extern "C" __global__ void plain(float* y) { y[threadIdx.x] = twice(y[threadIdx.x]); }
    extern "C" __global__ void own(float* y) { __shared__ float s[32]; s[0] = y[0]; }
    """
    kernels = {name: body for name, _, body in kernel_signatures(source)}
    assert synchronising(source, kernels["wide"]) and synchronising(source, kernels["own"])
    assert not synchronising(source, kernels["plain"])


CP_ASYNC_PROBE = """
// Each lane copies its row of `in` into shared memory by cp.async, then posts to ldmatrix.x4 the row of the lane
// before it (lane 0 that of lane 31, which posts its own): rows another thread copied.  order 0 waits, then
// synchronises (correct); 1 synchronises, then waits; 2 never waits.
extern "C" __global__ void probe(unsigned* out, const unsigned* in, int order)
{
    __shared__ __align__(16) unsigned rows[32 * 4];
    const int lane = threadIdx.x, posted = lane == 31 ? 31 : (lane + 31) % 32;
    ptx_cp_async_16(rows + 4 * lane, in + 4 * lane);
    if (order == 0) { ptx_cp_async_wait_all(); __syncthreads(); }
    if (order == 1) { __syncthreads(); ptx_cp_async_wait_all(); }
    unsigned r[4];
    ptx_ldmatrix_x4(r, rows + 4 * posted);
    for (int i = 0; i < 4; ++i) out[4 * lane + i] = r[i];
}
"""


@pytest.mark.skipif(compiler() is None, reason="the emulation needs a C++ compiler")
def test_the_emulation_catches_a_cp_async_read_before_its_wait_and_barrier(tmp_path):
    """cp.async in the emulation lands at the issuing thread's wait_all, and ldmatrix refuses a row still in flight
    or landed by another thread with no __syncthreads since: the two orders that race on a GPU abort with a
    sentence; the correct order gives ldmatrix's words.  (Which sentence: after the barrier the last thread to
    arrive runs first and reads its own row; lane 0 then reads lane 31's, landed after the barrier.)"""
    import sys
    from redcore.cuda_kernels.emulation import EmulatedModule
    source = tmp_path / "probe.cu"
    source.write_text(CP_ASYNC_PROBE)
    words = np.arange(128, dtype=np.uint32)
    out = np.zeros(128, np.uint32)
    EmulatedModule(str(source), np.float32).get_function("probe")((1,), (32,), (out, words, np.int32(0)))
    posted = np.array([31] + list(range(30)) + [31])           # the row each lane gives ldmatrix
    lane, i = np.divmod(np.arange(128), 4)
    np.testing.assert_array_equal(out, words[4 * posted[8 * i + lane // 4] + lane % 4])   # PTX ISA: ldmatrix's words
    for order, message in ((1, "another thread's cp.async with no __syncthreads after its wait_all"),
                           (2, "a cp.async is still copying (no wait_all)")):
        script = (f"import numpy as np; from redcore.cuda_kernels.emulation import EmulatedModule; "
                  f"EmulatedModule({str(source)!r}, np.float32).get_function('probe')((1,), (32,), "
                  f"(np.zeros(128, np.uint32), np.arange(128, dtype=np.uint32), np.int32({order})))")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and message in done.stderr, (order, done.stderr[-500:])
