"""Weight and checkpoint files: .npz holding a JSON header and named arrays, written atomically, read
without pickle (`allow_pickle=False`: a weight file cannot run code).  This module only reads and writes
files: a network is built from one by REDNet.load (model.py)."""
import json
import os
import tempfile

import numpy as np

HEADER_KEY = "__header__"
TEMP_PREFIX = ".redcore-tmp-"
FORMAT_VERSION = 1


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it over `path`: a crash or a full
    disk leaves the old file (or none), never half of one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    # A short name of its own (not the target's name plus a prefix, which may pass the 255-byte limit);
    # TEMP_PREFIX lets a later run find and remove what a killed one left.
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
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
    """Write {name: array} and a JSON-able header to `path` (.npz) atomically.  The header is stored as its
    UTF-8 bytes (a NumPy string would take 4 bytes a character)."""
    header = {**header, "format_version": FORMAT_VERSION}
    payload = {HEADER_KEY: np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}
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
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":            # the zip signature every .npz starts with
            raise ValueError(f"{path} is not a redcore weight file: it is not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise ValueError(f"{path} is not a readable redcore weight file (a damaged .npz archive?): {e}") from None
    if HEADER_KEY not in arrays:
        raise ValueError(f"{path} is an .npz archive but not a redcore file: it has no header")
    stored = arrays.pop(HEADER_KEY)
    try:                                    # UTF-8 bytes; files written before 2026-12 hold a NumPy string
        header = json.loads(stored.tobytes().decode("utf-8") if stored.dtype == np.uint8 else str(stored))
    except ValueError:
        raise ValueError(f"{path} has a damaged header: it is not JSON") from None
    version = header.get("format_version", 0) if isinstance(header, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path} has a damaged header: not a JSON object with an integer format_version")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer redcore (format {version})")
    return header, arrays


# The training history (one entry a step: {"step", "loss"[, "val_psnr"]}) is kept as arrays, not in the JSON
# header: a header with one entry a step grew to half of a 17 MB checkpoint.
HISTORY_FIELDS = ("step", "loss", "val_psnr")


def save_checkpoint(path, net, optimizer, state):
    """Network, optimizer and JSON-able training state (step, RNG seeds, args) in one atomic file; the
    state's "history" is stored as one array a field (NaN where an entry lacks it, e.g. val_psnr)."""
    arrays = {f"model.{k}": v for k, v in net.state_dict().items()}
    arrays.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
    if "history" in state:
        for field in HISTORY_FIELDS:
            arrays[f"history.{field}"] = np.array([e.get(field, np.nan) for e in state["history"]], np.float64)
    header_state = {k: v for k, v in state.items() if k != "history"}
    save_arrays(path, {"kind": "redcore.checkpoint", "config": net.config, "state": header_state}, arrays)


def _history_of(arrays):
    """The list of history entries from a checkpoint's history.* arrays (int steps; NaN fields left out)."""
    columns = {f: arrays[f"history.{f}"] for f in HISTORY_FIELDS if f"history.{f}" in arrays}
    entries = []
    for i in range(len(columns.get("step", ()))):
        entry = {"step": int(columns["step"][i])}
        entry.update({f: float(c[i]) for f, c in columns.items() if f != "step" and not np.isnan(c[i])})
        entries.append(entry)
    return entries


def load_checkpoint(path, net, optimizer):
    """Load a checkpoint written by `save_checkpoint` into net and optimizer; returns its training state.
    Anything missing or of the wrong shape is one ValueError, and net and optimizer are then untouched."""
    header, arrays = load_arrays(path)
    if header.get("kind") != "redcore.checkpoint":
        raise ValueError(f"{path} is not a training checkpoint")
    if not isinstance(header.get("config"), dict) or not isinstance(header.get("state"), dict):
        raise ValueError(f"{path} is an incomplete checkpoint: its header lacks the network config or the state")
    # The architecture must match; how its first weights were drawn need not (the weights are replaced).
    diff = net.config_differences(header["config"])
    if diff:
        raise ValueError(f"{path} was saved for another network: (checkpoint, now) differ in {diff}")
    weights = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
    net.check_weights(weights, net.config, path)
    moments = {k[6:]: v for k, v in arrays.items() if k.startswith("optim.")}
    missing = [f"{m}.{name}" for name in net.params for m in "mv" if f"{m}.{name}" not in moments]
    missing += [k for k in ("t", "lr", "betas", "eps") if k not in moments]
    if missing:
        raise ValueError(f"{path} is an incomplete checkpoint: it has no optimizer state {missing[:3]}")
    net.load_state_dict(weights)
    optimizer.load_state_dict(moments)
    state = header["state"]
    if "history.step" in arrays:            # (older checkpoints keep their history in the header's state)
        state["history"] = _history_of(arrays)
    return state


def lock_folder(folder):
    """Claim `folder` for one training: create folder/.lock holding this process's id, or refuse with a
    sentence while another live process holds it.  A lock left by a process that is gone (killed) is
    taken over.  Returns a function that releases the lock."""
    path = os.path.join(folder, ".lock")
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise RuntimeError(f"{folder} is in use by another training (process {pid}): wait for it, or "
                                   "give another --out") from None
            os.unlink(path)                 # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise RuntimeError(f"could not lock {folder}: its .lock keeps reappearing")

    def release():
        try:
            with open(path) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(path)
        except OSError:
            pass
    return release


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:             # someone else's live process
        return True
    return True


def remove_orphans(folder):
    """Delete the temporary files that a killed writer left in `folder` (call it holding the folder's lock)."""
    for name in os.listdir(folder):
        if name.startswith(TEMP_PREFIX):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
