"""Finite-difference checks of the whole RED-Net in float64 on the NumPy reference: every layer's weights
and biases, and the input, for each architectural variant of the paper.

Each variant draws its own coordinates (its own seed), and every tensor is checked at coordinates that hit
each of its output channels, input channels and kernel taps (gradcheck.covering_indices): a bug confined to
one tap or one channel of one layer fails (test_a_bug_in_one_tap_or_one_channel_is_caught)."""
import zlib

import numpy as np
import pytest

from gradcheck import check_gradient, covering_indices
import redcore
from redcore import REDNet

VARIANTS = {
    "skips, same": dict(skip_step=2),
    "no skips (RED10)": dict(skip_step=0),
    "skip every layer, valid": dict(skip_step=1, padding="valid"),
    "no residual": dict(residual=False),
    "downsample conv1+conv3, odd size": dict(downsample=(1, 3)),
    "downsample, valid": dict(downsample=(2,), padding="valid"),
    "color, 5x5 kernels": dict(channels=3, kernel_size=5),
    "block skips": dict(skip_kind="block", skip_step=2),
    "block skip every layer, color": dict(skip_kind="block", skip_step=1, channels=3),
    "block skips every 3 layers, no ReLU": dict(skip_kind="block", skip_step=3, relu=False),
}


def network_and_gradients(name):
    """A float64 net of the variant, a random loss L = <g, net(x)> and backward's gradients of it."""
    cfg = dict(depth=10, filters=4, backend="numpy", dtype="float64", seed=3, **VARIANTS[name])
    net = REDNet(**cfg)
    rng = np.random.default_rng(zlib.crc32(name.encode()))     # each variant samples its own coordinates
    for p in net.params.values():          # non-zero biases too, so their gradients are exercised
        p[...] = p + 0.05 * rng.standard_normal(p.shape)
    c = cfg.get("channels", 1)
    x = rng.standard_normal((2, c, 23, 21))
    g = rng.standard_normal(x.shape)
    net.forward(x)
    dx = net.backward(g)
    grads = {k: v.copy() for k, v in net.grads.items()}
    loss = lambda: float((g * net.forward(x)).sum())
    return net, x, dx, grads, loss, rng


@pytest.mark.parametrize("name", list(VARIANTS))
def test_network_gradients(name):
    net, x, dx, grads, loss, rng = network_and_gradients(name)
    for pname, p in net.params.items():
        check_gradient(f"{name}: {pname}", loss, p, grads[pname], rng, rtol=1e-5,
                       indices=covering_indices(p.shape, rng))
    check_gradient(f"{name}: input", loss, x, dx, rng, samples=10, rtol=1e-5)


@pytest.mark.parametrize("pname", ["conv3.weight", "deconv2.weight"])
def test_a_bug_in_one_tap_or_one_channel_is_caught(pname):
    """The check of test_network_gradients fails on a gradient wrong in one kernel tap only, or in one
    output channel only (axis 0 of a conv weight, axis 1 of a deconv weight), whichever tap or channel.
    The planted error is 1e-3 of the tensor's largest gradient, 100x the check's tolerance (rtol 1e-5)."""
    net, x, dx, grads, loss, rng = network_and_gradients("skips, same")
    p, right = net.params[pname], grads[pname]
    out_axis = 1 if pname.startswith("deconv") else 0
    slices = [(slice(None), slice(None), a, b) for a in range(p.shape[2]) for b in range(p.shape[3])]
    slices += [tuple(o if axis == out_axis else slice(None) for axis in range(4)) for o in range(p.shape[out_axis])]
    for where in slices:
        wrong = right.copy()
        wrong[where] += 1e-3 * np.abs(right).max()
        with pytest.raises(AssertionError, match="max abs error"):
            check_gradient(pname, loss, p, wrong, rng, rtol=1e-5, indices=covering_indices(p.shape, rng))
    check_gradient(pname, loss, p, right, rng, rtol=1e-5, indices=covering_indices(p.shape, rng))


def test_output_keeps_input_size_in_every_variant():
    rng = np.random.default_rng(0)
    for cfg in VARIANTS.values():
        for h, w in [(23, 21), (24, 24), (27, 25)]:
            net = REDNet(depth=10, filters=2, backend="numpy", **cfg)
            x = rng.standard_normal((1, cfg.get("channels", 1), h, w)).astype(np.float32)
            assert net.forward(x).shape == x.shape


def test_skip_rule_of_red30():
    """The released RED30: conv2, conv4, .., conv14 feed deconv13, deconv11, .., deconv1."""
    net = REDNet(filters=2, backend="numpy")
    assert net.skips == {13 - 2 * t: 2 + 2 * t for t in range(7)}
    assert len([k for k in net.params if k.endswith(".weight")]) == 30
    assert net.params["conv1.weight"].shape == (2, 1, 3, 3) and net.params["deconv15.weight"].shape == (2, 1, 3, 3)
    assert REDNet.preset("red10", filters=2, backend="numpy").skips == {}
    assert REDNet.preset("red20", filters=2, backend="numpy").skips == {10 - i: i for i in (2, 4, 6, 8)}


