"""The cuda backend's tensor-core precisions, "tf32" and "bf16" (RED's 3x3 stride-1 convolutions on tensor cores,
kernels/cuda/conv_tc.cu), against the float64 NumPy reference, on the emulation (and on a GPU where CuPy finds one).

Tolerances are bounds derived from the rounding, not tuned: TF32 keeps 10 mantissa bits and bfloat16 7, so
rounding to nearest errs by at most u = 2^-11 or 2^-8 relative, and a product of two rounded operands (exact in
float) by (1 + u)^2 - 1 = 2u + u^2; a float sum of T terms errs by at most T 2^-24 of the sum of their
magnitudes, whatever the order.  A convolution's error is then at most (2u + u^2 + T 2^-24) times the same
convolution of |x| and |w| (plus 2^-24 |b| for the bias).  A whole net is checked layer by layer, each layer
on the input the net gave it (test_whole_net_is_the_composition_of_tensor_core_layers).
"""
import json

import numpy as np
import pytest
from conftest import load_example
from hypothesis import given, settings
from hypothesis import strategies as st

import redcore
from redcore.backends import BACKEND_CHOICES, get_backend, with_precision
from redcore.ops.conv import conv2d_backward, conv2d_forward, conv_transpose2d_backward, conv_transpose2d_forward

ref = get_backend("numpy")
U32 = 2.0 ** -24                              # float32 unit roundoff
UNIT = {"tf32": 2.0 ** -11, "bf16": 2.0 ** -8}    # the operands' rounding


def product_error(backend):
    """Relative error of a product of two operands rounded to the backend's precision."""
    u = UNIT[backend.precision]
    return 2 * u + u * u


@pytest.fixture(params=["cuda-tf32-emulation", "cuda-bf16-emulation", "cuda-tf32", "cuda-bf16"], scope="module")
def tensor_cores(request):
    try:
        return get_backend(request.param)
    except RuntimeError as e:            # no CuPy or GPU (cuda-tf32, cuda-bf16), no C++ compiler (the emulation)
        pytest.skip(str(e))


def host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def f32(*arrays):
    """The arrays rounded to float32 and back: the reference then sees exactly what the kernels read."""
    return [a.astype(np.float32).astype(np.float64) for a in arrays]


def within(got, want, bound, what):
    err = np.abs(host(got).astype(np.float64) - want)
    assert got.shape == want.shape and np.all(err <= bound), \
        f"{what}: {(err / np.maximum(bound, 1e-300)).max():.2f}x the bound"


@settings(max_examples=15, deadline=None)      # each example launches a few thousand emulated threads
@given(n=st.integers(1, 2), c_in=st.integers(1, 20), c_out=st.integers(1, 20), pad=st.integers(0, 1),
       h=st.integers(1, 11), w=st.integers(1, 21), seed=st.integers(0, 2**31 - 1))
def test_conv_primitives_within_the_rounding_bound(tensor_cores, n, c_in, c_out, pad, h, w, seed):
    """conv2d, conv2d_backward_input (a conv with the weight read flipped, padding 2 - p) and the weight
    gradient with the fused bias gradient, on RED's paddings (same, valid) and sizes off the tiles."""
    if h + 2 * pad < 3 or w + 2 * pad < 3:
        return
    rng = np.random.default_rng(seed)
    x, wt = f32(rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, 3, 3)))
    dy, = f32(rng.standard_normal(ref.conv2d(x, wt, 1, pad).shape))
    dev = lambda a: tensor_cores.asarray(a, np.float32)   # noqa: E731
    within(tensor_cores.conv2d(dev(x), dev(wt), 1, pad), ref.conv2d(x, wt, 1, pad),
           (product_error(tensor_cores) + 9 * c_in * U32) * ref.conv2d(np.abs(x), np.abs(wt), 1, pad), "conv2d")
    within(tensor_cores.conv2d_backward_input(dev(dy), dev(wt), (h, w), 1, pad),
           ref.conv2d_backward_input(dy, wt, (h, w), 1, pad),
           (product_error(tensor_cores) + 9 * c_out * U32) * ref.conv2d_backward_input(np.abs(dy), np.abs(wt), (h, w), 1, pad),
           "conv2d_backward_input")
    terms = n * dy.shape[2] * dy.shape[3]
    dw, db = tensor_cores.conv2d_backward_weight_bias(dev(dy), dev(x), 3, 1, pad)
    within(dw, ref.conv2d_backward_weight(dy, x, 3, 1, pad),
           (product_error(tensor_cores) + terms * U32) * ref.conv2d_backward_weight(np.abs(dy), np.abs(x), 3, 1, pad), "weight gradient")
    within(db, ref.bias_backward(dy), terms * U32 * ref.bias_backward(np.abs(dy)), "bias gradient")


