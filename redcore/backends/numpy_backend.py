"""The NumPy reference backend: simple, float32 and float64, the oracle for every other backend."""
import numpy as np

from ..ops import activation, bias, conv, loss
from ..optim import adam_update_reference_
from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = np

    # ---- arrays -----------------------------------------------------------------------------------
    def asarray(self, a, dtype):
        """A host array (or anything array-like) as this backend's array of `dtype`, C-contiguous."""
        return np.ascontiguousarray(a, dtype=dtype)

    def to_numpy(self, a):
        return np.asarray(a)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    # ---- convolution primitives (ops/conv.py has the formulas) -------------------------------------
    def conv2d(self, x, w, stride, padding):
        return conv.conv2d_reference(x, w, stride, padding)

    def conv2d_backward_input(self, dy, w, input_hw, stride, padding):
        return np.ascontiguousarray(conv.conv2d_backward_input_reference(dy, w, input_hw, stride, padding))

    def conv2d_backward_weight(self, dy, x, k, stride, padding):
        return conv.conv2d_backward_weight_reference(dy, x, k, stride, padding)

    add_bias = staticmethod(bias.add_bias_reference)
    bias_backward = staticmethod(bias.bias_backward_reference)

    # ---- activations and loss ----------------------------------------------------------------------
    relu_ = staticmethod(activation.relu_reference_)
    add_relu = staticmethod(activation.add_relu_reference)
    relu_backward_ = staticmethod(activation.relu_backward_reference_)
    mse_loss = staticmethod(loss.mse_loss_reference)

    # ---- optimizer ---------------------------------------------------------------------------------
    adam_update_ = staticmethod(adam_update_reference_)
