"""The paper's analysis of skip connections (§4.1-4.2), checked on the implementation.

Eq. 11: without ReLUs (and without biases) RED-Net is linear, and its output is the sum of the deconvolved
features of every level: the main path through all conv and deconv layers, plus, for every skip from
conv{i}, the features of conv{i} passed through the remaining deconvs deconv{n-i+1} .. deconv{n}.

Eq. 12-13: the gradient reaching a bottom layer with a skip (conv2) is the sum of a main path (back through
conv3 .. deconv{n}) and a skip path (back through deconv{n-1} .. deconv{n} only); since the weight gradient
is linear in that incoming gradient, dL/dW_conv2 is the sum of the two paths' weight gradients.
bench/skip_paths.py measures the norms of the two paths in RED30.
"""
import numpy as np
import pytest

import redcore
from redcore.ops.conv import conv2d_forward, conv_transpose2d_forward, output_padding_to_restore


def deconv_chain(net, h, first, sizes):
    """Pass h through deconv{first} .. deconv{n} (linear: no ReLU, zero biases)."""
    for j in range(first, net.n + 1):
        i = net.n + 1 - j
        op = tuple(output_padding_to_restore(s, net.k, net.stride[i], net.pad) for s in sizes[i - 1])
        h = conv_transpose2d_forward(net.backend, h, net.params[f"deconv{j}.weight"], net.params[f"deconv{j}.bias"],
                                     net.stride[i], net.pad, op)
    return h


@pytest.mark.parametrize("cfg", [dict(), dict(skip_step=1, padding="valid"), dict(downsample=(2,))],
                         ids=["red10-skip2", "skip1-valid", "downsample"])
def test_eq11_output_is_sum_of_deconvolved_features_of_every_level(cfg):
    net = redcore.REDNet(depth=10, filters=4, relu=False, backend="numpy", dtype="float64", seed=4, **cfg)
    for name, p in net.params.items():
        if name.endswith(".bias"):
            p[...] = 0
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 21, 19))
    sizes = net.plan(21, 19)
    features = [x]                      # features[i] = output of conv{i}
    for i in range(1, net.n + 1):
        features.append(conv2d_forward(net.backend, features[-1], net.params[f"conv{i}.weight"],
                                       net.params[f"conv{i}.bias"], net.stride[i], net.pad))
    terms = [deconv_chain(net, features[net.n], 1, sizes)]            # the main path, level n
    for j, i in net.skips.items():                                     # level i enters after deconv{j}
        terms.append(deconv_chain(net, features[i], j + 1, sizes))
    assert len(terms) == 1 + len(net.skips) and len(net.skips) > 0
    total = x + sum(terms)
    np.testing.assert_allclose(net.forward(x), total, rtol=1e-10, atol=1e-12)
    # each level contributes: dropping any one term breaks the equality
    for t in terms:
        assert np.abs(t).max() > 1e-6


def test_eq12_13_bottom_gradient_is_skip_path_plus_main_path():
    net = redcore.REDNet(depth=10, filters=4, backend="numpy", dtype="float64", seed=5)
    rng = np.random.default_rng(1)
    x = rng.random((2, 1, 16, 16))
    loss, dy = redcore.mse_loss(net.forward(x), np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1))
    net.backward(dy, record_paths=True)
    assert 2 in net.path_grads, "conv2 has a skip in a 10-layer net with skip_step 2"
    parts = net.path_weight_grads(2)
    np.testing.assert_allclose(parts[0] + parts[1], net.grads["conv2.weight"], rtol=1e-10, atol=1e-14)
    assert np.linalg.norm(parts[0]) > 0 and np.linalg.norm(parts[1]) > 0
