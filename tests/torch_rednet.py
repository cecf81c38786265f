"""RED-Net in PyTorch with the same layer names, for parity tests and benchmarks (never imported by redcore).

Built from a redcore config, it follows the same rules (model.py's docstring) with torch's own conv and
transposed conv, so `torch_net.load_state_dict(redcore_net.state_dict())` loads every weight by name.
"""
import torch
import torch.nn.functional as F
from torch import nn


class TorchREDNet(nn.Module):
    def __init__(self, depth=30, filters=128, kernel_size=3, channels=1, skip_step=2, padding="same",
                 residual=True, downsample=(), relu=True, skip_kind="symmetric", **_ignored):
        super().__init__()
        self.n, self.k, self.residual, self.use_relu = depth // 2, kernel_size, residual, relu
        self.pad = kernel_size // 2 if padding == "same" else 0
        self.stride = {i: 2 if i in set(downsample) else 1 for i in range(1, self.n + 1)}
        s, n, block = skip_step, self.n, skip_kind == "block"
        # symmetric: deconv j gets conv n-j; block (ResNet-style): conv i gets conv i-s where i-1 is a multiple of
        # s, deconv j the output of stage j-s (stage 0: conv n) where j is a multiple of s
        self.skips = {j: n - j for j in range(1, n) if s and not block and (n - j) % s == 0}
        self.conv_blocks = {i: i - s for i in range(2, n + 1) if s and block and (i - 1) % s == 0}
        self.stage_blocks = {j: j - s for j in range(1, n) if s and block and j % s == 0}
        for i in range(1, self.n + 1):
            self.add_module(f"conv{i}", nn.Conv2d(channels if i == 1 else filters, filters, kernel_size,
                                                  self.stride[i], self.pad))
        for j in range(1, self.n + 1):
            i = self.n + 1 - j
            self.add_module(f"deconv{j}", nn.ConvTranspose2d(filters, channels if j == self.n else filters,
                                                             kernel_size, self.stride[i], self.pad))

    def forward(self, x):
        act = F.relu if self.use_relu else (lambda t: t)
        h, sizes, outs = x, [], {}
        for i in range(1, self.n + 1):
            sizes.append(h.shape[2:])
            h = act(getattr(self, f"conv{i}")(h))
            if i in self.conv_blocks:
                h = act(h + outs[self.conv_blocks[i]])
            outs[i] = h
        stages = {0: h}
        for j in range(1, self.n + 1):
            i = self.n + 1 - j
            m = getattr(self, f"deconv{j}")
            h = m(h, output_size=list(sizes[i - 1]))
            if j < self.n:
                h = act(h)
                if j in self.skips:
                    h = act(h + outs[self.skips[j]])
                elif j in self.stage_blocks:
                    h = act(h + stages[self.stage_blocks[j]])
                stages[j] = h
        return h + x if self.residual else h


def from_redcore(net, dtype=torch.float32):
    """A TorchREDNet with net's config and weights."""
    t = TorchREDNet(**net.config).to(dtype)
    t.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in net.state_dict().items()})
    return t
