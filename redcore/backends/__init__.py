"""The one dispatch point for backends.

A backend is an object holding the array module (`xp`), host/device transfer, and the kernel set every
backend provides under the same names and signatures (see `numpy_backend.NumpyBackend`, the reference):

    conv2d, conv2d_backward_input, conv2d_backward_weight     the three convolution primitives (ops/conv.py)
    add_bias, bias_backward                                   bias
    relu_, add_relu, relu_backward_                          ReLU and the skip sum (ops/activation.py)
    mse_loss                                                  the loss (ops/loss.py)
    adam_update_                                              one Adam step on one tensor (optim.py)

Model code never branches on the backend: it asks `get_backend(name)` once and calls these.
"""
from .numpy_backend import NumpyBackend

# "cuda-emulation" runs the cuda backend's code and CUDA kernels on the CPU (kernels/cuda/emulation.py):
# slow, for tests and for machines without a GPU.
BACKENDS = ("numpy", "cpu", "cuda", "cuda-emulation")
_instances = {}


def get_backend(name):
    """The backend called `name` ("numpy", "cpu", "cuda" or "cuda-emulation"), created once and cached."""
    if not isinstance(name, str):
        return name  # already a backend object
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name not in _instances:
        if name == "numpy":
            _instances[name] = NumpyBackend()
        elif name == "cpu":
            from .cpu_backend import CpuBackend
            _instances[name] = CpuBackend()
        elif name == "cuda":
            _instances[name] = _cuda_backend()
        else:
            from ..cuda_kernels.emulation import EmulatedRuntime, compiler
            from .cuda_backend import CudaBackend
            if compiler() is None:
                raise RuntimeError("the cuda-emulation backend needs a C++20 compiler (g++), and none was found")
            _instances[name] = CudaBackend(EmulatedRuntime())
    return _instances[name]


def _cuda_backend():
    try:
        import cupy
    except ImportError:
        raise RuntimeError("the cuda backend needs CuPy, which is not installed "
                           "(pip install -e .[cuda]); use --backend cpu meanwhile") from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CUDA driver missing or broken
        n = 0
    if n == 0:
        raise RuntimeError("the cuda backend needs a CUDA GPU, and none is visible on this machine; "
                           "use --backend cpu")
    from .cuda_backend import CudaBackend, CupyRuntime
    return CudaBackend(CupyRuntime())

