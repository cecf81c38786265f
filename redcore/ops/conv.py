r"""2-D convolution and transposed convolution: forward, backward, and the duality between them.

Shapes (PyTorch layouts, which the released Caffe model also uses):

    x  : (N, C_in, H, W)           input
    w  : (C_out, C_in, k, k)       conv weight
    wt : (C_in, C_out, k, k)       transposed-conv weight
    b  : (C_out,)                  bias
    y  : (N, C_out, H_o, W_o)      output

Convolution (cross-correlation, as in every framework), stride s, zero padding p:

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x_pad[n, c, s*i + u, s*j + v]      (x_pad: x padded by p)

Its backward, for an upstream gradient dy = dL/dy:

    dL/dw[o, c, u, v] = sum_{n, i, j} dy[n, o, i, j] * x_pad[n, c, s*i + u, s*j + v]          (conv2d_backward_weight)
    dL/dx_pad[n, c, s*i + u, s*j + v] += sum_o w[o, c, u, v] * dy[n, o, i, j]                 (conv2d_backward_input)
    dL/db[o] = sum_{n, i, j} dy[n, o, i, j]                                                 (bias_backward)

``conv2d_backward_input`` is the adjoint of the convolution's linear part, ``<conv(x), y> = <x, conv^T(y)>``,
and *that adjoint is the transposed convolution* (the paper's "deconvolution", §3.1).  So the transposed conv

    yt = conv_transpose2d(x, wt, b, s, p, output_padding) = conv2d_backward_input(x, wt) + b

has as its backward

    dL/dx  = conv2d(dy, wt)                              (a plain convolution with the same weights)
    dL/dwt = conv2d_backward_weight(x, dy)               (input and upstream gradient trade places)
    dL/db  = bias_backward(dy)

Every backend therefore supplies only three array primitives, ``conv2d`` (forward without bias),
``conv2d_backward_input`` and ``conv2d_backward_weight``; the ops below are written once on top of them.

Output sizes:  conv   H_o = floor((H + 2p - k) / s) + 1
               convT  H_o = (H - 1) * s - 2p + k + output_padding,   0 <= output_padding < s
"""
import numpy as np


# ----------------------------------------------------------------------------------------------------
# Output sizes: one pair of helpers serves conv, transposed conv and the model's size rule.
# ----------------------------------------------------------------------------------------------------
def conv_output_size(size, k, stride=1, padding=0):
    """Spatial size of a convolution's output: floor((size + 2p - k) / s) + 1."""
    out = (size + 2 * padding - k) // stride + 1
    if out < 1:
        raise ValueError(f"a {size}-pixel map is too small for a {k}x{k} convolution "
                         f"with stride {stride} and padding {padding}")
    return out


def conv_transpose_output_size(size, k, stride=1, padding=0, output_padding=0):
    """Spatial size of a transposed convolution's output: (size - 1) s - 2p + k + output_padding."""
    if not 0 <= output_padding < max(stride, 1):
        raise ValueError(f"output_padding must be in [0, stride); got {output_padding} with stride {stride}")
    return (size - 1) * stride - 2 * padding + k + output_padding


def output_padding_to_restore(size, k, stride, padding):
    """The output_padding with which the transposed conv restores a map of `size` after the conv.

    conv maps `size` to H_o = floor((size + 2p - k)/s) + 1 and drops (size + 2p - k) mod s pixels; the mirrored
    transposed conv gives (H_o - 1) s - 2p + k, so adding those dropped pixels back restores `size` exactly.
    """
    return (size + 2 * padding - k) % stride


# ----------------------------------------------------------------------------------------------------
# The NumPy reference of the three primitives: one einsum per kernel tap (u, v), clear rather than fast.
# It runs in float32 and float64 and is the oracle every other backend is tested against.
# ----------------------------------------------------------------------------------------------------
def _tap(x_pad, u, v, stride, h_out, w_out):
    """View of the padded input seen by kernel tap (u, v): x_pad[:, :, s*i + u, s*j + v] for all (i, j)."""
    return x_pad[:, :, u:u + stride * (h_out - 1) + 1:stride, v:v + stride * (w_out - 1) + 1:stride]


