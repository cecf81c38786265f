"""redcore.datasets and `redcore data`: the standard sets' checksums, and a download that checks every file,
against an HTTP server on loopback that the test starts (no network)."""
import functools
import hashlib
import http.server
import os
import shutil
import threading

import pytest

from conftest import DATA_DIR, data_set
from redcore import cli, datasets


@pytest.fixture
def server(tmp_path):
    """(base URL, folder it serves): a threaded HTTP server on 127.0.0.1, stopped after the test."""
    folder = tmp_path / "source"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    httpd.shutdown()
    httpd.server_close()


def small_source(folder):
    """Two sets of small files in `folder` laid out as a source, and the manifest that describes them."""
    spec = {"origin": "a test", "source": "unused", "sets": {}}
    for name, path, files in (("train400", "data/Train", {"a.png": b"first image", "b.png": b"second"}),
                              ("test/Set12", "testsets/Set12", {"01.png": b"a test image"})):
        (folder / path).mkdir(parents=True)
        spec["sets"][name] = {"path": path, "files": {}}
        for file, data in files.items():
            (folder / path / file).write_bytes(data)
            spec["sets"][name]["files"][file] = [len(data), hashlib.sha256(data).hexdigest()]
    return spec


def test_download_fetches_checks_and_repairs(server, tmp_path):
    url, folder = server
    spec = small_source(folder)
    root = tmp_path / "data"
    assert datasets.download(str(root), source=url, spec=spec) == 3
    assert (root / "train400" / "b.png").read_bytes() == b"second"
    assert datasets.verify(str(root), spec) == {"train400": [], "test/Set12": []}
    assert datasets.download(str(root), source=url, spec=spec) == 0          # all there: nothing fetched
    (root / "train400" / "a.png").write_bytes(b"damaged")
    assert datasets.verify(str(root), spec)["train400"] == ["a.png"]
    assert datasets.download(str(root), source=url, spec=spec, sets=["train400"]) == 1
    assert (root / "train400" / "a.png").read_bytes() == b"first image"


def test_a_file_that_does_not_match_is_not_written(server, tmp_path):
    url, folder = server
    spec = small_source(folder)
    (folder / "testsets/Set12/01.png").write_bytes(b"a test imagE")            # same size, other bytes
    root = tmp_path / "data"
    with pytest.raises(ValueError, match=r"testsets/Set12/01\.png is not the file redcore expects .* nothing was "
                                         "written"):
        datasets.download(str(root), source=url, spec=spec, sets=["test/Set12"])
    assert not (root / "test" / "Set12").exists()                          # nothing, not even a folder
    with pytest.raises(ValueError, match="unknown data set 'Set13'"):
        datasets.download(str(root), source=url, spec=spec, sets=["Set13"])


def test_an_unreachable_source_is_one_sentence(tmp_path, server):
    url, folder = server
    spec = small_source(folder)
    shutil.rmtree(folder / "data")                                             # the server answers 404
    with pytest.raises(OSError, match=r"could not fetch http://127\.0\.0\.1:\d+/data/Train/a\.png: File not found"):
        datasets.download(str(tmp_path / "d"), source=url, spec=spec, sets=["train400"])


def test_the_command_downloads_the_real_manifest_from_a_mirror(server, tmp_path, capsys):
    """`redcore data --download DIR --source URL` with the shipped manifest, classic5 served from a copy of
    the shared data laid out as the DnCNN repository: every file checked, the report says so."""
    classic5 = data_set("test", "classic5")
    url, folder = server
    path = datasets.manifest()["sets"]["test/classic5"]["path"]
    shutil.copytree(classic5, folder / path)
    root = tmp_path / "data"
    assert cli.main(["data", "--download", str(root), "--sets", "test/classic5", "--source", url, "--quiet"]) == 0
    assert "test/classic5: 5 files, all present and verified" in capsys.readouterr().out
    assert sorted(os.listdir(root / "test" / "classic5")) == sorted(datasets.manifest()["sets"]["test/classic5"]["files"])


def test_the_shared_data_is_the_published_sets_byte_for_byte():
    """The checksums of datasets.json (taken from the DnCNN repository at its pinned commit) match ../shared/data."""
    data_set("train400")
    assert datasets.verify(DATA_DIR) == {name: [] for name in datasets.set_names()}
