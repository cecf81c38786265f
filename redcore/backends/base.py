"""What every backend provides: the kernel set, under the same names and signatures.

    asarray, to_numpy, zeros                                   arrays of the backend's module, host copies
    conv2d, conv2d_backward_input, conv2d_backward_weight      the three convolution primitives (ops/conv.py)
    add_bias, bias_backward                                    bias (ops/bias.py)
    relu_, add_relu, relu_backward_                            ReLU and the skip sum (ops/activation.py)
    mse_loss                                                   the loss (ops/loss.py)
    adam_update_                                               one Adam step on one tensor (optim.py)

Backend declares them, each raising NotImplementedError until a subclass defines it, so a backend that lacks
a kernel fails with its name instead of falling back on another backend's code (NumPy's on CuPy arrays, say).
tests/test_architecture.py checks that every backend class defines the whole set without borrowing the
NumPy reference's.

Six compositions of them are the ops' calls where a backend can do several kernels' work in one pass (a
convolution's epilogue adds the bias and applies the ReLU, adds the skip or the residual, or applies the
backward of the ReLU before the layer; the weight gradient's pass over dy sums the bias gradient too).
Backend defines them from the kernel set; a backend with fused kernels overrides them:

    conv2d_bias                   conv2d, then add_bias (+ ReLU)
    conv_transpose2d_bias         conv2d_backward_input (the transposed conv), then add_bias (+ ReLU)
    conv_transpose2d_bias_add     conv_transpose2d_bias, then + a map (+ ReLU): the skip sum of Eq. 3, the
                                  residual of §3.3
    conv2d_backward_weight_bias   (conv2d_backward_weight, bias_backward)
    conv2d_masked                 conv2d, then relu_backward_ with a mask (the gradient through the ReLU
    conv2d_backward_input_masked  conv2d_backward_input (+ a map: the skip path's      that made the layer's
                                  gradient, Eq. 12), likewise                          input)

Three more are the step's array housekeeping, array expressions here; the cuda backend runs them as kernels so
that a training step is kernel launches only (what a captured step replays: redcore/training.py):

    add_      y += x                  copy      a new array equal to a          zero_     a[...] = 0
"""
import numpy as np

# The cuda backend's precisions: its tensor cores' operand types (kernels/cuda/conv_tc.cu), or exact float32
# (im2col + cuBLAS SGEMM), the only precision of the other backends.
OPERANDS = ("tf32", "bf16")
PRECISIONS = (*OPERANDS, "fp32")


def cuda_name(precision, emulated):
    """The name of the cuda backend of a precision: cuda, cuda-tf32, cuda-bf16 (then -emulation)."""
    return "cuda" + ("" if precision == "fp32" else f"-{precision}") + ("-emulation" if emulated else "")


KERNEL_SET = ("asarray", "to_numpy", "zeros", "conv2d", "conv2d_backward_input", "conv2d_backward_weight",
              "add_bias", "bias_backward", "relu_", "add_relu", "relu_backward_", "mse_loss", "adam_update_")


class Backend:
    name = "abstract"
    dtypes = ("float32", "float64")

    def check_dtype(self, dtype):
        if np.dtype(dtype).name not in self.dtypes:
            raise ValueError(f"the {self.name} backend computes in {' or '.join(self.dtypes)}, not {dtype}")
        return np.dtype(dtype)

    def conv2d_bias(self, x, w, b, stride, padding, relu):
        y = self.conv2d(x, w, stride, padding)
        self.add_bias(y, b, relu)
        return y

    def conv_transpose2d_bias(self, x, wt, b, output_hw, stride, padding, relu):
        y = self.conv2d_backward_input(x, wt, output_hw, stride, padding)
        self.add_bias(y, b, relu)
        return y

    def conv_transpose2d_bias_add(self, x, wt, b, output_hw, stride, padding, relu, addend, relu_sum, keep_layer):
        """(y, s): y = conv_transpose2d_bias(...), the layer's output, and s = y + addend, through a ReLU if
        relu_sum.  keep_layer=False: y is not wanted (None) and s may be written over it."""
        y = self.conv_transpose2d_bias(x, wt, b, output_hw, stride, padding, relu)
        if relu_sum:
            s = self.add_relu(y, addend)
        else:
            s = self.add_(self.copy(y) if keep_layer else y, addend)
        return (y if keep_layer else None), s

    def conv2d_backward_weight_bias(self, dy, x, k, stride, padding):
        return self.conv2d_backward_weight(dy, x, k, stride, padding), self.bias_backward(dy)

    def conv2d_masked(self, x, w, stride, padding, mask):
        return self.relu_backward_(self.conv2d(x, w, stride, padding), mask)

    def conv2d_backward_input_masked(self, dy, w, input_hw, stride, padding, mask, addend=None):
        """(conv2d_backward_input(dy, w) + addend) * [mask > 0]; addend None adds nothing."""
        dx = self.conv2d_backward_input(dy, w, input_hw, stride, padding)
        if addend is not None:
            self.add_(dx, addend)
        return self.relu_backward_(dx, mask)

    def add_(self, y, x):
        y += x
        return y

    def copy(self, a):
        return a.copy(order="K")

    def zero_(self, a):
        a[...] = 0
        return a


def _missing(kernel):
    def method(self, *args, **kwargs):
        raise NotImplementedError(f"the {self.name} backend has no {kernel} kernel")
    method.__name__ = kernel
    return method


for _kernel in KERNEL_SET:
    setattr(Backend, _kernel, _missing(_kernel))
