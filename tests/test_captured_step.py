"""The captured training step (redcore/training.py, CapturedStep): the step on the cuda backend's tensor-core path
recorded once as a fixed plan of kernel launches on static buffers, and replayed (a CUDA graph on a GPU, the same
list of launches on the emulation).

The proof is exact: a replay runs the very kernels of the eager step on the same inputs, and every kernel of the
step is deterministic (fixed-order sums), so a captured step must equal train_step bit for bit, step after step.
Any array operation of the step that is not a kernel (and so is missing from the plan) breaks that from the second
step on: a gradient not zeroed, a residual not added, a stale copy (each tried by hand: the losses part at step 2).
The eager tensor-core step itself is held to the float64 reference layer by layer in tests/test_tensor_core_path.py.
"""
import numpy as np
import pytest

import redcore
from redcore.backends import get_backend
from redcore.capture import CapturedForward, why_not_captured
from redcore.training import CapturedStep, train_step


@pytest.fixture(params=["cuda-tf32-emulation", "cuda-bf16-emulation", "cuda-tf32"], scope="module")
def tensor_cores(request):
    try:
        return get_backend(request.param).name
    except RuntimeError as e:            # no CuPy or GPU (cuda-tf32), no C++ compiler (the emulation)
        pytest.skip(str(e))


def host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def twins(backend, **config):
    """Two identical networks with an Adam each."""
    nets = [redcore.REDNet(**{"depth": 6, "filters": 8, "seed": 3, **config}, backend=backend) for _ in range(2)]
    return [(net, redcore.Adam(net.params, lr=1e-3)) for net in nets]


def batch(rng, shape):
    clean = rng.random(shape).astype(np.float32)
    return (clean + 0.1 * rng.standard_normal(shape)).astype(np.float32), clean


@pytest.mark.parametrize("config", [dict(padding="same"), dict(padding="valid"), dict(skip_kind="block", skip_step=1)],
                         ids=["same", "valid", "block-skips"])
def test_replays_equal_the_eager_step_bit_for_bit(tensor_cores, config):
    """Four steps on new batches, with the step size changed before each (a warm-up) and an inference pass
    between steps: the same losses, parameters and Adam moments as train_step, exactly."""
    (eager, eager_opt), (net, opt) = twins(tensor_cores, **config)
    step = CapturedStep(net, opt)
    rng = np.random.default_rng(0)
    for i in range(4):
        x, target = batch(rng, (2, 1, 13, 11))
        eager_opt.lr = opt.lr = 1e-3 * (i + 1) / 4
        want = train_step(eager, eager_opt, x, target)
        got = step(x, target)
        assert got == want, f"step {i + 1}: loss {got!r}, eager {want!r}"
        for name, a, b in (("parameters", net.params.flat, eager.params.flat), ("first moments", opt.m_flat,
                           eager_opt.m_flat), ("second moments", opt.v_flat, eager_opt.v_flat)):
            assert np.array_equal(host(a), host(b)), f"step {i + 1}: the {name} differ"
        assert opt.t == eager_opt.t == i + 1
        net.forward(x[:1], keep=False)                    # validation between steps uses memory of its own


def test_each_batch_shape_has_its_plan(tensor_cores):
    """Batches of two shapes in turn: each shape records a plan once and replays it after."""
    (eager, eager_opt), (net, opt) = twins(tensor_cores)
    step = CapturedStep(net, opt)
    rng = np.random.default_rng(1)
    for shape in [(2, 1, 9, 9), (1, 1, 12, 10), (2, 1, 9, 9), (1, 1, 12, 10)]:
        x, target = batch(rng, shape)
        assert step(x, target) == train_step(eager, eager_opt, x, target)
    assert np.array_equal(host(net.params.flat), host(eager.params.flat))
    assert len(step._plans) == 2


def test_changed_weights_between_steps_are_used(tensor_cores):
    """The plan's parameters are the network's: weights loaded between two replays (a checkpoint, --init) are
    the ones the next replay trains."""
    (eager, eager_opt), (net, opt) = twins(tensor_cores)
    step = CapturedStep(net, opt)
    rng = np.random.default_rng(2)
    x, target = batch(rng, (1, 1, 10, 10))
    step(x, target)
    train_step(eager, eager_opt, x, target)
    other = redcore.REDNet(depth=6, filters=8, seed=9).state_dict()
    net.load_state_dict(other)
    eager.load_state_dict(other)
    x, target = batch(rng, (1, 1, 10, 10))
    assert step(x, target) == train_step(eager, eager_opt, x, target)


