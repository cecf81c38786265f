"""The "cuda" backend: the CUDA kernels of kernels/cuda launched through CuPy, cuBLAS for the GEMMs.

The convolution algorithm is the cpu backend's (Im2colBackend: im2col + GEMM, col2im, the flipped-kernel
conv for stride-1 d-input), with the kernel set CudaKernels instead of the Numba one and CuPy for the arrays
and matrix products.  The loss is one fused kernel (the error, its gradient and a block-wise sum); Adam is one
kernel over the flat buffer of all parameters.

A runtime supplies the array module and the compiled kernels: CupyRuntime on a GPU (cupy.RawModule from
the source text, -Dreal=float or double), or redcore.cuda_kernels.emulation.EmulatedRuntime, which compiles
the same sources for the CPU: get_backend("cuda-emulation") runs every line of this file without a GPU.
"""
import numpy as np

from .. import cuda_kernels
from ..ops.loss import mse_scale
from .cpu_backend import Im2colBackend

THREADS = 256               # threads per block; the reductions need exactly this (REDUCE_THREADS)
MAX_BLOCKS = 65535          # grid-stride loops cover the rest
COLS_BUDGET = 256 * 2**20   # im2col columns per call: RED30's 64 x 50x50 batch in 3 groups


def _int(v):
    return np.int32(v)


def _long(v):
    return np.int64(v)