def conv2d_loops(x, w, stride=1, padding=0):
    """The forward formula above as written, one output element at a time: the oracle of conv2d_reference
    (slow; for small shapes in tests).   x: (N,C_in,H,W), w: (C_out,C_in,k,k) -> (N,C_out,H_o,W_o)."""
    n_img, c_in, h, wd = x.shape
    c_out, _, k, _ = w.shape
    h_out, w_out = conv_output_size(h, k, stride, padding), conv_output_size(wd, k, stride, padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((n_img, c_out, h_out, w_out), dtype=np.result_type(x, w))
    for n, o, i, j in np.ndindex(y.shape):
        for c, u, v in np.ndindex(c_in, k, k):
            y[n, o, i, j] += w[o, c, u, v] * x_pad[n, c, stride * i + u, stride * j + v]
    return y


def conv2d_reference(x, w, stride=1, padding=0):
    """y[n,o,i,j] = sum_{c,u,v} w[o,c,u,v] x_pad[n,c,s i+u,s j+v].   x: (N,C_in,H,W), w: (C_out,C_in,k,k)."""
    n, _, h, wd = x.shape
    c_out, _, k, _ = w.shape
    h_out, w_out = conv_output_size(h, k, stride, padding), conv_output_size(wd, k, stride, padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((n, c_out, h_out, w_out), dtype=np.result_type(x, w))
    for u in range(k):
        for v in range(k):
            y += np.einsum("oc,nchw->nohw", w[:, :, u, v], _tap(x_pad, u, v, stride, h_out, w_out))
    return y


def conv2d_backward_input_reference(dy, w, input_hw, stride=1, padding=0):
    """dx_pad[n,c,s i+u,s j+v] += sum_o w[o,c,u,v] dy[n,o,i,j], then crop the padding.

    dy: (N,C_out,H_o,W_o), w: (C_out,C_in,k,k), input_hw: (H, W) of the conv's input -> dx: (N,C_in,H,W).
    The input size is needed because a strided conv maps several sizes onto the same H_o.
    """
    n, _, h_out, w_out = dy.shape
    _, c_in, k, _ = w.shape
    h, wd = input_hw
    dx_pad = np.zeros((n, c_in, h + 2 * padding, wd + 2 * padding), dtype=np.result_type(dy, w))
    for u in range(k):
        for v in range(k):
            _tap(dx_pad, u, v, stride, h_out, w_out)[...] += np.einsum("oc,nohw->nchw", w[:, :, u, v], dy)
    return dx_pad[:, :, padding:padding + h, padding:padding + wd]


def conv2d_backward_weight_reference(dy, x, k, stride=1, padding=0):
    """dw[o,c,u,v] = sum_{n,i,j} dy[n,o,i,j] x_pad[n,c,s i+u,s j+v].   dy: (N,C_out,H_o,W_o), x: (N,C_in,H,W)."""
    _, _, h_out, w_out = dy.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dw = np.empty((dy.shape[1], x.shape[1], k, k), dtype=np.result_type(dy, x))
    for u in range(k):
        for v in range(k):
            dw[:, :, u, v] = np.einsum("nohw,nchw->oc", dy, _tap(x_pad, u, v, stride, h_out, w_out))
    return dw


# ----------------------------------------------------------------------------------------------------
# The ops, written once for every backend `be` on top of its three primitives.
# ----------------------------------------------------------------------------------------------------
def conv2d_forward(be, x, w, b, stride=1, padding=0, relu=False):
    """y = conv(x, w) + b (then max(y, 0) with relu).   x: (N,C_in,H,W), w: (C_out,C_in,k,k), b: (C_out,)
    -> y: (N,C_out,H_o,W_o)."""
    return be.conv2d_bias(x, w, b, stride, padding, relu)      # conv2d, add_bias: one pass where fused


def _accumulate(be, out, dw, db):
    """(dw, db), added into the preallocated gradients out = (dw_out, db_out) when given (as the kernels of
    llm.c do: a gradient is a sum over every use, so micro-batches are a loop of backward passes)."""
    if out is None:
        return dw, db
    be.add_(out[0], dw)
    be.add_(out[1], db)
    return out


def conv2d_backward(be, dy, x, w, stride=1, padding=0, input_grad=True, out=None, relu_input=False, dx_addend=None):
    """(dx, dw, db) of y = conv(x, w) + b.   dy: (N,C_out,H_o,W_o); x, w as in the forward.
    input_grad=False skips dx (None): a network's first layer, whose input is data.  out=(dw, db) adds the
    gradients into those arrays and returns them.  relu_input=True: x is a ReLU's output, and dx is returned
    through that ReLU's backward, dx * [x > 0] (in the input gradient's epilogue where the backend fuses it).
    dx_addend: a gradient that x receives by another path (a skip's, Eq. 12), added to dx before the ReLU's
    mask, in the same pass where the backend fuses it."""
    if not input_grad:
        dx = None
    elif relu_input:
        dx = be.conv2d_backward_input_masked(dy, w, x.shape[2:], stride, padding, x, addend=dx_addend)
    else:
        dx = be.conv2d_backward_input(dy, w, x.shape[2:], stride, padding)
        if dx_addend is not None:
            be.add_(dx, dx_addend)
    dw, db = be.conv2d_backward_weight_bias(dy, x, w.shape[2], stride, padding)   # and bias_backward(dy)
    return (dx, *_accumulate(be, out, dw, db))


def _transposed_output_hw(x, k, stride, padding, output_padding):
    op_h, op_w = (output_padding, output_padding) if isinstance(output_padding, int) else output_padding
    return (conv_transpose_output_size(x.shape[2], k, stride, padding, op_h),
            conv_transpose_output_size(x.shape[3], k, stride, padding, op_w))


def conv_transpose2d_forward(be, x, wt, b, stride=1, padding=0, output_padding=0, relu=False):
    """yt = conv^T(x, wt) + b (then max(yt, 0) with relu), the adjoint of conv applied to x.

    x: (N,C_in,H,W), wt: (C_in,C_out,k,k), b: (C_out,) -> (N,C_out,H_o,W_o) with
    H_o = (H-1)s - 2p + k + output_padding; output_padding is an int or an (along H, along W) pair.
    """
    out_hw = _transposed_output_hw(x, wt.shape[2], stride, padding, output_padding)
    return be.conv_transpose2d_bias(x, wt, b, out_hw, stride, padding, relu)   # conv2d_backward_input + add_bias


def conv_transpose2d_add_forward(be, x, wt, b, stride, padding, output_padding, relu, addend, relu_sum=False,
                                 keep_layer=True):
    """(yt, s): yt = conv_transpose2d_forward(...) and s = yt + addend (then max(s, 0) with relu_sum): the skip
    sum of Eq. 3, or the residual of §3.3 (addend the net's input), in the transposed conv's pass where the
    backend fuses it.  addend: a map of yt's shape.  keep_layer=False: yt is not returned (None), which spares
    its memory (inference; the residual).  The sum passes its gradient to both summands (through its ReLU's
    mask, activation.py), so the backward is conv_transpose2d_backward's."""
    out_hw = _transposed_output_hw(x, wt.shape[2], stride, padding, output_padding)
    return be.conv_transpose2d_bias_add(x, wt, b, out_hw, stride, padding, relu, addend, relu_sum, keep_layer)


def conv_transpose2d_backward(be, dy, x, wt, stride=1, padding=0, out=None, relu_input=False):
    """(dx, dwt, db) of yt = conv^T(x, wt) + b: dx = conv(dy, wt), dwt = conv2d_backward_weight(x, dy).
    out=(dwt, db) adds the gradients into those arrays and returns them.  relu_input=True: x is a ReLU's
    output, and dx is returned through that ReLU's backward, dx * [x > 0] (fused where the backend can)."""
    dx = be.conv2d_masked(dy, wt, stride, padding, x) if relu_input else be.conv2d(dy, wt, stride, padding)
    dwt = be.conv2d_backward_weight(x, dy, wt.shape[2], stride, padding)
    return (dx, *_accumulate(be, out, dwt, be.bias_backward(dy)))
