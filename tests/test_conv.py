"""Convolution and pooling (graphc.ops.conv, kernels/cpu/conv.py) beyond the op table rows:
PyTorch as a second oracle for every forward and gradient over strides, pads, odd sizes and
kernel shapes; double backprop; shape errors at the user's line; compiled plans with no
NumPy fallback; save/load; VGG16 built symbolically and dumped without running. (Plans'
column buffers and kernel records, which need no torch, are in test_conv_implicit.py.)"""
from __future__ import annotations

import importlib.util
import zlib

import numpy as np
import pytest
from op_table import np_conv2d

import graphc as gc
from graphc.cli import main as graphc_main
from graphc.tensor import apply
from graphc.testing import check_grad

try:  # the oracle of the *_torch tests; every other test here runs without it (as in CI)
    import torch
    F = torch.nn.functional
except ImportError:
    torch = F = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the oracle) is not installed")

RTOL, ATOL = 1e-10, 1e-10  # float64 against PyTorch's float64


def _rng(*salt):
    return np.random.default_rng(zlib.crc32(repr(salt).encode()))


def _close(got, want, what):
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=what)


def _with_seed(y, rng):
    """A seed placeholder of y's shape and sum(y * seed): its gradients are the VJPs at the
    seed fed at call time."""
    gy = gc.placeholder(y.shape, y.dtype, name="gy")
    return gy, gc.sum(y * gy)


# --- PyTorch oracle: forward and every gradient ------------------------------------------------
# (N, C, H, W, OC, kernel, stride, pad): strides 1-3, pads 0-2, odd sizes, 1x1 and non-square
CONV = [
    (2, 3, 7, 9, 4, (3, 3), 1, 0),
    (1, 2, 8, 5, 3, (3, 2), 2, 1),
    (2, 1, 9, 7, 2, (5, 4), 3, 2),
    (3, 4, 5, 6, 5, (1, 1), 1, 0),
    (2, 3, 6, 7, 2, (1, 1), 2, 1),
    (1, 2, 11, 10, 3, (4, 3), (1, 3), (2, 0)),
    (2, 5, 7, 7, 3, (2, 5), (3, 1), (0, 2)),
]


def _ids(configs):
    return [f"cfg{i}" for i in range(len(configs))]


@needs_torch
@pytest.mark.parametrize("cfg", CONV, ids=_ids(CONV))
def test_conv2d_matches_torch(cfg, backend):
    n, c, h, w, oc, kernel, stride, pad = cfg
    rng = _rng("conv", cfg)
    xv, wv = rng.standard_normal((n, c, h, w)), rng.standard_normal((oc, c) + kernel)
    bv = rng.standard_normal(oc)
    x = gc.placeholder((None, c, h, w), "float64", name="x")
    W = gc.placeholder(wv.shape, "float64", name="W")
    b = gc.placeholder((oc,), "float64", name="b")
    y = gc.conv2d(x, W, b, stride=stride, pad=pad)
    gy, loss = _with_seed(y, rng)
    f = gc.compile([x, W, b, gy], [y] + gc.grad(loss, [x, W, b]), backend=backend)

    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (xv, wv, bv))
    ty = F.conv2d(tx, tw, tb, stride=stride, padding=pad)
    gyv = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gyv))
    got = f(xv, wv, bv, gyv)
    for value, want, what in zip(got, (ty, tx.grad, tw.grad, tb.grad), ("y", "dx", "dW", "db")):
        _close(value, want, f"conv2d {cfg}: {what}")


# (N, C, H, W, OC, kernel, stride, pad, output_padding)
DECONV = [
    (2, 3, 4, 5, 2, (3, 3), 1, 0, 0),
    (1, 2, 3, 4, 3, (3, 2), 2, 1, 1),
    (2, 1, 3, 3, 2, (5, 4), 3, 2, (2, 1)),
    (2, 4, 5, 3, 2, (1, 1), 1, 0, 0),
    (1, 3, 4, 4, 2, (2, 3), (1, 3), (0, 2), (0, 2)),
]


