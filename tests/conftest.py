import os
import sys

from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))   # tests/gradcheck.py

# The parity tests measure float32 arithmetic against the float64 reference (rtol 1e-4).  CuPy's TF32 mode
# (CUPY_TF32=1, worth setting for training) rounds matmul inputs to 10 mantissa bits: on an H200 it put
# conv2d_backward_weight 6.3e-4 off.  CuPy reads the variable at its first float32 matmul, so pin it off here.
os.environ["CUPY_TF32"] = "0"

# JIT compilation makes the first example slow: no deadline.  CI runs the profile "ci" (derandomized, so a
# CI failure reproduces); HYPOTHESIS_PROFILE=thorough runs 200 examples per property locally.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

DATA_DIR = os.environ.get("REDCORE_DATA") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def data_set(*parts):
    """The path of a shared data folder, or a pytest skip saying it is absent (tests that need the shared sets)."""
    import pytest
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.isdir(path):
        pytest.skip(f"the shared data folder {path} is absent (set REDCORE_DATA to the data root)")
    return path


def load_example(name):
    """examples/<name>.py (or tools/<name>.py) as a module (the scripts are not a package), so tests can call
    its main()."""
    import importlib.util
    root = os.path.join(os.path.dirname(__file__), "..")
    path = os.path.join(root, "examples", f"{name}.py")
    if not os.path.isfile(path):
        path = os.path.join(root, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
