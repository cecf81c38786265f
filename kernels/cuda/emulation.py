"""Run the CUDA kernels of this folder on the CPU: the same .cu sources, compiled by the host C++ compiler.

    runtime = EmulatedRuntime()
    module = runtime.module("conv.cu", np.float32)         # like cupy.RawModule(code=..., options=("-Dreal=float",))
    im2col = module.get_function("im2col")                 # like RawModule.get_function
    im2col((blocks,), (256,), (cols, x, np.int32(n), ...)) # like a RawKernel launch; arrays are NumPy arrays

How: the `extern "C" __global__` kernels of a source are found by their signatures; for each one a small C++
wrapper `emu_launch_<name>(grid, block, params...)` is generated that runs the kernel once per CUDA thread
through emulation.h (block and thread indices, __shared__ memory, __syncthreads, atomicAdd); the source,
the header and the wrappers are compiled with g++ -std=c++20 into a shared library (cached by content hash)
and called through ctypes.  Kernels that declare __shared__ memory run each block's threads as concurrent OS
threads so that __syncthreads is a real barrier; the others walk the threads in order.

The emulated launch is stricter than CuPy where CuPy would silently compute garbage: every pointer argument
must be a C-contiguous NumPy array of the kernel's element type, and every scalar a NumPy scalar of the
kernel's exact C type (np.int32 for int, np.int64 for long long, the module's dtype for real).
"""
import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "emulation.h")

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
_C_SCALARS = {"int": np.int32, "unsigned": np.uint32, "long long": np.int64, "float": np.float32,
              "double": np.float64}
_CTYPES = {np.int32: ctypes.c_int32, np.uint32: ctypes.c_uint32, np.int64: ctypes.c_int64,
           np.float32: ctypes.c_float, np.float64: ctypes.c_double}
