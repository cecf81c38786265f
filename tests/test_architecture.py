"""The architecture holds: dependencies point one way.  The imports of every redcore module are read from its
source (function-local ones counted too), and the graph they make must have no cycle; the ops import
nothing else of redcore, so each can be read, and tested, on its own."""
import ast
import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
PACKAGES = {"redcore": "redcore", "redcore.kernels": "kernels/cpu", "redcore.cuda_kernels": "kernels/cuda"}


def modules():
    """module name -> source path, for redcore and the two kernel packages setup.py maps into it."""
    found = {}
    for package, folder in PACKAGES.items():
        for path, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(path, f), os.path.join(ROOT, folder))[:-3]
                    rel = rel.replace(os.sep, ".").removesuffix("__init__").rstrip(".")
                    found[f"{package}.{rel}" if rel else package] = os.path.join(path, f)
    return found


def import_graph():
    """module -> the redcore modules it imports anywhere in its source."""
    known = modules()
    graph = {}
    for name, path in known.items():
        base = name.split(".") if path.endswith("__init__.py") else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                prefix = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module
                candidates = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
            else:
                continue
            for c in candidates:
                while c and c not in known:          # an attribute of a module: the module
                    c = c.rpartition(".")[0]
                if c and c != name:
                    targets.add(c)
        graph[name] = targets
    return graph


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_redcores_modules():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_ops_import_nothing_else_of_redcore():
    graph = import_graph()
    ops = [m for m in graph if m == "redcore.ops" or m.startswith("redcore.ops.")]
    assert len(ops) >= 4
    for m in ops:
        outside = {t for t in graph[m] if not t.startswith("redcore.ops")}
        assert not outside, f"{m} imports {sorted(outside)}"


def test_io_reads_and_writes_files_only():
    assert not {t for t in import_graph()["redcore.io"] if t.startswith("redcore")}


def test_the_tiny_example_trains_in_seconds():
    """examples/tiny_train.py, the learner's first run: the loss falls below the noisy input's."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tiny_train.py")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("step")]
    losses, inputs = [float(r[3]) for r in rows], [float(r[-1].rstrip(")")) for r in rows]
    assert len(rows) == 6 and losses[-1] < losses[0] / 5 and losses[-1] < inputs[-1]


def test_every_backend_defines_the_whole_kernel_set_itself():
    """No backend borrows the NumPy reference's code (which on CuPy arrays would run on the host, or fail far
    from the cause): each kernel-set method of the cpu and cuda backends is defined in their own classes, and
    one that is missing raises NotImplementedError naming it."""
    from redcore.backends.base import KERNEL_SET, Backend
    from redcore.backends.cpu_backend import CpuBackend
    from redcore.backends.cuda_backend import CudaBackend
    from redcore.backends.numpy_backend import NumpyBackend
    for cls in (NumpyBackend, CpuBackend, CudaBackend):
        for name in KERNEL_SET:
            owner = next(c for c in cls.__mro__ if name in c.__dict__)
            assert owner is not Backend, f"{cls.__name__} does not define {name}"
            assert cls is NumpyBackend or owner is not NumpyBackend, f"{cls.__name__}.{name} is NumPy's"

    class Partial(Backend):
        name = "partial"
    import pytest
    with pytest.raises(NotImplementedError, match="the partial backend has no mse_loss kernel"):
        Partial().mse_loss(None, None)


def test_backend_variants_are_asked_for_by_name():
    from redcore.backends import get_backend
    assert (get_backend("cpu").conv, get_backend("cpu").winograd_tile) == ("auto", 4)
    assert get_backend("cpu-im2col").winograd is False
    assert (get_backend("cpu-winograd2").winograd_min_channels, get_backend("cpu-winograd2").winograd_tile) == (1, 2)
    assert get_backend("cpu-winograd4") is get_backend("cpu-winograd4") is not get_backend("cpu")
    import pytest
    with pytest.raises(ValueError, match="unknown backend 'cpu-fast'"):
        get_backend("cpu-fast")
