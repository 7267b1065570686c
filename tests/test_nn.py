"""graphc.nn: parameter registration and path names, each layer against a NumPy reference,
train/test mode, initialisers and seeding, the models, and save_weights/load_weights."""
from __future__ import annotations

import os

import numpy as np
import pytest

import graphc as gc
from graphc import nn


def _eval(outputs, feeds):
    return gc.eval(outputs, feeds)


class Block(nn.Layer):
    def __init__(self):
        self.fc = nn.Linear(4, in_size=3)
        self.scale = gc.Parameter(np.ones(4, np.float32), name="scale")

    def forward(self, x):
        return self.fc(x) * self.scale


class Net(nn.Model):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(3, in_size=2)
        self.blocks = [Block(), Block()]
        self.shared = self.l1  # the same layer twice: its parameters count once
        self._private = nn.Linear(5, in_size=2)  # underscore: not walked

    def forward(self, x):
        x = self.l1(x)
        for block in self.blocks:
            x = block(x)[:, :3]
        return x


def test_params_register_by_attribute_with_path_names_in_a_stable_order():
    net = Net()
    names = [name for name, _ in net.named_params()]
    assert names == ["l1.W", "l1.b", "blocks.0.fc.W", "blocks.0.fc.b", "blocks.0.scale",
                     "blocks.1.fc.W", "blocks.1.fc.b", "blocks.1.scale"]
    params = list(net.params())
    assert len({id(p) for p in params}) == len(params) == 8
    assert [name for name, _ in net.named_params()] == names  # stable
    assert params[0] is net.l1.W and params[2] is net.blocks[0].fc.W
    assert isinstance(net, nn.Layer) and nn.Model is nn.Layer


def test_calling_a_layer_builds_graph_with_forward():
    net = Net()
    x = gc.placeholder((None, 2), name="x")
    y = net(x)
    assert isinstance(y, gc.Tensor) and y.shape == (None, 3)
    xv = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    h = xv @ net.l1.W.value + net.l1.b.value
    for b in net.blocks:
        h = ((h @ b.fc.W.value + b.fc.b.value) * b.scale.value)[:, :3]
    np.testing.assert_allclose(_eval(y, {x: xv}), h, rtol=1e-5, atol=1e-6)


def test_linear_takes_in_size_from_the_first_input():
    layer = nn.Linear(7)
    assert layer.W is None and [n for n, _ in layer.named_params()] == ["b"]
    y = layer(gc.placeholder((None, 5), name="x"))
    assert layer.W.shape == (5, 7) and y.shape == (None, 7)
    assert [n for n, _ in layer.named_params()] == ["W", "b"]  # W keeps its place
    assert nn.Linear(3, nobias=True, in_size=2).b is None
    with pytest.raises(gc.ShapeError, match="in_size"):
        nn.Linear(3)(gc.placeholder((None,), name="v"))


def test_initialisers_are_seeded_by_set_seed_and_scaled_for_the_activation():
    gc.set_seed(3)
    a = nn.Linear(400, in_size=300).W.value
    gc.set_seed(3)
    b = nn.Linear(400, in_size=300).W.value
    c = nn.Linear(400, in_size=300).W.value
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a.std(), np.sqrt(1 / 300), rtol=0.02)  # Xavier (DeZero's)
    he = nn.Linear(400, in_size=300, init="he").W.value
    np.testing.assert_allclose(he.std(), np.sqrt(2 / 300), rtol=0.02)
    relu_mlp = nn.MLP((400, 10), activation=gc.relu)
    relu_mlp(gc.placeholder((None, 300), name="x"))
    np.testing.assert_allclose(relu_mlp.layers[0].W.value.std(), np.sqrt(2 / 300), rtol=0.02)
    with pytest.raises(ValueError, match="unknown initialiser 'glorot'"):
        nn.Linear(3, init="glorot")


def test_mlp_is_dezeros():
    model = nn.MLP((100, 10))
    x = gc.placeholder((None, 64), name="x")
    y = model(x)
    assert y.shape == (None, 10)
    assert [p.shape for p in model.params()] == [(64, 100), (100,), (100, 10), (10,)]
    xv = np.random.default_rng(1).random((4, 64), dtype=np.float32)
    W1, b1, W2, b2 = (p.value for p in model.params())
    want = (1 / (1 + np.exp(-(xv @ W1 + b1)))) @ W2 + b2
    np.testing.assert_allclose(_eval(y, {x: xv}), want, rtol=1e-5, atol=1e-5)