@needs_torch
@pytest.mark.parametrize("cfg", DECONV, ids=_ids(DECONV))
def test_deconv2d_matches_torch_conv_transpose2d(cfg, backend):
    n, c, h, w, oc, kernel, stride, pad, extra = cfg
    rng = _rng("deconv", cfg)
    xv, wv = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, oc) + kernel)
    bv = rng.standard_normal(oc)
    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (xv, wv, bv))
    ty = F.conv_transpose2d(tx, tw, tb, stride=stride, padding=pad, output_padding=extra)
    x = gc.placeholder((None, c, h, w), "float64", name="x")
    W = gc.placeholder(wv.shape, "float64", name="W")
    b = gc.placeholder((oc,), "float64", name="b")
    y = gc.deconv2d(x, W, b, stride=stride, pad=pad, outsize=tuple(ty.shape[2:]))
    assert y.shape == (None,) + tuple(ty.shape[1:])
    gy, loss = _with_seed(y, rng)
    f = gc.compile([x, W, b, gy], [y] + gc.grad(loss, [x, W, b]), backend=backend)
    gyv = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gyv))
    got = f(xv, wv, bv, gyv)
    for value, want, what in zip(got, (ty, tx.grad, tw.grad, tb.grad), ("y", "dx", "dW", "db")):
        _close(value, want, f"deconv2d {cfg}: {what}")


# (N, C, H, W, kernel, stride, pad); stride None: the kernel size
POOL = [
    (2, 3, 7, 9, 2, None, 0),
    (1, 2, 8, 5, 3, 2, 1),
    (2, 1, 9, 7, (4, 5), 3, 2),
    (2, 2, 5, 6, 1, 1, 0),
    (1, 3, 7, 7, (2, 3), (1, 3), (1, 0)),
    (2, 2, 6, 5, 3, 1, 1),
]


def _pool_check(gc_pool, torch_pool, cfg, backend, values):
    n, c, h, w, kernel, stride, pad = cfg
    rng = _rng(gc_pool.__name__, cfg)
    xv = values(rng, (n, c, h, w))
    x = gc.placeholder((None, c, h, w), "float64", name="x")
    y = gc_pool(x, kernel, stride, pad)
    gy, loss = _with_seed(y, rng)
    f = gc.compile([x, gy], [y, gc.grad(loss, x)], backend=backend)
    tx = torch.tensor(xv, requires_grad=True)
    ty = torch_pool(tx, kernel, stride, pad)
    gyv = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gyv))
    got_y, got_dx = f(xv, gyv)
    _close(got_y, ty, f"{gc_pool.__name__} {cfg}: y")
    _close(got_dx, tx.grad, f"{gc_pool.__name__} {cfg}: dx")


@needs_torch
@pytest.mark.parametrize("cfg", POOL, ids=_ids(POOL))
def test_max_pool2d_matches_torch(cfg, backend):
    _pool_check(gc.max_pool2d, F.max_pool2d, cfg, backend, lambda r, s: r.standard_normal(s))


@needs_torch
@pytest.mark.parametrize("cfg", POOL, ids=_ids(POOL))
def test_max_pool2d_ties_go_to_the_first_maximum_as_in_torch(cfg, backend):
    """Small integers: most windows hold several equal maxima."""
    _pool_check(gc.max_pool2d, F.max_pool2d, cfg, backend,
                lambda r, s: r.integers(-1, 2, s).astype(np.float64))


@needs_torch
def test_max_pool2d_selects_nan_as_torch(backend):
    xv = _rng("nan").integers(-1, 2, (1, 2, 6, 6)).astype(np.float64)
    xv[0, 0, 1, 1] = xv[0, 1, 4, 5] = xv[0, 1, 5, 4] = np.nan  # one, and two in one window
    _pool_check(gc.max_pool2d, F.max_pool2d, (1, 2, 6, 6, 2, None, 0), backend,
                lambda r, s: xv)


@needs_torch
@pytest.mark.parametrize("cfg", POOL, ids=_ids(POOL))
def test_avg_pool2d_matches_torch(cfg, backend):
    _pool_check(gc.avg_pool2d, F.avg_pool2d, cfg, backend, lambda r, s: r.standard_normal(s))


