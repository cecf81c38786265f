"""The im2col + GEMM convolution, written once for the "cpu" and "cuda" backends, and the "cpu" backend.

conv2d = im2col + GEMM; conv2d_backward_input = GEMM + col2im (for stride 1: a conv with the flipped kernel);
conv2d_backward_weight = im2col + GEMM.  The column buffer is reused between calls and is never larger than
about `cols_budget` bytes: images are processed in groups, or a large image in bands of output rows, that fit it.

An Im2colBackend is an array module `xp` (NumPy or CuPy, for the GEMMs and allocation) and a kernel set `kernels`
with the data-movement and element-wise kernels under fixed names and out-first signatures:

    im2col(cols, x, k, stride, padding, h_out, w_out, i_start)
    col2im(x, cols, k, stride, padding, h_out, w_out, i_start)
    add_bias(y, b, relu)   bias_backward(db, dy)   relu(y)   add_relu(out, a, skip)   relu_backward(dy, y)
    adam_update(p, g, m, v, step_size, beta1, beta2, eps)

"cpu" takes the Numba kernels of kernels/cpu (redcore.kernels) and the BLAS that NumPy links; "cuda"
(cuda_backend.py) takes the CUDA kernels of kernels/cuda and cuBLAS through CuPy.

Layout.  Arrays are (N, C, H, W) to every caller.  On the cpu backend, a layer whose output feeds the
channels-last Winograd F(4x4) kernels returns it as an (N, C, H, W)-shaped view of (N, H, W, C) memory
(`is_channels_last`): the next layer's transforms then read whole channel vectors instead of transposing, and
the element-wise kernels (add_bias_channels_last, bias_backward_channels_last, and the flat ones over memory
order) take either layout.  NumPy code on such a view sees ordinary (N, C, H, W) values.
"""
import numpy as np

from .. import kernels as numba_kernels
from ..ops.conv import conv_output_size
from ..ops.loss import mse_loss_reference
from .base import Backend

COLS_BUDGET = 8 * 2**20   # one image's columns of a 128-filter layer at 50x50 stay near the 32 MiB L3


def is_channels_last(a):
    """True for an (N, C, H, W)-shaped view of (N, H, W, C) memory, the layout in which the cpu backend's
    Winograd F(4x4) layers hand on their outputs; False for a C-contiguous array (and so for one channel)."""
    return a.ndim == 4 and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous


