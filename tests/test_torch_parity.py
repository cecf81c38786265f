"""A PyTorch model with the same layers, loaded by name, gives the same output and the same gradients."""
import numpy as np
import pytest

import redcore

torch = pytest.importorskip("torch", reason="PyTorch, the test-only reference, is not installed (pip install "
                                            "'.[torch]', its CPU-only build where there is no GPU)")
from relu_margin import draw_clear_of_kinks  # noqa: E402
from torch_rednet import from_redcore  # noqa: E402


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("cfg", [dict(depth=10, skip_step=2), dict(depth=10, skip_step=0, padding="valid"),
                                 dict(depth=12, skip_step=3, downsample=(2, 5)), dict(depth=10, channels=3, residual=False),
                                 dict(depth=14, skip_step=2, skip_kind="block")],
                         ids=["red10-skips", "red10-valid", "downsample", "color-noresidual", "block-skips"])
def test_same_output_and_gradients_as_pytorch(backend, cfg):
    dtype = "float64" if backend == "numpy" else "float32"
    tdtype, tol = (torch.float64, 1e-10) if backend == "numpy" else (torch.float32, 2e-4)
    net = redcore.REDNet(filters=6, backend=backend, dtype=dtype, seed=2, **cfg)
    tnet = from_redcore(net, tdtype)
    rng = np.random.default_rng(3)
    # data that keeps every ReLU input clear of the kink, where float32 and float64 may rightly differ
    x = draw_clear_of_kinks(net, lambda: rng.random((2, cfg.get("channels", 1), 23, 18)).astype(dtype))
    target = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(dtype)
    y = net.forward(x)
    loss, dy = redcore.mse_loss(y, target)
    dx = net.backward(dy)

    xt = torch.from_numpy(x).requires_grad_(True)
    yt = tnet(xt)
    lt = ((yt - torch.from_numpy(target)) ** 2).sum() / x.shape[0]      # paper Eq. 4
    lt.backward()
    scale = lambda a: np.abs(a).max() + 1e-12
    assert np.abs(y - yt.detach().numpy()).max() <= tol * scale(y)
    assert abs(loss - lt.item()) <= tol * loss
    assert np.abs(dx - xt.grad.numpy()).max() <= tol * scale(xt.grad.numpy())
    for name, p in tnet.named_parameters():
        want = p.grad.numpy()
        assert np.abs(net.grads[name] - want).max() <= tol * scale(want), name


def test_mean_reduction_matches_pytorch_mse():
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 1, 5, 5)), rng.random((2, 1, 5, 5))
    loss, _ = redcore.mse_loss(a, b, "mean")
    assert abs(loss - torch.nn.functional.mse_loss(torch.from_numpy(a), torch.from_numpy(b)).item()) < 1e-12


def test_adam_matches_pytorch_adam():
    """Paper Eq. 5-7 and torch.optim.Adam are the same algorithm (torch folds eps after the correction of
    v, the paper before; for eps small against sqrt(v) both agree to ~eps/sqrt(v))."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal(50)
    params = {"w": w.copy()}
    tw = torch.tensor(w, requires_grad=True)
    opt, topt = redcore.Adam(params, lr=1e-2), torch.optim.Adam([tw], lr=1e-2, eps=0.0)
    opt.eps = 0.0
    for _ in range(5):
        g = rng.standard_normal(50)
        opt.step({"w": g})
        tw.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-12)