def _blocks_for(total):
    return (max(1, min((int(total) + THREADS - 1) // THREADS, MAX_BLOCKS)),)


class CupyRuntime:
    """CuPy on a CUDA GPU: the kernels compiled by NVRTC from the sources in kernels/cuda."""

    name = "cupy"

    def __init__(self):
        import cupy
        self.xp = cupy
        self._modules = {}

    def module(self, source_name, dtype):
        key = (source_name, np.dtype(dtype))
        if key not in self._modules:
            real = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.dtype(dtype)]
            self._modules[key] = self.xp.RawModule(code=cuda_kernels.read_source(source_name),
                                                   options=(f"-Dreal={real}",))
        return self._modules[key]

    def to_numpy(self, a):
        return self.xp.asnumpy(a)

    def synchronize(self):
        self.xp.cuda.Device().synchronize()


class CudaKernels:
    """The kernel set of Im2colBackend (same names and out-first signatures as the Numba kernels of
    kernels/cpu), each a launch of a CUDA kernel with its scalars cast to the C types it declares."""

    def __init__(self, runtime):
        self.runtime = runtime

    def _kernel(self, source, name, dtype):
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"the cuda kernels compute in float32 or float64, not {dtype}")
        return self.runtime.module(source, dtype).get_function(name)

    @staticmethod
    def _check(*arrays):
        for a in arrays:
            if not a.flags.c_contiguous:
                raise ValueError("the cuda kernels take C-contiguous arrays")
            if a.dtype != arrays[0].dtype:
                raise TypeError(f"mixed dtypes {a.dtype} and {arrays[0].dtype} in one kernel call")

    # ---- the tensor-core convolution (kernels/cuda/conv_tc.cu) -------------------------------------------
    def conv3x3_tf32(self, y, x, w_taps, b, pad, relu):
        """y (N, H_o, W_o, K) = the 3x3 stride-1 convolution of x (N, H, W, C) with w_taps (9, C, K), plus b,
        then ReLU if relu; TF32 operands, float sums (kernels/cuda/conv_tc.cu)."""
        self._check(y, x, w_taps, b)
        n, h, w, c = x.shape
        k = w_taps.shape[2]
        h_o, w_o = h + 2 * pad - 2, w + 2 * pad - 2
        if (x.dtype != np.float32 or w_taps.shape != (9, c, k) or b.shape != (k,) or y.shape != (n, h_o, w_o, k)
                or not 0 <= pad <= 2):
            raise ValueError(f"conv3x3_tf32 takes float32 x (N, H, W, C), w (9, C, K), b (K,), y (N, H_o, W_o, K) "
                             f"and pad 0..2; got {x.dtype} x {x.shape}, w {w_taps.shape}, b {b.shape}, y {y.shape}, "
                             f"pad {pad}")
        grid = (-(-w_o // 16), -(-h_o // 4), n * -(-k // 16))
        self._kernel("conv_tc.cu", "conv3x3_tf32", np.float32)(
            grid, (128,), (y, x, w_taps, b, _int(n), _int(h), _int(w), _int(c), _int(k), _int(pad), _int(relu)))

    # ---- convolution data movement (kernels/cuda/conv.cu) ----------------------------------------------
    def im2col(self, cols, x, k, stride, padding, h_out, w_out, i_start):
        self._check(cols, x)
        n_img, c_in, h, w = x.shape
        n_rows = cols.shape[2] // w_out
        self._kernel("conv.cu", "im2col", x.dtype)(
            _blocks_for(cols.size), (THREADS,),
            (cols, x, _int(n_img), _int(c_in), _int(h), _int(w), _int(k), _int(stride), _int(padding),
             _int(w_out), _int(i_start), _int(n_rows)))

    def col2im(self, x, cols, k, stride, padding, h_out, w_out, i_start):
        self._check(x, cols)
        n_img, c_in, h, w = x.shape
        n_rows = cols.shape[2] // w_out
        self._kernel("conv.cu", "col2im", x.dtype)(
            _blocks_for(x.size), (THREADS,),
            (x, cols, _int(n_img), _int(c_in), _int(h), _int(w), _int(k), _int(stride), _int(padding),
             _int(h_out), _int(w_out), _int(i_start), _int(n_rows)))

    # ---- element-wise and reductions (kernels/cuda/elementwise.cu) -------------------------------------
    def add_bias(self, y, b, relu):
        self._check(y, b)
        n_img, c = y.shape[:2]
        plane = y.size // max(1, n_img * c)
        self._kernel("elementwise.cu", "add_bias", y.dtype)(
            _blocks_for(y.size), (THREADS,), (y, b, _long(plane), _int(c), _int(bool(relu)), _long(y.size)))

    def bias_backward(self, db, dy):
        self._check(db, dy)
        n_img, c = dy.shape[:2]
        plane = dy.size // max(1, n_img * c)
        self._kernel("elementwise.cu", "bias_backward", dy.dtype)(
            (c,), (THREADS,), (db, dy, _int(n_img), _int(c), _long(plane)))

    def relu(self, y):
        self._check(y)
        self._kernel("elementwise.cu", "relu", y.dtype)(_blocks_for(y.size), (THREADS,), (y, _long(y.size)))

    def add_relu(self, out, a, skip):
        self._check(out, a, skip)
        self._kernel("elementwise.cu", "add_relu", out.dtype)(
            _blocks_for(out.size), (THREADS,), (out, a, skip, _long(out.size)))

    def relu_backward(self, dy, y):
        self._check(dy, y)
        self._kernel("elementwise.cu", "relu_backward", dy.dtype)(
            _blocks_for(dy.size), (THREADS,), (dy, y, _long(dy.size)))

    def mse_loss(self, dpred, loss_sum, pred, target, grad_scale):
        self._check(dpred, pred, target)
        self._kernel("elementwise.cu", "mse_loss", pred.dtype)(
            _blocks_for(pred.size), (THREADS,),
            (dpred, loss_sum, pred, target, pred.dtype.type(grad_scale), _long(pred.size)))

    def adam_update(self, p, g, m, v, step_size, beta1, beta2, eps):
        self._check(p, g, m, v)
        real = p.dtype.type
        self._kernel("elementwise.cu", "adam_update", p.dtype)(
            _blocks_for(p.size), (THREADS,),
            (p, g, m, v, real(step_size), real(beta1), real(beta2), real(eps), _long(p.size)))


class CudaBackend(Im2colBackend):
    name = "cuda"

    def __init__(self, runtime):
        super().__init__(CudaKernels(runtime), runtime.xp, COLS_BUDGET)
        self.runtime = runtime
        if runtime.name == "emulation":
            self.name = "cuda-emulation"

    def asarray(self, a, dtype):
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def to_numpy(self, a):
        return self.runtime.to_numpy(a)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def _matmul_into(self, out, a, b):
        # cuBLAS through CuPy; `out` may be a strided view (a band of rows), so assign rather than pass out=.
        out[...] = self.xp.matmul(a, b)

    def mse_loss(self, pred, target, reduction="batch"):
        """(loss, dpred) of paper Eq. 4 by one fused kernel: the error, its gradient and the sum of squares."""
        scale = mse_scale(pred, target, reduction)
        xp = self.xp
        pred, target = xp.ascontiguousarray(pred), self.asarray(target, pred.dtype)
        dpred = xp.empty_like(pred)
        loss_sum = xp.zeros(1, dtype=np.float64)
        self.kernels.mse_loss(dpred, loss_sum, pred, target, 2.0 * scale)
        return float(loss_sum[0]) * scale, dpred