# --- double backprop ------------------------------------------------------------------------------
@needs_torch
def test_conv2d_grad_of_grad_matches_torch(backend):
    """h = |d/dx sum(tanh(conv(x)) * r)|^2, differentiated again w.r.t. x, W and b."""
    rng = _rng("double")
    xv, wv, bv = (rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2)),
                  rng.standard_normal(3))
    x = gc.placeholder((None, 2, 6, 5), "float64", name="x")
    W, b = gc.placeholder(wv.shape, "float64"), gc.placeholder((3,), "float64")
    y = gc.conv2d(x, W, b, stride=(2, 1), pad=1)
    r = rng.standard_normal((1,) + y.shape[1:])
    gx = gc.grad(gc.sum(gc.tanh(y) * r), x)
    h = gc.sum(gx * gx)
    f = gc.compile([x, W, b], [h] + gc.grad(h, [x, W, b]), backend=backend)

    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (xv, wv, bv))
    ty = F.conv2d(tx, tw, tb, stride=(2, 1), padding=1)
    (tgx,) = torch.autograd.grad((torch.tanh(ty) * torch.tensor(r)).sum(), tx, create_graph=True)
    th = (tgx * tgx).sum()
    th.backward()
    for got, want, what in zip(f(xv, wv, bv), (th, tx.grad, tw.grad, tb.grad),
                               ("h", "dh/dx", "dh/dW", "dh/db")):
        _close(got, want, f"double backprop: {what}")


def test_conv2d_grad_of_grad_against_central_differences(backend):
    """The same through check_grad: the gradient of a function that is itself a gradient."""
    rng = _rng("double-numeric")
    wv = rng.standard_normal((2, 2, 2, 3))

    def fn(x, W):
        y = gc.conv2d(x, W, stride=2, pad=(1, 0))
        gx = gc.grad(gc.sum(gc.sigmoid(y)), x)
        return gc.sum(gx * gx * x)

    check_grad(fn, rng.standard_normal((1, 2, 5, 5)), wv, backend=backend)


@needs_torch
def test_pool_grad_of_grad_matches_torch(backend):
    """Second derivatives through max_pool2d_grad (its select) and avg_pool2d_grad."""
    rng = _rng("pool-double")
    xv = rng.standard_normal((2, 2, 5, 6))
    r = rng.standard_normal((1, 2, 5, 6))
    x = gc.placeholder((None, 2, 5, 6), "float64", name="x")
    y = gc.sum(gc.max_pool2d(x, 3, 2, 1) ** 3) + gc.sum(gc.avg_pool2d(x * x, 2, 1, 1) ** 2)
    gx = gc.grad(y, x)
    h = gc.sum(gx * gx * r)
    f = gc.compile([x], [h, gc.grad(h, x)], backend=backend)
    tx = torch.tensor(xv, requires_grad=True)
    ty = (F.max_pool2d(tx, 3, 2, 1) ** 3).sum() + (F.avg_pool2d(tx * tx, 2, 1, 1) ** 2).sum()
    (tgx,) = torch.autograd.grad(ty, tx, create_graph=True)
    th = (tgx * tgx * torch.tensor(r)).sum()
    th.backward()
    got_h, got_dx = f(xv)
    _close(got_h, th, "h")
    _close(got_dx, tx.grad, "dh/dx")


# --- shape rules and errors --------------------------------------------------------------------
def test_shapes_keep_the_batch_symbolic():
    x = gc.placeholder((None, 3, 11, 8))
    W = gc.placeholder((5, 3, 3, 2))
    assert gc.conv2d(x, W, stride=(2, 3), pad=(1, 2)).shape == (None, 5, 6, 4)
    assert gc.im2col(x, (3, 2), (2, 3), (1, 2)).shape == (None, 18, 24)
    assert gc.col2im(gc.im2col(x, 3), (11, 8), 3).shape == (None, 3, 11, 8)
    assert gc.max_pool2d(x, 2).shape == (None, 3, 5, 4)
    assert gc.avg_pool2d(x, 3, 1, 1).shape == (None, 3, 11, 8)
    assert gc.deconv2d(x, gc.placeholder((3, 4, 3, 3)), stride=2, pad=1).shape == \
        (None, 4, 21, 15)
    assert gc.deconv2d(x, gc.placeholder((3, 4, 3, 3)), stride=2, pad=1,
                       outsize=(22, 16)).shape == (None, 4, 22, 16)


