"""Train a RED-Net denoiser (additive white Gaussian noise): examples/train.py with --task denoise.

    python examples/train_denoise.py --backend cpu                       # built-in images or train400, RED10
    python examples/train_denoise.py --sigma 50 --depth 20 --filters 64 --steps 20000
    python examples/train_denoise.py --backend cuda --depth 30 --filters 128 --batch 64
    mpiexec -n 4 python examples/train_denoise.py --distributed --batch 64   # data-parallel over 4 processes

--sigma is the noise level on the 0-255 scale (default 25; "0-55" trains a blind denoiser); every other
option is examples/train.py's (--help lists them).  Output goes to runs/denoise unless --out says otherwise.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train  # noqa: E402  (examples/train.py; it imports redcore before numpy)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = []
    for a in argv:                      # --sigma X / --sigma=X is --level X of the denoising task
        args.append("--level" if a == "--sigma" else a.replace("--sigma=", "--level=", 1))
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        args += ["--out", os.path.join("runs", "denoise")]
    if not any(a == "--level" or a.startswith("--level=") for a in args):
        args += ["--level", "25"]
    return train.main(["--task", "denoise"] + args)


if __name__ == "__main__":
    sys.exit(main())