def test_sequential_and_embedding():
    seq = nn.Sequential(nn.Linear(4, in_size=3), gc.relu, nn.Linear(2, in_size=4))
    assert [n for n, _ in seq.named_params()] == ["layers.0.W", "layers.0.b", "layers.2.W",
                                                   "layers.2.b"]
    x = gc.placeholder((None, 3), name="x")
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    l0, l2 = seq.layers[0], seq.layers[2]
    want = np.maximum(xv @ l0.W.value + l0.b.value, 0) @ l2.W.value + l2.b.value
    np.testing.assert_allclose(_eval(seq(x), {x: xv}), want, rtol=1e-5)
    with pytest.raises(TypeError, match="item 1"):
        nn.Sequential(nn.Linear(2), 3)

    emb = nn.Embedding(5, 3)
    ids = gc.placeholder((None, 2), "int64", name="ids")
    idv = np.array([[0, 4], [2, 2]])
    np.testing.assert_array_equal(_eval(emb(ids), {ids: idv}), emb.W.value[idv])
    loss = gc.sum(emb(ids))
    g = gc.eval(gc.grad(loss, emb.W), {ids: idv})
    np.testing.assert_array_equal(g[:, 0], [1, 0, 2, 0, 1])


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_embedding_ids_index_as_numpy_and_a_bad_id_is_named(backend):
    """-1 is the last row (NumPy's and DeZero's W[ids]; PyTorch refuses it); an id outside
    [-in_size, in_size) is a RuntimeCheckError that names it, and leaves W as it was."""
    emb = nn.Embedding(5, 3)
    ids = gc.placeholder((None,), "int64", name="ids")
    loss = gc.sum(emb(ids))
    step = gc.compile([ids], emb(ids), updates=[(emb.W, emb.W - 0.1 * gc.grad(loss, emb.W))],
                      backend=backend)
    before = emb.W.value
    np.testing.assert_array_equal(step(np.array([-1, -5, 0])), before[[4, 0, 0]])
    after = emb.W.value
    for bad in (5, -6):
        with pytest.raises(gc.RuntimeCheckError, match=f"index {bad} is out of bounds"):
            step(np.array([0, bad]))
        np.testing.assert_array_equal(emb.W.value, after)
    np.testing.assert_allclose(after[[1, 2, 3]], before[[1, 2, 3]])
    np.testing.assert_allclose(after[0], before[0] - 0.2, rtol=1e-6)
    np.testing.assert_allclose(after[4], before[4] - 0.1, rtol=1e-6)


def test_dropout_is_on_in_train_mode_and_off_in_test_mode():
    layer = nn.Dropout(0.5)
    x = gc.placeholder((None, 1000), name="x")
    xv = np.ones((4, 1000), np.float32)
    train = _eval(layer(x), {x: xv})
    assert set(np.unique(train)) == {0.0, 2.0}
    assert 0.4 < (train == 0).mean() < 0.6
    assert nn.is_training()
    with gc.test_mode():
        assert not nn.is_training()
        test = layer(x)
    assert nn.is_training()
    np.testing.assert_array_equal(_eval(test, {x: xv}), xv)


