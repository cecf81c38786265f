r"""RED-Net: the very deep residual encoder-decoder of Mao, Shen & Yang (2016).

The defaults are the authors' released RED30 (their Caffe definition): 15 conv + 15 deconv layers,
128 filters of 3x3, stride 1, pad 1, skips from every second conv layer.  With n = depth / 2:

    conv1 .. conv{n}      each followed by ReLU                                   (the encoder, §3.1)
    deconv1 .. deconv{n}  deconv{j} mirrors conv{n+1-j}                           (the decoder)
    for 1 <= j < n:       deconv{j} is followed by ReLU; when skip_step > 0 and i = n - j is a multiple of
                          skip_step, the output of conv{i} is added and the sum goes through ReLU
                          (Eq. 2-3: F(X1 + X2) = max(0, X1 + X2)).  In RED30: conv2, conv4, .., conv14
                          feed deconv13, deconv11, .., deconv1.
    deconv{n}             no ReLU; with residual=True the input is added (the net learns the corruption, §3.3).

skip_kind="block" wires the same sums the other way, as the local skips of ResNet (He et al. 2016), the obvious
alternative to the paper's long symmetric ones (for comparison: docs/skip-connections.md): every skip_step
layers the output of a run of layers gets that run's input added, then ReLU, as in Eq. 3.  With s = skip_step:
conv{i} gets conv{i-s}'s output where i - 1 is a multiple of s (conv1 alone turns the image into feature maps),
and deconv{j} (j < n) gets the output of stage j - s where j is a multiple of s, stage 0 being conv{n}'s output.
RED30: conv1 -> conv3, .., conv13 -> conv15, conv15 -> deconv2, deconv2 -> deconv4, .., deconv12 -> deconv14.
Each skip spans s layers, where a symmetric one spans 2 to 2(n - 1); the parameters are the same.

"The output of conv{i}" is its output after ReLU, as in the Caffe model, whose ReLUs work in place.

Size rule.  padding="same" pads k//2 so every stride-1 map keeps the input's size; padding="valid" pads 0, so
conv{i} shrinks a map by k-1 and deconv{n+1-i} grows it back (§3.2).  A conv listed in `downsample` uses
stride 2 (§4.5), H -> floor((H + 2p - k)/2) + 1, and its mirrored deconv up-samples with stride 2 and the
output padding (H + 2p - k) mod 2 that restores H exactly.  Any input works whose maps stay at least one
pixel wide at every layer; a smaller one is refused with the name of the layer where it vanishes.
"""
import copy
import os

import numpy as np

from .backends import get_backend
from .io import load_arrays, save_arrays
from .ops.conv import (conv2d_backward, conv2d_forward, conv_output_size, conv_transpose2d_add_forward,
                       conv_transpose2d_backward, conv_transpose2d_forward, output_padding_to_restore)
from .zoo import path_of

PRESETS = {
    # The paper's networks (§4): RED10 has no skips; RED20 and RED30 skip every second layer.
    "red10": dict(depth=10, skip_step=0),
    "red20": dict(depth=20, skip_step=2),
    "red30": dict(depth=30, skip_step=2),
}


# The fields of a network's config (REDNet.config, the header of a weight file) and their JSON types.
CONFIG_FIELDS = dict(depth=int, filters=int, kernel_size=int, channels=int, skip_step=int, padding=str,
                     residual=bool, downsample=list, dtype=str, seed=int, relu=bool, init=str, skip_kind=str)
# Fields that weight files written before the field existed leave out, and the value they meant.
CONFIG_DEFAULTS = dict(skip_kind="symmetric")
# The fields that say how the first weights were drawn, not what the network is: weights of a network that
# differs only in them load into it (a checkpoint resumed, --init fine-tuning).
PROVENANCE_FIELDS = ("seed", "init")
INITS = ("he", "identity", "identity-skips")
SKIP_KINDS = ("symmetric", "block")
# A weight file may declare at most this many parameters (400 MB in float32; the released RED30 has 4.1M):
# a corrupt or hostile header is refused before anything is allocated.
MAX_PARAMETERS = 100_000_000
MAX_DEPTH = 1000
SIZE_DEFAULTS = dict(depth=30, filters=128, kernel_size=3, channels=1)     # REDNet's defaults: the release


