"""Captured plans: a network's step or forward pass on the cuda backend's tensor-core path, recorded once as
the kernel launches it makes and replayed (one CUDA graph on a GPU; the same list of launches, called in
order, on the emulation, which is how the plans are tested without a GPU).

On that path every array operation of a forward or training pass is a kernel of kernels/cuda (the sums,
copies and zeroing too, and Adam reads its step size from device memory), so the launches are the whole
computation.  The first call with a shape runs it as usual while CudaKernels.record() collects each launch
with its buffers; the runtime captures them.  On a GPU the recording allocates from a memory pool of the
plan's own, which keeps every block the pass used, reused within the pass as eagerly: the plan's memory is
the eager pass's peak, and nothing else can take it while the graph lives.

    forward = CapturedForward(net); y = forward(x)          # inference, one plan per input shape
    (training: redcore.training.CapturedStep)
"""
import weakref

import numpy as np

from .backends.base import OPERANDS


def why_not_captured(net):
    """None where a plan can run this network's passes, else the reason in one sentence."""
    be = net.backend
    if getattr(be, "precision", None) not in OPERANDS:
        return (f"a captured plan needs the tensor-core path of the cuda backend (--precision "
                f"{' or '.join(OPERANDS)}), where a pass is the backend's kernels only; the {be.name} backend is not")
    strides = sorted(set(net.stride.values()))
    # every conv (padding p) and transposed conv (a conv with padding 2 - p) on the backend's tensor-core path
    layers = all(be.on_tensor_cores(net.dtype, net.k, s, p) for s in strides for p in (net.pad, 2 - net.pad))
    if not layers or not net.relu:
        return ("a captured plan needs every layer on the tensor cores and every array operation a kernel: float32, "
                "3x3 kernels, no down-sampling and the paper's ReLUs; this network has "
                f"{net.dtype}, {net.k}x{net.k} kernels, strides {strides}, relu={net.relu}")
    return None


def require_captured(net):
    """ValueError with why_not_captured's sentence where a plan cannot run this network's passes."""
    reason = why_not_captured(net)
    if reason is not None:
        raise ValueError(reason)


def record(backend, run):
    """run() as usual, its launches recorded and captured by the backend's runtime: (run's result, the plan)."""
    with backend.runtime.private_memory() as pool:
        with backend.kernels.record() as launches:
            result = run()
    return result, backend.runtime.capture(launches, pool)


def static_buffer(backend, a, dtype):
    """A device array of its own holding a (the input buffer a plan reads, filled anew before each replay)."""
    buffer = backend.zeros(a.shape, dtype)
    buffer[...] = backend.asarray(a, dtype)
    return buffer


def as_upload(a, dtype):
    """What a plan's run() copies into a static buffer: a host array in the buffer's dtype, or a device array."""
    return np.ascontiguousarray(a, dtype=dtype) if isinstance(a, np.ndarray) else a


class CapturedForward:
    """net.forward(x, keep=False) (inference) as one plan per input shape, replayed; returns a host array."""

    def __init__(self, net):
        require_captured(net)
        self._net = weakref.ref(net)       # the plans belong to the net (inference.py caches them by it)
        self._plans = {}                   # x shape -> (graph, x buffer, output)

    def __call__(self, x):
        net = self._net()
        be, dtype = net.backend, net.dtype
        key = tuple(x.shape)
        if key not in self._plans:
            x_buffer = static_buffer(be, x, dtype)
            out, graph = record(be, lambda: net.forward(x_buffer, keep=False))
            self._plans[key] = (graph, x_buffer, out)
        else:
            graph, x_buffer, out = self._plans[key]
            graph.run([(x_buffer, as_upload(x, dtype))])
        return np.array(be.to_numpy(out))