def _bn_reference(x, gamma, beta, eps):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    mean, var = x.mean(axes), x.var(axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return gamma.reshape(shape) * y + beta.reshape(shape), mean, var


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 5, 6)])
def test_batchnorm_train_step_updates_running_stats_and_test_mode_uses_them(shape):
    rng = np.random.default_rng(2)
    xv = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    bn = nn.BatchNorm(decay=0.9)
    x = gc.placeholder((None,) + shape[1:], name="x")
    y = bn(x)
    assert [n for n, _ in bn.named_params(trainable=True)] == ["gamma", "beta"]
    assert [n for n, _ in bn.named_params(trainable=False)] == ["avg_mean", "avg_var"]
    loss = gc.sum(y * y)
    from graphc import optim

    updates = optim.SGD(0.0).updates(loss, bn)
    assert {id(p) for p, _ in updates} >= {id(bn.avg_mean), id(bn.avg_var)}
    step = gc.compile([x], y, updates=updates)
    want, mean, var = _bn_reference(xv.astype(np.float64), bn.gamma.value, bn.beta.value,
                                    2e-5)
    np.testing.assert_allclose(step(xv), want, rtol=1e-4, atol=1e-4)
    m = xv.size // shape[1]
    np.testing.assert_allclose(bn.avg_mean.value, 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.avg_var.value, 0.9 + 0.1 * var * m / (m - 1), rtol=1e-4)

    with gc.test_mode():
        y_test = bn(x)
    per = (1, -1) if len(shape) == 2 else (1, -1, 1, 1)
    want_test = ((xv - bn.avg_mean.value.reshape(per))
                 / np.sqrt(bn.avg_var.value.reshape(per) + 2e-5))
    np.testing.assert_allclose(_eval(y_test, {x: xv}), want_test, rtol=1e-4, atol=1e-5)
    # a test-mode graph records no running-statistic update
    assert bn.state_updates(y_test) == []


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_a_step_on_an_empty_batch_keeps_the_running_stats_and_its_loss_is_nan(backend):
    """X[mask] that selects nothing: the loss is a mean over no rows (NaN, as PyTorch's
    cross_entropy), and BatchNorm's running statistics keep their values (they had become
    NaN, and every test-mode prediction after)."""
    from graphc import optim

    gc.set_seed(0)
    model = nn.Sequential(nn.Linear(4, in_size=2), nn.BatchNorm(), gc.relu,
                          nn.Linear(3, in_size=4))
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    loss = gc.softmax_cross_entropy(model(x), t)
    step = gc.compile([x, t], loss, updates=optim.SGD(0.1).updates(loss, model),
                      backend=backend)
    xv = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    tv = np.arange(8) % 3
    step(xv, tv)
    before = {n: p.value.copy() for n, p in model.named_params()}
    assert np.isnan(step(xv[:0], tv[:0]))
    for n, p in model.named_params():  # (SGD on no rows: zero gradients)
        np.testing.assert_array_equal(p.value, before[n], err_msg=n)
    step(xv, tv)  # and a batch with rows still moves them
    assert not np.array_equal(model.layers[1].avg_mean.value, before["layers.1.avg_mean"])


def test_batchnorm_rejects_other_ranks():
    with pytest.raises(gc.ShapeError, match="BatchNorm"):
        nn.BatchNorm()(gc.placeholder((None, 2, 3), name="x"))


def _conv_reference(x, W, b, stride, pad):
    n, _c, h, w = x.shape
    oc, _, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oc, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, W)
    return out + b.reshape(1, -1, 1, 1)


def test_conv_and_pool_layers():
    assert hasattr(gc, "conv2d"), "the conv ops (issue 12) are missing"
    rng = np.random.default_rng(4)
    xv = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    x = gc.placeholder((None, 3, 7, 7), name="x")
    conv = nn.Conv2d(4, 3, stride=2, pad=1)
    y = conv(x)
    assert conv.W.shape == (4, 3, 3, 3) and y.shape == (None, 4, 4, 4)
    np.testing.assert_allclose(conv.W.value.std(), np.sqrt(1 / 27), rtol=0.3)
    np.testing.assert_allclose(_eval(y, {x: xv}),
                               _conv_reference(xv, conv.W.value, conv.b.value, 2, 1),
                               rtol=1e-4, atol=1e-5)
    deconv = nn.Deconv2d(2, 3, stride=2, pad=1, in_channels=3)
    assert deconv.W.shape == (3, 2, 3, 3) and deconv(x).shape == (None, 2, 13, 13)
    np.testing.assert_allclose(
        _eval(deconv(x), {x: xv}),
        _eval(gc.deconv2d(x, deconv.W, deconv.b, stride=2, pad=1), {x: xv}))
    pooled = _eval([nn.MaxPool2d(2)(x), nn.AvgPool2d(2, stride=1)(x)], {x: xv})
    np.testing.assert_array_equal(pooled[0], xv[:, :, :6, :6].reshape(2, 3, 3, 2, 3, 2)
                                  .max(axis=(3, 5)))
    assert pooled[1].shape == (2, 3, 6, 6)
    np.testing.assert_allclose(pooled[1][:, :, 0, 0], xv[:, :, :2, :2].mean(axis=(2, 3)),
                               rtol=1e-5)


