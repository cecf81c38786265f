"""redcore: RED-Net trained by hand on NumPy, Numba and (optionally) CuPy."""
from setuptools import setup

setup(
    name="redcore",
    version="0.1.0",
    description="Framework-free RED-Net (Mao, Shen & Yang 2016) for image restoration: "
                "hand-written forward/backward on NumPy, Numba and CUDA",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # kernels/cpu is installed as redcore.kernels: the Numba kernels live beside the CUDA
    # sources at the top of the tree, but import as part of the package.
    # kernels/cuda (the CUDA sources and their CPU emulation) is installed as redcore.cuda_kernels.
    packages=["redcore", "redcore.ops", "redcore.backends", "redcore.tasks", "redcore.kernels",
              "redcore.cuda_kernels"],
    package_dir={"redcore.kernels": "kernels/cpu", "redcore.cuda_kernels": "kernels/cuda"},
    package_data={"redcore.cuda_kernels": ["*.cu", "*.h", "README.md"],
                  "redcore": ["weights/*.npz", "weights/models.json", "datasets.json"]},
    entry_points={"console_scripts": ["redcore=redcore.cli:main"]},
    install_requires=["numpy>=1.24", "numba>=0.58", "pillow>=10.1", "tqdm>=4.60", "threadpoolctl>=3.1"],
    extras_require={
        "cuda": ["cupy-cuda12x"],
        # Data-parallel training (redcore.distributed): MPICH's self-contained wheel and mpi4py.
        "mpi": ["mpi4py>=4", "mpich"],
        # BM3D: the classical denoising baseline of redcore.evaluate (optional; slow, CPU only).
        "baselines": ["bm3d>=4"],
        # Test references: scikit-image checks the metrics, resize-right (a MATLAB-exact imresize) the bicubic
        # resize.  PyTorch, the reference of tests/test_torch_parity.py and bench/, is left out: from the
        # package index torch is a CUDA build of several GB on most machines.  Install torch==2.13.0 (its
        # CPU-only build where there is no GPU; .ci/run does) and those tests run, else they skip saying so.
        "test": ["pytest>=7", "hypothesis>=6", "scikit-image>=0.22", "resize-right==0.0.2",
                 "bm3d>=4", "mpi4py>=4", "mpich"],
        "torch": ["torch==2.13.0"],
    },
)