def test_ops_fuse_bias_and_relu_into_the_epilogue(tensor_cores):
    """The conv and the transposed conv of RED (ops/conv.py) with bias and ReLU, forward and backward, through
    the backend's fused calls (conv2d_bias, conv_transpose2d_bias, conv2d_backward_weight_bias).  ReLU is
    1-Lipschitz, so the bound of the conv plus 2^-24 |b| for the bias addition holds after it."""
    rng = np.random.default_rng(5)
    n, c, k, h, w = 2, 6, 9, 8, 13
    x, wt, b = f32(rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3)), rng.standard_normal(k))
    dev = lambda a: tensor_cores.asarray(a, np.float32)   # noqa: E731
    bound = (product_error(tensor_cores) + (9 * c + 1) * U32) * (ref.conv2d(np.abs(x), np.abs(wt), 1, 1) + np.abs(b)[:, None, None])
    within(conv2d_forward(tensor_cores, dev(x), dev(wt), dev(b), 1, 1, relu=True),
           conv2d_forward(ref, x, wt, b, 1, 1, relu=True), bound, "conv + bias + ReLU")
    # the transposed conv (C -> K weight (C, K, 3, 3)) of a valid-padded net: pad 0, the map grows by 2
    wtt, = f32(rng.standard_normal((c, k, 3, 3)))
    want = conv_transpose2d_forward(ref, x, wtt, b, 1, 0, relu=True)
    bound = (product_error(tensor_cores) + (9 * c + 1) * U32) * (conv_transpose2d_forward(ref, np.abs(x), np.abs(wtt), np.abs(b), 1, 0))
    within(conv_transpose2d_forward(tensor_cores, dev(x), dev(wtt), dev(b), 1, 0, relu=True), want, bound, "deconv + bias + ReLU")
    dy, = f32(rng.standard_normal(want.shape))
    dx, dwt, db = conv_transpose2d_backward(tensor_cores, dev(dy), dev(x), dev(wtt), 1, 0)
    rdx, rdwt, rdb = conv_transpose2d_backward(ref, dy, x, wtt, 1, 0)
    within(dx, rdx, (product_error(tensor_cores) + 9 * k * U32) * ref.conv2d(np.abs(dy), np.abs(wtt), 1, 0), "deconv dx")
    terms = n * h * w
    within(dwt, rdwt, (product_error(tensor_cores) + terms * U32) * ref.conv2d_backward_weight(np.abs(x), np.abs(dy), 3, 1, 0), "deconv dw")
    within(db, rdb, dy[0].size // k * n * U32 * ref.bias_backward(np.abs(dy)), "deconv db")
    dx, dw, db = conv2d_backward(tensor_cores, dev(dy[:, :, 1:-1, 1:-1]), dev(x), dev(wt), 1, 1)
    assert dx.shape == x.shape and dw.shape == wt.shape and db.shape == b.shape


def test_input_gradients_pass_the_relu_mask_in_the_epilogue(tensor_cores):
    """relu_input=True: the layer's input x is a ReLU's output, and dx comes back through that ReLU's backward,
    dx * [x > 0], in the convolution's epilogue (conv2d_masked, conv2d_backward_input_masked).  Masking is exact:
    where x <= 0 dx is exactly 0, elsewhere it is the unmasked dx within its bound."""
    rng = np.random.default_rng(8)
    n, c, k, h, w = 2, 5, 7, 9, 12
    x, wt, wtt = f32(rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3)),
                     rng.standard_normal((c, k, 3, 3)))
    x[:, :, ::3] = 0                                  # a ReLU's zeros: masked like the negatives
    dev = lambda a: tensor_cores.asarray(a, np.float32)   # noqa: E731
    for pad in (0, 1):
        # conv (C -> K): dx = conv2d_backward_input of dy, masked by x
        dy, = f32(rng.standard_normal((n, k, h + 2 * pad - 2, w + 2 * pad - 2)))
        dx = host(conv2d_backward(tensor_cores, dev(dy), dev(x), dev(wt), 1, pad, relu_input=True)[0])
        rdx = conv2d_backward(ref, dy, x, wt, 1, pad)[0]
        bound = (product_error(tensor_cores) + 9 * k * U32) * ref.conv2d_backward_input(np.abs(dy), np.abs(wt), (h, w), 1, pad)
        assert np.all(dx[x <= 0] == 0), f"pad {pad}: the conv's dx passes where its input was not > 0"
        within(dx, np.where(x > 0, rdx, 0), bound, f"conv dx through the ReLU, pad {pad}")
        # transposed conv (C -> K weight (C, K, 3, 3)): dx = conv2d(dy, wt), masked by x
        dy, = f32(rng.standard_normal((n, k, h - 2 * pad + 2, w - 2 * pad + 2)))
        dx = host(conv_transpose2d_backward(tensor_cores, dev(dy), dev(x), dev(wtt), 1, pad, relu_input=True)[0])
        rdx = conv_transpose2d_backward(ref, dy, x, wtt, 1, pad)[0]
        bound = (product_error(tensor_cores) + 9 * k * U32) * ref.conv2d(np.abs(dy), np.abs(wtt), 1, pad)
        assert np.all(dx[x <= 0] == 0), f"pad {pad}: the deconv's dx passes where its input was not > 0"
        within(dx, np.where(x > 0, rdx, 0), bound, f"deconv dx through the ReLU, pad {pad}")