def test_a_non_finite_loss_is_an_error(tensor_cores):
    (net, opt), _ = twins(tensor_cores)
    step = CapturedStep(net, opt)
    x, target = batch(np.random.default_rng(3), (1, 1, 8, 8))
    step(x, target)
    target[0, 0, 0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="mse_loss is nan: the network diverged or its input holds NaN"):
        step(x, target)


def test_what_cannot_be_captured_is_refused_with_the_reason():
    """Where a step is not the backend's kernels alone (exact float32 runs cuBLAS, the cpu backend NumPy), or a
    layer is not on the tensor cores, CapturedStep refuses with one sentence; examples/train.py then runs
    train_step."""
    cpu = redcore.REDNet(depth=4, filters=4)
    with pytest.raises(ValueError, match="needs the tensor-core path of the cuda backend .* the cpu backend is not"):
        CapturedStep(cpu, redcore.Adam(cpu.params))
    try:
        exact = redcore.REDNet(depth=4, filters=4, backend="cuda-emulation")
        strided = redcore.REDNet(depth=4, filters=4, backend="cuda-tf32-emulation", downsample=[1])
    except RuntimeError as e:
        pytest.skip(str(e))
    assert "the cuda-emulation backend is not" in why_not_captured(exact)
    with pytest.raises(ValueError, match=r"3x3 kernels, no down-sampling .* strides \[1, 2\]"):
        CapturedStep(strided, redcore.Adam(strided.params))
    tf32 = redcore.REDNet(depth=4, filters=4, backend="cuda-tf32-emulation")
    with pytest.raises(ValueError, match="needs Adam over this network's params"):
        CapturedStep(tf32, redcore.Adam(cpu.params))


def test_housekeeping_kernels_match_the_array_expressions():
    """add_, copy and zero_ of the cuda backend (kernels) against Backend's array expressions, on sizes that do
    not fill the last block; arrays the kernels do not take (strided) keep the expressions."""
    try:
        be = get_backend("cuda-tf32-emulation")
    except RuntimeError as e:
        pytest.skip(str(e))
    rng = np.random.default_rng(4)
    for size in (1, 255, 257, 1000):
        for dtype in (np.float32, np.float64):
            y, x = rng.standard_normal(size).astype(dtype), rng.standard_normal(size).astype(dtype)
            want = y + x
            assert be.add_(y, x) is y and np.array_equal(y, want)
            c = be.copy(x)
            assert c is not x and np.array_equal(c, x)
            assert be.zero_(x) is x and not x.any()
    y = rng.standard_normal((4, 6)).astype(np.float32)
    view, x = y[:, ::2], rng.standard_normal((4, 3)).astype(np.float32)
    want = view + x
    be.add_(view, x)
    assert np.array_equal(y[:, ::2], want)


def test_captured_forward_equals_the_eager_forward(tensor_cores):
    """Inference as a plan per input shape (CapturedForward): the same output as net.forward(x, keep=False),
    bit for bit, for two shapes in turn, and with weights loaded between replays."""
    (net, _), _ = twins(tensor_cores)
    forward = CapturedForward(net)
    rng = np.random.default_rng(6)
    for shape in [(1, 1, 13, 11), (2, 1, 9, 9), (1, 1, 13, 11), (2, 1, 9, 9)]:
        x = rng.random(shape).astype(np.float32)
        assert np.array_equal(forward(x), host(net.forward(x, keep=False)))
    net.load_state_dict(redcore.REDNet(depth=6, filters=8, seed=8).state_dict())
    x = rng.random((1, 1, 13, 11)).astype(np.float32)
    assert np.array_equal(forward(x), host(net.forward(x, keep=False)))
    assert len(forward._plans) == 2


