"""The training step: forward, the loss of Eq. 4, backward, Adam (Eq. 5-7), and across processes one
all-reduce of the gradients in between.

    loss = train_step(net, opt, noisy, clean)             # one process
    loss = train_step(net, opt, noisy, clean, comm)       # one rank of a data-parallel job (redcore.distributed)
    step = CapturedStep(net, opt); loss = step(noisy, clean)   # the same step as one CUDA graph (cuda backends)

On the cpu backend the batch is split over the cores inside net.forward / net.backward (REDNet(threads=...)).
"""
import numpy as np

from .capture import as_upload, record, require_captured, static_buffer
from .ops.loss import finite_loss, mse_loss


def train_step(net, optimizer, x, target, comm=None):
    """One step on the batch (x, target), both (N, C, H, W): returns the loss (the mean over the ranks').

    With comm (a communicator of redcore.distributed) every rank holds its shard of the global batch; the mean
    of the ranks' gradients is the global batch's gradient when the shards are equal (Eq. 4 averages over the
    batch), so after the all-reduce every rank takes the same Adam step."""
    loss = _step(net, optimizer, x, target, lambda y, t: mse_loss(y, t, backend=net.backend), comm)
    return comm.mean(loss) if comm is not None else loss


def _step(net, optimizer, x, target, loss_of, comm=None):
    """Forward, loss_of(output, target) -> (loss, dL/dy) (Eq. 4), backward, the all-reduce, Adam: the loss."""
    loss, dy = loss_of(net.forward(x), target)                          # Eq. 4 and dL/dy
    net.backward(dy, input_grad=False)                                  # fills net.grads (the input is data)
    if comm is not None:
        comm.allreduce_mean_(net.grads.flat)
    optimizer.step(net.grads)                                           # Eq. 5-7
    return loss


class CapturedStep:
    """train_step(net, optimizer, x, target) as one fixed plan of kernel launches, replayed each step, so that
    Python does O(1) work per step.

    The first call with a batch shape runs the step as usual while the backend records every launch with its
    buffers (the forward's maps, the gradients, the block sums of the loss and of the weight gradients, kept by
    the plan: redcore/capture.py).  The runtime captures that list: a CUDA graph on a GPU, the same list
    replayed in order on the emulation, which is how the plan is tested without a GPU.  Each later call copies
    the batch and Adam's alpha_t (the host counts the steps, so a warm-up's changing lr needs nothing more) into
    the plan's static buffers, replays it, and reads back the loss: one host sync per step.

    The network's parameters, gradients and Adam's moments are the plan's buffers themselves, so checkpoints,
    validation and load_state_dict between steps see and change the same memory."""

    def __init__(self, net, optimizer, reduction="batch"):
        require_captured(net)
        if getattr(optimizer, "m_flat", None) is None or optimizer.params is not net.params:
            raise ValueError("a captured step needs Adam over this network's params (redcore.Adam(net.params))")
        self.net, self.optimizer, self.reduction = net, optimizer, reduction
        self._plans = {}                   # (x shape, target shape) -> (graph, x, target, alpha_t, loss)

    def __call__(self, x, target):
        net, be = self.net, self.net.backend
        key = (tuple(x.shape), tuple(target.shape))
        if key not in self._plans:
            x_buffer, target_buffer = static_buffer(be, x, net.dtype), static_buffer(be, target, net.dtype)
            device_loss = lambda y, t: be.mse_loss_on_device(y, t, self.reduction)   # noqa: E731 (a replay reads it)
            loss, graph = record(be, lambda: _step(net, self.optimizer, x_buffer, target_buffer, device_loss))
            self._plans[key] = (graph, x_buffer, target_buffer, be.kernels.step_size_buffer(net.dtype), loss)
        else:
            graph, x_buffer, target_buffer, alpha_t, loss = self._plans[key]
            step_size = np.array([self.optimizer.next_step_size()], dtype=alpha_t.dtype)
            graph.run([(x_buffer, as_upload(x, net.dtype)), (target_buffer, as_upload(target, net.dtype)),
                       (alpha_t, step_size)])
        return finite_loss(float(be.to_numpy(loss)[0]))
