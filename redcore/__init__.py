"""redcore: RED-Net (Mao, Shen & Yang 2016) trained and run by hand on NumPy, Numba and CUDA.

    net = redcore.REDNet(depth=30, backend="cpu")
    opt = redcore.Adam(net.params, lr=1e-4)
    y = net.forward(x)                      # x: (N, C, H, W) float32
    loss, dy = redcore.mse_loss(y, target)  # paper Eq. 4
    dx = net.backward(dy)                   # fills net.grads
    opt.step(net.grads)                     # paper Eq. 5-7

    clean = redcore.restore("noisy.png", task="denoise", level=25)   # a shipped model, or model="file.npz"
"""
import os

# The cpu backend alternates on the same cores between BLAS phases (GEMM) and Numba phases (im2col, col2im,
# element-wise).  By default each thread pool busy-waits after its phase and steals the other's cores, which
# slowed training steps (bench/README.md, "Where the cpu backend's choices come from").  Ask both pools to
# sleep when idle.  (Read when the libraries load: import redcore before numpy for it to take effect.)
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from .backends import get_backend  # noqa: E402
from .model import REDNet  # noqa: E402
from .ops.loss import mse_loss  # noqa: E402
from .optim import Adam  # noqa: E402
from .restore import restore  # noqa: E402

load = REDNet.load

__all__ = ["REDNet", "Adam", "mse_loss", "load", "restore", "get_backend"]
__version__ = "0.1.0"
