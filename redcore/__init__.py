"""redcore: RED-Net (Mao, Shen & Yang 2016) trained and run by hand on NumPy, Numba and CUDA.

    net = redcore.REDNet(depth=30, backend="cpu")
    opt = redcore.Adam(net.params, lr=1e-4)
    y = net.forward(x)                      # x: (N, C, H, W) float32
    loss, dy = redcore.mse_loss(y, target)  # paper Eq. 4
    dx = net.backward(dy)                   # fills net.grads
    opt.step(net.grads)                     # paper Eq. 5-7
"""
from .backends import get_backend
from .io import load
from .model import REDNet
from .ops.loss import mse_loss
from .optim import Adam

__all__ = ["REDNet", "Adam", "mse_loss", "load", "get_backend"]
__version__ = "0.1.0"