def test_epilogue_skip_sum_residual_and_skip_gradient_change_no_bit(tensor_cores):
    """The skip sum of Eq. 3 and the residual of §3.3 in the transposed conv's epilogue
    (conv_transpose2d_bias_add), and the skip path's gradient of Eq. 12 in the input gradient's
    (conv2d_backward_input_masked with an addend), against the same steps as separate kernels (Backend's
    compositions, run by this backend): equal bit for bit, because the epilogue does the same float32
    additions and maxima in the same order; and the layer's own output, kept beside the sum, is the unfused
    layer's."""
    from redcore.backends.base import Backend
    rng = np.random.default_rng(12)
    n, c, k, h, w = 2, 6, 10, 7, 18
    dev = lambda a: tensor_cores.asarray(a, np.float32)   # noqa: E731
    x, wtt, b = (dev(a) for a in f32(rng.standard_normal((n, c, h, w)), rng.standard_normal((c, k, 3, 3)),
                                      rng.standard_normal(k)))
    for pad in (0, 1):
        out_hw = (h + 2 - 2 * pad, w + 2 - 2 * pad)
        addend = dev(rng.standard_normal((n, k, *out_hw)))
        for relu, relu_sum, keep in ((True, True, True), (True, True, False), (False, False, False), (False, False, True)):
            args = (x, wtt, b, out_hw, 1, pad, relu, addend, relu_sum, keep)
            layer, total = tensor_cores.conv_transpose2d_bias_add(*args)
            want_layer, want_total = Backend.conv_transpose2d_bias_add(tensor_cores, *args)
            what = f"pad {pad}, relu {relu}, relu_sum {relu_sum}, keep_layer {keep}"
            np.testing.assert_array_equal(host(total), host(want_total), err_msg=what)
            assert (layer is None) == (not keep), what
            if keep:
                np.testing.assert_array_equal(host(layer), host(want_layer), err_msg=what)
        # the input gradient of a conv whose weight is wtt, (C_out, C_in) = (c, k), on a (k, h, w) input
        dy = dev(rng.standard_normal((n, c, h + 2 * pad - 2, w + 2 * pad - 2)))
        mask = dev(np.maximum(rng.standard_normal((n, k, h, w)), 0))     # a ReLU's output: half of it 0
        skip = dev(rng.standard_normal(mask.shape))
        args = (dy, wtt, (h, w), 1, pad, mask)
        got = host(tensor_cores.conv2d_backward_input_masked(*args, addend=skip))
        np.testing.assert_array_equal(got, host(Backend.conv2d_backward_input_masked(tensor_cores, *args, addend=skip)))
        assert np.all(got[host(mask) <= 0] == 0)


