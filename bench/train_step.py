"""Training-step and inference throughput of redcore against PyTorch on the same network, threads and shapes.

    python bench/train_step.py                    # RED10 and RED30 (64 filters, valid), released RED30 (128, same)
    python bench/train_step.py --batch 16 --repeats 5 --configs red30-release --backends cpu
    python bench/train_step.py --device cuda --batch 64 --configs red30-release --infer-sizes 321x481,2048x2048
    python bench/train_step.py --configs red30-release --infer-sizes 321x481,2000x3000   # the photo in 512 tiles

With --device cuda redcore runs its "cuda-tf32" backend (tensor cores, TF32: the default of --backend cuda)
and its exact "cuda" one against PyTorch on the same GPU with cuDNN in its defaults (benchmark mode on, TF32
convolutions), and its "cuda-bf16" backend against PyTorch with channels_last + autocast(bfloat16); the
tensor-core backends train as examples/train.py does, each step one replay of a captured CUDA graph, and again
with their kernels launched one by one from Python ("-eager"); inputs live on the GPU and every timed step ends
with a device synchronisation.  Peak GPU memory
is each process's: PyTorch's max_memory_allocated, CuPy's memory pool.  --json writes every figure with the
GPU, driver and versions; kept in bench/results/, tools/make_docs.py renders them as docs/speed.md.

One training step = forward, MSE loss (Eq. 4), backward, Adam (Eq. 5-7) on a batch of 50x50 patches.  Each
measurement runs in a fresh subprocess (so neither framework's thread pools or allocator state leak into the
other's), alternating redcore and PyTorch per configuration within one run; every subprocess warms up (JIT,
allocations) and reports the median of --repeats timed steps.  The printed ratio is redcore / PyTorch
throughput.  Effective GFLOP/s counts 2 C_in C_out k^2 H_o W_o per conv layer and sample, x3 for training.
Inference of one image runs PyTorch's net on the whole image (its threads split each layer) and, on the CPU,
redcore's as `redcore restore` does (redcore.inference.run_tiled: an image as bands over the threads).
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")

CONFIGS = {
    "red10": dict(depth=10, filters=64, padding="valid", skip_step=0),
    "red30": dict(depth=30, filters=64, padding="valid", skip_step=2),
    "red30-release": dict(depth=30, filters=128, padding="same", skip_step=2),
    "red20": dict(depth=20, filters=64, padding="same", skip_step=2),     # the shape of every shipped model
}


def conv_gflop(cfg, h, w):
    """Forward GFLOP of one sample through every conv and deconv layer (multiply-add = 2 FLOP)."""
    n, k, f = cfg["depth"] // 2, 3, cfg["filters"]
    pad = 1 if cfg["padding"] == "same" else 0
    total, sizes = 0.0, [(h, w)]
    for i in range(1, n + 1):
        hh, ww = sizes[-1][0] + 2 * pad - k + 1, sizes[-1][1] + 2 * pad - k + 1
        total += 2 * (1 if i == 1 else f) * f * k * k * hh * ww     # conv{i}
        total += 2 * f * (1 if i == 1 else f) * k * k * sizes[-1][0] * sizes[-1][1]   # its mirrored deconv
        sizes.append((hh, ww))
    return total / 1e9


def worker(args):
    """Runs in the subprocess: time one framework on one configuration, print one JSON line."""
    cfg = CONFIGS[args.config]
    if not args.framework.startswith("torch"):     # redcore first: it sets the thread pools' idle policy before numpy loads BLAS
        sys.path.insert(0, ROOT)
        import redcore
    import numpy as np
    rng = np.random.default_rng(0)
    if args.mode == "train":
        x = rng.random((args.batch, 1, args.size, args.size), dtype=np.float32)
        target = np.clip(x + 0.1 * rng.standard_normal(x.shape, dtype=np.float32), 0, 1).astype(np.float32)
    else:
        x = rng.random((1, 1, args.height, args.width), dtype=np.float32)
    # Images larger than --tile run in overlapping tiles (redcore.inference.run_tiled) for both frameworks.
    tiled = args.mode == "infer" and args.tile and max(args.height, args.width) > args.tile
    if args.mode == "infer":
        sys.path.insert(0, ROOT)
        from redcore.inference import run_tiled

        def run_image(model, image):
            return run_tiled(model, image, tile=args.tile if tiled else None)
    if args.framework.startswith("torch"):
        # "torch": eager defaults (TF32 cuDNN convolutions); "torch-amp": channels_last + autocast to bfloat16,
        # PyTorch's fast mixed-precision recipe, the yardstick of redcore's bf16 precision
        import contextlib
        import torch
        amp = args.framework == "torch-amp"
        autocast = (lambda: torch.autocast(args.device, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
        torch.set_num_threads(args.threads)
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True            # PyTorch's default for cuDNN convolutions, said aloud
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from torch_rednet import TorchREDNet
        device = torch.device(args.device)
        layout = torch.channels_last if amp else torch.contiguous_format
        net = TorchREDNet(**cfg).to(device, memory_format=layout)
        xt = torch.from_numpy(x).to(device).to(memory_format=layout)
        tt = torch.from_numpy(target).to(device) if args.mode == "train" else None
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

        def step():
            if args.mode == "train":
                opt.zero_grad(set_to_none=False)
                with autocast():
                    y = net(xt)
                loss = ((y.float() - tt) ** 2).sum() / x.shape[0]
                loss.backward()
                opt.step()
            elif tiled:
                run_image(TorchAsRedcore(), x[0])
            else:
                with torch.no_grad(), autocast():
                    net(xt)

        class TorchAsRedcore:
            """The PyTorch net behind the interface redcore.inference.run_tiled calls (same tiles, same blend)."""
            backend = type("host", (), {"name": "torch", "to_numpy": staticmethod(lambda a: a)})

            def forward(self, x, keep=False):
                with torch.no_grad():
                    return net(torch.from_numpy(x).to(device)).cpu().numpy()
    else:
        # "cpu": the README's plain loop (REDNet.forward, mse_loss, backward, Adam.step), which on --threads > 1
        # splits each batch over the threads inside REDNet (redcore.threads), as examples/train.py does;
        # "cpu-batchthreads": the same split through redcore.threads.BatchThreads; "cpu-prange": the whole
        # batch at once (threads=1), on the Numba kernels' and the BLAS's own threads.
        # "cuda-tf32", "cuda-bf16": the step as examples/train.py runs it there, one captured graph of launches
        # (redcore.training.CapturedStep); "-eager" after them: the same kernels launched one by one from Python.
        backend = args.framework.replace("-prange", "").replace("-batchthreads", "").replace("-eager", "")
        net = redcore.REDNet(backend=backend, threads=1 if args.framework == "cpu-prange" else args.threads, **cfg)
        opt = redcore.Adam(net.params)
        from redcore.capture import why_not_captured
        from redcore.training import CapturedStep
        captured = CapturedStep(net, opt) if args.mode == "train" and not args.framework.endswith("-eager") \
            and why_not_captured(net) is None else None
        be = net.backend
        x = be.asarray(x, net.dtype)
        target = be.asarray(target, net.dtype) if args.mode == "train" else None
        sync = be.runtime.synchronize if hasattr(be, "runtime") else (lambda: None)
        runner = None
        if args.framework == "cpu-batchthreads":
            from redcore.threads import BatchThreads
            runner = BatchThreads(net, args.threads)

        def step():
            if captured is not None:
                captured(x, target)
                return
            if args.mode == "train" and runner is not None:
                runner.loss_and_backward(x, target)
                opt.step(net.grads)
                return
            if tiled or (args.mode == "infer" and be.name == "cpu"):
                run_image(net, x[0])      # restore's path: tiles; on the cpu one image as bands over the threads
                return
            y = net.forward(x, keep=args.mode == "train")
            if args.mode == "train":
                _, dy = redcore.mse_loss(y, target, backend=be)
                net.backward(dy, input_grad=False)        # as PyTorch: the input needs no gradient
                opt.step(net.grads)
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    import resource
    peak_gpu = None
    if args.device == "cuda" and args.framework.startswith("torch"):
        peak_gpu = torch.cuda.max_memory_allocated() / 2**20
    elif args.device == "cuda":
        import cupy
        peak_gpu = cupy.get_default_memory_pool().total_bytes() / 2**20    # the pool keeps its high-water mark
    print(json.dumps({"times": times, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
                      "peak_gpu_mib": peak_gpu}))


def measure(framework, config, mode, args, yardstick=None, **extra):
    """Median seconds of one framework on one configuration, in its own subprocess; recorded in RESULTS with the
    yardstick (the PyTorch recipe) it is compared with, None for a yardstick itself."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--framework", framework, "--config", config,
           "--mode", mode, "--batch", str(args.batch), "--size", str(args.size), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--device", args.device,
           "--tile", str(args.tile)]
    for k, v in extra.items():
        cmd += [f"--{k}", str(v)]
    env = dict(os.environ, NUMBA_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{framework} {config} {mode} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    times = result["times"]
    PEAK_RSS[(framework, config, mode)] = result["peak_rss_mib"]
    PEAK_GPU[(framework, config, mode)] = result["peak_gpu_mib"]
    median = sorted(times)[len(times) // 2]
    RESULTS.append(dict(framework=framework, yardstick=yardstick, config=config, mode=mode, **extra, times=times,
                        median=median, peak_rss_mib=result["peak_rss_mib"], peak_gpu_mib=result["peak_gpu_mib"]))
    return median


PEAK_RSS = {}     # (framework, config, mode) -> peak resident memory of its subprocess, MiB
PEAK_GPU = {}     # likewise, peak GPU memory (None on the CPU)
RESULTS = []      # every measurement, for --json


def config_names(text):
    """A comma-separated list of CONFIGS names (argparse type), refused whole if one is unknown."""
    names = text.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown network {', '.join(unknown)}; the networks are {', '.join(CONFIGS)}")
    return names


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--configs", type=config_names, default="red10,red30,red30-release")
    p.add_argument("--backends", default="cpu,cpu-prange",
                   help="redcore backends to time: cpu (the plain loop; REDNet splits the batch over the threads), "
                        "cpu-batchthreads (the split through BatchThreads), cpu-prange (whole batch, kernel "
                        "threads), numpy (very slow)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=50, help="patch size")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--no-inference", action="store_true", help="skip the inference timings")
    p.add_argument("--infer-sizes", default="321x481", help="inference image sizes HxW, comma-separated")
    p.add_argument("--infer-configs", type=config_names, default="red30-release,red20",
                   help="networks timed in inference (red20: the shape of the shipped models), comma-separated")
    p.add_argument("--tile", type=int, default=512,
                   help="inference of larger images in overlapping tiles of this size, both frameworks (0: whole)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: redcore's cuda-tf32 and cuda backends against PyTorch+cuDNN on the same GPU")
    p.add_argument("--json", help="also write every measurement, with the machine and versions, to this file")
    # worker-only arguments
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--framework", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="train", help=argparse.SUPPRESS)
    p.add_argument("--height", type=int, default=321, help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, default=481, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    import numpy as np
    import torch
    # each group: a PyTorch yardstick and the redcore backends compared with it, side by side in this run
    groups = [("torch", args.backends.split(","))]
    if args.device == "cuda":
        groups = [("torch", ["cuda-tf32", "cuda-tf32-eager", "cuda"]), ("torch-amp", ["cuda-bf16", "cuda-bf16-eager"])]
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    print(f"threads {args.threads}, batch {args.batch} x {args.size}x{args.size}, median of {args.repeats}; "
          f"torch {torch.__version__}, numpy {np.__version__}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"{'config':15s} {'framework':10s} {'s/step':>8s} {'patches/s':>10s} {'GFLOP/s':>8s} {'vs torch':>9s} "
          f"{'peak RSS':>9s}")
    for config in args.configs:
        gflop = 3 * conv_gflop(CONFIGS[config], args.size, args.size) * args.batch
        for yardstick, backends in groups:
            t_torch = measure(yardstick, config, "train", args)
            rows = [(yardstick, t_torch)] + [(b, measure(b, config, "train", args, yardstick)) for b in backends]
            for name, t in rows:
                gpu = PEAK_GPU[(name, config, "train")]
                print(f"{config:15s} {name:10s} {t:8.3f} {args.batch / t:10.2f} {gflop / t:8.1f} {t_torch / t:8.2f}x "
                      f"{PEAK_RSS[(name, config, 'train')]:6.0f} MiB" + (f"  GPU {gpu:7.0f} MiB" if gpu else ""))
    inference = [] if args.no_inference else args.infer_sizes.split(",")
    for cfg, size in itertools.product(args.infer_configs, inference):
        height, width = (int(v) for v in size.split("x"))
        gflop = conv_gflop(CONFIGS[cfg], height, width)
        print(f"\ninference of {cfg} on one {height}x{width} image")
        for yardstick, backends in groups:
            t_torch = measure(yardstick, cfg, "infer", args, height=height, width=width)
            for name, t in [(yardstick, t_torch)] + [(b, measure(b, cfg, "infer", args, yardstick, height=height,
                                                                     width=width))
                                                     for b in backends if not b.endswith("-prange")]:
                gpu = PEAK_GPU[(name, cfg, "infer")]
                print(f"{cfg:15s} {name:10s} {t:8.3f} s  {gflop / t:8.1f} GFLOP/s {t_torch / t:8.2f}x"
                      + (f"  GPU {gpu:7.0f} MiB" if gpu else ""))
    if args.json:
        machine = dict(date=time.strftime("%Y-%m-%d"), command=" ".join(["python bench/train_step.py"] + sys.argv[1:]),
                       cpu=cpu_name(), torch=torch.__version__, numpy=np.__version__, threads=args.threads,
                       batch=args.batch, size=args.size, repeats=args.repeats, warmup=args.warmup,
                       openblas_coretype=os.environ.get("OPENBLAS_CORETYPE"))
        if args.device == "cuda":
            import cupy
            machine.update(gpu=torch.cuda.get_device_name(0), cupy=cupy.__version__,
                           driver=cupy.cuda.runtime.driverGetVersion(), cuda_runtime=cupy.cuda.runtime.runtimeGetVersion())
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json + ".part", "w") as f:
            json.dump(dict(machine=machine, results=RESULTS), f, indent=1)
        os.replace(args.json + ".part", args.json)
        print(f"wrote {args.json}; a record in bench/results/ is tabled in docs/speed.md by python tools/make_docs.py")


def cpu_name():
    """The processor's model name (Linux), else what platform reports."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
