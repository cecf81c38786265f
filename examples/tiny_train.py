"""The smallest training run: read it top to bottom first.  A small RED-Net learns to remove noise from
patches of the built-in images, on the NumPy reference backend in float64 (every line of its forward and
backward is plain NumPy: redcore/ops/), and prints the loss falling.  Under a minute on two cores.

    python examples/tiny_train.py
"""
import numpy as np

import redcore
from redcore.data import builtin_images

images = builtin_images(count=6, size=64)                      # synthetic (H, W) images in [0, 1]
net = redcore.REDNet(depth=6, filters=8, backend="numpy", dtype="float64", seed=0)   # 3 conv + 3 deconv, skips
opt = redcore.Adam(net.params, lr=2e-3)                         # paper Eq. 5-7
rng = np.random.default_rng(0)
sigma = 25 / 255                                                # noise level on the [0, 1] scale

for step in range(1, 51):
    # a batch of 8 random 32x32 patches: clean targets and their noisy inputs, (N, C, H, W)
    picks = rng.integers(len(images), size=8)
    corners = rng.integers(0, 64 - 32, size=(8, 2))
    clean = np.stack([images[i][y:y + 32, x:x + 32] for i, (y, x) in zip(picks, corners)])[:, None]
    noisy = clean + sigma * rng.standard_normal(clean.shape)

    restored = net.forward(noisy)                               # the net learns the noise and subtracts it
    loss, dloss = redcore.mse_loss(restored, clean)             # paper Eq. 4: (1/N) sum ||F(X) - Y||^2
    net.backward(dloss)                                         # every dL/dW in net.grads
    opt.step(net.grads)                                         # one Adam step on every weight

    if step % 10 == 0 or step == 1:
        noise_loss = float(((noisy - clean) ** 2).sum()) / len(clean)   # the loss of doing nothing
        print(f"step {step:2d}: loss {loss:8.3f}   (the noisy input's: {noise_loss:.3f})")