def test_block_skip_rule_of_red30():
    """skip_kind="block": each run of 2 layers gets its input added, ResNet-style, 14 sums where the
    symmetric RED30 has 7: conv1 -> conv3, .., conv13 -> conv15; conv15 (stage 0) -> deconv2, deconv2 ->
    deconv4, .., deconv12 -> deconv14; the parameters are the symmetric net's."""
    net = REDNet(filters=2, backend="numpy", skip_kind="block")
    assert net.skips == {}
    assert net.conv_blocks == {i: i - 2 for i in range(3, 16, 2)}
    assert net.stage_blocks == {j: j - 2 for j in range(2, 15, 2)}
    assert net.num_params == REDNet(filters=2, backend="numpy").num_params
    # weight files from before skip_kind existed describe symmetric nets
    older = {k: v for k, v in REDNet(filters=2, backend="numpy").config.items() if k != "skip_kind"}
    assert net.config_differences(older) == {"skip_kind": ("symmetric", "block")}
    assert REDNet(filters=2, backend="numpy").config_differences(older) == {}
    none = REDNet(depth=10, filters=2, backend="numpy", skip_kind="block", skip_step=0)
    assert none.conv_blocks == none.stage_blocks == none.skips == {}


def test_block_skips_change_the_function_and_inference_matches_training():
    """The same weights wired as block, symmetric or no skips give three different outputs (the wiring is
    used); a block net's inference pass (keep=False, which frees each skip's source after its sum) gives the
    training pass's output exactly, the same operations in the same order."""
    x = np.random.default_rng(1).random((2, 1, 14, 15))
    outputs = {}
    for kind, step in [("block", 2), ("symmetric", 2), ("symmetric", 0)]:
        net = REDNet(depth=10, filters=4, backend="numpy", dtype="float64", seed=4, skip_kind=kind, skip_step=step)
        outputs[kind, step] = net.forward(x)
        if kind == "block":
            assert np.array_equal(net.forward(x, keep=False), outputs[kind, step])
    values = list(outputs.values())
    assert all(np.abs(a - b).max() > 1e-3 for t, a in enumerate(values) for b in values[t + 1:])


def test_bad_configs_and_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="skip_kind must be one of symmetric, block"):
        REDNet(depth=10, skip_kind="dense", backend="numpy")
    with pytest.raises(ValueError, match="block skips .* padding='same' and no down-sampling"):
        REDNet(depth=10, skip_kind="block", padding="valid", backend="numpy")
    with pytest.raises(ValueError, match="block skips .* padding='same' and no down-sampling"):
        REDNet(depth=10, skip_kind="block", downsample=(2,), backend="numpy")
    with pytest.raises(ValueError, match="even"):
        REDNet(depth=9, backend="numpy")
    with pytest.raises(ValueError, match="padding"):
        REDNet(padding="full", backend="numpy")
    with pytest.raises(ValueError, match="downsample"):
        REDNet(depth=10, downsample=(6,), backend="numpy")
    with pytest.raises(ValueError, match="unknown preset"):
        REDNet.preset("red40")
    with pytest.raises(ValueError, match="unknown backend"):
        REDNet(backend="tpu")
    net = REDNet(depth=10, filters=2, padding="valid", backend="numpy")
    with pytest.raises(ValueError, match=r"too small .* conv\d"):
        net.forward(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        net.forward(np.zeros((1, 3, 20, 20), np.float32))
    with pytest.raises(RuntimeError, match="forward"):
        REDNet(depth=2, filters=2, backend="numpy").backward(np.zeros((1, 1, 4, 4)))


def test_seed_makes_a_net_reproducible():
    a, b = REDNet(depth=10, filters=4, backend="numpy", seed=5), REDNet(depth=10, filters=4, backend="numpy", seed=5)
    c = REDNet(depth=10, filters=4, backend="numpy", seed=6)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["conv1.weight"], c.params["conv1.weight"])