_X = gc.placeholder((None, 3, 8, 8), name="x")
_W = gc.placeholder((4, 3, 3, 3), name="W")

BAD = [
    ("channels", lambda: gc.conv2d(_X, gc.placeholder((4, 2, 3, 3))),
     ["conv2d", "3 channels", "expects 2", "f32[N,3,8,8]", "f32[4,2,3,3]"]),
    ("kernel too large", lambda: gc.conv2d(gc.placeholder((None, 3, 2, 5)), _W),
     ["conv2d", "kernel 3x3 is larger than the padded input 2x5", "output would be 0x3"]),
    ("negative output", lambda: gc.max_pool2d(gc.placeholder((None, 1, 1, 1)), 4, pad=1),
     ["max_pool2d", "larger than the padded input 3x3", "output would be 0x0"]),
    ("stride 0", lambda: gc.conv2d(_X, _W, stride=0),
     ["conv2d", "stride must be an int >= 1 or a pair of them, got 0"]),
    ("negative pad", lambda: gc.conv2d(_X, _W, pad=(1, -1)),
     ["conv2d", "pad must be an int >= 0", "got (1, -1)"]),
    ("float stride", lambda: gc.avg_pool2d(_X, 2, stride=1.5),
     ["avg_pool2d", "stride must be an int >= 1", "got 1.5"]),
    ("three-element pad", lambda: gc.im2col(_X, 3, pad=(1, 1, 1)),
     ["im2col", "pad must be", "got (1, 1, 1)"]),
    ("pool pad", lambda: gc.max_pool2d(_X, 2, pad=2),
     ["max_pool2d", "pad 2,2 is more than half the kernel 2x2"]),
    ("rank", lambda: gc.conv2d(gc.placeholder((None, 3, 8)), _W),
     ["conv2d", "must be (N, C, H, W), got rank 3"]),
    ("integer image", lambda: gc.max_pool2d(gc.placeholder((None, 1, 4, 4), "int64"), 2),
     ["max_pool2d", "must be float, got int64"]),
    ("spatial N", lambda: gc.conv2d(gc.placeholder((None, 3, None, 8)), _W),
     ["conv2d", "only the batch dimension"]),
    ("bias", lambda: gc.conv2d(_X, _W, gc.placeholder((3,))),
     ["conv2d", "bias must be (4,)", "got [3]"]),
    ("deconv channels", lambda: gc.deconv2d(_X, gc.placeholder((4, 3, 3, 3))),
     ["deconv2d", "3 channels", "expects 4"]),
    ("deconv outsize", lambda: gc.deconv2d(_X, gc.placeholder((3, 2, 3, 3)), stride=2,
                                           outsize=19),
     ["deconv2d", "output size 19x19", "expected 17..18 x 17..18"]),
    ("col2im columns", lambda: gc.col2im(gc.placeholder((None, 10, 36)), (8, 8), 3),
     ["col2im", "do not match a 3x3 kernel over a 8x8 image"]),
]


