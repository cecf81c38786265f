"""The one dispatch point for backends: `get_backend(name)` gives the backend called `name`, created once.

A backend is an object holding the array module (`xp`), host/device transfer, and the kernel set every
backend provides under the same names and signatures (base.py lists it; numpy_backend.NumpyBackend is the
reference).  Model code never branches on the backend: it asks for one by name and calls these.

    numpy            the float64-capable NumPy reference, the oracle of every test
    cpu              Numba kernels and the BLAS: Winograd where it pays, im2col elsewhere
    cpu-im2col       the same, im2col on every layer
    cpu-winograd2    the same, Winograd F(2x2, 3x3) on every 3x3 stride-1 layer
    cpu-winograd4    the same, Winograd F(4x4, 3x3) on every 3x3 stride-1 layer
    cuda             CUDA kernels (kernels/cuda) and cuBLAS through CuPy, exact float32 (precision "fp32")
    cuda-tf32        the same with RED's 3x3 convolutions on tensor cores, TF32 operands (precision "tf32")
    cuda-bf16        likewise with bfloat16 operands (precision "bf16"); maps, weights and sums stay float32
    cuda-emulation   the cuda backend with its CUDA kernels compiled for the CPU: slow, for tests
    cuda-tf32-emulation, cuda-bf16-emulation   likewise
"""
import importlib.util
import os

from .base import PRECISIONS, cuda_name
from .numpy_backend import NumpyBackend

CPU_VARIANTS = {"cpu": dict(), "cpu-im2col": dict(conv="im2col"),
                "cpu-winograd2": dict(conv="winograd", winograd_tile=2),
                "cpu-winograd4": dict(conv="winograd", winograd_tile=4)}
CUDA_VARIANTS = {cuda_name(p, emulated): p for emulated in (False, True) for p in ("fp32", "tf32", "bf16")}
BACKENDS = ("numpy", *CPU_VARIANTS, *CUDA_VARIANTS)
# What --backend offers: the precision of a cuda backend is --precision's to choose
BACKEND_CHOICES = tuple(b for b in BACKENDS if CUDA_VARIANTS.get(b, "fp32") == "fp32")
PRECISION_HELP = ("cuda backends: tf32 runs the 3x3 convolutions on tensor cores with TF32 operands (the numerics "
                  "of PyTorch's cuDNN convolutions), bf16 with bfloat16 operands (twice as fast, 3 bits less), fp32 "
                  "every convolution in exact float32 (default: tf32 on cuda, fp32 elsewhere, the only precision of "
                  "the cpu backends)")
_instances = {}


def with_precision(name, precision=None):
    """The backend name for a user's --backend and --precision: the cuda backends run tf32 unless asked for
    bf16 or fp32 (exact float32); the others compute in exact float32 only, and refuse the rest with a sentence."""
    on_cuda = name.startswith("cuda")
    precision = precision or ("tf32" if on_cuda else "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and not on_cuda:
        raise ValueError(f"precision {precision} needs a cuda backend: {name} computes in exact float32 only")
    return cuda_name(precision, name.endswith("-emulation")) if on_cuda else name


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
            _require_kernels("kernels", "kernels/cpu")
            from .cpu_backend import CpuBackend
            _instances[name] = CpuBackend(**CPU_VARIANTS[name])
        elif not name.endswith("-emulation"):
            _instances[name] = _cuda_backend(CUDA_VARIANTS[name])
        else:
            _require_kernels("cuda_kernels", "kernels/cuda")
            from ..cuda_kernels.emulation import EmulatedRuntime, compiler
            from .cuda_backend import CudaBackend
            if compiler() is None:
                raise RuntimeError("the cuda-emulation backend needs a C++20 compiler (g++), and none was found")
            _instances[name] = CudaBackend(EmulatedRuntime(), CUDA_VARIANTS[name])
    return _instances[name]


def _require_kernels(package, folder):
    """The kernels live outside the redcore folder (setup.py maps `folder` to redcore.`package`), so a redcore
    imported from a source tree that was never installed, or installed from another checkout, cannot find
    them: say so, and how to mend it, before the import fails with Python's bare "cannot import name"."""
    if importlib.util.find_spec(f"redcore.{package}") is None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        raise RuntimeError(f"redcore's kernels ({folder} of {root}, imported as redcore.{package}) are not "
                           f"installed for this redcore: run `pip install -e .` in {root}")


def _cuda_backend(precision):
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
    _require_kernels("cuda_kernels", "kernels/cuda")
    from .cuda_backend import CudaBackend, CupyRuntime
    return CudaBackend(CupyRuntime(), precision)