class Im2colBackend(Backend):
    """The convolution primitives as im2col + GEMM on the array module `xp` with the kernel set `kernels`."""

    def __init__(self, kernels, xp, cols_budget):
        self.kernels, self.xp, self.cols_budget = kernels, xp, cols_budget
        self._cols = {}

    # ---- arrays (host arrays here; cuda_backend.py overrides them for the device) ------------------
    def asarray(self, a, dtype):
        return self.xp.ascontiguousarray(a, dtype=dtype)

    def to_numpy(self, a):
        return np.asarray(a)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def _columns(self, n_img, rows, cols, dtype):
        """A reusable (n_img, rows, cols) buffer for im2col."""
        need = n_img * rows * cols
        buf = self._cols.get(np.dtype(dtype))
        if buf is None or buf.size < need:
            buf = self._cols[np.dtype(dtype)] = self.xp.empty(need, dtype=dtype)
        return buf[:need].reshape(n_img, rows, cols)

    def _image_groups(self, n_img, per_image):
        """(a, b) ranges of images whose buffers, per_image bytes each, fit cols_budget together (at least one)."""
        step = max(1, min(n_img, self.cols_budget // per_image))
        for a in range(0, n_img, step):
            yield a, min(a + step, n_img)

    def _blocks(self, n_img, rows, h_out, w_out, itemsize):
        """(images a:b, output rows i:j) blocks whose columns fit cols_budget: several whole images at a time
        when one image fits, else one image in bands of output rows (a 2000x3000 photo then needs ~8 MiB)."""
        per_image = rows * h_out * w_out * itemsize
        if per_image <= self.cols_budget:
            for a, b in self._image_groups(n_img, per_image):
                yield a, b, 0, h_out
        else:
            band = max(1, self.cols_budget // (rows * w_out * itemsize))
            for a in range(n_img):
                for i in range(0, h_out, band):
                    yield a, a + 1, i, min(i + band, h_out)

    # ---- convolution primitives --------------------------------------------------------------------
    winograd = False      # backends whose kernel set has Winograd transforms may switch it on
    # Winograd pays where the GEMM dominates, from 64 input channels on one core or on the kernels' threads
    # (bench/README.md, "Where the cpu backend's choices come from").
    winograd_min_channels = 64
    winograd_tile = 2     # 2: F(2x2, 3x3); 4: F(4x4, 3x3), where the kernel set has it
    # Outputs of the channels-last Winograd kernels with at least this many channels are returned as
    # (N, C, H, W) views of (N, H, W, C) memory, so the next layer's transforms read whole channel vectors
    # instead of transposing (every method below takes either layout; NumPy code sees only the shape).
    channels_last = False
    channels_last_min_channels = 4

    def _use_winograd(self, stride, k, c_in, c_out):
        # The input side decides: im2col writes 9 values per input value, whatever C_out; with one output
        # channel (the last deconv) the GEMM is a matrix-vector product either way, and Winograd's 2.25
        # values per input win (bench/README.md, "Where the cpu backend's choices come from").
        return self.winograd and stride == 1 and k == 3 and c_in >= self.winograd_min_channels

    def conv2d(self, x, w, stride, padding):
        """x: (N, C, H, W), w: (O, C, k, k) -> (N, O, H_o, W_o): y[n] = W (O, C k^2) @ im2col(x[n]);
        3x3 stride-1 layers by Winograd (conv2d_winograd) where the backend enables it; an output that feeds the
        channels-last Winograd kernels is returned channels-last (see the module docstring)."""
        if self._use_winograd(stride, w.shape[2], w.shape[1], w.shape[0]):
            return self.conv2d_winograd(x, w, padding)
        xp, kernels = self.xp, self.kernels
        x = xp.ascontiguousarray(x)
        n_img, c_in, h, wd = x.shape
        c_out, _, k, _ = w.shape
        h_out, w_out = conv_output_size(h, k, stride, padding), conv_output_size(wd, k, stride, padding)
        rows = c_in * k * k
        wm = w.reshape(c_out, rows)
        if self._channels_last_output(c_out):       # y[n]^T = im2col(x[n])^T W^T: (pixels, C_out)
            y = xp.empty((n_img, h_out * w_out, c_out), dtype=x.dtype)
            for a, b, i, j in self._blocks(n_img, rows, h_out, w_out, x.itemsize):
                cols = self._columns(b - a, rows, (j - i) * w_out, x.dtype)
                kernels.im2col(cols, x[a:b], k, stride, padding, h_out, w_out, i)
                self._matmul_into(y[a:b, i * w_out:j * w_out], cols.transpose(0, 2, 1), wm.T)
            return y.reshape(n_img, h_out, w_out, c_out).transpose(0, 3, 1, 2)
        y = xp.empty((n_img, c_out, h_out * w_out), dtype=x.dtype)
        for a, b, i, j in self._blocks(n_img, rows, h_out, w_out, x.itemsize):
            cols = self._columns(b - a, rows, (j - i) * w_out, x.dtype)
            kernels.im2col(cols, x[a:b], k, stride, padding, h_out, w_out, i)
            self._matmul_into(y[a:b, :, i * w_out:j * w_out], wm, cols)
        return y.reshape(n_img, c_out, h_out, w_out)

    def _channels_last_output(self, c_out):
        """Whether a layer with c_out output channels returns them channels-last: where the next layer, taking
        c_out channels in, runs the channels-last Winograd kernels (elsewhere it would transpose them back)."""
        return (self.channels_last and self.winograd and self._winograd_kernels().CHANNELS_LAST
                and c_out >= max(self.winograd_min_channels, self.channels_last_min_channels))

    def _winograd_kernels(self):
        """The Winograd transforms in use: F(4x4, 3x3) (kernels/cpu/winograd4.py) or F(2x2, 3x3) (winograd.py)."""
        return self.kernels.winograd4 if self.winograd_tile == 4 else self.kernels.winograd

    def conv2d_winograd(self, x, w, padding, u_in_out=None):
        """The stride-1 3x3 convolution by Winograd F(m x m, 3x3): transform the input tiles and the filters,
        one batched GEMM per group of images over the (m+2)^2 Winograd positions, transform back.  Groups of
        images keep the transformed tiles within cols_budget.  u_in_out: the transformed filters as the
        channels-last GEMM takes them, (positions, C_in, C_out), where the caller has them (w is then unused)."""
        xp, winograd = self.xp, self._winograd_kernels()
        n_img, c_in, h, wd = x.shape
        h_out, w_out = conv_output_size(h, 3, 1, padding), conv_output_size(wd, 3, 1, padding)
        t_h, t_w = -(-h_out // winograd.TILE), -(-w_out // winograd.TILE)
        if winograd.CHANNELS_LAST:
            u = winograd.filter_transform(w).transpose(0, 2, 1) if u_in_out is None else u_in_out
            c_out = u.shape[2]
        else:
            u, c_out = winograd.filter_transform(w), w.shape[0]
        x_cl = winograd.CHANNELS_LAST and is_channels_last(x)
        xm = x.transpose(0, 2, 3, 1) if x_cl else xp.ascontiguousarray(x)      # x as laid out in memory
        y_cl = self._channels_last_output(c_out)
        y = xp.empty((n_img, h_out, w_out, c_out) if y_cl else (n_img, c_out, h_out, w_out), dtype=x.dtype)
        for a, b in self._image_groups(n_img, winograd.POSITIONS * max(c_in, c_out) * t_h * t_w * x.itemsize):
            tiles = (b - a) * t_h * t_w
            if winograd.CHANNELS_LAST:
                v = self._columns(winograd.POSITIONS, tiles, c_in, x.dtype)
                winograd.input_transform(v, xm[a:b], padding, t_h, t_w, x_cl)
                m = xp.matmul(v, u)                              # (positions, tiles, C_out): the GEMMs
                winograd.output_transform(y[a:b], m, t_h, t_w, y_cl)
            else:
                v = self._columns(winograd.POSITIONS, c_in, tiles, x.dtype)
                winograd.input_transform(v, xm[a:b], padding, t_h, t_w)
                m = xp.matmul(u, v)                              # (positions, C_out, tiles)
                winograd.output_transform(y[a:b], m, t_h, t_w)
        return y.transpose(0, 3, 1, 2) if y_cl else y

    def conv2d_backward_weight_winograd(self, dy, x, padding):
        """dW of a stride-1 3x3 convolution by F(3x3, m x m), Winograd's dual of the forward's: transform the
        input tiles and the m x m blocks of dy, one batched GEMM per group of images summing over the tiles,
        transform back."""
        xp, winograd = self.xp, self._winograd_kernels()
        dy_cl, x_cl = winograd.CHANNELS_LAST and is_channels_last(dy), winograd.CHANNELS_LAST and is_channels_last(x)
        n_img, c_out, h_out, w_out = dy.shape
        c_in = x.shape[1]
        dy = dy.transpose(0, 2, 3, 1) if dy_cl else xp.ascontiguousarray(dy)   # as laid out in memory
        x = x.transpose(0, 2, 3, 1) if x_cl else xp.ascontiguousarray(x)
        t_h, t_w = -(-h_out // winograd.TILE), -(-w_out // winograd.TILE)
        wh = xp.zeros((winograd.POSITIONS, c_out, c_in), dtype=dy.dtype)
        for a, b in self._image_groups(n_img, winograd.POSITIONS * (c_in + c_out) * t_h * t_w * x.itemsize):
            tiles = (b - a) * t_h * t_w
            buf = self._columns(winograd.POSITIONS, c_in + c_out, tiles, x.dtype)
            if winograd.CHANNELS_LAST:                                  # v: (positions, tiles, C_in), gh: (.., C_out)
                v = buf.reshape(-1)[:winograd.POSITIONS * tiles * c_in].reshape(winograd.POSITIONS, tiles, c_in)
                gh = buf.reshape(-1)[winograd.POSITIONS * tiles * c_in:].reshape(winograd.POSITIONS, tiles, c_out)
                winograd.input_transform(v, x[a:b], padding, t_h, t_w, x_cl)
                winograd.gradient_transform(gh, dy[a:b], t_h, t_w, dy_cl)
                wh += xp.matmul(gh.transpose(0, 2, 1), v)       # (positions, C_out, C_in): sums over the tiles
            else:
                v, gh = buf[:, :c_in], buf[:, c_in:]
                winograd.input_transform(v, x[a:b], padding, t_h, t_w)
                winograd.gradient_transform(gh, dy[a:b], t_h, t_w)
                wh += xp.matmul(gh, v.transpose(0, 2, 1))
        return winograd.weight_gradient_from_winograd(wh)

    def conv2d_backward_input(self, dy, w, input_hw, stride, padding):
        """dy: (N, O, H_o, W_o), w: (O, C, k, k) -> dx: (N, C, H, W) = col2im(W^T @ dy[n]).

        For stride 1 the adjoint is itself a convolution: dx = conv(dy, w'), w'[c, o, u, v] = w[o, c, k-1-u, k-1-v],
        padding k-1-p (H_o + 2(k-1-p) - k + 1 = H).  That path gathers (im2col) instead of scattering (col2im),
        which is cheaper for the same GEMM (bench/README.md).
        """
        k = w.shape[2]
        if stride == 1 and padding <= k - 1 and tuple(input_hw) == tuple(s + k - 1 - 2 * padding for s in dy.shape[2:]):
            if self._use_winograd(1, k, w.shape[0], w.shape[1]) and self._winograd_kernels().CHANNELS_LAST:
                u = self._winograd_kernels().input_gradient_filter_transform(w)   # w' transformed, no copy
                return self.conv2d_winograd(dy, None, k - 1 - padding, u_in_out=u)
            w_flipped = self.xp.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
            return self.conv2d(dy, w_flipped, 1, k - 1 - padding)
        xp, kernels = self.xp, self.kernels
        dy = xp.ascontiguousarray(dy)
        n_img, c_out, h_out, w_out = dy.shape
        c_in = w.shape[1]
        rows = c_in * k * k
        wmt = w.reshape(c_out, rows).T
        dyf = dy.reshape(n_img, c_out, h_out * w_out)
        dx = xp.zeros((n_img, c_in) + tuple(input_hw), dtype=dy.dtype)
        for a, b, i, j in self._blocks(n_img, rows, h_out, w_out, dy.itemsize):
            dcols = self._columns(b - a, rows, (j - i) * w_out, dy.dtype)
            self._matmul_into(dcols, wmt, dyf[a:b, :, i * w_out:j * w_out])
            kernels.col2im(dx[a:b], dcols, k, stride, padding, h_out, w_out, i)
        return dx

    def conv2d_backward_weight(self, dy, x, k, stride, padding):
        """dy: (N, O, H_o, W_o), x: (N, C, H, W) -> dw: (O, C, k, k) = sum_n dy[n] @ im2col(x[n])^T;
        3x3 stride-1 layers by Winograd (F(3x3, m x m)) where the backend enables it."""
        if self._use_winograd(stride, k, x.shape[1], dy.shape[1]):
            return self.conv2d_backward_weight_winograd(dy, x, padding)
        xp, kernels = self.xp, self.kernels
        n_img, c_out, h_out, w_out = dy.shape
        if is_channels_last(dy):                    # dy[n] as (C_out, pixels): a transposed view, no copy
            dyf = dy.transpose(0, 2, 3, 1).reshape(n_img, h_out * w_out, c_out).transpose(0, 2, 1)
        else:
            dyf = xp.ascontiguousarray(dy).reshape(n_img, c_out, h_out * w_out)
        x = xp.ascontiguousarray(x)
        c_in = x.shape[1]
        rows = c_in * k * k
        dw = xp.zeros((c_out, rows), dtype=dy.dtype)
        for a, b, i, j in self._blocks(n_img, rows, h_out, w_out, x.itemsize):
            cols = self._columns(b - a, rows, (j - i) * w_out, x.dtype)
            kernels.im2col(cols, x[a:b], k, stride, padding, h_out, w_out, i)
            for n in range(b - a):       # accumulate one GEMM per image: no (N, O, K) temporary
                dw += dyf[a + n, :, i * w_out:j * w_out] @ cols[n].T
        return dw.reshape(c_out, c_in, k, k)

    def _matmul_into(self, out, a, b):
        """out[...] = a @ b (batched over the leading axis of b), written in place."""
        self.xp.matmul(a, b, out=out)

    def add_bias(self, y, b, relu=False):
        if y.ndim != 4 or b.shape != (y.shape[1],) or b.dtype != y.dtype:
            raise ValueError(f"add_bias takes (N, C, H, W) maps and C biases of their dtype; got {y.dtype} "
                             f"{y.shape} and {b.dtype} {b.shape}")
        if is_channels_last(y):
            self.kernels.add_bias_channels_last(y.transpose(0, 2, 3, 1), b, bool(relu))
        else:
            self.kernels.add_bias(y, b, bool(relu))
        return y

    def bias_backward(self, dy):
        db = self.xp.empty(dy.shape[1], dtype=dy.dtype)
        if is_channels_last(dy):
            self.kernels.bias_backward_channels_last(db, dy.transpose(0, 2, 3, 1))
        else:
            self.kernels.bias_backward(db, self.xp.ascontiguousarray(dy))
        return db

    # ---- element-wise kernels over flat views, in memory order -----------------------------------
    @staticmethod
    def _flat(a):
        """a's elements in memory order as a 1-D view: a C-contiguous or a channels-last array (an in-place
        kernel on anything else would write into a copy)."""
        if a.flags.c_contiguous:
            return a.reshape(-1)
        if is_channels_last(a):
            return a.transpose(0, 2, 3, 1).reshape(-1)
        raise ValueError(f"an element-wise kernel takes a C-contiguous or channels-last array; got strides "
                         f"{a.strides} for shape {a.shape}")

    def _laid_out_like(self, a, ref):
        """a in ref's memory layout (C-contiguous or channels-last), copied only where it differs, so that
        the two flat views pair the same elements.  Shapes and dtypes must match: the kernels walk both
        flat views over ref's size."""
        if a.shape != ref.shape or a.dtype != ref.dtype:
            raise ValueError(f"an element-wise kernel pairs arrays of one shape and dtype; got {a.dtype} {a.shape} "
                             f"and {ref.dtype} {ref.shape}")
        if is_channels_last(ref):
            if is_channels_last(a):
                return a
            return self.xp.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        return self.xp.ascontiguousarray(a)

    # ---- activations -------------------------------------------------------------------------------
    def relu_(self, y):
        self.kernels.relu(self._flat(y))
        return y

    def add_relu(self, a, skip):
        a = a if is_channels_last(a) else self.xp.ascontiguousarray(a)
        out = self.xp.empty_like(a)                  # a's layout
        self.kernels.add_relu(self._flat(out), self._flat(a), self._flat(self._laid_out_like(skip, a)))
        return out

    def relu_backward_(self, dy, y):
        self.kernels.relu_backward(self._flat(dy), self._flat(self._laid_out_like(y, dy)))
        return dy

    # ---- optimizer ---------------------------------------------------------------------------------
    def adam_update_(self, p, g, m, v, step_size, beta1, beta2, eps):
        # The kernel walks four flat buffers of p's size: refuse anything else before it touches memory.
        for name, a in (("gradient", g), ("first moment", m), ("second moment", v)):
            if a.shape != p.shape or a.dtype != p.dtype:
                raise ValueError(f"adam_update_: the {name} is {a.dtype} {a.shape}, the parameter {p.dtype} {p.shape}")
        if not (p.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
            raise ValueError("adam_update_: the parameter and moment buffers must be C-contiguous (updated in place)")
        self.kernels.adam_update(p.reshape(-1), self.xp.ascontiguousarray(g).reshape(-1), m.reshape(-1), v.reshape(-1),
                           float(step_size), float(beta1), float(beta2), float(eps))


class CpuBackend(Im2colBackend):
    """Numba kernels (kernels/cpu) and the BLAS GEMM that NumPy links.

    conv: "auto" runs 3x3 stride-1 convolutions by Winograd where they pay (at least `winograd_min_channels`
    input channels, 64; bench/README.md has the measurements), the others by im2col;
    "im2col" never uses Winograd; "winograd" uses it on every 3x3 stride-1 layer, however narrow (tests).
    winograd_tile: 4 gives F(4x4, 3x3) for the forward and input gradient and F(3x3, 4x4) for the weight
    gradient, 2 gives F(2x2, 3x3).  get_backend names the variants: "cpu", "cpu-im2col", "cpu-winograd2",
    "cpu-winograd4".

    single_threaded=True takes the kernels compiled without threads and with the GIL released: the backend of
    one thread of redcore.threads.BatchSplit (each thread its own instance, so its own column buffer)."""
    name = "cpu"
    mse_loss = staticmethod(mse_loss_reference)
    CONVS = ("auto", "im2col", "winograd")

    def __init__(self, single_threaded=False, conv="auto", winograd_tile=4):
        if conv not in self.CONVS or winograd_tile not in (2, 4):
            raise ValueError(f"the cpu backend's conv is one of {self.CONVS} and its winograd_tile 2 or 4; got "
                             f"{conv!r}, {winograd_tile!r}")
        super().__init__(numba_kernels.single_threaded() if single_threaded else numba_kernels, np, COLS_BUDGET)
        self.single_threaded, self.conv = single_threaded, conv
        if single_threaded:
            # a smaller column/transform buffer keeps each thread's tiles in its share of the cache
            self.cols_budget = 2 * 2**20
        self.winograd = conv != "im2col"
        if conv == "winograd":
            self.winograd_min_channels = 1
        self.channels_last = True
        self.winograd_tile = winograd_tile          # F(4x4) by default: bench/README.md, "Winograd"
