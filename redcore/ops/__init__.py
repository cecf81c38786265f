"""One module per op: its forward and backward formulas, its NumPy reference, and the op on any backend."""
from .activation import add_relu_reference, relu_backward_reference_, relu_reference_
from .conv import (conv2d_backward, conv2d_forward, conv_output_size, conv_transpose2d_backward,
                   conv_transpose2d_forward, conv_transpose_output_size, output_padding_to_restore)
from .loss import mse_loss
