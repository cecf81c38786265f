"""Weight files: one .npz with the config, loaded without pickle; clear errors; atomic writes."""
import json
import os

import numpy as np
import pytest

import redcore
from redcore.io import load_checkpoint, save_checkpoint


def test_save_load_round_trip(tmp_path):
    net = redcore.REDNet(depth=10, filters=4, skip_step=1, downsample=(3,), backend="numpy", seed=9)
    path = tmp_path / "net.npz"
    net.save(path)
    back = redcore.load(path, backend="cpu")
    assert back.config == net.config and back.backend.name == "cpu"
    for k, v in net.state_dict().items():
        assert np.array_equal(back.params[k], v)
    with np.load(path, allow_pickle=False) as z:      # nothing in the file needs pickle
        assert set(z.files) == set(net.params) | {"__header__"}
    x = np.random.default_rng(0).random((1, 1, 20, 20)).astype(np.float32)
    np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=1e-5, atol=1e-6)


def test_weights_stored_in_float16_load_as_their_rounding(tmp_path):
    """save(float16=True) halves the file; load widens the float16 weights to the config's float32, so the net
    holds exactly the weights rounded to float16.  A float16 array in a file whose header does not say so, an
    unknown storage, and weights beyond float16's range are refused with a sentence."""
    net = redcore.REDNet(depth=4, filters=32, backend="numpy", seed=2)
    wide, half = tmp_path / "wide.npz", tmp_path / "half.npz"
    net.save(wide)
    net.save(half, float16=True)
    assert os.path.getsize(half) < 0.6 * os.path.getsize(wide)
    back = redcore.load(half)
    assert back.dtype == np.float32
    for k, v in net.state_dict().items():
        assert np.array_equal(back.params[k], v.astype(np.float16).astype(np.float32))
        assert not np.array_equal(back.params[k], v) or np.all(v == v.astype(np.float16))
    header, arrays = redcore.io.load_arrays(half)
    del header["stored"]
    unmarked = tmp_path / "unmarked.npz"
    redcore.io.save_arrays(unmarked, header, arrays)
    with pytest.raises(ValueError, match="conv1.weight is float16 .*, its config declares float32"):
        redcore.load(unmarked)
    redcore.io.save_arrays(unmarked, {**header, "stored": "int8"}, arrays)
    with pytest.raises(ValueError, match="stores its weights as 'int8', which this redcore does not read"):
        redcore.load(unmarked)
    big = net.state_dict()
    big["conv2.bias"][0] = 1e5
    net.load_state_dict(big)
    with pytest.raises(ValueError, match="conv2.bias holds weights beyond float16's range"):
        net.save(tmp_path / "big.npz", float16=True)
    assert not (tmp_path / "big.npz").exists()


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such weight file"):
        redcore.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="not a redcore weight file"):
        redcore.load(bad)
    net = redcore.REDNet(depth=10, filters=4, backend="numpy")
    sd = net.state_dict()
    with pytest.raises(ValueError, match="conv1.weight"):
        net.load_state_dict({**sd, "conv1.weight": np.zeros((4, 1, 5, 5), np.float32)})
    with pytest.raises(TypeError, match="float64"):
        net.load_state_dict({**sd, "conv1.bias": np.zeros(4)})
    with pytest.raises(KeyError, match="missing"):
        net.load_state_dict({k: v for k, v in sd.items() if k != "deconv5.bias"})


def test_failed_write_keeps_the_old_file(tmp_path):
    net = redcore.REDNet(depth=10, filters=4, backend="numpy")
    path = tmp_path / "net.npz"
    net.save(path)
    before = path.read_bytes()

    class Boom(Exception):
        pass

    def broken_state_dict():
        raise Boom()
    net.state_dict = broken_state_dict
    with pytest.raises(Boom):
        net.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]     # no temporary left behind
    with pytest.raises(FileNotFoundError, match="does not exist"):
        redcore.REDNet(depth=2, filters=1, backend="numpy").save(tmp_path / "no" / "such" / "dir.npz")


def test_checkpoint_restores_net_optimizer_and_state(tmp_path):
    net = redcore.REDNet(depth=10, filters=4, backend="cpu", seed=1)
    opt = redcore.Adam(net.params, lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 16, 16)).astype(np.float32)
    for _ in range(2):
        _, dy = redcore.mse_loss(net.forward(x), x * 0.5)
        net.backward(dy)
        opt.step(net.grads)
    save_checkpoint(tmp_path / "ck.npz", net, opt, {"step": 2})
    net2 = redcore.REDNet(depth=10, filters=4, backend="cpu", seed=99)
    opt2 = redcore.Adam(net2.params, lr=1e-3)
    assert load_checkpoint(tmp_path / "ck.npz", net2, opt2) == {"step": 2}
    for a, b in ((net, opt), (net2, opt2)):
        _, dy = redcore.mse_loss(a.forward(x), x * 0.5)
        a.backward(dy)
        b.step(a.grads)
    assert all(np.array_equal(net.params[k], net2.params[k]) for k in net.params)
    other = redcore.REDNet(depth=10, filters=8, backend="cpu")
    with pytest.raises(ValueError, match="another network"):
        load_checkpoint(tmp_path / "ck.npz", other, redcore.Adam(other.params))


def test_atomic_files_get_the_usual_mode(tmp_path):
    import stat
    from redcore.io import atomic_write
    old = os.umask(0o022)
    try:
        atomic_write(str(tmp_path / "f.bin"), lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "f.bin").st_mode) == 0o644


def test_a_checkpoint_is_its_arrays_plus_a_small_header(tmp_path):
    """The history (one entry a step) is stored as arrays and the header as UTF-8 bytes: a RED20-64 checkpoint
    after 50,000 steps is at most 1.2x its network and optimizer arrays (it was 2x: 8.7 MB of 16.7 MB were a
    NumPy unicode header, 4 bytes a character)."""
    net = redcore.REDNet(depth=20, filters=64, backend="numpy", seed=1)
    opt = redcore.Adam(net.params)
    history = [{"step": s + 1, "loss": 1.0 / (s + 1)} for s in range(50_000)]
    for entry in history[499::500]:
        entry["val_psnr"] = 28.0 + entry["step"] / 1e5
    state = {"step": 50_000, "history": history, "args": {"task": "denoise", "level": "25"}}
    save_checkpoint(tmp_path / "ck.npz", net, opt, state)
    arrays = 3 * net.params.flat.nbytes                      # weights, m and v
    assert os.path.getsize(tmp_path / "ck.npz") <= 1.2 * arrays
    restored = load_checkpoint(tmp_path / "ck.npz", net, redcore.Adam(net.params))
    assert restored == state


def test_a_checkpoint_of_the_old_format_still_loads(tmp_path):
    """Before 2026-12 the header was a NumPy string holding the history: such files load as before."""
    net = redcore.REDNet(depth=4, filters=4, backend="numpy", seed=1)
    opt = redcore.Adam(net.params)
    state = {"step": 2, "history": [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4, "val_psnr": 25.0}]}
    header = {"kind": "redcore.checkpoint", "config": net.config, "state": state, "format_version": 1}
    arrays = {f"model.{k}": v for k, v in net.state_dict().items()}
    arrays.update({f"optim.{k}": v for k, v in opt.state_dict().items()})
    np.savez(tmp_path / "old.npz", __header__=np.array(json.dumps(header)), **arrays)
    assert load_checkpoint(tmp_path / "old.npz", net, redcore.Adam(net.params)) == state
