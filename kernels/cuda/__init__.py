"""The CUDA kernels of redcore's "cuda" backend, as source files (installed as redcore.cuda_kernels).

    conv.cu         im2col, col2im
    elementwise.cu  add_bias (+ ReLU), relu, add_relu (the skip sum, Eq. 3), relu_backward, bias_backward,
                    mse_loss (Eq. 4), adam_update (Eq. 5-7)
    conv_tc.cu      conv3x3_pack_{tf32,bf16} + conv3x3_{tf32,bf16}[_n32|_n64], conv3x3_wgrad_{tf32,bf16} +
                    conv3x3_wgrad_reduce: the 3x3 stride-1 convolution, its input gradient and its weight and
                    bias gradients as implicit GEMMs on tensor cores (mma.sync as inline PTX, TF32 or bf16
                    operands; the weights rounded and packed once per call, staged by cp.async), NCHW or NHWC,
                    bias, ReLU, skip sums, the residual and the ReLU-backward mask fused: the "tf32" and "bf16"
                    precisions of the backend

Each source is compiled with -Dreal=float or -Dreal=double: by CuPy (NVRTC) on a GPU, by nvcc in the tests,
and by the host compiler through emulation.py to run on the CPU.  README.md explains the emulation.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("conv.cu", "elementwise.cu", "conv_tc.cu")


def source_path(name):
    return os.path.join(HERE, name)


def read_source(name):
    with open(source_path(name)) as f:
        return f.read()