@pytest.mark.parametrize("fn, fragments", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_shape_errors_name_the_op_the_shapes_and_the_users_line(fn, fragments):
    with pytest.raises(gc.ShapeError) as info:
        fn()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert f"{__file__}:{fn.__code__.co_firstlineno}" in message, message


def test_bad_attributes_of_a_loaded_node_are_shape_errors():
    """apply() is what gc.load uses: the shape rule itself checks every attribute."""
    with pytest.raises(gc.ShapeError, match=r"im2col: kernel_size must be an int >= 1"):
        apply("im2col", _X, kernel=(0, 3), stride=(1, 1), pad=(0, 0))
    with pytest.raises(gc.ShapeError, match=r"avg_pool2d_grad: the gradient must be \[N,3,6,6\]"):
        apply("avg_pool2d_grad", _X, size=(8, 8), kernel=(3, 3), stride=(1, 1), pad=(0, 0))
    with pytest.raises(gc.ShapeError, match=r"matmul_batch_sum: batch dimensions differ"):
        apply("matmul_batch_sum", gc.placeholder((None, 2, 3)), gc.placeholder((2, 2, 3)))


# --- compiled plans ----------------------------------------------------------------------------
def _net(train_x):
    """conv -> relu -> max pool -> strided conv -> avg pool -> deconv, and its gradients,
    including a gradient of a gradient."""
    rng = _rng("net")
    W1 = gc.Parameter(rng.standard_normal((4, 2, 3, 3)), name="W1", dtype="float32")
    b1 = gc.Parameter(np.zeros(4), name="b1", dtype="float32")
    W2 = gc.Parameter(rng.standard_normal((3, 4, 2, 2)), name="W2", dtype="float32")
    W3 = gc.Parameter(rng.standard_normal((3, 2, 3, 3)), name="W3", dtype="float32")
    h = gc.max_pool2d(gc.relu(gc.conv2d(train_x, W1, b1, pad=1)), 2)
    h = gc.avg_pool2d(gc.conv2d(h, W2, stride=2, pad=1), 3, 1, 1)
    y = gc.deconv2d(h, W3, stride=2, pad=1, outsize=(6, 6))
    loss = gc.sum(y * y)
    grads = gc.grad(loss, [train_x, W1, b1, W2, W3])
    second = gc.grad(gc.sum(grads[0] * grads[0]), W1)
    return [W1, b1, W2, W3], loss, grads, second


def test_compiled_conv_and_pool_plans_have_no_numpy_fallback():
    x = gc.placeholder((None, 2, 8, 8), name="x")
    params, loss, grads, second = _net(x)
    updates = [(p, p - 0.01 * g) for p, g in zip(params, grads[1:])]
    f = gc.compile([x], [loss, grads[0], second], updates=updates)
    text = f.executable.describe()
    assert "NumPy fallback" not in text, text
    for op in ("im2col", "col2im", "matmul_shared", "matmul_shared_t", "matmul_batch_sum",
               "max_pool2d", "max_pool2d_grad", "max_pool2d_select", "avg_pool2d",
               "avg_pool2d_grad"):
        assert f"kernel {op} (hand-written)" in text, f"{op} does not run its own kernel"
    numpy_f = gc.compile([x], [loss, grads[0], second], backend="numpy")
    xv = _rng("plan").standard_normal((3, 2, 8, 8)).astype(np.float32)
    for got, want in zip(numpy_f(xv), f(xv)):  # numpy first: f then updates the parameters
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-3)


# --- printing and files ----------------------------------------------------------------------------
def test_dump_prints_conv_and_pool_attributes():
    x = gc.placeholder((None, 1, 6, 6), name="x")
    W = gc.placeholder((2, 1, 3, 3), name="W")
    text = gc.dump(gc.max_pool2d(gc.conv2d(x, W, stride=1, pad=(1, 0)), 2))
    assert text.splitlines()[2:7] == [
        "%2:f32[N,9,24] = im2col %0 kernel=(3,3) stride=(1,1) pad=(1,0)",
        "%3:f32[2,9] = reshape %1 shape=(2,9)",
        "%4:f32[N,2,24] = matmul_shared %3 %2",
        "%5:f32[N,2,6,4] = reshape %4 shape=(N,2,6,4)",
        "%6:f32[N,2,3,2] = max_pool2d %5 kernel=(2,2) stride=(2,2) pad=(0,0)",
    ]


