"""The "cpu" backend: Numba kernels (redcore.kernels, from kernels/cpu) for the data movement and the
element-wise work, and the BLAS GEMM that NumPy links for the convolutions' matrix products.

conv2d = im2col + GEMM; conv2d_backward_input = GEMM + col2im (for stride 1: a conv with the flipped kernel);
conv2d_backward_weight = im2col + GEMM.  The column buffer is reused between calls and is never larger than
about COLS_BUDGET bytes: images are processed in groups, or a large image in bands of output rows, that fit it.
"""
import numpy as np

from .. import kernels as K
from ..ops.conv import conv_output_size
from .numpy_backend import NumpyBackend

COLS_BUDGET = 8 * 2**20   # one image's columns of a 128-filter layer at 50x50 stay near the 32 MiB L3


class CpuBackend(NumpyBackend):
    name = "cpu"

    def __init__(self):
        self._cols = {}

    def _columns(self, n_img, rows, cols, dtype):
        """A reusable (n_img, rows, cols) buffer for im2col."""
        need = n_img * rows * cols
        buf = self._cols.get(np.dtype(dtype))
        if buf is None or buf.size < need:
            buf = self._cols[np.dtype(dtype)] = np.empty(need, dtype=dtype)
        return buf[:need].reshape(n_img, rows, cols)

    @staticmethod
    def _blocks(n_img, rows, h_out, w_out, itemsize):
        """(images a:b, output rows i:j) blocks whose columns fit COLS_BUDGET: several whole images at a time
        when one image fits, else one image in bands of output rows (a 2000x3000 photo then needs ~8 MiB)."""
        per_image = rows * h_out * w_out * itemsize
        if per_image <= COLS_BUDGET:
            step = max(1, min(n_img, COLS_BUDGET // per_image))
            for a in range(0, n_img, step):
                yield a, min(a + step, n_img), 0, h_out
        else:
            band = max(1, COLS_BUDGET // (rows * w_out * itemsize))
            for a in range(n_img):
                for i in range(0, h_out, band):
                    yield a, a + 1, i, min(i + band, h_out)

    # ---- convolution primitives --------------------------------------------------------------------
    def conv2d(self, x, w, stride, padding):
        """x: (N, C, H, W), w: (O, C, k, k) -> (N, O, H_o, W_o): y[n] = W (O, C k^2) @ im2col(x[n])."""
        x = np.ascontiguousarray(x)
        n_img, c_in, h, wd = x.shape
        c_out, _, k, _ = w.shape
        h_out, w_out = conv_output_size(h, k, stride, padding), conv_output_size(wd, k, stride, padding)
        rows = c_in * k * k
        wm = w.reshape(c_out, rows)
        y = np.empty((n_img, c_out, h_out * w_out), dtype=x.dtype)
        for a, b, i, j in self._blocks(n_img, rows, h_out, w_out, x.itemsize):
            cols = self._columns(b - a, rows, (j - i) * w_out, x.dtype)
            K.im2col(cols, x[a:b], k, stride, padding, h_out, w_out, i)
            np.matmul(wm, cols, out=y[a:b, :, i * w_out:j * w_out])
        return y.reshape(n_img, c_out, h_out, w_out)

    def conv2d_backward_input(self, dy, w, input_hw, stride, padding):
        """dy: (N, O, H_o, W_o), w: (O, C, k, k) -> dx: (N, C, H, W) = col2im(W^T @ dy[n]).

        For stride 1 the adjoint is itself a convolution: dx = conv(dy, w'), w'[c, o, u, v] = w[o, c, k-1-u, k-1-v],
        padding k-1-p (H_o + 2(k-1-p) - k + 1 = H).  That path gathers (im2col) instead of scattering (col2im),
        which measured about 3x cheaper per call, for the same GEMM.
        """
        k = w.shape[2]
        if stride == 1 and padding <= k - 1 and tuple(input_hw) == tuple(s + k - 1 - 2 * padding for s in dy.shape[2:]):
            w_flipped = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
            return self.conv2d(dy, w_flipped, 1, k - 1 - padding)
        dy = np.ascontiguousarray(dy)
        n_img, c_out, h_out, w_out = dy.shape
        c_in = w.shape[1]
        rows = c_in * k * k
        wmt = w.reshape(c_out, rows).T
        dyf = dy.reshape(n_img, c_out, h_out * w_out)
        dx = np.zeros((n_img, c_in) + tuple(input_hw), dtype=dy.dtype)
        for a, b, i, j in self._blocks(n_img, rows, h_out, w_out, dy.itemsize):
            dcols = self._columns(b - a, rows, (j - i) * w_out, dy.dtype)
            np.matmul(wmt, dyf[a:b, :, i * w_out:j * w_out], out=dcols)
            K.col2im(dx[a:b], dcols, k, stride, padding, h_out, w_out, i)
        return dx

    def conv2d_backward_weight(self, dy, x, k, stride, padding):
        """dy: (N, O, H_o, W_o), x: (N, C, H, W) -> dw: (O, C, k, k) = sum_n dy[n] @ im2col(x[n])^T."""
        dy, x = np.ascontiguousarray(dy), np.ascontiguousarray(x)
        n_img, c_out, h_out, w_out = dy.shape
        c_in = x.shape[1]
        rows = c_in * k * k
        dyf = dy.reshape(n_img, c_out, h_out * w_out)
        dw = np.zeros((c_out, rows), dtype=dy.dtype)
        for a, b, i, j in self._blocks(n_img, rows, h_out, w_out, x.itemsize):
            cols = self._columns(b - a, rows, (j - i) * w_out, x.dtype)
            K.im2col(cols, x[a:b], k, stride, padding, h_out, w_out, i)
            for n in range(b - a):       # accumulate one GEMM per image: no (N, O, K) temporary
                dw += dyf[a + n, :, i * w_out:j * w_out] @ cols[n].T
        return dw.reshape(c_out, c_in, k, k)

    def add_bias(self, y, b):
        K.bias_add(y, b)
        return y

    def bias_backward(self, dy):
        db = np.empty(dy.shape[1], dtype=dy.dtype)
        K.bias_backward(db, np.ascontiguousarray(dy))
        return db

    # ---- activations -------------------------------------------------------------------------------
    def relu_(self, y):
        K.relu(y.reshape(-1))
        return y

    def add_relu(self, a, skip):
        out = np.empty_like(a)
        K.relu_add(out.reshape(-1), a.reshape(-1), np.ascontiguousarray(skip).reshape(-1))
        return out

    def relu_backward_(self, dy, y):
        K.relu_backward(dy.reshape(-1), np.ascontiguousarray(y).reshape(-1))
        return dy

    # ---- optimizer ---------------------------------------------------------------------------------
    def adam_update_(self, p, g, m, v, step_size, beta1, beta2, eps):
        K.adam_update(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1), v.reshape(-1),
                      float(step_size), float(beta1), float(beta2), float(eps))