def test_the_identity_start_is_he_with_the_last_layer_zero(tmp_path):
    """init="identity": the same He draw from the seed, then deconv{n}'s weights zero, so the output is the
    input exactly (biases start at zero) however large the skip sums inside; the first backward reaches no
    other layer (deconv{n}'s zero weights pass nothing down), and the setting travels with the weights."""
    he = REDNet(depth=10, filters=4, skip_step=2, backend="numpy", dtype="float64", seed=3)
    identity = REDNet(depth=10, filters=4, skip_step=2, backend="numpy", dtype="float64", seed=3, init="identity")
    for k in he.params:
        assert np.array_equal(identity.params[k], 0 * he.params[k] if k == "deconv5.weight" else he.params[k]), k
    x = np.random.default_rng(0).random((2, 1, 12, 12))
    assert np.array_equal(identity.forward(x), x)
    identity.backward(np.ones_like(x))
    moved = {k for k in identity.grads if np.any(identity.grads[k])}
    assert moved == {"deconv5.weight", "deconv5.bias"}
    identity.save(tmp_path / "net.npz")
    assert redcore.load(tmp_path / "net.npz").config["init"] == "identity"
    # how the first weights were drawn does not make another network: He weights load into it, and resume
    assert identity.config_differences({**he.config, "seed": 9}) == {}
    assert identity.config_differences({**he.config, "filters": 8}) == {"filters": (8, 4)}
    with pytest.raises(ValueError, match="residual=True"):
        REDNet(depth=4, filters=2, residual=False, init="identity", backend="numpy")
    with pytest.raises(ValueError, match="init must be one of he, identity"):
        REDNet(depth=4, filters=2, init="zeros", backend="numpy")


@pytest.mark.parametrize("kind,step,expected", [
    ("symmetric", 2, ["deconv1", "deconv3", "deconv5"]),
    ("block", 2, ["conv3", "conv5", "deconv2", "deconv4", "deconv5"]),
    ("block", 1, ["conv2", "conv3", "conv4", "conv5", "deconv1", "deconv2", "deconv3", "deconv4", "deconv5"])])
def test_the_identity_skips_start_makes_every_skip_sum_its_skip(kind, step, expected):
    """init="identity-skips": the He draw of the seed with the weights of every layer where a sum lands zero
    (RED10's, listed by hand from the skip rules), so each skip sum of the forward pass equals its skip, and
    the output is the input, exactly (float64; nothing is rounded: each sum adds 0 to its skip)."""
    he = REDNet(depth=10, filters=4, skip_step=step, skip_kind=kind, backend="numpy", dtype="float64", seed=3)
    net = REDNet(depth=10, filters=4, skip_step=step, skip_kind=kind, backend="numpy", dtype="float64", seed=3,
                 init="identity-skips")
    assert net.sum_layers() == expected
    for k in he.params:
        zero = k.endswith(".weight") and k[:-len(".weight")] in expected
        assert np.array_equal(net.params[k], 0 * he.params[k] if zero else he.params[k]), k
    x = np.random.default_rng(0).random((2, 1, 12, 12))
    assert np.array_equal(net.forward(x), x)
    c = net.cache
    sums = 0
    for j, i in net.skips.items():            # symmetric: deconv{j}'s sum is conv{i}'s output
        assert np.array_equal(c["skip_out"][j], c["conv_out"][i - 1]), j
        sums += 1
    for j, src in net.stage_blocks.items():   # decoder blocks: deconv{j}'s sum is stage src's output
        assert np.array_equal(c["skip_out"][j], c["stage_in"][src + 1]), j
        sums += 1
    for i, src in net.conv_blocks.items():    # encoder blocks: conv{i}'s sum is conv{src}'s output
        assert np.array_equal(c["conv_out"][i - 1], c["conv_in"][src + 1]), i
        sums += 1
    assert sums == len(expected) - 1 and np.any(c["conv_out"][-1])    # the skips carry something
    with pytest.raises(ValueError, match="residual=True"):
        REDNet(depth=4, filters=2, residual=False, init="identity-skips", backend="numpy")


@pytest.mark.parametrize("backend,threads", [("numpy", None), ("cpu", 2)])
def test_gradients_accumulate_over_micro_batches(backend, threads):
    """zero_grad, then forward and backward(accumulate=True) per micro-batch with its share of the whole
    batch's dL/dy, gives the whole batch's gradient (float64: to rounding); without accumulate, backward
    replaces the gradients.  On cpu with threads=2 each micro-batch is itself split over two threads."""
    net = REDNet(depth=6, filters=4, backend=backend, dtype="float64", seed=2, threads=threads)
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 12, 13))
    target = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    _, dy = redcore.mse_loss(net.forward(x), target)
    net.backward(dy)
    whole = net.grads.flat.copy()
    net.zero_grad()
    for part in (slice(0, 2), slice(2, 6)):
        net.forward(x[part])
        net.backward(dy[part], accumulate=True)
    np.testing.assert_allclose(net.grads.flat, whole, rtol=0, atol=1e-12 * np.abs(whole).max())
    net.forward(x[:2])
    net.backward(dy[:2])                          # without accumulate: the micro-batch's gradient alone
    assert np.abs(net.grads.flat - whole).max() > 1e-3 * np.abs(whole).max()
