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


def forward_with_two_copies(net, x, i, w_main, w_skip):
    """The net's output with conv{i} computed twice: with w_main for the main path (conv{i+1} onwards) and
    with w_skip for its skip into the decoder.  With w_main = w_skip it is net.forward(x); perturbing one of
    them moves the loss through that path alone.  Written from the paper's description (§3.1, Eq. 2-3), not
    from REDNet.forward."""
    be, p, n = net.backend, net.params, net.n
    sizes = net.plan(*x.shape[2:])
    h, conv_out = x, {}
    for layer in range(1, n + 1):
        args = (p[f"conv{layer}.bias"], net.stride[layer], net.pad)
        if layer == i:
            conv_out[layer] = conv2d_forward(be, h, w_skip, *args, relu=True)
            h = conv2d_forward(be, h, w_main, *args, relu=True)
        else:
            h = conv_out[layer] = conv2d_forward(be, h, p[f"conv{layer}.weight"], *args, relu=True)
    for j in range(1, n + 1):
        mirror = n + 1 - j
        op = tuple(output_padding_to_restore(s, net.k, net.stride[mirror], net.pad) for s in sizes[mirror - 1])
        h = conv_transpose2d_forward(be, h, p[f"deconv{j}.weight"], p[f"deconv{j}.bias"], net.stride[mirror],
                                     net.pad, op, relu=j < n)
        if j in net.skips:
            h = np.maximum(h + conv_out[net.skips[j]], 0)
    return h + x


def test_eq12_13_bottom_gradient_is_skip_path_plus_main_path():
    """conv2's weight gradient splits into what reaches the loss through conv3 (main path) and through the
    skip into deconv3 (skip path).  Each part recorded by backward(record_paths=True) is checked on its own
    against central differences through a forward in which only that path sees the perturbed weight, and the
    two parts sum to the full gradient.  (A skip gradient that aliases the main one, say, changes the recorded
    parts but not their sum.)  Tolerance: central differences with h = 1e-6 in float64 are exact to O(h^2)
    plus rounding of ~1e-16 / h, far below 1e-6 of the largest entry."""
    net = redcore.REDNet(depth=10, filters=4, backend="numpy", dtype="float64", seed=5)
    rng = np.random.default_rng(1)
    x = rng.random((2, 1, 16, 16))
    target = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    loss, dy = redcore.mse_loss(net.forward(x), target)
    net.backward(dy, record_paths=True)
    assert 2 in net.path_grads, "conv2 has a skip in a 10-layer net with skip_step 2"
    main, skip = net.path_weight_grads(2)
    w = net.params["conv2.weight"].copy()
    np.testing.assert_allclose(forward_with_two_copies(net, x, 2, w, w), net.forward(x), rtol=1e-12, atol=1e-14)

    def path_gradient(path):
        """dL/dW_conv2 by central differences, the perturbed weight seen by one path only."""
        grad, h = np.zeros_like(w), 1e-6
        for idx in np.ndindex(w.shape):
            moved = []
            for sign in (1, -1):
                w_moved = w.copy()
                w_moved[idx] += sign * h
                pair = (w_moved, w) if path == "main" else (w, w_moved)
                moved.append(redcore.mse_loss(forward_with_two_copies(net, x, 2, *pair), target)[0])
            grad[idx] = (moved[0] - moved[1]) / (2 * h)
        return grad

    for name, recorded, numeric in (("main", main, path_gradient("main")), ("skip", skip, path_gradient("skip"))):
        assert np.linalg.norm(numeric) > 1e-3 * np.linalg.norm(net.grads["conv2.weight"]), name
        np.testing.assert_allclose(recorded, numeric, rtol=0, atol=1e-6 * np.abs(numeric).max(),
                                   err_msg=f"the {name} path's part of dL/dW_conv2")
    np.testing.assert_allclose(main + skip, net.grads["conv2.weight"], rtol=1e-10, atol=1e-14)