def param_shapes(depth, filters, kernel_size, channels):
    """name -> shape of every parameter: conv weight (C_out, C_in, k, k), deconv weight (C_in, C_out, k, k)."""
    n, k, shapes = depth // 2, kernel_size, {}
    for i in range(1, n + 1):
        c_in = channels if i == 1 else filters
        shapes[f"conv{i}.weight"], shapes[f"conv{i}.bias"] = (filters, c_in, k, k), (filters,)
    for j in range(1, n + 1):
        c_out = channels if j == n else filters
        shapes[f"deconv{j}.weight"], shapes[f"deconv{j}.bias"] = (filters, c_out, k, k), (c_out,)
    return shapes


def config_param_shapes(config):
    """param_shapes of a (checked) config, REDNet's defaults filling the fields it leaves out."""
    return param_shapes(**{**SIZE_DEFAULTS, **{k: config[k] for k in SIZE_DEFAULTS if k in config}})


def check_config(config, source="the config"):
    """The keyword arguments of REDNet for a config read from a file, or ValueError with one sentence naming
    the field that has the wrong type or range.  Nothing is allocated."""
    if not isinstance(config, dict):
        raise ValueError(f"{source} must be a JSON object of network settings; got {type(config).__name__}")
    unknown = sorted(set(config) - set(CONFIG_FIELDS))
    if unknown:
        raise ValueError(f"{source} has unknown fields {unknown}")
    for field, value in config.items():
        kind = CONFIG_FIELDS[field]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if field == "downsample" and ok:
            ok = all(isinstance(i, int) and not isinstance(i, bool) for i in value)
        if not ok:
            raise ValueError(f"{source}: {field} must be {'a list of integers' if kind is list else kind.__name__}; "
                             f"got {value!r:.40}")
    if "init" in config and config["init"] not in INITS:
        raise ValueError(f"{source}: init must be one of {', '.join(INITS)}; got {config['init']!r:.40}")
    if "skip_kind" in config and config["skip_kind"] not in SKIP_KINDS:
        raise ValueError(f"{source}: skip_kind must be one of {', '.join(SKIP_KINDS)}; got {config['skip_kind']!r:.40}")
    if "dtype" in config and config["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{source}: dtype must be 'float32' or 'float64'; got {config['dtype']!r:.40}")
    sizes = {**SIZE_DEFAULTS, **{k: config[k] for k in SIZE_DEFAULTS if k in config}}
    if min(sizes.values()) < 1 or sizes["depth"] > MAX_DEPTH:
        raise ValueError(f"{source}: depth must be 1..{MAX_DEPTH}, and filters, kernel_size and channels >= 1; "
                         f"got {sizes}")
    count = sum(float(np.prod(shape, dtype=np.float64)) for shape in config_param_shapes(config).values())
    if count > MAX_PARAMETERS:
        raise ValueError(f"{source} declares a network of {count:.3g} parameters (depth {sizes['depth']}, "
                         f"filters {sizes['filters']}), more than the {MAX_PARAMETERS:.0e} redcore loads")
    return dict(config)


class ParamDict(dict):
    """name -> array, every array a view into one flat buffer `flat` (so Adam and all-reduce see one array)."""

    def __init__(self, backend, shapes, dtype):
        super().__init__()
        self.backend, self.shapes = backend, dict(shapes)
        total = sum(int(np.prod(s)) for s in self.shapes.values())
        self.flat = backend.zeros((total,), dtype)
        self.update(self.views_of(self.flat))

    def views_of(self, flat):
        """Views of `flat` laid out like these parameters."""
        views, offset = {}, 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            views[name] = flat[offset:offset + size].reshape(shape)
            offset += size
        return views