def test_restore_replays_one_plan_for_every_tile(tensor_cores, monkeypatch):
    """redcore.inference on the tensor-core path: the tiles of an image share one plan, and the restored image
    is the eager one's exactly (the eager path forced by refusing the capture)."""
    from redcore import inference
    (net, _), _ = twins(tensor_cores)
    image = np.random.default_rng(7).random((40, 52)).astype(np.float32)
    captured = inference.restore_array(net, image, tile=24, overlap=8)
    assert list(inference._captured[net]._plans) == [(1, 1, 24, 24)]
    monkeypatch.setattr(inference, "why_not_captured", lambda net: "forced eager")
    assert np.array_equal(captured, inference.restore_array(net, image, tile=24, overlap=8))


def test_the_gpu_plumbing_runs_against_a_stand_in_for_cupy():
    """CupyRuntime's plan code runs only on a GPU, so a typo there would cost a lease: here it runs against a
    stand-in for the few CuPy calls it makes (streams with capture, a graph, memory pools, unowned memory).
    The stand-in's graph replays the captured calls in order; the check is that a recorded launch keeps only
    the address of its array (detach), that capture() rebuilds a view of that very memory, that run() copies
    the uploads in first, and that the pools are entered and left."""
    import contextlib
    import ctypes
    import types

    from redcore.backends.cuda_backend import CudaGraph, CupyRuntime, DeviceAddress

    class Array(np.ndarray):                       # a device array: .data.ptr, and made on given memory, as CuPy's
        def __new__(cls, shape, dtype, memptr):
            buffer = (ctypes.c_uint8 * shape[0]).from_address(memptr.mem.ptr + memptr.offset)
            return np.ctypeslib.as_array(buffer).view(dtype).view(cls)

        @property
        def data(self):
            return types.SimpleNamespace(ptr=self.ctypes.data)

    events = []

    class Stream:
        def __init__(self, non_blocking=False):
            self.calls = None

        def __enter__(self):
            cuda.current = self
            return self

        def __exit__(self, *exc):
            cuda.current = None

        def begin_capture(self):
            self.calls = []

        def end_capture(self):
            calls, self.calls = self.calls, None
            return types.SimpleNamespace(launch=lambda stream: [kernel(*rest) for kernel, *rest in calls])

        def record(self):
            return "event"

        def wait_event(self, event):
            events.append("wait")

    allocators = []

    @contextlib.contextmanager
    def using_allocator(malloc):
        allocators.append(malloc)
        yield
        allocators.pop()

    cuda = types.SimpleNamespace(
        Stream=Stream, current=None, Device=lambda: types.SimpleNamespace(id=0),
        MemoryPool=lambda: types.SimpleNamespace(malloc="the plan's pool"), using_allocator=using_allocator,
        UnownedMemory=lambda ptr, size, owner, device: types.SimpleNamespace(ptr=ptr, size=size, owner=owner),
        MemoryPointer=lambda mem, offset: types.SimpleNamespace(mem=mem, offset=offset),
        get_current_stream=lambda: Stream())
    cupy = types.SimpleNamespace(cuda=cuda, ndarray=Array, get_default_memory_pool=lambda: types.SimpleNamespace(
        malloc="the default pool"))

    def add_one(grid, block, args):                # a kernel: y += 1 on its float32 buffer
        (y,) = args
        view = y.view(np.float32)
        if cuda.current is not None and cuda.current.calls is not None:
            cuda.current.calls.append((add_one, grid, block, args))      # captured, not run
            return
        view += 1

    runtime = CupyRuntime.__new__(CupyRuntime)
    runtime.xp = cupy
    y = np.zeros(3, np.float32).view(Array)
    with runtime.private_memory() as pool:
        assert allocators == ["the plan's pool"]
        address = runtime.detach(y)
        add_one((1,), (32,), (y,))
    with runtime.shared_memory():
        assert allocators == ["the default pool"]
    assert allocators == [] and isinstance(address, DeviceAddress) and address.nbytes == 12
    assert runtime.detach(np.int32(3)) == 3                    # scalars are kept as they are
    graph = runtime.capture([(add_one, (1,), (32,), (address,))], pool)
    assert isinstance(graph, CudaGraph) and graph.pool is pool and np.array_equal(y, [1, 1, 1])
    x = np.zeros(2, np.float32).view(Array)
    x.set = lambda value, stream: x.__setitem__(Ellipsis, value)
    graph.run([(x, np.array([5.0, 6.0], np.float32))])
    assert np.array_equal(y, [2, 2, 2]) and np.array_equal(x, [5, 6]) and events == ["wait", "wait"]