def test_small_cnn_and_vgg16_architecture():
    assert hasattr(gc, "conv2d"), "the conv ops (issue 12) are missing"
    cnn = nn.SimpleCNN(num_classes=10, channels=(4, 8), hidden=16)
    y = cnn(gc.placeholder((None, 1, 8, 8), name="x"))
    assert y.shape == (None, 10)
    assert [p.shape for p in cnn.params()] == [(4, 1, 3, 3), (4,), (8, 4, 3, 3), (8,),
                                               (128, 16), (16,), (16, 10), (10,)]
    vgg = nn.VGG16(num_classes=7)
    names = [n for n, _ in vgg.named_params()]
    # architecture only: the weights appear when it first sees an input (the biases' sizes
    # are known up front)
    assert len(names) == 16 and all(n.endswith(".b") for n in names)
    out = vgg(gc.placeholder((None, 3, 32, 32), name="img"))  # 32 / 2^5 = 1x1x512 at fc6
    assert out.shape == (None, 7)
    convs = [n for n in (n for n, _ in vgg.named_params()) if n.startswith("conv")]
    assert len(convs) == 26 and convs[0] == "conv1_1.W" and convs[-1] == "conv5_3.b"
    assert vgg.fc6.W.shape == (512, 4096) and vgg.fc8.W.shape == (4096, 7)


# --- save_weights / load_weights -------------------------------------------------------------
def _bn_model():
    model = nn.Sequential(nn.Linear(4, in_size=3), nn.BatchNorm(), nn.Linear(2, in_size=4))
    model(gc.placeholder((None, 3), name="x"))  # creates BatchNorm's parameters
    return model


def test_save_and_load_weights_round_trip_including_running_stats(tmp_path):
    model = _bn_model()
    bn = model.layers[1]
    bn.avg_mean.value = np.arange(4, dtype=np.float32)
    path = tmp_path / "w.npz"
    model.save_weights(path)
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted(n for n, _ in model.named_params())
        assert "layers.1.avg_mean" in npz.files and "layers.1.avg_var" in npz.files
    other = _bn_model()
    other.load_weights(path)
    for (name, p), (_, q) in zip(model.named_params(), other.named_params()):
        np.testing.assert_array_equal(p.value, q.value, err_msg=name)
    assert [f for f in os.listdir(tmp_path)] == ["w.npz"]  # no temp file left


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    model = _bn_model()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    before = path.read_bytes()
    model.layers[0].W.value = np.zeros((3, 4), np.float32)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save_weights(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.npz"]


@pytest.mark.parametrize("damage, message", [
    ("missing", "has no array for parameter 'layers.2.b'"),
    ("extra", "holds 'stray', which the model does not have"),
    ("shape", "'layers.0.W' is float32\\[4, 3\\], the model's parameter is float32\\[3, 4\\]"),
    ("dtype", "'layers.1.avg_var' is float64\\[4\\]"),
])
def test_load_checks_every_name_shape_and_dtype_and_changes_nothing(tmp_path, damage, message):
    model = _bn_model()
    arrays = {n: p.value for n, p in model.named_params()}
    if damage == "missing":
        del arrays["layers.2.b"]
    elif damage == "extra":
        arrays["stray"] = np.zeros(1)
    elif damage == "shape":
        arrays["layers.0.W"] = np.zeros((4, 3), np.float32)
    else:
        arrays["layers.1.avg_var"] = np.zeros(4)
    arrays = {n: (a + 1 if a.dtype.kind == "f" and n != "layers.0.W" else a)
              for n, a in arrays.items()}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    before = [p.value for p in model.params()]
    with pytest.raises(ValueError, match=message):
        model.load_weights(path)
    for p, old in zip(model.params(), before):
        np.testing.assert_array_equal(p.value, old)


class _Named(nn.Model):
    """Parameters under the names np.savez takes for its own arguments."""

    def __init__(self):
        self.file = gc.Parameter(np.arange(2, dtype=np.float32), name="f")
        self.allow_pickle = gc.Parameter(np.arange(3, dtype=np.float32), name="a")

    def forward(self, x):
        return x * self.file


def test_any_path_name_is_saved_and_loaded(tmp_path):
    model = _Named()
    model.save_weights(tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz") as npz:
        assert sorted(npz.files) == ["allow_pickle", "file"]
    other = _Named()
    other.file.value = np.zeros(2, np.float32)
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.file.value, [0, 1])
    np.testing.assert_array_equal(other.allow_pickle.value, [0, 1, 2])


def test_saved_weights_take_the_umasks_mode_and_a_replacement_keeps_its_files(tmp_path):
    model = _bn_model()
    old = os.umask(0o022)
    try:
        model.save_weights(tmp_path / "w.npz")
        assert os.stat(tmp_path / "w.npz").st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "w.npz", 0o640)
        model.save_weights(tmp_path / "w.npz")
        assert os.stat(tmp_path / "w.npz").st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    assert os.listdir(tmp_path) == ["w.npz"]