C_NAMES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def compiler():
    """The host C++ compiler (g++ or $CXX), or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


class Param:
    """One kernel parameter: its name, whether it is a pointer, const, and its element or scalar type."""

    def __init__(self, text, real):
        tokens = text.replace("*", " * ").split()
        self.name = tokens[-1]
        self.pointer = "*" in tokens
        self.const = "const" in tokens
        base = " ".join(t for t in tokens[:-1] if t not in ("const", "*", "__restrict__"))
        base = C_NAMES[np.dtype(real)] if base == "real" else base
        if base not in _C_SCALARS:
            raise ValueError(f"the emulation does not know the C type {base!r} (parameter {self.name})")
        self.dtype = np.dtype(_C_SCALARS[base])


def kernel_signatures(source):
    """[(name, parameter texts, body)] of the extern "C" __global__ kernels of a CUDA source."""
    kernels = []
    for match in _SIGNATURE.finditer(source):
        start = source.index("{", match.end())
        depth, end = 0, start
        for end in range(start, len(source)):
            depth += {"{": 1, "}": -1}.get(source[end], 0)
            if depth == 0:
                break
        params = [p.strip() for p in match.group(2).split(",") if p.strip()]
        kernels.append((match.group(1), params, source[start:end + 1]))
    return kernels


_DEVICE_FUNCTION = re.compile(r'__device__[^;{}()]*?\b(\w+)\s*\([^)]*\)\s*\{', re.S)


def _block(source, start):
    """The text from the brace at `start` to its matching brace."""
    depth = 0
    for end in range(start, len(source)):
        depth += {"{": 1, "}": -1}.get(source[end], 0)
        if depth == 0:
            return source[start:end + 1]
    return source[start:]


def synchronising(source, body):
    """Whether code with this body needs its block's threads to run concurrently: it uses shared memory or
    __syncthreads, itself or through the __device__ functions of the source it calls (transitively)."""
    functions = {m.group(1): _block(source, m.end() - 1) for m in _DEVICE_FUNCTION.finditer(source)}
    marks = ("__shared__", "__syncthreads")
    syncing = {name for name, text in functions.items() if any(mark in text for mark in marks)}
    while True:                   # a function that calls a synchronising one synchronises
        more = {name for name, text in functions.items()
                if name not in syncing and any(re.search(rf"\b{f}\b", text) for f in syncing)}
        if not more:
            break
        syncing |= more
    return any(mark in body for mark in marks) or any(re.search(rf"\b{f}\b", body) for f in syncing)


def _wrapper_source(source_path, kernels):
    lines = [f'#include "{source_path}"']
    with open(source_path) as f:
        source = f.read()
    for name, params, body in kernels:
        concurrent = "true" if synchronising(source, body) else "false"
        arg_names = ", ".join(p.replace("*", " ").split()[-1] for p in params)
        lines.append(
            f'extern "C" void emu_launch_{name}(unsigned gx, unsigned gy, unsigned gz, '
            f'unsigned bx, unsigned by, unsigned bz{"".join(", " + p for p in params)}) {{\n'
            f'    emu::launch({concurrent}, dim3(gx, gy, gz), dim3(bx, by, bz), [=] {{ {name}({arg_names}); }});\n'
            f'}}')
    return "\n".join(lines) + "\n"


class EmulatedKernel:
    """One kernel of an emulated module, launched as kernel(grid, block, args) like a CuPy RawKernel."""

    def __init__(self, lib, name, params, real):
        self.name = name
        self.params = [Param(p, real) for p in params]
        self._fn = getattr(lib, f"emu_launch_{name}")
        self._fn.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_void_p if p.pointer else _CTYPES[p.dtype.type]
                                                   for p in self.params]
        self._fn.restype = None

    def __call__(self, grid, block, args):
        grid, block = tuple(grid) + (1,) * (3 - len(grid)), tuple(block) + (1,) * (3 - len(block))
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        if min(grid + block) < 1:
            raise ValueError(f"{self.name}: empty launch grid {grid} x block {block}")
        values = []
        for p, a in zip(self.params, args):
            if p.pointer:
                if not isinstance(a, np.ndarray) or a.dtype != p.dtype or not a.flags.c_contiguous:
                    raise TypeError(f"{self.name}: {p.name} must be a C-contiguous {p.dtype} array; got "
                                    f"{type(a).__name__} {getattr(a, 'dtype', '')}")
                if not p.const and not a.flags.writeable:
                    raise TypeError(f"{self.name}: {p.name} is written but the array is read-only")
                values.append(a.ctypes.data)
            else:
                if not isinstance(a, np.generic) or a.dtype != p.dtype:
                    raise TypeError(f"{self.name}: {p.name} must be a NumPy {p.dtype} scalar (CuPy would "
                                    f"misread a {type(a).__name__}); got {a!r}")
                values.append(a.item())
        self._fn(*(int(v) for v in grid + block), *values)


class EmulatedModule:
    """A CUDA source compiled for the CPU with real = float or double."""

    def __init__(self, source_path, real):
        self.real = np.dtype(real)
        with open(source_path) as f:
            source = f.read()
        self.kernels = kernel_signatures(source)
        wrapper = _wrapper_source(source_path, self.kernels)
        with open(HEADER) as f:
            header = f.read()
        flags = ["-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", f"-Dreal={C_NAMES[self.real]}",
                 "-include", HEADER]
        key = hashlib.sha256("\0".join([source, header, wrapper] + flags).encode()).hexdigest()[:16]
        cache = os.path.join(tempfile.gettempdir(), "redcore-cuda-emulation")
        os.makedirs(cache, exist_ok=True)
        library = os.path.join(cache, f"{os.path.basename(source_path)}-{C_NAMES[self.real]}-{key}.so")
        if not os.path.exists(library):
            cxx = compiler()
            if cxx is None:
                raise RuntimeError("the CUDA emulation needs a C++20 compiler (g++), and none was found")
            wrapper_path = library[:-3] + ".cpp"
            with open(wrapper_path, "w") as f:
                f.write(wrapper)
            tmp = f"{library}.{os.getpid()}.tmp"
            done = subprocess.run([cxx, *flags, wrapper_path, "-o", tmp], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"compiling {source_path} for the emulation failed:\n{done.stderr}")
            os.replace(tmp, library)
        lib = ctypes.CDLL(library)
        self._functions = {name: EmulatedKernel(lib, name, params, self.real) for name, params, _ in self.kernels}

    def get_function(self, name):
        if name not in self._functions:
            raise AttributeError(f"no kernel {name!r} in this module: it has {', '.join(self._functions)}")
        return self._functions[name]


class EmulatedRuntime:
    """What the cuda backend needs of CuPy, on the CPU: NumPy arrays, and modules of emulated kernels."""

    name = "emulation"
    xp = np

    def __init__(self):
        self._modules = {}

    def module(self, source_name, dtype):
        key = (source_name, np.dtype(dtype))
        if key not in self._modules:
            self._modules[key] = EmulatedModule(os.path.join(HERE, source_name), dtype)
        return self._modules[key]

    def to_numpy(self, a):
        return np.asarray(a)

    def synchronize(self):
        pass

    def time(self, run):
        """None: the emulation's speed says nothing about a GPU's, so nothing is chosen by it."""
        return None

    def detach(self, a):
        """A recorded launch keeps its arrays themselves (NumPy frees nothing a replay still needs)."""
        return a

    def private_memory(self):
        """NumPy has no memory pool to keep apart: the replayed launches hold their arrays themselves."""
        return contextlib.nullcontext()

    def shared_memory(self):
        return contextlib.nullcontext()

    def capture(self, launches, pool=None):
        return ReplayedLaunches(launches)


class ReplayedLaunches:
    """What a CUDA graph is on a GPU (CupyRuntime.capture), on the CPU: recorded launches, replayed in order on
    the buffers they were recorded with, after new inputs are copied into their static buffers."""

    def __init__(self, launches):
        self.launches = list(launches)

    def run(self, uploads):
        for buffer, value in uploads:
            buffer[...] = value
        for kernel, grid, block, args in self.launches:
            kernel(grid, block, args)
