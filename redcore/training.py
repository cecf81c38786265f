"""The training step: forward, the loss of Eq. 4, backward, Adam (Eq. 5-7), and across processes one
all-reduce of the gradients in between.

    loss = train_step(net, opt, noisy, clean)             # one process
    loss = train_step(net, opt, noisy, clean, comm)       # one rank of a data-parallel job (redcore.distributed)

On the cpu backend the batch is split over the cores inside net.forward / net.backward (REDNet(threads=...)).
"""
from .ops.loss import mse_loss


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