def _zip_with(path, members: dict) -> None:
    """An .npz whose members are raw bytes (name -> bytes), stored or deflated."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy_bytes(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


def test_load_checks_the_member_list_before_it_inflates_anything(tmp_path, monkeypatch):
    import zipfile

    model = nn.Linear(2, in_size=3)
    good = {f"{n}.npy": _npy_bytes(p.value) for n, p in model.named_params()}
    # 64 MiB of zeros deflate to ~64 KB: a stray member must be refused unread
    _zip_with(tmp_path / "bomb.npz", dict(good, **{"junk.npy": bytes(64 << 20)}))
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(name) or
                        real_open(self, name, *a, **k))
    before = model.W.value.copy()
    with pytest.raises(ValueError, match="holds 'junk', which the model does not have"):
        model.load_weights(tmp_path / "bomb.npz")
    assert opened == []
    np.testing.assert_array_equal(model.W.value, before)


@pytest.mark.parametrize("damage, message", [
    # a header that declares 10^11 x 3 floats: a MemoryError in np.load, refused by size here
    ("huge", "'W' is .* bytes \\(an .npy of the parameter's dtype and shape is 24 bytes"),
    ("npy", "is not a readable weights file .*BadZipFile"),
    ("twice", "holds the array 'W' twice"),
    ("not npy", "holds 'notes.txt', which is not an .npy array"),
    ("trailing", "'W' has bytes after its data"),
    ("crc", "Bad CRC-32"),
])
def test_hostile_weights_files_are_one_clear_error_and_change_nothing(tmp_path, damage,
                                                                      message):
    import warnings

    model = nn.Linear(2, in_size=3)
    good = {f"{n}.npy": _npy_bytes(p.value) for n, p in model.named_params()}
    path = tmp_path / "w.npz"
    if damage == "huge":
        header = _npy_bytes(np.zeros((1, 2), np.float32))[:-8].replace(b"(1, 2)",
                                                                          b"(100000000000, 3)")
        _zip_with(path, dict(good, **{"W.npy": header + bytes(4000)}))
    elif damage == "npy":
        path.write_bytes(good["W.npy"])  # a plain .npy under an .npz name
    elif damage == "twice":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (zipfile warns of the duplicate name)
            _zip_with(path, good)
            import zipfile

            with zipfile.ZipFile(path, "a") as zf:
                zf.writestr("W.npy", good["W.npy"])
    elif damage == "not npy":
        _zip_with(path, dict(good, **{"notes.txt": b"hello"}))
    elif damage == "trailing":
        _zip_with(path, dict(good, **{"W.npy": good["W.npy"] + b"x"}))
    else:
        import zipfile

        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for name, data in good.items():
                zf.writestr(name, data)
        raw = bytearray(path.read_bytes())
        at = raw.index(good["W.npy"]) + len(good["W.npy"]) - 1
        raw[at] ^= 0xFF  # the last byte of W's data
        path.write_bytes(bytes(raw))
    before = {n: p.value.copy() for n, p in model.named_params()}
    with pytest.raises(ValueError, match=message):
        model.load_weights(path)
    for n, p in model.named_params():
        np.testing.assert_array_equal(p.value, before[n])


def test_load_of_a_missing_or_damaged_file(tmp_path):
    model = _bn_model()
    with pytest.raises(FileNotFoundError, match="no weights file at .*nothing.npz"):
        model.load_weights(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.npz is not a readable weights file"):
        model.load_weights(tmp_path / "junk.npz")


# --- containers and failed first calls ----------------------------------------------------------
def test_layers_in_dicts_and_nested_lists_are_parameters_of_the_model():
    class Net(nn.Model):
        def __init__(self):
            self.heads = {"cls": nn.Linear(3, in_size=2), "box": nn.Linear(4, in_size=2)}
            self.stages = [[nn.Linear(2, in_size=2)], (nn.Linear(2, in_size=2),)]

        def forward(self, x):
            h = self.stages[1][0](self.stages[0][0](x))
            return self.heads["cls"](h), self.heads["box"](h)

    net = Net()
    assert [n for n, _ in net.named_params()] == [
        "heads.cls.W", "heads.cls.b", "heads.box.W", "heads.box.b",
        "stages.0.0.W", "stages.0.0.b", "stages.1.0.W", "stages.1.0.b"]
    assert net.heads["box"] in list(net.sublayers())


@pytest.mark.parametrize("make, bad_shape, good_shape", [
    (lambda: nn.Conv2d(2, 5), (None, 3, 4, 4), (None, 1, 8, 8)),
    (lambda: nn.Sequential(nn.Linear(4), nn.BatchNorm()), (None, 2, 3), (None, 7)),
])
def test_a_failed_first_call_leaves_a_lazy_layer_unsized(make, bad_shape, good_shape):
    """The weights a first call sized from an input the ops then refused are dropped, so
    the corrected call sizes them afresh (they had kept the rejected input's size)."""
    layer = make()
    before = list(layer.named_params())
    with pytest.raises(gc.ShapeError):
        layer(gc.placeholder(bad_shape, name="x"))
    assert list(layer.named_params()) == before
    y = layer(gc.placeholder(good_shape, name="x"))
    assert y.shape[0] is None


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Linear(-2), "Linear: out_size must be an int >= 1, got -2"),
    (lambda: nn.Linear(3, in_size=0), "Linear: in_size must be an int >= 1, got 0"),
    (lambda: nn.Conv2d(2.5, 3), "Conv2d: out_channels must be an int >= 1, got 2.5"),
    (lambda: nn.Conv2d(4, -1), "Conv2d: kernel_size must be an int >= 1 or a pair"),
    (lambda: nn.Conv2d(4, (3, 3, 3)), "Conv2d: kernel_size must be .* got \\(3, 3, 3\\)"),
    (lambda: nn.Deconv2d(4, 3.0), "Deconv2d: kernel_size must be .* got 3.0"),
    (lambda: nn.Conv2d(4, 3, stride=0), "Conv2d: stride must be an int >= 1"),
    (lambda: nn.Conv2d(4, 3, pad=-1), "Conv2d: pad must be an int >= 0"),
    (lambda: nn.Embedding(2.7, 3), "Embedding: in_size must be an int >= 1, got 2.7"),
    (lambda: nn.Embedding(10, -2), "Embedding: out_size must be an int >= 1, got -2"),
    (lambda: nn.Dropout(1.5), "dropout ratio must be a number in \\[0, 1\\], got 1.5"),
])
def test_layer_sizes_are_checked_where_they_are_given(make, message):
    with pytest.raises((ValueError, gc.ShapeError), match=message + ".*test_nn.py"):
        make()


