"""The training step: forward, the loss of Eq. 4, backward, Adam (Eq. 5-7), and across processes one
all-reduce of the gradients in between.

    loss = train_step(net, opt, noisy, clean)             # one process
    loss = train_step(net, opt, noisy, clean, comm)       # one rank of a data-parallel job (redcore.distributed)
    step = CapturedStep(net, opt); loss = step(noisy, clean)   # the same step as one CUDA graph (cuda backends)

On the cpu backend the batch is split over the cores inside net.forward / net.backward (REDNet(threads=...)).
"""
import numpy as np

from .backends.base import OPERANDS
from .ops.loss import finite_loss, mse_loss


def train_step(net, optimizer, x, target, comm=None):
    """One step on the batch (x, target), both (N, C, H, W): returns the loss (the mean over the ranks').

    With comm (a communicator of redcore.distributed) every rank holds its shard of the global batch; the mean
    of the ranks' gradients is the global batch's gradient when the shards are equal (Eq. 4 averages over the
    batch), so after the all-reduce every rank takes the same Adam step."""
    loss, dy = mse_loss(net.forward(x), target, backend=net.backend)    # Eq. 4 and dL/dy
    net.backward(dy, input_grad=False)                                  # fills net.grads (the input is data)
    if comm is not None:
        comm.allreduce_mean_(net.grads.flat)
    optimizer.step(net.grads)                                           # Eq. 5-7
    return comm.mean(loss) if comm is not None else loss


def why_not_captured(net):
    """None where CapturedStep can run this network's step, else the reason in one sentence."""
    be = net.backend
    if getattr(be, "precision", None) not in OPERANDS:
        return (f"a captured step needs the tensor-core path of the cuda backend (--precision "
                f"{' or '.join(OPERANDS)}), where a step is the backend's kernels only; the {be.name} backend is not")
    if net.dtype != np.float32 or net.k != 3 or any(s != 1 for s in net.stride.values()) or not net.relu:
        return ("a captured step needs every layer on the tensor cores and every array operation a kernel: float32, "
                "3x3 kernels, no down-sampling and the paper's ReLUs; this network has "
                f"{net.dtype}, {net.k}x{net.k} kernels, strides {sorted(set(net.stride.values()))}, relu={net.relu}")
    return None


class CapturedStep:
    """train_step(net, optimizer, x, target) as one fixed plan of kernel launches, replayed each step (issue:
    Python does O(1) work per step).

    The first call with a batch shape runs the step as usual while the backend records every launch with its
    buffers (the forward's maps, the gradients, the block sums of the loss and of the weight gradients: each
    allocated once and kept by the plan).  The runtime captures that list: a CUDA graph on a GPU, the same list
    replayed in order on the emulation, which is how the plan is tested without a GPU.  Each later call copies
    the batch and Adam's alpha_t (the host counts the steps, so a warm-up's changing lr needs nothing more) into
    the plan's static buffers, replays it, and reads back the loss: one host sync per step.

    The network's parameters, gradients and Adam's moments are the plan's buffers themselves, so checkpoints,
    validation and load_state_dict between steps see and change the same memory."""

    def __init__(self, net, optimizer, reduction="batch"):
        reason = why_not_captured(net)
        if reason is not None:
            raise ValueError(reason)
        if getattr(optimizer, "m_flat", None) is None or optimizer.params is not net.params:
            raise ValueError("a captured step needs Adam over this network's params (redcore.Adam(net.params))")
        self.net, self.optimizer, self.reduction = net, optimizer, reduction
        self._plans = {}                   # (x shape, target shape) -> (graph, x, target, alpha_t, loss)

    def __call__(self, x, target):
        be = self.net.backend
        key = (tuple(x.shape), tuple(target.shape))
        if key not in self._plans:
            return self._record(key, x, target)
        graph, x_buffer, target_buffer, alpha_t, loss = self._plans[key]
        step_size = np.array([self.optimizer.next_step_size()], dtype=alpha_t.dtype)
        graph.run([(x_buffer, self._on_host(x, x_buffer.dtype)), (target_buffer, self._on_host(target, x_buffer.dtype)),
                   (alpha_t, step_size)])
        return finite_loss(float(be.to_numpy(loss)[0]))

    @staticmethod
    def _on_host(a, dtype):
        return np.ascontiguousarray(a, dtype=dtype) if isinstance(a, np.ndarray) else a

    def _record(self, key, x, target):
        net, be = self.net, self.net.backend
        x_buffer, target_buffer = be.zeros(x.shape, net.dtype), be.zeros(target.shape, net.dtype)   # static inputs
        x_buffer[...], target_buffer[...] = be.asarray(x, net.dtype), be.asarray(target, net.dtype)
        with be.kernels.record() as launches:
            loss, dy = be.mse_loss_on_device(net.forward(x_buffer), target_buffer, self.reduction)   # Eq. 4
            net.backward(dy, input_grad=False)
            self.optimizer.step(net.grads)                                                        # Eq. 5-7
        self._plans[key] = (be.runtime.capture(launches), x_buffer, target_buffer,
                            be.kernels.step_size_buffer(net.dtype), loss)
        return finite_loss(float(be.to_numpy(loss)[0]))
