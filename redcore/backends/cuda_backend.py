"""The "cuda" backend: the CUDA kernels of kernels/cuda launched through CuPy, cuBLAS for the GEMMs.

The convolution algorithm is the cpu backend's (Im2colBackend: im2col + GEMM, col2im, the flipped-kernel
conv for stride-1 d-input), with the kernel set CudaKernels instead of the Numba one and CuPy for the arrays
and matrix products.  The loss is one fused kernel (the error, its gradient and a block-wise sum); Adam is one
kernel over the flat buffer of all parameters.

Precision "tf32" (the backend "cuda-tf32", which --backend cuda runs unless told --precision fp32) puts RED's
3x3 stride-1 float32 convolutions on tensor cores instead (kernels/cuda/conv_tc.cu): the forward with bias and
ReLU in its epilogue, the input gradient and the transposed conv as the same kernel reading the weight flipped,
and the weight gradient with the bias gradient fused; no im2col matrix and no cuBLAS on that path.  Precision
"bf16" ("cuda-bf16") is the same path with bfloat16 operands (twice TF32's tensor-core rate, 7 mantissa bits
instead of 10); maps, weights, sums and Adam stay float32.

A runtime supplies the array module and the compiled kernels: CupyRuntime on a GPU (cupy.RawModule from
the source text, -Dreal=float or double), or redcore.cuda_kernels.emulation.EmulatedRuntime, which compiles
the same sources for the CPU: get_backend("cuda-emulation") runs every line of this file without a GPU.

On the tensor-core path a training step is kernel launches only (the sums, copies and zeroing of the step are
kernels too, and Adam reads its step size from device memory), so CudaKernels.record() can collect a step's
launches with their buffers and the runtime's capture() replays them: one CUDA graph per step on a GPU, the
same list of launches on the emulation (redcore/training.py, CapturedStep).
"""
import contextlib
import functools

import numpy as np

from .. import cuda_kernels
from ..ops.loss import mse_scale
from .base import OPERANDS, PRECISIONS, cuda_name
from .cpu_backend import Im2colBackend