def test_net_fuses_skips_without_changing_a_bit(tensor_cores):
    """A RED-Net on the tensor-core path: inference (keep=False, the skip sums written over the deconv outputs)
    equals the training forward bit for bit, and the backward that adds each skip path's gradient in the input
    gradient's epilogue (Eq. 12) gives the same gradients, bit for bit, as the one that keeps the two paths
    apart to record them (record_paths=True, an add_ after the convolution)."""
    net = redcore.REDNet(depth=8, filters=16, channels=1, skip_step=1, backend=tensor_cores, seed=4)   # 3 skips
    rng = np.random.default_rng(13)
    x = rng.random((2, 1, 13, 17)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    inferred = host(net.forward(x, keep=False))
    grads = {}
    for record in (False, True):
        np.testing.assert_array_equal(host(net.forward(x)), inferred)
        net.backward(dy, record_paths=record)
        grads[record] = {name: host(g).copy() for name, g in net.grads.items()}
    assert len(net.skips) == 3 and net.path_grads.keys() == set(net.skips.values())
    for name in grads[False]:
        np.testing.assert_array_equal(grads[False][name], grads[True][name], err_msg=name)


def test_float64_and_other_shapes_keep_the_exact_path(tensor_cores):
    """Tensor cores take float32 3x3 stride-1 layers; float64 (the gradient checks), other kernel sizes and
    strides run the exact kernels, held to the float32 / float64 rounding of tests/test_backend_parity.py."""
    rng = np.random.default_rng(7)
    x, w3, w5 = rng.standard_normal((2, 3, 9, 10)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((4, 3, 5, 5))
    got = host(tensor_cores.conv2d(tensor_cores.asarray(x, np.float64), tensor_cores.asarray(w3, np.float64), 1, 1))
    np.testing.assert_allclose(got, ref.conv2d(x, w3, 1, 1), rtol=1e-10, atol=1e-10)
    for wt, stride in ((w5, 1), (w3, 2)):
        want = ref.conv2d(x, wt, stride, 1)
        got = host(tensor_cores.conv2d(tensor_cores.asarray(x, np.float32), tensor_cores.asarray(wt, np.float32), stride, 1))
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()      # exact float32, not TF32


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_whole_net_is_the_composition_of_tensor_core_layers(tensor_cores, padding):
    """A RED-Net (skips, residual) run on the tensor-core path, layer by layer: each conv and deconv output the forward
    kept matches the float64 reference of that layer on the input the net actually gave it, within the
    bound of one layer (2u + u^2 + (9 C + 1) 2^-24 of conv(|h|, |W|) + |b|; ReLU is 1-Lipschitz), and each skip
    sum (Eq. 3) and the residual are the float32 sums of the maps they join.  A bound carried through the whole
    net instead (with |W| in every layer) would be some 10^4 times the actual error here, so it could not see
    a wrong layer; this one checks every layer's wiring (weights, layout, padding, bias, ReLU) to its own
    rounding."""
    net = redcore.REDNet(depth=6, filters=20, channels=1, padding=padding, backend=tensor_cores, seed=3)
    rng = np.random.default_rng(11)
    net.load_state_dict({k: (v if k.endswith("weight") else 0.05 * rng.standard_normal(v.shape)).astype(np.float32)
                         for k, v in net.state_dict().items()})               # biases that are not 0
    x = rng.random((2, 1, 14, 19)).astype(np.float32)
    out = host(net.forward(x)).astype(np.float64)
    c, p = net.cache, {k: host(v).astype(np.float64) for k, v in net.state_dict().items()}
    maps = {k: [None if a is None else host(a).astype(np.float64) for a in c[k]] for k in ("conv_in", "conv_out", "stage_in")}
    relu_out = {j: host(a).astype(np.float64) for j, a in c["relu_out"].items()}
    skip_out = {j: host(a).astype(np.float64) for j, a in c["skip_out"].items()}
    delta = product_error(tensor_cores) + (9 * 20 + 1) * U32
    np.testing.assert_array_equal(maps["conv_in"][1], x)
    for i in range(1, net.n + 1):
        w, b, h = p[f"conv{i}.weight"], p[f"conv{i}.bias"], maps["conv_in"][i]
        bound = delta * (ref.conv2d(np.abs(h), np.abs(w), 1, net.pad) + np.abs(b)[:, None, None])
        within(maps["conv_out"][i - 1], conv2d_forward(ref, h, w, b, 1, net.pad, relu=True), bound, f"conv{i}")
    for j in range(1, net.n + 1):
        w, b, h = p[f"deconv{j}.weight"], p[f"deconv{j}.bias"], maps["stage_in"][j]
        want = conv_transpose2d_forward(ref, h, w, b, 1, net.pad, relu=j < net.n)
        bound = delta * (conv_transpose2d_forward(ref, np.abs(h), np.abs(w), np.abs(b), 1, net.pad))
        if j == net.n:                           # the last layer: no ReLU, then the residual (§3.3)
            within(out - x, want, bound + U32 * np.abs(out), f"deconv{j} + residual")
            break
        within(relu_out[j], want, bound, f"deconv{j}")
        joined = relu_out[j]
        if j in net.skips:                       # Eq. 3, a float32 sum then max(., 0)
            joined = np.maximum(relu_out[j] + maps["conv_out"][net.skips[j] - 1], 0)
            within(skip_out[j], joined, U32 * np.abs(joined), f"skip sum after deconv{j}")
        np.testing.assert_array_equal(maps["stage_in"][j + 1], skip_out.get(j, relu_out[j]))
    # and rounded operands it has: the output differs from the float64 net's by far more than float32 rounding
    exact = redcore.REDNet(**{**net.config, "dtype": "float64"}, backend="numpy")
    exact.load_state_dict(p)
    y = exact.forward(x.astype(np.float64), keep=False)
    assert np.abs(out - y).max() > 50 * U32 * np.abs(y).max()


def test_train_script_uses_tensor_cores_on_cuda_by_default(tmp_path, monkeypatch):
    """examples/train.py --backend cuda runs precision tf32 unless told fp32; the emulated run learns (its loss
    falls), and the cpu backends refuse tf32 with a sentence."""
    assert with_precision("cuda") == "cuda-tf32" and with_precision("cuda", "fp32") == "cuda"
    assert with_precision("cuda", "bf16") == "cuda-bf16" and with_precision("cuda-emulation", "bf16") == "cuda-bf16-emulation"
    assert not any("tf32" in b or "bf16" in b for b in BACKEND_CHOICES)      # --precision chooses, not --backend
    assert with_precision("cuda-emulation") == "cuda-tf32-emulation" and with_precision("cpu") == "cpu"
    with pytest.raises(ValueError, match="precision tf32 needs a cuda backend: cpu computes in exact float32 only"):
        with_precision("cpu", "tf32")
    monkeypatch.setenv("REDCORE_DATA", "/nonexistent-data-folder")
    train_denoise = load_example("train_denoise")
    out = tmp_path / "tf32"
    assert train_denoise.main(["--depth", "4", "--filters", "8", "--batch", "4", "--patch", "20", "--val-crop", "32",
                               "--val-every", "6", "--ckpt-every", "6", "--steps", "6", "--lr", "1e-3",
                               "--no-progress", "--backend", "cuda-emulation", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "cuda-tf32-emulation"
    assert summary["losses"][-1] < summary["losses"][0]