class REDNet:
    """RED-Net with hand-written forward and backward.

    Parameters
    ----------
    depth : int, even            total layers L: L/2 conv + L/2 deconv
    filters : int                feature maps of every hidden layer
    kernel_size : int            k of every layer (odd for padding="same")
    channels : int               image channels in and out (1 gray, 3 color)
    skip_step : int              conv{i} feeds the mirrored stage when i is a multiple of it; 0 = no skips
    skip_kind : str              "symmetric" (the paper's, conv to mirrored deconv) or "block" (ResNet-style:
                                 each run of skip_step layers gets its input added; same sizes only)
    padding : "same" | "valid"   pad k//2 (the release) or 0 (§3.2)
    residual : bool              add the input to the output (§3.3)
    downsample : iterable of int conv layers with stride 2 (§4.5), e.g. (5, 9)
    backend : "numpy" | "cpu" | "cuda"
    dtype : "float32" | "float64"
    seed : int                   He initialisation is drawn from this seed
    init : "he" | "identity" | "identity-skips"
                                 he: every weight He's N(0, 2 / fan_in); identity (residual=True only): the
                                 same, then the last layer's weights zero, so the net starts as output =
                                 input.  With skips, each sum of two He-scaled maps (Eq. 3) grows the
                                 variance, the output starts far from the input, and training first undoes
                                 that (bench/README.md; docs/skip-connections.md).  identity-skips: also
                                 every layer where a skip's sum lands starts at zero weights, so each sum
                                 starts as its skip alone and every skip's span as the identity (the
                                 zero-init of Fixup and SkipInit, for ResNet-style blocks without batch
                                 normalisation; sum_layers)
    relu : bool                  False removes every ReLU: the linear network of the paper's analysis (§4.1-4.2)
    threads : int or None        cpu backend: a batch of N > 1 images is cut into one slice per thread, each
                                 running the whole net on its slice (redcore.threads; what makes training fast
                                 on a CPU); None: NUMBA_NUM_THREADS; 1: the whole batch on the kernels' threads
    """

    def __init__(self, depth=30, filters=128, kernel_size=3, channels=1, skip_step=2, padding="same",
                 residual=True, downsample=(), backend="cpu", dtype="float32", seed=0, relu=True, threads=None,
                 init="he", skip_kind="symmetric"):
        if not (isinstance(depth, (int, np.integer)) and depth >= 2 and depth % 2 == 0):
            raise ValueError(f"depth must be an even integer >= 2 (L/2 conv + L/2 deconv layers); got {depth}")
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid'; got {padding!r}")
        if kernel_size < 1 or (padding == "same" and kernel_size % 2 == 0):
            raise ValueError(f"kernel_size must be a positive odd integer with padding='same'; got {kernel_size}")
        if filters < 1 or channels < 1 or skip_step < 0:
            raise ValueError(f"filters and channels must be >= 1 and skip_step >= 0; "
                             f"got filters={filters}, channels={channels}, skip_step={skip_step}")
        if init not in INITS or (init != "he" and not residual):
            raise ValueError(f"init must be one of {', '.join(INITS)} (the identity starts with residual=True: "
                             f"the input added to the output); got {init!r} with residual={residual}")
        n = depth // 2
        downsample = tuple(sorted(set(int(i) for i in downsample)))
        if any(not 1 <= i <= n for i in downsample):
            raise ValueError(f"downsample names conv layers 1..{n}; got {downsample}")
        if skip_kind not in SKIP_KINDS:
            raise ValueError(f"skip_kind must be one of {', '.join(SKIP_KINDS)}; got {skip_kind!r}")
        if skip_kind == "block" and skip_step > 0 and (padding != "same" or downsample):
            raise ValueError("block skips add a run of layers' input to its output, so every map must keep its "
                             f"size: they need padding='same' and no down-sampling; got padding={padding!r}, "
                             f"downsample={downsample}")
        self.config = dict(depth=int(depth), filters=int(filters), kernel_size=int(kernel_size),
                           channels=int(channels), skip_step=int(skip_step), padding=padding,
                           residual=bool(residual), downsample=list(downsample), dtype=np.dtype(dtype).name,
                           seed=int(seed), relu=bool(relu), init=init, skip_kind=skip_kind)
        self.n, self.k, self.relu, self.residual = n, int(kernel_size), bool(relu), bool(residual)
        self.pad = self.k // 2 if padding == "same" else 0
        self.stride = {i: 2 if i in downsample else 1 for i in range(1, n + 1)}   # conv{i}'s stride
        # Symmetric skip rule: deconv{j} (1 <= j < n) receives conv{n-j} when n - j is a multiple of skip_step.
        # Block skip rule: conv{i} receives conv{i-s} (conv_blocks), deconv{j} stage j-s's output (stage_blocks).
        s, symmetric = skip_step, skip_kind == "symmetric"
        self.skips = {j: n - j for j in range(1, n) if s > 0 and symmetric and (n - j) % s == 0}
        self.conv_blocks = {i: i - s for i in range(2, n + 1) if s > 0 and not symmetric and (i - 1) % s == 0}
        self.stage_blocks = {j: j - s for j in range(1, n) if s > 0 and not symmetric and j % s == 0}
        self.backend = get_backend(backend)
        self.dtype = self.backend.check_dtype(dtype)

        shapes = param_shapes(depth, filters, self.k, channels)
        self.params = ParamDict(self.backend, shapes, self.dtype)
        self.grads = ParamDict(self.backend, shapes, self.dtype)
        self._init_weights(seed, init)
        self.cache = None
        self.path_grads = None
        if threads is not None and not (isinstance(threads, (int, np.integer)) and threads >= 1):
            raise ValueError(f"threads must be a whole number >= 1 or None; got {threads!r}")
        self.threads = threads
        self._batch_split = None           # made at the first batch that is split

    def config_differences(self, config):
        """{field: (config's value, this net's)} where a config read from a file describes another network;
        the fields that only say how the first weights were drawn (PROVENANCE_FIELDS) do not count."""
        return {k: (config.get(k, CONFIG_DEFAULTS.get(k)), v) for k, v in self.config.items()
                if k not in PROVENANCE_FIELDS and config.get(k, CONFIG_DEFAULTS.get(k)) != v}

    @classmethod
    def preset(cls, name, **overrides):
        """One of the paper's networks, "red10", "red20" or "red30", with any argument overridden."""
        key = name.lower()
        if key not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[key], **overrides})

    def _init_weights(self, seed, init="he"):
        """He initialisation, N(0, 2 / fan_in) with fan_in = C_in k^2; biases zero.  init="identity" then zeroes
        the last layer's weights: deconv{n} outputs 0 and the residual's sum outputs the input.  Every other
        layer's gradient is zero at that first step (it flows through deconv{n}'s weights); Adam's first step
        moves those weights off zero, and from the second step every layer learns.  init="identity-skips" zeroes
        every layer of sum_layers() instead, deconv{n} among them."""
        rng = np.random.default_rng(seed)
        for name, shape in self.params.shapes.items():
            if name.endswith(".weight"):
                # conv weight is (C_out, C_in, k, k); deconv weight is (C_in, C_out, k, k): its fan-in is shape[0].
                fan_in = (shape[0] if name.startswith("deconv") else shape[1]) * self.k * self.k
                value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
                self.params[name][...] = self.backend.asarray(value, self.dtype)
        if init == "identity":
            self.params[f"deconv{self.n}.weight"][...] = 0
        elif init == "identity-skips":
            for layer in self.sum_layers():
                self.params[f"{layer}.weight"][...] = 0

    def sum_layers(self):
        """The layers whose output a sum adds to, in forward order: each skip's last layer (conv{i} of a block
        skip, deconv{j} of a symmetric or decoder block skip) and, with residual=True, deconv{n}.  With its
        weights zero such a layer outputs ReLU(bias) = 0 (biases start at zero), so its sum gives back the skip
        (a ReLU output, >= 0) or, at deconv{n}, the input."""
        convs = [f"conv{i}" for i in sorted(self.conv_blocks)]
        deconvs = [f"deconv{j}" for j in sorted(set(self.skips) | set(self.stage_blocks))]
        return convs + deconvs + ([f"deconv{self.n}"] if self.residual else [])

    def replica(self, backend):
        """A network that shares this one's parameters (the same arrays: an update of one is an update of the
        other) and has its own backend, activations and gradients: one thread's view in redcore.threads."""
        if backend.xp is not self.backend.xp:
            raise ValueError(f"a replica's backend must hold the same arrays as {self.backend.name}'s")
        twin = copy.copy(self)
        twin.backend = backend
        twin.grads = ParamDict(backend, self.grads.shapes, self.dtype)
        twin.cache = twin.path_grads = None
        twin.threads, twin._batch_split = 1, None
        return twin

    def _split_for(self, n):
        """The BatchSplit that runs a batch of n images, or None where the batch runs whole."""
        if n < 2 or self.backend.name != "cpu" or self.threads == 1:
            return None
        if self._batch_split is None:
            from .threads import BatchSplit, default_threads
            threads = self.threads or default_threads()
            if threads < 2:
                return None
            self._batch_split = BatchSplit(self, threads)
        return self._batch_split

    def batch_threads(self):
        """How many threads a batch of several images is cut over (1: it runs whole, on the kernels' threads)."""
        split = self._split_for(2)
        return 1 if split is None else split.threads

    @property
    def receptive_radius(self):
        """How many pixels either side of an output pixel its value depends on: k//2 per conv and per deconv, so
        depth * (k//2) (RED20 with 3x3 kernels: 20).  None with down-sampling, where it also depends on where
        the pixel falls on the stride-2 grid."""
        return None if any(s != 1 for s in self.stride.values()) else 2 * self.n * (self.k // 2)

    @property
    def num_params(self):
        return int(self.params.flat.size)

    # ---- size rule ---------------------------------------------------------------------------------
    def plan(self, h, w):
        """Sizes (H, W) of every conv's input, checking that an h x w image passes through the net."""
        sizes = [(h, w)]
        for i in range(1, self.n + 1):
            try:
                sizes.append(tuple(conv_output_size(s, self.k, self.stride[i], self.pad) for s in sizes[-1]))
            except ValueError:
                raise ValueError(f"an image of {h}x{w} is too small for this {2 * self.n}-layer RED-Net: "
                                 f"its {sizes[-1][0]}x{sizes[-1][1]} map vanishes at conv{i} "
                                 f"(kernel {self.k}, stride {self.stride[i]}, padding {self.pad})") from None
        return sizes

    # ---- forward -----------------------------------------------------------------------------------
    def forward(self, x, keep=True):
        """Output of the net for x: (N, C, H, W); keeps what backward needs.  Returns (N, C, H, W).

        keep=False is inference: only the conv outputs that feed a skip are held, each until its skip sum,
        so memory is a few feature maps rather than all of them, and backward is not possible afterwards."""
        be, p = self.backend, self.params
        if getattr(x, "ndim", None) != 4 or x.shape[1] != self.config["channels"]:
            raise ValueError(f"REDNet.forward takes (N, {self.config['channels']}, H, W) images; "
                             f"got shape {getattr(x, 'shape', type(x).__name__)}")
        x = be.asarray(x, self.dtype)
        sizes = self.plan(*x.shape[2:])
        split = self._split_for(x.shape[0])
        if split is not None:                 # each thread runs the whole net on its slice of the batch
            self.cache = "split" if keep else None
            return split.forward(x, keep)
        conv_in, stage_in = [None] * (self.n + 1), [None] * (self.n + 1)   # inputs of conv{i} / deconv{j}
        relu_out, skip_out, conv_layer_out = {}, {}, {}
        conv_sources = set(self.skips.values()) | set(self.conv_blocks.values())
        stage_sources = set(self.stage_blocks.values())
        h = x
        for i in range(1, self.n + 1):
            if keep or i - 1 in conv_sources:
                conv_in[i] = h
            # conv + bias + ReLU: one call, which a backend may fuse into one pass over the output
            h = conv2d_forward(be, h, p[f"conv{i}.weight"], p[f"conv{i}.bias"], self.stride[i], self.pad,
                               relu=self.relu)
            if i in self.conv_blocks:         # a block skip: conv{i-s}'s output, conv{i-s+1}'s input, is added
                source = self.conv_blocks[i] + 1
                if keep:                      # backward needs the layer's own output: the sum goes to a copy
                    conv_layer_out[i], h = h, be.copy(h)
                # Eq. 3's max(0, X1 + X2) of two ReLU outputs is their sum: no pass for the ReLU (its mask is
                # taken in backward, as for the symmetric sums)
                h = be.add_(h, conv_in[source])
                if not keep:
                    conv_in[source] = None    # the skip's source, used
        conv_out = conv_in[2:] + [h]          # conv_out[i-1] is conv{i}'s output (after ReLU and any block sum)
        for j in range(1, self.n + 1):
            i = self.n + 1 - j                # deconv{j} mirrors conv{i}, restoring conv{i}'s input size
            if keep or j - 1 in stage_sources:
                stage_in[j] = h               # stage j-1's output
            op = tuple(output_padding_to_restore(s, self.k, self.stride[i], self.pad) for s in sizes[i - 1])
            deconv = (h, p[f"deconv{j}.weight"], p[f"deconv{j}.bias"], self.stride[i], self.pad, op)
            if j in self.skips or j in self.stage_blocks:   # Eq. 3: F(X1 + X2) = max(0, X1 + X2), in the deconv's pass
                addend = (conv_out[self.skips[j] - 1] if j in self.skips else stage_in[self.stage_blocks[j] + 1])
                layer_out, h = conv_transpose2d_add_forward(be, *deconv, relu=self.relu, addend=addend,
                                                            relu_sum=self.relu, keep_layer=keep)
                if keep:
                    relu_out[j], skip_out[j] = layer_out, h
                elif j in self.skips:
                    conv_out[self.skips[j] - 1] = conv_in[self.skips[j] + 1] = None   # free the skip's source
                else:
                    stage_in[self.stage_blocks[j] + 1] = None
            elif j == self.n and self.residual:   # §3.3: the net learns the corruption; output = input + residual
                _, h = conv_transpose2d_add_forward(be, *deconv, relu=False, addend=x, keep_layer=False)
            else:
                h = conv_transpose2d_forward(be, *deconv, relu=self.relu and j < self.n)
                if keep and j < self.n:
                    relu_out[j] = h
        self.cache = dict(x=x, conv_in=conv_in, conv_out=conv_out, stage_in=stage_in, relu_out=relu_out,
                          skip_out=skip_out, conv_layer_out=conv_layer_out, sizes=sizes) if keep else None
        return h

    __call__ = forward

    # ---- backward ----------------------------------------------------------------------------------
    def zero_grad(self):
        """Set every gradient to 0 (before a loop of backward(..., accumulate=True) over micro-batches)."""
        self.backend.zero_(self.grads.flat)

    def backward(self, dy, record_paths=False, input_grad=True, accumulate=False):
        """Fill `self.grads` with dL/dparams for the upstream dy = dL/d(output), and return dL/dx
        (input_grad=False: training needs no dL/dx; conv1's input gradient is skipped and None returned).
        accumulate=True adds them to the gradients already there: a batch in micro-batches is zero_grad()
        then one forward and backward(..., accumulate=True) each, with each dy the whole batch's share.

        record_paths=True also keeps, for every conv{i} with a skip, the two parts of dL/d(conv{i} output)
        in `self.path_grads[i] = (main, skip)`: through conv{i+1} and through the skip (paper Eq. 12-13).

        Each layer's saved feature maps are released once its backward has used them (as autograd frameworks
        do), so the gradients held for the skips do not add to a full set of activations at the peak; the
        forward's cache is then spent (record_paths=True keeps it for path_weight_grads).
        """
        if self.cache is None:
            raise RuntimeError("REDNet.backward needs a forward pass first")
        if isinstance(self.cache, str):       # the forward was split over threads
            if record_paths:
                raise ValueError("record_paths needs the batch run whole: REDNet(..., threads=1), or one image")
            self.cache = None
            return self._batch_split.backward(dy, input_grad, accumulate)
        be, p, c = self.backend, self.params, self.cache
        g = be.asarray(dy, self.dtype)
        if g.shape != c["x"].shape:
            raise ValueError(f"backward got dL/dy of shape {g.shape}, the output has shape {c['x'].shape}")
        if not accumulate:
            self.zero_grad()
        skip_grad = {}                        # conv{i} -> the gradient its skip carries back (Eq. 12)
        stage_skip_grad = {}                  # stage j -> the same, for a block skip's source in the decoder
        self.path_grads = {} if record_paths else None
        # Every layer's input but conv1's is a ReLU's output, so its input gradient goes through that ReLU's
        # backward first: each op returns it masked (relu_input, fused into the convolution where the backend
        # can), and `masked` says that g has had the mask it meets first.
        masked = False
        for j in range(self.n, 0, -1):        # the decoder, last layer first; g = dL/d(stage j's output)
            i = self.n + 1 - j
            if j < self.n:
                summed = j in self.skips or j in self.stage_blocks
                stage_out = c["skip_out"][j] if summed else c["relu_out"][j]
                if j in stage_skip_grad:      # a block skip's share: stage j's output feeds stage j+s's sum too
                    skip = stage_skip_grad.pop(j)
                    g = be.add_(g, self._relu_backward(skip, stage_out) if masked else skip)
                if not masked:                # the skip sum's ReLU (Eq. 3) where there is one, else deconv{j}'s
                    g = self._relu_backward(g, stage_out)
                if summed:                    # the skip copy, to both summands
                    if j in self.skips:
                        skip_grad[self.skips[j]] = be.copy(g)
                    elif self.stage_blocks[j] > 0:
                        stage_skip_grad[self.stage_blocks[j]] = be.copy(g)
                    else:                     # stage 0 is conv{n}'s output
                        skip_grad[self.n] = be.copy(g)
                    g = self._relu_backward(g, c["relu_out"][j])       # mask of deconv{j}'s ReLU
            g, _, _ = conv_transpose2d_backward(be, g, c["stage_in"][j], p[f"deconv{j}.weight"], self.stride[i],
                                                self.pad, out=self._grads_of(f"deconv{j}"),
                                                relu_input=self.relu)   # op backward: a conv
            masked = self.relu
            self._release(stage=j)
        for i in range(self.n, 0, -1):        # the encoder; g = dL/d(conv{i}'s output)
            if i in skip_grad:                # Eq. 12: the main path plus the skip path (kept apart to record them)
                skip = self._relu_backward(skip_grad.pop(i), c["conv_out"][i - 1]) if masked else skip_grad.pop(i)
                self._record_paths(i, main=g, skip=skip)
                g = be.add_(g, skip)          # masked g + masked skip: the mask of the sum
            if not masked:
                g = self._relu_backward(g, c["conv_out"][i - 1])        # mask of conv{i}'s ReLU (or block sum's)
            if i in self.conv_blocks:         # a block sum: its gradient to both summands
                skip_grad[self.conv_blocks[i]] = be.copy(g)
                g = self._relu_backward(g, c["conv_layer_out"][i])      # mask of conv{i}'s own ReLU
            # Eq. 12 for conv{i-1}, in this input gradient's pass: its skip path's gradient is added before the
            # mask they share, (main + skip) * [conv{i-1} output > 0]
            skip = None if record_paths else skip_grad.pop(i - 1, None)
            g, _, _ = conv2d_backward(be, g, c["conv_in"][i], p[f"conv{i}.weight"], self.stride[i], self.pad,
                                      input_grad=input_grad or i > 1, out=self._grads_of(f"conv{i}"),
                                      relu_input=self.relu and i > 1, dx_addend=skip)   # a transposed conv
            masked = self.relu
            self._release(conv=i)
        if self.residual and g is not None:   # y = x + F(x): dL/dx gets dL/dy itself too (§3.3)
            g = be.add_(g, be.asarray(dy, self.dtype))
        if not record_paths:
            self.cache = None
        return g

    def _grads_of(self, layer):
        """(weight gradient, bias gradient) of a layer: views into self.grads that its backward adds into."""
        return self.grads[f"{layer}.weight"], self.grads[f"{layer}.bias"]

    def _relu_backward(self, g, output):
        """g * [output > 0] in place: the gradient through a ReLU, its mask read from the ReLU's output."""
        return self.backend.relu_backward_(g, output) if self.relu else g

    def _release(self, stage=None, conv=None):
        """Free the forward's maps that the backward of deconv{stage} (its input and its stage's outputs) or of
        conv{conv} (its output, which is conv{conv+1}'s input) has used; kept while paths are recorded."""
        if self.path_grads is not None:
            return
        c = self.cache
        if stage is not None:
            c["stage_in"][stage] = None
            c["relu_out"].pop(stage, None)
            c["skip_out"].pop(stage, None)
        if conv is not None:
            c["conv_out"][conv - 1] = None
            c["conv_layer_out"].pop(conv, None)
            if conv < self.n:
                c["conv_in"][conv + 1] = None

    def _record_paths(self, i, main, skip):
        """Keep the two parts of dL/d(conv{i}'s output) for path_weight_grads (paper Eq. 12-13), if asked."""
        if self.path_grads is not None:
            self.path_grads[i] = (main.copy(), skip)

    def path_weight_grads(self, i):
        """(dW from the main path, dW from the skip path) of conv{i}.weight after backward(record_paths=True).

        Paper Eq. 12-13: the gradient reaching conv{i}'s output is main + skip, and the weight gradient is
        linear in it, so the two parts sum to grads["conv{i}.weight"].
        """
        if not self.path_grads or i not in self.path_grads:
            raise ValueError(f"no path gradients for conv{i}: it needs a skip and backward(..., record_paths=True)")
        be, c = self.backend, self.cache
        parts = []
        for g in self.path_grads[i]:
            if self.relu:
                g = be.relu_backward_(g.copy(), c["conv_out"][i - 1])
            parts.append(be.conv2d_backward_weight(g, c["conv_in"][i], self.k, self.stride[i], self.pad))
        return tuple(parts)

    # ---- weights -----------------------------------------------------------------------------------
    def state_dict(self):
        """name -> host NumPy copy of every parameter."""
        return {name: np.array(self.backend.to_numpy(a)) for name, a in self.params.items()}

    def load_state_dict(self, d):
        """Copy weights in by name; names, shapes and dtypes must match, and the error says which does not."""
        missing = [k for k in self.params if k not in d]
        unexpected = [k for k in d if k not in self.params]
        if missing or unexpected:
            raise KeyError(f"state dict does not fit this network: missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
                           f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}")
        for name, a in self.params.items():
            v = d[name]
            if tuple(v.shape) != tuple(a.shape):
                raise ValueError(f"{name}: the state dict holds shape {tuple(v.shape)}, this network {tuple(a.shape)}")
            if np.dtype(v.dtype) != self.dtype:
                raise TypeError(f"{name}: the state dict holds {np.dtype(v.dtype).name}, this network {self.dtype.name}")
            a[...] = self.backend.asarray(v, self.dtype)

    def save(self, path, float16=False):
        """One file with the config and the weights (.npz with a JSON header; loads without pickle).
        float16=True stores the weights rounded to float16 (half the file; `load` widens them to the config's
        dtype): for shipping, where tools/ship_model.py measures what the rounding costs."""
        weights, header = self.state_dict(), {"kind": "redcore.REDNet", "config": self.config}
        if float16:
            big = [name for name, a in weights.items() if np.abs(a).max() > np.finfo(np.float16).max]
            if big:
                raise ValueError(f"{big[0]} holds weights beyond float16's range (65504): store it in {self.dtype.name}")
            weights, header["stored"] = {k: a.astype(np.float16) for k, a in weights.items()}, "float16"
        save_arrays(path, header, weights)

    @classmethod
    def load(cls, name_or_path, backend="cpu", threads=None):
        """A REDNet on `backend`: a shipped model by name (see `redcore models`), or a file saved by `save` (or a
        training checkpoint).  The file's config and arrays are checked before anything is built; an unknown
        name lists the shipped ones."""
        path = os.fspath(name_or_path)
        if not os.path.exists(path) and not path.endswith(".npz") and os.sep not in path:
            path = path_of(path)
        header, arrays = load_arrays(path)
        if "config" not in header:
            raise ValueError(f"{path} holds no network config")
        config = check_config(header["config"], f"the network config of {path}")
        weights = {k[len("model."):] if k.startswith("model.") else k: v
                   for k, v in arrays.items() if not k.startswith(("optim.", "history."))}
        stored = header.get("stored")
        if stored not in (None, "float16"):
            raise ValueError(f"{path} stores its weights as {stored!r}, which this redcore does not read")
        cls.check_weights(weights, config, path, stored)
        net = cls(**config, backend=backend, threads=threads)
        net.load_state_dict({k: v.astype(net.dtype) for k, v in weights.items()})
        return net

    @staticmethod
    def check_weights(weights, config, path, stored=None):
        """The arrays a weight file must hold for its config, each of its shape and dtype (or float16 where the
        file says it stored them so) and finite; checked before the network is built, so a bad file costs no
        allocation and gets one sentence."""
        shapes = config_param_shapes(config)
        dtype = np.dtype(stored or config.get("dtype", "float32"))
        missing = [k for k in shapes if k not in weights]
        unexpected = [k for k in weights if k not in shapes]
        if missing or unexpected:
            raise ValueError(f"{path} does not hold the weights its config declares: missing {missing[:3]}"
                             f"{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
                             f"{'...' if len(unexpected) > 3 else ''}")
        for name, shape in shapes.items():
            a = weights[name]
            if a.shape != shape or a.dtype != dtype:
                declared = "its header declares float16 storage of" if stored else "its config declares"
                raise ValueError(f"{path}: {name} is {a.dtype} {a.shape}, {declared} {dtype} {shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{path}: {name} holds NaN or infinite values (a diverged training?)")

    def __repr__(self):
        c = self.config
        return (f"REDNet(depth={c['depth']}, filters={c['filters']}, kernel_size={c['kernel_size']}, "
                f"channels={c['channels']}, skip_step={c['skip_step']}, padding={c['padding']!r}, "
                f"residual={c['residual']}, downsample={tuple(c['downsample'])}, backend={self.backend.name!r}, "
                f"dtype={c['dtype']!r}; {self.num_params} parameters)")
