"""The standard image sets: where they come from, and a download that checks every file.

All five sets of the paper's tables that redcore uses are files of one public repository, the DnCNN authors'
(github.com/cszn/DnCNN, pinned at one commit), byte for byte what ../shared/data holds:

    REDCORE_DATA/train400/test_001.png .. test_400.png      (TrainingCodes/DnCNN_TrainingCodes_v1.0/data/Train400)
    REDCORE_DATA/test/Set12/01.png .. 12.png                 (testsets/Set12)
    REDCORE_DATA/test/BSD68/test001.png .. test068.png       (testsets/BSD68)
    REDCORE_DATA/test/Set5/baby_GT.bmp ..                    (testsets/Set5)
    REDCORE_DATA/test/classic5/baboon.bmp ..                 (testsets/classic5)

datasets.json lists every file with its size and SHA-256.  `download(root)` fetches what is missing or
damaged, checks each file before it is written (atomically), and never leaves a file that does not match.
"""
import hashlib
import json
import os
import urllib.error
import urllib.request

from .io import atomic_write

MANIFEST_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets.json")


def manifest():
    """{"origin", "source" (the base URL), "sets": {folder: {"path": path in the source, "files": {name: [size,
    sha256]}}}} as shipped in datasets.json."""
    with open(MANIFEST_PATH, encoding="utf-8") as f:
        return json.load(f)


def set_names(spec=None):
    """The folders of the sets (train400, test/Set12, ...)."""
    return list((spec or manifest())["sets"])


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def verify(root, spec=None, sets=None):
    """{folder: [names missing or not matching their checksum]} of the sets under `root` (empty lists: all good)."""
    spec = spec or manifest()
    report = {}
    for folder in sets or set_names(spec):
        bad = []
        for name, (size, digest) in spec["sets"][folder]["files"].items():
            path = os.path.join(root, folder, name)
            try:
                ok = os.path.getsize(path) == size and _sha256(open(path, "rb").read()) == digest
            except OSError:
                ok = False
            if not ok:
                bad.append(name)
        report[folder] = bad
    return report


def download(root, sets=None, source=None, spec=None, timeout=60, progress=None):
    """Fetch the files of `sets` (default: all) that are missing or damaged under `root` from `source` (default:
    the manifest's), checking size and SHA-256 before each is written.  Returns the number of files fetched.
    A file that does not match is not written, and the error names it.  progress(done, total), if given, is
    called before the first file and after each."""
    spec = spec or manifest()
    source = source or spec["source"]
    if not source.endswith("/"):
        source += "/"
    sets = sets or set_names(spec)
    unknown = [s for s in sets if s not in spec["sets"]]
    if unknown:
        raise ValueError(f"unknown data set {unknown[0]!r}: choose among {', '.join(set_names(spec))}")
    todo = [(folder, name) for folder, names in verify(root, spec, sets).items() for name in names]
    if progress is not None:
        progress(0, len(todo))
    for done, (folder, name) in enumerate(todo, 1):
        size, digest = spec["sets"][folder]["files"][name]
        url = source + spec["sets"][folder]["path"] + "/" + name
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read(size + 1)
        except (urllib.error.URLError, OSError) as e:
            raise OSError(f"could not fetch {url}: {getattr(e, 'reason', e)}") from None
        if len(data) != size or _sha256(data) != digest:
            raise ValueError(f"{url} is not the file redcore expects ({len(data)} bytes, SHA-256 {_sha256(data)[:12]}.., "
                             f"expected {size} bytes, {digest[:12]}..): nothing was written for it")
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        atomic_write(os.path.join(root, folder, name), lambda f: f.write(data))
        if progress is not None:
            progress(done, len(todo))
    return len(todo)