def test_save_and_load_round_trip_conv_graphs(tmp_path):
    x = gc.placeholder((None, 2, 8, 8), name="x")
    _, loss, grads, _ = _net(x)
    outputs = [loss] + grads
    path = tmp_path / "conv.json"
    gc.save(path, outputs)
    loaded = gc.load(path)
    ours = [(n.op, n.attrs) for n in _nodes(outputs) if n.op not in ("parameter", "constant")]
    theirs = [(n.op, n.attrs) for n in _nodes(loaded.outputs)
              if n.op not in ("parameter", "constant")]
    assert theirs == ours  # every node, with its window attributes as tuples of ints
    assert any(op == "col2im" and attrs["size"] == (6, 6) for op, attrs in theirs)
    xv = _rng("load").standard_normal((2, 2, 8, 8)).astype(np.float32)
    want = gc.compile([x], outputs)(xv)
    got = gc.compile([loaded.inputs["x"]], loaded.outputs)(xv)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-5)


def _nodes(outputs):
    from graphc.graph import toposort

    return toposort(list(outputs))


# --- VGG16, symbolically -------------------------------------------------------------------------
VGG16_SOURCE = '''
import graphc as gc

BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def layers():
    """Every intermediate of VGG16 on (N, 3, 224, 224); weights are placeholders, so
    nothing is allocated."""
    h = gc.placeholder((None, 3, 224, 224), name="image")
    out, channels = [], 3
    for block, (width, convs) in enumerate(BLOCKS, 1):
        for i in range(1, convs + 1):
            W = gc.placeholder((width, channels, 3, 3), name=f"conv{block}_{i}_W")
            b = gc.placeholder((width,), name=f"conv{block}_{i}_b")
            h = gc.relu(gc.conv2d(h, W, b, pad=1))
            channels = width
            out.append(h)
        h = gc.max_pool2d(h, 2)
        out.append(h)
    h = gc.reshape(h, (None, 512 * 7 * 7))
    out.append(h)
    for i, width in enumerate((4096, 4096, 1000), 1):
        W = gc.placeholder((h.shape[1], width), name=f"fc{i}_W")
        b = gc.placeholder((width,), name=f"fc{i}_b")
        h = gc.linear(h, W, b)
        h = gc.relu(h) if i < 3 else h
        out.append(h)
    return out


def vgg16():
    return layers()[-1]
'''

VGG16_SHAPES = (
    [(64, 224)] * 2 + [(64, 112)] + [(128, 112)] * 2 + [(128, 56)] + [(256, 56)] * 3
    + [(256, 28)] + [(512, 28)] * 3 + [(512, 14)] + [(512, 14)] * 3 + [(512, 7)])


def test_vgg16_builds_symbolically_and_dumps_without_running(tmp_path, capsys):
    path = tmp_path / "vgg16.py"
    path.write_text(VGG16_SOURCE)
    spec = importlib.util.spec_from_file_location("vgg16_model", path)  # the file dumped
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shapes = [t.shape for t in module.layers()]
    expected = [(None, c, s, s) for c, s in VGG16_SHAPES] + [
        (None, 25088), (None, 4096), (None, 4096), (None, 1000)]
    assert shapes == expected

    assert graphc_main(["dump", f"{path}:vgg16"]) == 0
    text = capsys.readouterr().out
    assert text.count("= im2col") == 13 and text.count("= max_pool2d") == 5
    assert text.count("kernel=(3,3) stride=(1,1) pad=(1,1)") == 13
    for c, s in VGG16_SHAPES:
        assert f"f32[N,{c},{s},{s}]" in text
    assert "f32[N,512,9216] = im2col" not in text  # (a wrong layout would show here)
    assert "f32[N,4608,196] = im2col" in text  # block 5: C*KH*KW = 512*9, OH*OW = 14*14
    last = text.rstrip().splitlines()
    assert last[-1] == "return " + last[-2].split(":")[0] and "f32[N,1000] = add" in last[-2]


# --- the reference the op table uses agrees with PyTorch too --------------------------------------
@needs_torch
def test_op_table_conv_reference_matches_torch():
    rng = _rng("table")
    xv, wv, bv = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2)), \
        rng.standard_normal(4)
    want = F.conv2d(torch.tensor(xv), torch.tensor(wv), torch.tensor(bv), stride=(2, 1),
                    padding=(1, 2))
    _close(np_conv2d(xv, wv, bv, (2, 1), (1, 2)), want, "np_conv2d")