def test_dropout_of_one_drops_everything():
    """p = 1 is PyTorch's "drop all" (it had been refused as a ShapeError)."""
    x = gc.placeholder((None, 3), name="x")
    y = nn.Dropout(1.0)(x)
    for backend in ("cpu", "numpy"):
        out = gc.compile([x], y, backend=backend)(np.ones((2, 3), np.float32))
        np.testing.assert_array_equal(out, np.zeros((2, 3)))


@pytest.mark.parametrize("as_list", [False, True])
def test_running_stats_are_updated_however_the_step_names_the_model(as_list):
    """updates(loss, list(model.params())) (PyTorch's model.parameters() habit) and a loss
    built 20 train-mode calls before updates(): the running statistics still move (the
    first had left them out silently, the second had lost them after 16 calls)."""
    from graphc import optim

    gc.set_seed(0)
    model = nn.Sequential(nn.Linear(3, in_size=2), nn.BatchNorm())
    x = gc.placeholder((None, 2), name="x")
    loss = gc.sum(model(x) ** 2)
    for _ in range(20):  # (other train-mode graphs of the same layers)
        model(x)
    target = list(model.params()) if as_list else model
    updates = optim.SGD(0.0).updates(loss, target)
    bn = model.layers[1]
    assert {id(p) for p, _ in updates} >= {id(bn.avg_mean), id(bn.avg_var)}
    xv = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    gc.compile([x], loss, updates=updates)(xv)
    assert np.abs(bn.avg_mean.value).max() > 0


def test_path_names_are_unique_and_containers_are_walked_to_any_depth():
    class Heads(nn.Model):
        def __init__(self):
            self.heads = {1: nn.Linear(2, in_size=2), "1": nn.Linear(2, in_size=2)}

    with pytest.raises(ValueError, match="two Parameters have the path name 'heads.1.W'"):
        list(Heads().named_params())

    class Deep(nn.Model):
        def __init__(self):
            v = nn.Linear(2, in_size=2)
            for _ in range(12):  # (a walk that stopped at 8 levels had dropped it silently)
                v = [v]
            ring = [nn.Linear(2, in_size=2)]
            ring.append(ring)  # (a list holding itself is walked once)
            self.deep, self.ring = v, ring

    assert [n for n, _ in Deep().named_params()] == [
        "deep" + ".0" * 12 + ".W", "deep" + ".0" * 12 + ".b", "ring.0.W", "ring.0.b"]
