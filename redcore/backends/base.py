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
"""
import numpy as np

KERNEL_SET = ("asarray", "to_numpy", "zeros", "conv2d", "conv2d_backward_input", "conv2d_backward_weight",
              "add_bias", "bias_backward", "relu_", "add_relu", "relu_backward_", "mse_loss", "adam_update_")


class Backend:
    name = "abstract"
    dtypes = ("float32", "float64")

    def check_dtype(self, dtype):
        if np.dtype(dtype).name not in self.dtypes:
            raise ValueError(f"the {self.name} backend computes in {' or '.join(self.dtypes)}, not {dtype}")
        return np.dtype(dtype)


def _missing(kernel):
    def method(self, *args, **kwargs):
        raise NotImplementedError(f"the {self.name} backend has no {kernel} kernel")
    method.__name__ = kernel
    return method


for _kernel in KERNEL_SET:
    setattr(Backend, _kernel, _missing(_kernel))
