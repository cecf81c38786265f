"""The one dispatch point for backends: `get_backend(name)` gives the backend called `name`, created once.

A backend is an object holding the array module (`xp`), host/device transfer, and the kernel set every
backend provides under the same names and signatures (base.py lists it; numpy_backend.NumpyBackend is the
reference).  Model code never branches on the backend: it asks for one by name and calls these.

    numpy            the float64-capable NumPy reference, the oracle of every test
    cpu              Numba kernels and the BLAS: Winograd where it pays, im2col elsewhere
    cpu-im2col       the same, im2col on every layer
    cpu-winograd2    the same, Winograd F(2x2, 3x3) on every 3x3 stride-1 layer
    cpu-winograd4    the same, Winograd F(4x4, 3x3) on every 3x3 stride-1 layer
    cuda             CUDA kernels (kernels/cuda) and cuBLAS through CuPy
    cuda-emulation   the cuda backend with its CUDA kernels compiled for the CPU: slow, for tests
"""
from .numpy_backend import NumpyBackend

CPU_VARIANTS = {"cpu": dict(), "cpu-im2col": dict(conv="im2col"),
                "cpu-winograd2": dict(conv="winograd", winograd_tile=2),
                "cpu-winograd4": dict(conv="winograd", winograd_tile=4)}
BACKENDS = ("numpy", *CPU_VARIANTS, "cuda", "cuda-emulation")
_instances = {}


def get_backend(name):
    """The backend called `name` (one of BACKENDS), created once and cached."""
    if not isinstance(name, str):
        return name  # already a backend object
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name not in _instances:
        if name == "numpy":
            _instances[name] = NumpyBackend()
        elif name in CPU_VARIANTS:
            from .cpu_backend import CpuBackend
            _instances[name] = CpuBackend(**CPU_VARIANTS[name])
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

