r"""Mean squared error, the loss of the paper (Eq. 4).

reduction="batch" (paper Eq. 4): the squared Frobenius norm of each sample's error, averaged over the batch

    L = (1/N) sum_n ||F(X_n) - Y_n||_F^2           dL/dF(X_n) = (2/N) (F(X_n) - Y_n)

reduction="mean" (PyTorch's default): averaged over all M = N*C*H*W elements

    L = (1/M) sum (F(X) - Y)^2                     dL/dF(X) = (2/M) (F(X) - Y)
"""
import numpy as np

REDUCTIONS = ("batch", "mean")


def mse_scale(pred, target, reduction):
    """The factor of the sum of squares: 1/N for "batch", 1/M for "mean" (checking the arguments)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}: expected one of {REDUCTIONS}")
    if pred.shape != target.shape:
        raise ValueError(f"mse_loss: prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.size == 0:
        raise ValueError(f"mse_loss: the prediction is empty (shape {pred.shape}): there is no error to average")
    return 1.0 / (pred.shape[0] if reduction == "batch" else pred.size)


def mse_loss_reference(pred, target, reduction="batch"):
    """(loss, dpred).   pred, target: (N, C, H, W); loss is a Python float, dpred has pred's shape."""
    scale = mse_scale(pred, target, reduction)
    diff = pred - target
    loss = float((diff * diff).sum()) * scale
    dpred = diff * pred.dtype.type(2.0 * scale)
    return loss, dpred


def mse_loss(pred, target, reduction="batch", backend=None):
    """The paper's loss (Eq. 4) on any backend's arrays: returns (loss, dL/dpred).  See the module docstring.
    backend: the backend whose kernel computes it (pass net.backend to use the network's own, e.g. the fused
    CUDA kernel); default: the formula above, on whatever array module pred belongs to."""
    loss, dpred = (backend.mse_loss if backend is not None else mse_loss_reference)(pred, target, reduction)
    return finite_loss(loss), dpred


def finite_loss(loss):
    """loss, or FloatingPointError with the likely cause where it is NaN or infinite."""
    if not np.isfinite(loss):
        raise FloatingPointError(f"mse_loss is {loss}: the network diverged or its input holds NaN/Inf "
                                 "(lower the learning rate or check the data)")
    return loss
