r"""ReLU and the skip sum of RED-Net (paper Eq. 2-3).

    relu:      y = max(0, x)                      dL/dx = dL/dy * [y > 0]
    skip sum:  y = max(0, x1 + x2)   (Eq. 3)      dL/dx1 = dL/dx2 = dL/dy * [y > 0]

The derivative at 0 is taken as 0, as in every framework.  Both backward formulas read the mask from the
*output* y, so the forward keeps only its output.  The reference functions below are written against the
array module `xp` of their inputs and serve NumPy (and CuPy) alike; backends may fuse them into kernels.
"""


def relu_reference_(y):
    """In place: y <- max(0, y).   y: any shape."""
    y[y < 0] = 0
    return y


def add_relu_reference(a, skip):
    """max(0, a + skip) as a new array (paper Eq. 3).   a, skip: same shape."""
    return relu_reference_(a + skip)


def relu_backward_reference_(dy, y):
    """In place: dy <- dy * [y > 0], the gradient through a ReLU whose output was y."""
    dy[y <= 0] = 0
    return dy
