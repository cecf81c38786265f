"""Numba kernels of the "cpu" backend (installed as `redcore.kernels`).

Every kernel writes into a preallocated output, which comes first in its signature (as in llm.c), and runs
`prange` over disjoint output slices, so no two iterations ever write one element.
"""
from .conv import col2im, im2col
from .elementwise import adam_update, bias_add, bias_backward, relu, relu_add, relu_backward
from . import winograd
