"""Weight and checkpoint files: .npz holding a JSON header and named arrays, written atomically, read
without pickle (`allow_pickle=False`: a weight file cannot run code)."""
import json
import os
import tempfile

import numpy as np

HEADER_KEY = "__header__"
FORMAT_VERSION = 1


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it over `path`: a crash or a full
    disk leaves the old file (or none), never half of one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)      # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_arrays(path, header, arrays):
    """Write {name: array} and a JSON-able header to `path` (.npz) atomically."""
    header = {**header, "format_version": FORMAT_VERSION}
    payload = {HEADER_KEY: np.array(json.dumps(header))}
    for name, a in arrays.items():
        if name == HEADER_KEY:
            raise ValueError(f"{HEADER_KEY!r} is reserved for the header")
        payload[name] = np.asarray(a)
    atomic_write(path, lambda f: np.savez(f, **payload))


def load_arrays(path):
    """(header, {name: array}) from a file written by `save_arrays`; a clear error for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weight file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise ValueError(f"{path} is not a redcore weight file (an .npz archive): {e}") from None
    if HEADER_KEY not in arrays:
        raise ValueError(f"{path} is an .npz archive but not a redcore file: it has no header")
    header = json.loads(str(arrays.pop(HEADER_KEY)))
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer redcore (format {header['format_version']})")
    return header, arrays


def load(name_or_path, backend="cpu"):
    """A REDNet on `backend`: a shipped model by name (see `redcore models`), or a file saved by `REDNet.save`
    (or a training checkpoint).  An unknown name lists the shipped ones."""
    from .model import REDNet
    path = os.fspath(name_or_path)
    if not os.path.exists(path) and not path.endswith(".npz") and os.sep not in path:
        from .zoo import path_of
        path = path_of(path)
    header, arrays = load_arrays(path)
    if "config" not in header:
        raise ValueError(f"{path} holds no network config")
    net = REDNet(**header["config"], backend=backend)
    net.load_state_dict({k[len("model."):] if k.startswith("model.") else k: v
                         for k, v in arrays.items() if not k.startswith("optim.")})
    return net


def save_checkpoint(path, net, optimizer, state):
    """Network, optimizer and JSON-able training state (step, RNG seeds, history) in one atomic file."""
    arrays = {f"model.{k}": v for k, v in net.state_dict().items()}
    arrays.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
    save_arrays(path, {"kind": "redcore.checkpoint", "config": net.config, "state": state}, arrays)


def load_checkpoint(path, net, optimizer):
    """Load a checkpoint written by `save_checkpoint` into net and optimizer; returns its training state."""
    header, arrays = load_arrays(path)
    if header.get("kind") != "redcore.checkpoint":
        raise ValueError(f"{path} is not a training checkpoint")
    # The architecture must match; the initialisation seed need not (the weights are replaced).
    diff = {k: (header["config"].get(k), v) for k, v in net.config.items()
            if k != "seed" and header["config"].get(k) != v}
    if diff:
        raise ValueError(f"{path} was saved for another network: (checkpoint, now) differ in {diff}")
    net.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    optimizer.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("optim.")})
    return header["state"]
