"""Central finite differences in float64, weighted by a random upstream gradient (STYLE 6).

For f: x -> y and an upstream gradient g, the scalar L(x) = <g, f(x)> has dL/dx = backward(g).  Each checked
coordinate x_i gets (L(x + h e_i) - L(x - h e_i)) / 2h, whose error is O(h^2) (about 1e-10 relative here);
a failure prints the shapes, the worst absolute and relative errors and a few values.
"""
import numpy as np


def numerical_gradient(loss_of, x, indices, h=1e-6):
    """dL/dx at the flat `indices` of x (float64, modified and restored in place)."""
    flat = x.reshape(-1)
    out = np.empty(len(indices))
    for n, i in enumerate(indices):
        old = flat[i]
        flat[i] = old + h
        plus = loss_of()
        flat[i] = old - h
        minus = loss_of()
        flat[i] = old
        out[n] = (plus - minus) / (2 * h)
    return out


def covering_indices(shape, rng):
    """Flat indices into an array of `shape` that hit every index of axis 0, every index of axis 1 and every
    spatial position (the kernel taps of a weight (C_out, C_in, k, k) or (C_in, C_out, k, k)) at least once.

    max(shape[0], shape[1], k * k) coordinates: the i-th takes the i-th entry (cyclically) of a random
    permutation of each of the three, so a bug confined to one output channel, one input channel or one tap
    of a tensor is always sampled, and another rng samples other combinations."""
    if len(shape) == 1:
        return rng.permutation(shape[0])
    lead, taps = shape[:2], int(np.prod(shape[2:], dtype=int))
    count = max(*lead, taps)
    picks = [rng.permutation(n)[np.arange(count) % n] for n in (*lead, taps)]
    return np.ravel_multi_index((picks[0], picks[1], picks[2]), (*lead, taps))


def check_gradient(name, loss_of, x, analytic, rng, samples=40, rtol=1e-6, atol=1e-8, indices=None):
    """Assert that `analytic` (dL/dx, x's shape) matches central differences at `samples` random coordinates,
    or at the flat `indices` given (e.g. covering_indices(x.shape, rng))."""
    assert analytic.shape == x.shape, f"{name}: gradient shape {analytic.shape} != input shape {x.shape}"
    if indices is None:
        indices = rng.choice(x.size, size=min(samples, x.size), replace=False)
    numeric = numerical_gradient(loss_of, x, indices)
    got = analytic.reshape(-1)[indices]
    err = np.abs(got - numeric)
    scale = np.abs(numeric).max() + atol
    ok = np.all(err <= atol + rtol * scale)
    assert ok, (f"{name} {x.shape}: max abs error {err.max():.3e}, max rel error {err.max() / scale:.3e}; "
                f"analytic {got[:4]}, numeric {numeric[:4]}")
