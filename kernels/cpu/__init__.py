"""Numba kernels of the "cpu" backend (installed as `redcore.kernels`).

Every kernel writes into a preallocated output, which comes first in its signature (as in llm.c), and runs
`prange` over disjoint output slices, so no two iterations ever write one element.

`single_threaded()` gives the same kernels compiled without threads and with the GIL released, for callers
that run one kernel per Python thread over disjoint data (redcore.threads: one slice of the batch per core).
"""
import functools
import types

import numba as nb

from .conv import col2im, im2col
from .elementwise import (adam_update, add_bias, add_bias_channels_last, bias_backward, bias_backward_channels_last,
                          relu, add_relu, relu_backward)
from . import winograd, winograd4

KERNELS = ("im2col", "col2im", "add_bias", "bias_backward", "add_bias_channels_last", "bias_backward_channels_last",
           "relu", "add_relu", "relu_backward", "adam_update")
WINOGRAD_KERNELS = ("input_transform", "output_transform", "gradient_transform")


@functools.lru_cache(maxsize=None)
def single_threaded():
    """A kernel set with the names of this module's, each kernel's Python source compiled again by Numba
    with parallel=False (prange runs as range) and nogil=True, so that several Python threads run kernels at
    once, each on one core.  Cached on disk under their own names (<kernel>_single_threaded), apart from the
    parallel builds."""
    def serial(kernel):
        f = kernel.py_func
        copy = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_single_threaded", f.__defaults__,
                                  f.__closure__)
        copy.__qualname__ = f.__qualname__ + "_single_threaded"
        options = {k: v for k, v in kernel.targetoptions.items() if k in ("fastmath", "boundscheck")}
        return nb.njit(nogil=True, cache=True, **options)(copy)
    def serial_module(module):
        ns = types.SimpleNamespace(**{name: getattr(module, name) for name in dir(module) if not name.startswith("_")})
        for name in WINOGRAD_KERNELS:
            setattr(ns, name, serial(getattr(module, name)))
        return ns
    g = globals()
    return types.SimpleNamespace(winograd=serial_module(winograd), winograd4=serial_module(winograd4),
                                 **{name: serial(g[name]) for name in KERNELS})
