r"""Adam, exactly as the paper writes it (Eq. 5-7, after Kingma & Ba, with the bias correction folded into
the step size):

    m_t     = beta1 m_{t-1} + (1 - beta1) g_t                         (Eq. 5)
    v_t     = beta2 v_{t-1} + (1 - beta2) g_t^2                       (Eq. 6)
    alpha_t = alpha sqrt(1 - beta2^t) / (1 - beta1^t)
    theta_t = theta_{t-1} - alpha_t m_t / (sqrt(v_t) + eps)           (Eq. 7)

Defaults are the paper's: alpha = 1e-4, (beta1, beta2) = (0.9, 0.999), eps = 1e-8.
"""
import math

import numpy as np


def adam_update_reference_(p, g, m, v, step_size, beta1, beta2, eps):
    """One Adam step on one tensor, in place: the reference every backend's kernel is tested against.
    p, g, m, v: arrays of one shape (parameter, gradient, first and second moment); step_size = alpha_t."""
    m *= beta1
    m += (1 - beta1) * g                      # Eq. 5: m_t = beta1 m_{t-1} + (1 - beta1) g_t
    v *= beta2
    v += (1 - beta2) * g * g                  # Eq. 6: v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    p -= step_size * m / (np.sqrt(v) + eps)   # Eq. 7: theta_t = theta_{t-1} - alpha_t m_t / (sqrt(v_t) + eps)


def _array_module(a):
    """numpy, or cupy for a CuPy array (without importing CuPy where it is not in use)."""
    return __import__("cupy") if type(a).__module__.startswith("cupy") else np


def _host(a):
    """A host NumPy copy of a NumPy or CuPy array."""
    return np.array(a.get() if hasattr(a, "get") else a)


class Adam:
    """Adam over a dict of parameter arrays, updated in place.

    params: name -> array (e.g. `REDNet.params`); its backend (`params.backend`) runs the update with its
    kernel, and a plain dict of arrays is updated by adam_update_reference_ (NumPy or CuPy alike).  When
    params and grads are views of one flat buffer each (as REDNet's are), the
    update is one kernel over the whole buffer.
    """

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8):
        try:
            lr, beta1, beta2, eps = float(lr), float(betas[0]), float(betas[1]), float(eps)
            good = math.isfinite(lr) and lr > 0 and 0 <= beta1 < 1 and 0 <= beta2 < 1 and math.isfinite(eps) and eps >= 0
        except (TypeError, ValueError, IndexError):
            good = False
        if not good:
            raise ValueError(f"Adam needs a finite lr > 0, betas in [0, 1) and a finite eps >= 0; "
                             f"got lr={lr!r}, betas={betas!r}, eps={eps!r}")
        if not hasattr(params, "items") or not params:
            raise ValueError(f"Adam needs a non-empty dict of parameter arrays (e.g. net.params); got {params!r:.80}")
        self.params = params
        self.lr, self.betas, self.eps = lr, (beta1, beta2), eps
        self.backend = getattr(params, "backend", None)
        self.update_ = self.backend.adam_update_ if self.backend is not None else adam_update_reference_
        xp = self.backend.xp if self.backend is not None else _array_module(next(iter(params.values())))
        self.t = 0
        flat = getattr(params, "flat", None)
        if flat is not None:
            # One buffer of moments laid out like the parameters: m[name] are views into m_flat.
            self.m_flat, self.v_flat = xp.zeros(flat.shape, flat.dtype), xp.zeros(flat.shape, flat.dtype)
            self.m = params.views_of(self.m_flat)
            self.v = params.views_of(self.v_flat)
        else:
            self.m_flat = self.v_flat = None
            self.m = {k: xp.zeros(p.shape, p.dtype) for k, p in params.items()}
            self.v = {k: xp.zeros(p.shape, p.dtype) for k, p in params.items()}

    def step_size(self, t):
        """alpha_t = alpha sqrt(1 - beta2^t) / (1 - beta1^t), the bias-corrected step of Eq. 7."""
        beta1, beta2 = self.betas
        return self.lr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)

    def check_grads(self, grads):
        """Every parameter has a gradient of its shape and dtype, C-contiguous (the kernels run over flat
        buffers: a smaller or strided gradient would make them read the wrong memory)."""
        if not hasattr(grads, "items"):
            raise ValueError(f"Adam.step takes a dict of gradients like its parameters; got {type(grads).__name__}")
        missing = [k for k in self.params if k not in grads]
        if missing:
            raise ValueError(f"Adam.step: no gradient for {missing[:4]}{'...' if len(missing) > 4 else ''}")
        for name, p in self.params.items():
            g = grads[name]
            if getattr(g, "shape", None) != p.shape or getattr(g, "dtype", None) != p.dtype:
                raise ValueError(f"Adam.step: the gradient of {name} is {getattr(g, 'dtype', type(g).__name__)} "
                                 f"{getattr(g, 'shape', '')}, its parameter {p.dtype} {p.shape}")
            if not g.flags.c_contiguous:
                raise ValueError(f"Adam.step: the gradient of {name} is not C-contiguous")

    def next_step_size(self):
        """Count one more step and return its alpha_t (a captured step calls this and replays the update)."""
        self.t += 1
        return self.step_size(self.t)

    def step(self, grads):
        """One update of every parameter from `grads` (same names as params)."""
        self.check_grads(grads)
        alpha_t = self.next_step_size()
        beta1, beta2 = self.betas
        grads_flat = getattr(grads, "flat", None)
        if self.m_flat is not None and grads_flat is not None and grads_flat.shape == self.m_flat.shape:
            self.update_(self.params.flat, grads_flat, self.m_flat, self.v_flat, alpha_t, beta1, beta2, self.eps)
            return
        for name, p in self.params.items():
            self.update_(p, grads[name], self.m[name], self.v[name], alpha_t, beta1, beta2, self.eps)

    # ---- checkpointing -----------------------------------------------------------------------------
    def state_dict(self):
        """Host NumPy copies of the state: step count, hyper-parameters and both moments of every parameter."""
        d = {"t": np.array(self.t, dtype=np.int64), "lr": np.array(self.lr),
             "betas": np.array(self.betas), "eps": np.array(self.eps)}
        for name in self.params:
            d[f"m.{name}"] = _host(self.m[name])
            d[f"v.{name}"] = _host(self.v[name])
        return d

    def load_state_dict(self, d):
        """Restore what `state_dict` returned; names and shapes must match the parameters."""
        for name, p in self.params.items():
            for moment, store in (("m", self.m), ("v", self.v)):
                key = f"{moment}.{name}"
                if key not in d:
                    raise KeyError(f"Adam state has no {key!r}: it was saved for another network")
                if tuple(d[key].shape) != tuple(p.shape):
                    raise ValueError(f"Adam state {key!r} has shape {tuple(d[key].shape)}, the parameter {tuple(p.shape)}")
                store[name][...] = _array_module(p).asarray(d[key], dtype=p.dtype)
        self.t = int(d["t"])
        self.lr, self.betas, self.eps = float(d["lr"]), tuple(float(b) for b in d["betas"]), float(d["eps"])
