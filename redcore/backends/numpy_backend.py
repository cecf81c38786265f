"""The NumPy reference backend: simple, float32 and float64, the oracle for every other backend."""
import numpy as np

from ..ops import activation, conv, loss


class NumpyBackend:
    name = "numpy"
    xp = np
    dtypes = ("float32", "float64")

    # ---- arrays -----------------------------------------------------------------------------------
    def asarray(self, a, dtype):
        """A host array (or anything array-like) as this backend's array of `dtype`, C-contiguous."""
        return np.ascontiguousarray(a, dtype=dtype)

    def to_numpy(self, a):
        return np.asarray(a)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def check_dtype(self, dtype):
        if np.dtype(dtype).name not in self.dtypes:
            raise ValueError(f"the {self.name} backend computes in {' or '.join(self.dtypes)}, not {dtype}")
        return np.dtype(dtype)

    # ---- convolution primitives (ops/conv.py has the formulas) -------------------------------------
    def conv2d(self, x, w, stride, padding):
        return conv.conv2d_reference(x, w, stride, padding)

    def conv2d_backward_input(self, dy, w, input_hw, stride, padding):
        return np.ascontiguousarray(conv.conv2d_backward_input_reference(dy, w, input_hw, stride, padding))

    def conv2d_backward_weight(self, dy, x, k, stride, padding):
        return conv.conv2d_backward_weight_reference(dy, x, k, stride, padding)

    def add_bias(self, y, b, relu=False):
        """In place: y[n, o] += b[o], then y = max(y, 0) when relu (the layer's ReLU in the same call, which
        backends may fuse)."""
        y += b[None, :, None, None]
        return self.relu_(y) if relu else y

    def bias_backward(self, dy):
        """db[o] = sum_{n,i,j} dy[n, o, i, j]."""
        return dy.sum(axis=(0, 2, 3))

    # ---- activations and loss ----------------------------------------------------------------------
    relu_ = staticmethod(activation.relu_reference_)
    add_relu = staticmethod(activation.add_relu_reference)
    relu_backward_ = staticmethod(activation.relu_backward_reference_)
    mse_loss = staticmethod(loss.mse_loss_reference)

    # ---- optimizer ---------------------------------------------------------------------------------
    def adam_update_(self, p, g, m, v, step_size, beta1, beta2, eps):
        """One Adam step on one tensor, in place (paper Eq. 5-7; optim.py has the derivation)."""
        m *= beta1
        m += (1 - beta1) * g                      # Eq. 5: m_t = beta1 m_{t-1} + (1 - beta1) g_t
        v *= beta2
        v += (1 - beta2) * g * g                  # Eq. 6: v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        p -= step_size * m / (np.sqrt(v) + eps)   # Eq. 7: theta_t = theta_{t-1} - alpha_t m_t / (sqrt(v_t) + eps)
