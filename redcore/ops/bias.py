r"""The bias of a convolution layer: added to every pixel of its output channel.

    y[n, o, i, j] += b[o]                       dL/db[o] = sum_{n, i, j} dL/dy[n, o, i, j]

The layer's ReLU may follow in the same call (backends fuse the two into one pass over the output).
"""
from .activation import relu_reference_


def add_bias_reference(y, b, relu=False):
    """In place: y[n, o] += b[o], then y = max(y, 0) when relu.   y: (N, C, H, W), b: (C,)."""
    y += b[None, :, None, None]
    return relu_reference_(y) if relu else y


def bias_backward_reference(dy):
    """db[o] = sum_{n,i,j} dy[n, o, i, j].   dy: (N, C, H, W) -> (C,)."""
    return dy.sum(axis=(0, 2, 3))