THREADS = 256               # threads per block; the reductions need exactly this (REDUCE_THREADS)
MAX_BLOCKS = 65535          # grid-stride loops cover the rest
COLS_BUDGET = 256 * 2**20   # im2col columns per call: RED30's 64 x 50x50 batch in 3 groups
WGRAD_BLOCKS = 4 * 132     # weight-gradient blocks to aim for: about four per SM of an H100 / H200 (132 SMs)
CONV_WIDTHS = {16: "", 32: "_n32", 64: "_n64"}   # output channels per block -> kernel name suffix
OPERAND_K = {"tf32": 8, "bf16": 16}            # the mma's K: input channels per chunk of conv_tc.cu
OPERAND_BYTES = {"tf32": 4, "bf16": 2}
# the bits of conv_tc.cu's epilogue argument (its EPI_* macros): the steps after the sum, in this order
EPI_RELU, EPI_LAYER_OUT, EPI_ADD, EPI_RELU_SUM, EPI_MASK = 1, 2, 4, 8, 16


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

    def detach(self, a):
        """What a recorded launch keeps of its argument a: of an array only its device address and size, so that
        the recorded pass frees and reuses its temporaries as an eager one does (capture() rebuilds views)."""
        return DeviceAddress(a.data.ptr, a.nbytes) if isinstance(a, self.xp.ndarray) else a

    def private_memory(self):
        """A context in which CuPy allocates from a memory pool of its own (returned): what a plan records in
        keeps its blocks, reused within the recorded pass as eagerly, and no other allocation can take them."""
        pool = self.xp.cuda.MemoryPool()

        @contextlib.contextmanager
        def allocating():
            with self.xp.cuda.using_allocator(pool.malloc):
                yield pool
        return allocating()

    def shared_memory(self):
        """A context in which CuPy allocates from its default pool even while a plan records: for the backend's
        cached buffers (a zero bias, Adam's alpha_t), which outlive any plan and its pool."""
        return self.xp.cuda.using_allocator(self.xp.get_default_memory_pool().malloc)

    def capture(self, launches, pool):
        return CudaGraph(self.xp, launches, pool)

    def time(self, run, repeats=3):
        """Median seconds of run() on the GPU (CUDA events), after one untimed run."""
        run()
        times = []
        for _ in range(repeats):
            start, end = self.xp.cuda.Event(), self.xp.cuda.Event()
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(self.xp.cuda.get_elapsed_time(start, end) / 1e3)
        return sorted(times)[len(times) // 2]


class DeviceAddress:
    """An array argument of a recorded launch, by address: the memory stays its pool's (CupyRuntime.detach)."""

    def __init__(self, ptr, nbytes):
        self.ptr, self.nbytes = ptr, nbytes


class CudaGraph:
    """Recorded launches captured once into a CUDA graph on a stream of their own; run() copies new inputs into
    their static buffers and replays the graph, ordered after the work queued before it and before the work
    queued after it.  The graph's kernel nodes hold their arguments by value (device addresses), so it keeps
    the memory pool the launches were recorded in rather than the launches' arrays: the pass's temporaries go
    back to that pool, which nothing else allocates from."""

    def __init__(self, cupy, launches, pool):
        self.cupy, self.pool = cupy, pool
        device = cupy.cuda.Device().id
        calls = [(kernel, grid, block, tuple(self._view(a, device) for a in args))   # before the capture begins
                 for kernel, grid, block, args in launches]
        self.stream = cupy.cuda.Stream(non_blocking=True)
        with self.stream:
            self.stream.begin_capture()
            try:
                for kernel, grid, block, args in calls:
                    kernel(grid, block, args)
            finally:
                self.graph = self.stream.end_capture()

    def _view(self, a, device):
        """A recorded argument as the kernel takes it: an address becomes a byte view of memory it does not own
        (the pool, which the graph keeps, owns it)."""
        if not isinstance(a, DeviceAddress):
            return a
        memory = self.cupy.cuda.UnownedMemory(a.ptr, a.nbytes, self.pool, device)
        return self.cupy.ndarray((a.nbytes,), np.uint8, memptr=self.cupy.cuda.MemoryPointer(memory, 0))

    def run(self, uploads):
        """uploads: [(static device buffer, host or device array of its shape)], copied in before the replay."""
        current = self.cupy.cuda.get_current_stream()
        self.stream.wait_event(current.record())
        with self.stream:
            for buffer, value in uploads:
                if isinstance(value, np.ndarray):
                    buffer.set(value, stream=self.stream)
                else:
                    buffer[...] = value
            self.graph.launch(stream=self.stream)
        current.wait_event(self.stream.record())


class CudaKernels:
    """The kernel set of Im2colBackend (same names and out-first signatures as the Numba kernels of
    kernels/cpu), each a launch of a CUDA kernel with its scalars cast to the C types it declares."""

    def __init__(self, runtime):
        self.runtime = runtime
        self._choices = {}          # autotuned kernel variants, by shapes
        self._step_sizes = {}       # Adam's alpha_t in device memory, by dtype
        self._launches = None       # while record() runs: the launches made, with their arguments

    def _kernel(self, source, name, dtype):
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"the cuda kernels compute in float32 or float64, not {dtype}")
        kernel = self.runtime.module(source, dtype).get_function(name)
        return kernel if self._launches is None else functools.partial(self._recorded, kernel)

    def _recorded(self, kernel, grid, block, args):
        self._launches.append((kernel, grid, block, tuple(self.runtime.detach(a) for a in args)))
        kernel(grid, block, args)

    @contextlib.contextmanager
    def record(self):
        """Collect every launch made inside the with-block as (kernel, grid, block, args), run as usual; replaying
        the list (runtime.capture) repeats them on the same memory.  The runtime decides what of an array argument
        is kept (runtime.detach): the array itself on the emulation, its address on a GPU, where the memory is
        kept by the pool the pass allocated from (runtime.private_memory)."""
        if self._launches is not None:
            raise RuntimeError("CudaKernels.record() is already recording")
        self._launches = launches = []
        try:
            yield launches
        finally:
            self._launches = None

    @contextlib.contextmanager
    def _not_recorded(self):
        launches, self._launches = self._launches, None
        try:
            yield
        finally:
            self._launches = launches

    @staticmethod
    def _check(*arrays):
        for a in arrays:
            if not a.flags.c_contiguous:
                raise ValueError("the cuda kernels take C-contiguous arrays")
            if a.dtype != arrays[0].dtype:
                raise TypeError(f"mixed dtypes {a.dtype} and {arrays[0].dtype} in one kernel call")

    # ---- the tensor-core convolutions (kernels/cuda/conv_tc.cu) ------------------------------------------
    @staticmethod
    def _nchw(a, nhwc):
        """(N, C, H, W) of a map in either layout."""
        n, d1, d2, d3 = a.shape
        return (n, d3, d1, d2) if nhwc else (n, d1, d2, d3)

    @staticmethod
    def _weight_shape(wlayout, c_in, c_out):
        return {0: (9, c_in, c_out), 1: (c_out, c_in, 3, 3), 2: (c_in, c_out, 3, 3)}[wlayout]

    def conv3x3(self, y, x, w, b, pad, relu, nhwc=True, wlayout=0, block_channels=None, operands="tf32", mask=None,
                addend=None, relu_sum=False, y_layer=None):
        """y = the 3x3 stride-1 convolution of x with w, plus b, then ReLU if relu, on tensor cores: operands
        rounded to TF32 or bfloat16 (operands), float sums; x, w, b and y are float32.  The epilogue then, in
        this order (kernels/cuda/conv_tc.cu): y_layer (a map like y) receives that value, the output of the layer
        itself; addend (a map like y) is added, and the sum goes through a ReLU if relu_sum (the skip sum of
        Eq. 3, the residual of §3.3, the skip path's gradient of Eq. 12); y is 0 where mask (a map like y) is not
        > 0 (the backward of the ReLU whose output mask is).
        nhwc: x and y are (N, H, W, C) rather than (N, C, H, W).  wlayout: w is 0 taps (9, C, K), 1 a conv
        weight (K, C, 3, 3), 2 a (C, K, 3, 3) weight read flipped (the input gradient; kernels/cuda/conv_tc.cu).
        block_channels: output channels per block, 16, 32 or 64 (CONV_WIDTHS); by default the fastest for
        these shapes, timed once on a GPU (autotune), or the narrowest that holds K where there is no clock."""
        maps = {"mask": mask, "addend": addend, "y_layer": y_layer}
        self._check(y, x, w, b, *(a for a in maps.values() if a is not None))
        n, c, h, wd = self._nchw(x, nhwc)
        k = b.shape[0] if b.ndim == 1 else -1
        h_o, w_o = h + 2 * pad - 2, wd + 2 * pad - 2
        want_y = (n, h_o, w_o, k) if nhwc else (n, k, h_o, w_o)
        if (x.dtype != np.float32 or wlayout not in (0, 1, 2) or w.shape != self._weight_shape(wlayout, c, k)
                or y.shape != want_y or any(a is not None and a.shape != want_y for a in maps.values())
                or not 0 <= pad <= 2 or min(h_o, w_o) < 1 or block_channels not in (None, *CONV_WIDTHS)
                or operands not in OPERANDS or (relu_sum and addend is None)):
            layouts = {0: "taps (9, C, K)", 1: "conv (K, C, 3, 3)", 2: "(C, K, 3, 3), flipped"}
            shapes = ", ".join(f"{name} {None if a is None else a.shape}" for name, a in maps.items())
            raise ValueError(f"conv3x3 takes {' or '.join(OPERANDS)} operands, float32 x "
                             f"{'(N, H, W, C)' if nhwc else '(N, C, H, W)'}, w of a layout of {layouts}, b (K,), "
                             f"y and any mask, addend and y_layer {want_y}, relu_sum only with an addend, pad 0..2 "
                             f"and block_channels of {tuple(CONV_WIDTHS)}; got {x.dtype} x {x.shape}, w {w.shape} "
                             f"(layout {wlayout}), b {b.shape}, y {y.shape}, {shapes}, relu_sum {relu_sum}, "
                             f"pad {pad}, block_channels {block_channels}")
        epilogue = ((EPI_RELU if relu else 0) | (EPI_LAYER_OUT if y_layer is not None else 0)
                    | (EPI_ADD if addend is not None else 0) | (EPI_RELU_SUM if relu_sum else 0)
                    | (EPI_MASK if mask is not None else 0))
        unused = y                              # what the kernel gets for a map whose bit is not set; never read
        packed = self.conv3x3_pack(w, wlayout, c, k, operands)

        def launch(width):
            grid = (-(-w_o // 16), -(-h_o // 4), n * -(-k // width))
            self._kernel("conv_tc.cu", f"conv3x3_{operands}{CONV_WIDTHS[width]}", np.float32)(
                grid, (128,), (y, unused if y_layer is None else y_layer, x, packed, b,
                               unused if addend is None else addend, unused if mask is None else mask,
                               _int(n), _int(h), _int(wd), _int(c), _int(k), _int(pad), _int(epilogue),
                               _int(nhwc)))
        if block_channels is None:
            key = ("conv3x3", operands, x.shape, k, pad, nhwc)       # the epilogue costs every width the same
            narrowest = min((width for width in CONV_WIDTHS if width >= k), default=max(CONV_WIDTHS))
            block_channels = self._fastest(key, launch, CONV_WIDTHS, default=narrowest)
        launch(block_channels)

    def conv3x3_pack(self, w, wlayout, c_in, c_out, operands):
        """w (float32, layout wlayout) rounded to the operands and laid out as conv3x3 stages it: (chunks of
        OPERAND_K input channels, 9 taps, c_out rounded up to 64, OPERAND_K), as 32-bit words (uint32; a bf16
        pair to a word).  Packed anew by every conv3x3 call (a launch over the weight alone), so that no
        copy can be stale after the weights change."""
        chunks, k = -(-c_in // OPERAND_K[operands]), OPERAND_K[operands]
        operands_count = chunks * 9 * -(-c_out // 64) * 64 * k
        packed = self.runtime.xp.empty(operands_count * OPERAND_BYTES[operands] // 4, np.uint32)
        self._kernel("conv_tc.cu", f"conv3x3_pack_{operands}", np.float32)(
            _blocks_for(operands_count), (THREADS,), (packed, w, _int(c_in), _int(c_out), _int(wlayout)))
        return packed

    def _fastest(self, key, launch, choices, default):
        """The choice whose launch(choice) is fastest for `key`, timed once per key where the runtime has a
        clock (on a GPU, as cudnn.benchmark does), else `default`.  Cached: later calls pay nothing."""
        if key not in self._choices:
            with self._not_recorded():          # the timing runs are not part of a recorded step
                times = {choice: self.runtime.time(lambda: launch(choice)) for choice in choices}
            self._choices[key] = default if None in times.values() else min(times, key=times.get)
        return self._choices[key]

    @staticmethod
    def wgrad_splits(n_img, h_o, w_o, c_in, c_out):
        """How many partial sums the weight gradient is split into: enough blocks to fill the GPU
        (WGRAD_BLOCKS), never more than there are pixel tiles.  A function of the shapes only, so the result
        is the same on every run (the reduction's order is fixed)."""
        tiles = n_img * -(-h_o // 4) * -(-w_o // 16)
        pairs = -(-c_in // 16) * -(-c_out // 16)
        return max(1, min(tiles, -(-WGRAD_BLOCKS // pairs)))

    def conv3x3_wgrad(self, dw, db, x, dy, pad, nhwc=True, wlayout=0, accumulate=False, operands="tf32"):
        """dw = (or += with accumulate) the weight gradient of the 3x3 stride-1 convolution of x with padding
        pad, for the upstream gradient dy, in weight layout 0 (9, C, K) or 1 (K, C, 3, 3); db likewise the
        bias gradient (sum of dy, in float from float dy).  Split over pixel tiles into partial sums that a
        second kernel adds in a fixed order: deterministic.  TF32 or bfloat16 operands, float sums."""
        self._check(dw, db, x, dy)
        xp = self.runtime.xp
        n, c, h, wd = self._nchw(x, nhwc)
        nd, k, h_o, w_o = self._nchw(dy, nhwc)
        if (x.dtype != np.float32 or wlayout not in (0, 1) or nd != n
                or (h_o, w_o) != (h + 2 * pad - 2, wd + 2 * pad - 2) or dw.shape != self._weight_shape(wlayout, c, k)
                or db.shape != (k,) or not 0 <= pad <= 2 or operands not in OPERANDS):
            raise ValueError(f"conv3x3_wgrad takes {' or '.join(OPERANDS)} operands, float32 x and dy of one layout "
                             f"whose sizes differ by 2 - 2 pad, pad 0..2, and dw of layout 0 or 1 and db for them; got {x.dtype} "
                             f"x {x.shape}, dy {dy.shape}, dw {dw.shape} (layout {wlayout}), db {db.shape}, pad {pad}")
        splits = self.wgrad_splits(n, h_o, w_o, c, k)
        partial_w = xp.empty((splits, 9, c, k), np.float32)
        partial_b = xp.empty((splits, k), np.float32)
        self._kernel("conv_tc.cu", f"conv3x3_wgrad_{operands}", np.float32)(
            (-(-c // 16), -(-k // 16), splits), (288,),
            (partial_w, partial_b, x, dy, _int(n), _int(h), _int(wd), _int(c), _int(k), _int(pad), _int(nhwc)))
        self._kernel("conv_tc.cu", "conv3x3_wgrad_reduce", np.float32)(
            _blocks_for(dw.size + k), (THREADS,),
            (dw, db, partial_w, partial_b, _int(c), _int(k), _int(splits), _int(wlayout), _int(bool(accumulate))))

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

    def add_inplace(self, y, x):
        self._check(y, x)
        self._kernel("elementwise.cu", "add_inplace", y.dtype)(_blocks_for(y.size), (THREADS,), (y, x, _long(y.size)))

    def copy(self, y, x):
        self._check(y, x)
        self._kernel("elementwise.cu", "copy", y.dtype)(_blocks_for(y.size), (THREADS,), (y, x, _long(y.size)))

    def zero(self, y):
        self._check(y)
        self._kernel("elementwise.cu", "zero", y.dtype)(_blocks_for(y.size), (THREADS,), (y, _long(y.size)))

    def mse_loss(self, dpred, loss, pred, target, grad_scale, loss_scale):
        """dpred = grad_scale (pred - target) and loss[0] = loss_scale * sum (pred - target)^2 (float64):
        block sums, then one block adds them in a fixed order."""
        self._check(dpred, pred, target)
        blocks = _blocks_for(pred.size)
        partial = self.runtime.xp.empty(blocks, np.float64)
        self._kernel("elementwise.cu", "mse_loss", pred.dtype)(
            blocks, (THREADS,), (dpred, partial, pred, target, pred.dtype.type(grad_scale), _long(pred.size)))
        self._kernel("elementwise.cu", "sum_partials", pred.dtype)(
            (1,), (THREADS,), (loss, partial, _int(blocks[0]), np.float64(loss_scale)))

    def step_size_buffer(self, dtype):
        """The device array (1,) from which adam_update reads alpha_t: written before each step."""
        dtype = np.dtype(dtype)
        if dtype not in self._step_sizes:
            with self.runtime.shared_memory():
                self._step_sizes[dtype] = self.runtime.xp.zeros(1, dtype)
        return self._step_sizes[dtype]

    def adam_update(self, p, g, m, v, step_size, beta1, beta2, eps):
        self._check(p, g, m, v)
        real = p.dtype.type
        alpha_t = self.step_size_buffer(p.dtype)
        alpha_t[...] = step_size            # a host write, outside any recorded launch: a replay writes it anew
        self._kernel("elementwise.cu", "adam_update", p.dtype)(
            _blocks_for(p.size), (THREADS,),
            (p, g, m, v, alpha_t, real(beta1), real(beta2), real(eps), _long(p.size)))


class CudaBackend(Im2colBackend):
    """precision "fp32": every convolution in exact float32 (im2col + cuBLAS SGEMM), the path the 1e-4 parity
    tests hold; "tf32": the 3x3 stride-1 float32 convolutions (all of RED's, padding 0, 1 or 2) on tensor cores
    with TF32 operands, bias and ReLU in their epilogue (kernels/cuda/conv_tc.cu), the numerics of PyTorch's
    default cuDNN convolutions; "bf16": the same with bfloat16 operands; other shapes and float64 keep the exact
    path."""

    def __init__(self, runtime, precision="fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        super().__init__(CudaKernels(runtime), runtime.xp, COLS_BUDGET)
        self.runtime, self.precision = runtime, precision
        self.name = cuda_name(precision, emulated=runtime.name == "emulation")
        self._zero_bias = {}

    # ---- the tensor-core path (precision "tf32" or "bf16") ----------------------------------------------
    def on_tensor_cores(self, dtype, k, stride, padding):
        """Whether a k x k convolution of this stride and padding runs on the tensor-core kernels."""
        return self.precision in OPERANDS and dtype == np.float32 and k == 3 and stride == 1 and 0 <= padding <= 2

    def _zeros_bias(self, k):
        if k not in self._zero_bias:
            with self.runtime.shared_memory():
                self._zero_bias[k] = self.xp.zeros(k, np.float32)
        return self._zero_bias[k]

    def _conv_tc(self, x, w, b, padding, relu, wlayout, mask=None, addend=None, relu_sum=False, y_layer=None):
        """y (N, K, H_o, W_o) = the tensor-core conv of NCHW x with w read in layout wlayout, b added, ReLU if relu,
        written to y_layer if given; then addend (a map like y) added, ReLU if relu_sum; zero where mask (a map
        like y) is not > 0 (the epilogue of CudaKernels.conv3x3)."""
        xp = self.xp
        x = xp.ascontiguousarray(x)
        n, _, h, wd = x.shape
        k = w.shape[0] if wlayout == 1 else w.shape[1]
        y = xp.empty((n, k, h + 2 * padding - 2, wd + 2 * padding - 2), np.float32)
        contiguous = lambda a: None if a is None else xp.ascontiguousarray(a)
        self.kernels.conv3x3(y, x, xp.ascontiguousarray(w), self._zeros_bias(k) if b is None else b,
                             padding, relu, nhwc=False, wlayout=wlayout, operands=self.precision,
                             mask=contiguous(mask), addend=contiguous(addend), relu_sum=relu_sum, y_layer=y_layer)
        return y

    def _transposed_as_conv(self, dy, w, input_hw, stride, padding):
        """Whether conv2d_backward_input(dy, w, ...) is the tensor-core conv of dy with w flipped, padding 2 - p."""
        return (self.on_tensor_cores(dy.dtype, w.shape[2], stride, 2 - padding) and w.shape[3] == 3
                and tuple(input_hw) == tuple(s + 2 - 2 * padding for s in dy.shape[2:]))

    def conv2d(self, x, w, stride, padding):
        if self.on_tensor_cores(x.dtype, w.shape[2], stride, padding) and w.shape[3] == 3:
            return self._conv_tc(x, w, None, padding, False, wlayout=1)
        return super().conv2d(x, w, stride, padding)

    def conv2d_bias(self, x, w, b, stride, padding, relu):
        if self.on_tensor_cores(x.dtype, w.shape[2], stride, padding) and w.shape[3] == 3:
            return self._conv_tc(x, w, b, padding, relu, wlayout=1)          # bias and ReLU in the epilogue
        return super().conv2d_bias(x, w, b, stride, padding, relu)

    def conv2d_masked(self, x, w, stride, padding, mask):
        if self.on_tensor_cores(x.dtype, w.shape[2], stride, padding) and w.shape[3] == 3 and mask.dtype == x.dtype:
            return self._conv_tc(x, w, None, padding, False, wlayout=1, mask=mask)    # the mask in the epilogue
        return super().conv2d_masked(x, w, stride, padding, mask)

    def conv2d_backward_input_masked(self, dy, w, input_hw, stride, padding, mask, addend=None):
        if (self._transposed_as_conv(dy, w, input_hw, stride, padding) and mask.dtype == dy.dtype
                and (addend is None or addend.dtype == dy.dtype)):
            return self._conv_tc(dy, w, None, 2 - padding, False, wlayout=2, mask=mask, addend=addend)
        return super().conv2d_backward_input_masked(dy, w, input_hw, stride, padding, mask, addend)

    def conv2d_backward_input(self, dy, w, input_hw, stride, padding):
        if self._transposed_as_conv(dy, w, input_hw, stride, padding):
            return self._conv_tc(dy, w, None, 2 - padding, False, wlayout=2)
        return super().conv2d_backward_input(dy, w, input_hw, stride, padding)

    def conv_transpose2d_bias(self, x, wt, b, output_hw, stride, padding, relu):
        if self._transposed_as_conv(x, wt, output_hw, stride, padding):
            return self._conv_tc(x, wt, b, 2 - padding, relu, wlayout=2)
        return super().conv_transpose2d_bias(x, wt, b, output_hw, stride, padding, relu)

    def conv_transpose2d_bias_add(self, x, wt, b, output_hw, stride, padding, relu, addend, relu_sum, keep_layer):
        if self._transposed_as_conv(x, wt, output_hw, stride, padding) and addend.dtype == x.dtype:
            y_layer = self.xp.empty(addend.shape, np.float32) if keep_layer else None   # addend has y's shape
            s = self._conv_tc(x, wt, b, 2 - padding, relu, wlayout=2, addend=addend, relu_sum=relu_sum,
                              y_layer=y_layer)                     # the skip sum or the residual in the epilogue
            return y_layer, s
        return super().conv_transpose2d_bias_add(x, wt, b, output_hw, stride, padding, relu, addend, relu_sum,
                                                 keep_layer)

    def conv2d_backward_weight(self, dy, x, k, stride, padding):
        if self.on_tensor_cores(dy.dtype, k, stride, padding):
            return self.conv2d_backward_weight_bias(dy, x, k, stride, padding)[0]
        return super().conv2d_backward_weight(dy, x, k, stride, padding)

    def conv2d_backward_weight_bias(self, dy, x, k, stride, padding):
        if not self.on_tensor_cores(dy.dtype, k, stride, padding):
            return super().conv2d_backward_weight_bias(dy, x, k, stride, padding)
        xp = self.xp
        dy, x = xp.ascontiguousarray(dy), xp.ascontiguousarray(x)
        dw = xp.empty((dy.shape[1], x.shape[1], 3, 3), np.float32)
        db = xp.empty(dy.shape[1], np.float32)
        self.kernels.conv3x3_wgrad(dw, db, x, dy, padding, nhwc=False, wlayout=1, operands=self.precision)
        return dw, db

    def asarray(self, a, dtype):
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def to_numpy(self, a):
        return self.runtime.to_numpy(a)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def _matmul_into(self, out, a, b):
        # cuBLAS through CuPy; `out` may be a strided view (a band of rows), so assign rather than pass out=.
        out[...] = self.xp.matmul(a, b)

    # ---- the step's sums, copies and zeroing as kernels (Backend's defaults are array expressions) ---------
    @staticmethod
    def _kernel_pair(y, x):
        return (y.flags.c_contiguous and x.flags.c_contiguous and y.shape == x.shape and y.dtype == x.dtype
                and y.dtype in (np.float32, np.float64))

    def add_(self, y, x):
        if not self._kernel_pair(y, x):
            return super().add_(y, x)
        self.kernels.add_inplace(y, x)
        return y

    def copy(self, a):
        if not self._kernel_pair(a, a):
            return super().copy(a)
        out = self.xp.empty_like(a)
        self.kernels.copy(out, a)
        return out

    def zero_(self, a):
        if not self._kernel_pair(a, a):
            return super().zero_(a)
        self.kernels.zero(a)
        return a

    def mse_loss_on_device(self, pred, target, reduction="batch"):
        """(loss, dpred) of paper Eq. 4 by one fused kernel (the error, its gradient and block sums) and one that
        adds the block sums; loss is a device array (1,) of float64, read without a host sync."""
        scale = mse_scale(pred, target, reduction)
        xp = self.xp
        pred, target = xp.ascontiguousarray(pred), self.asarray(target, pred.dtype)
        dpred = xp.empty_like(pred)
        loss = xp.empty(1, dtype=np.float64)
        self.kernels.mse_loss(dpred, loss, pred, target, 2.0 * scale, scale)
        return loss, dpred

    def mse_loss(self, pred, target, reduction="batch"):
        loss, dpred = self.mse_loss_on_device(pred, target, reduction)
        return float(self.to_numpy(loss)[0]), dpred
