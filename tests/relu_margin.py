"""How far a network's data keeps every ReLU from its kink: the test data's side of a float32 gradient check.

max(0, z) has a derivative that jumps at z = 0.  A unit whose exact pre-activation lies within float32 rounding
of 0 (~1e-7 of its layer's largest value) may land on one side in a float32 forward and on the other in the
float64 reference, or on different sides with two BLAS builds, whose kernels add in different orders; every
gradient that unit feeds then differs by its whole contribution, and neither side is wrong.  (Seen: one unit of
50,000, at 9e-8 of its layer's scale, moved a 6-filter RED10's float32 gradients by 4% against float64 with
OpenBLAS's AVX-512 kernels, and not with its AVX2 ones.)  Tests that compare float32 gradients with a reference
therefore draw their data with `draw_clear_of_kinks`, which keeps every unit well clear of the kink, just as
tests/test_ops_activation.py draws its single-op inputs away from it.
"""
import numpy as np

import redcore
from redcore.backends.numpy_backend import NumpyBackend

# About 2.5 times the largest float32 error of a ReLU input measured on such nets: 8e-7 of its layer's largest |z|
# (48 RED10/RED12 nets of 8 filters, im2col and Winograd, OpenBLAS's AVX2 and AVX-512 kernels)
CLEAR_OF_KINK = 2e-6


class _PreActivationRecorder(NumpyBackend):
    """The float64 NumPy reference, noting for every conv's or deconv's ReLU the smallest |z| / max |z| of its
    units (z: the ReLU's input; CLEAR_OF_KINK says how far float32 moves it).  A unit whose terms
    b + sum_k w_k x_k are all exactly 0 is exactly 0 in any precision and order, so it is not ambiguous and not
    noted (a dead channel fed by dead ones).

    The skip sums' ReLU (add_relu) is not noted: with ReLU on, both of its summands are ReLU outputs (>= 0), so
    their sum is near 0 only where each summand is, and each summand's own ReLU was noted."""

    def __init__(self):
        self.margin, self._abs_terms = np.inf, None

    def conv2d(self, x, w, stride, padding):
        self._abs_terms = super().conv2d(np.abs(x), np.abs(w), stride, padding)
        return super().conv2d(x, w, stride, padding)

    def conv2d_backward_input(self, dy, w, input_hw, stride, padding):     # the transposed conv's forward
        self._abs_terms = super().conv2d_backward_input(np.abs(dy), np.abs(w), input_hw, stride, padding)
        return super().conv2d_backward_input(dy, w, input_hw, stride, padding)

    def add_bias(self, y, b, relu=False):
        if relu:
            z = np.abs(y + b[None, :, None, None])
            live = self._abs_terms + np.abs(b)[None, :, None, None] > 0
            if live.any():
                self.margin = min(self.margin, z[live].min() / z.max())
        return super().add_bias(y, b, relu)


def relu_margin(net, x):
    """The smallest |pre-activation| relative to its layer's largest over every ReLU of net's forward on x
    (units whose terms are all exactly 0 aside), computed in float64 on net's weights (any backend or dtype)."""
    twin = redcore.REDNet(**{**net.config, "dtype": "float64"}, backend="numpy")
    twin.load_state_dict({k: np.asarray(v, np.float64) for k, v in net.state_dict().items()})
    twin.backend = recorder = _PreActivationRecorder()
    twin.forward(np.asarray(x, np.float64))
    return recorder.margin


def draw_clear_of_kinks(net, draw, tries=20):
    """draw() again until net's forward on it keeps every ReLU input clear of the kink (relu_margin above
    CLEAR_OF_KINK); deterministic for a seeded draw.  A 10-layer net of 8 filters on three 19x21 images has
    ~1e5 ReLU units, and one draw in three puts one of them within 2e-6 of its layer's scale (20 of 60)."""
    margins = []
    for _ in range(tries):
        x = draw()
        margins.append(relu_margin(net, x))
        if margins[-1] > CLEAR_OF_KINK:
            return x
    raise AssertionError(f"{tries} draws all put a ReLU input within float32 rounding of the kink (margins "
                         f"{min(margins):.1e} to {max(margins):.1e} of its layer's scale, {CLEAR_OF_KINK:.0e} "
                         f"needed), where float32 and float64 gradients may rightly differ")
