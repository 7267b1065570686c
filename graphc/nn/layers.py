"""The layers: Linear, Conv2d, Deconv2d, MaxPool2d, AvgPool2d, Dropout, BatchNorm,
Embedding, Sequential (DeZero's layers and defaults, on graphc ops).

A weight whose input size is not given is created on the first call, from the input's
shape (DeZero's lazy `in_size`); its slot is assigned None in `__init__` so its path name and
order are fixed from the start.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from .. import ops
from ..errors import ShapeError, user_location
from ..ops.nn import check_dropout_ratio
from ..shapes import fmt_shape
from ..tensor import Parameter, Tensor, as_tensor
from .init import check_init, normal
from .layer import Layer
from .mode import is_training


def _known(x: Tensor, axis: int, layer: str, what: str) -> int:
    """A static dimension of the input, for sizing a lazily created weight."""
    if x.ndim <= axis or x.shape[axis] is None:
        raise ShapeError(f"{layer}: cannot take {what} from an input of shape "
                         f"{fmt_shape(x.shape)}; give it explicitly (at {user_location()})")
    return x.shape[axis]


def _size(layer: str, what: str, value, optional: bool = False):
    """A layer's size argument as an int >= 1 (None where it may come from the input)."""
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{layer}: {what} must be an int >= 1, got {value!r} (at "
                         f"{user_location()})")
    return int(value)


def _zeros(size: int, dtype, name: str) -> Parameter:
    return Parameter(np.zeros(size, dt.canonical(dtype)), name=name)


class Linear(Layer):
    """y = x @ W + b, W (in_size, out_size) (DeZero's layout); in_size from the first input
    when not given. init: "xavier" (std sqrt(1/in), DeZero's) or "he" (sqrt(2/in), ReLU)."""

    def __init__(self, out_size: int, in_size: int | None = None, nobias: bool = False,
                 dtype="float32", init: str = "xavier"):
        self.out_size = _size("Linear", "out_size", out_size)
        self.in_size = _size("Linear", "in_size", in_size, optional=True)
        self.dtype, self.init = dt.canonical(dtype), check_init(init)
        self.W = None if in_size is None else self._weight(in_size)
        self.b = None if nobias else _zeros(self.out_size, self.dtype, "b")

    def _weight(self, in_size: int) -> Parameter:
        self.in_size = int(in_size)
        return Parameter(normal((self.in_size, self.out_size), self.in_size, self.init,
                                self.dtype), name="W")

    def forward(self, x):
        x = as_tensor(x)
        if self.W is None:
            self.W = self._weight(_known(x, x.ndim - 1, "Linear", "in_size"))
        return ops.linear(x, self.W, self.b)


class _ConvBase(Layer):
    """Shared by Conv2d and Deconv2d: the window settings and the lazy weight."""

    def __init__(self, out_channels, kernel_size, stride, pad, nobias, dtype, in_channels,
                 init):
        name = type(self).__name__
        self.out_channels = _size(name, "out_channels", out_channels)
        self.in_channels = _size(name, "in_channels", in_channels, optional=True)
        from ..ops.conv import pair

        for what, value, least in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                   ("pad", pad, 0)):
            try:
                pair(value, what, least)
            except ShapeError as exc:
                raise ShapeError(f"{name}: {exc} (at {user_location()})") from None
        self.kernel_size, self.stride, self.pad = kernel_size, stride, pad
        self.dtype, self.init = dt.canonical(dtype), check_init(init)
        self.W = None if in_channels is None else self._weight(in_channels)
        self.b = None if nobias else _zeros(self.out_channels, self.dtype, "b")

    def _kernel(self) -> tuple:
        k = self.kernel_size
        return (k, k) if isinstance(k, (int, np.integer)) else tuple(k)

    def _weight(self, in_channels: int) -> Parameter:
        self.in_channels = int(in_channels)
        kh, kw = self._kernel()
        fan_in = self.in_channels * kh * kw
        return Parameter(normal(self._shape(kh, kw), fan_in, self.init, self.dtype), name="W")

    def _lazy(self, x: Tensor) -> Tensor:
        x = as_tensor(x)
        if self.W is None:
            self.W = self._weight(_known(x, 1, type(self).__name__, "in_channels"))
        return x


class Conv2d(_ConvBase):
    """2-D convolution, W (OC, C, KH, KW), x (N, C, H, W); in_channels from the first input
    when not given."""

    def __init__(self, out_channels: int, kernel_size, stride=1, pad=0, nobias: bool = False,
                 dtype="float32", in_channels: int | None = None, init: str = "xavier"):
        super().__init__(out_channels, kernel_size, stride, pad, nobias, dtype, in_channels,
                         init)

    def _shape(self, kh, kw):
        return (self.out_channels, self.in_channels, kh, kw)

    def forward(self, x):
        x = self._lazy(x)
        return ops.conv2d(x, self.W, self.b, stride=self.stride, pad=self.pad)


class Deconv2d(_ConvBase):
    """Transposed convolution, W (C, OC, KH, KW); `forward(x, outsize=None)`."""

    def __init__(self, out_channels: int, kernel_size, stride=1, pad=0, nobias: bool = False,
                 dtype="float32", in_channels: int | None = None, init: str = "xavier"):
        super().__init__(out_channels, kernel_size, stride, pad, nobias, dtype, in_channels,
                         init)

    def _shape(self, kh, kw):
        return (self.in_channels, self.out_channels, kh, kw)

    def forward(self, x, outsize=None):
        x = self._lazy(x)
        return ops.deconv2d(x, self.W, self.b, stride=self.stride, pad=self.pad,
                            outsize=outsize)


class MaxPool2d(Layer):
    def __init__(self, kernel_size, stride=None, pad=0):
        self.kernel_size, self.stride, self.pad = kernel_size, stride, pad

    def forward(self, x):
        return ops.max_pool2d(x, self.kernel_size, self.stride, self.pad)


class AvgPool2d(Layer):
    def __init__(self, kernel_size, stride=None, pad=0):
        self.kernel_size, self.stride, self.pad = kernel_size, stride, pad

    def forward(self, x):
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.pad)


class Dropout(Layer):
    """Inverted dropout with probability p in train mode; the identity in test mode."""

    def __init__(self, p: float = 0.5):
        self.p = check_dropout_ratio(p)

    def forward(self, x):
        return ops.dropout(x, self.p, train=is_training())


class BatchNorm(Layer):
    """DeZero's batch normalisation: per feature for (N, D) input, per channel for (N, C, H,
    W). In train mode it normalises with the batch's statistics and records the update of
    its running mean and variance (`decay * avg + (1 - decay) * batch`, the variance scaled by
    m/(m-1)), which `optimizer.updates(loss, model)` adds to the step (a batch of no rows
    leaves them as they were); in test mode it normalises with the running statistics."""

    state_names = ("avg_mean", "avg_var")

    def __init__(self, decay: float = 0.9, eps: float = 2e-5, dtype="float32"):
        self.decay, self.eps, self.dtype = float(decay), float(eps), dt.canonical(dtype)
        self.gamma = self.beta = self.avg_mean = self.avg_var = None

    def _create(self, size: int) -> None:
        self.gamma = Parameter(np.ones(size, self.dtype), name="gamma")
        self.beta = _zeros(size, self.dtype, "beta")
        self.avg_mean = _zeros(size, self.dtype, "avg_mean")
        self.avg_var = Parameter(np.ones(size, self.dtype), name="avg_var")

    def forward(self, x):
        x = as_tensor(x)
        if x.ndim not in (2, 4):
            raise ShapeError(f"BatchNorm: expected (N, D) or (N, C, H, W) input, got "
                             f"{fmt_shape(x.shape)} (at {user_location()})")
        if self.gamma is None:
            self._create(_known(x, 1, "BatchNorm", "the feature count"))
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        per = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        gamma, beta = self.gamma.reshape(per), self.beta.reshape(per)
        if not is_training():
            xn = (x - self.avg_mean.reshape(per)) / ops.sqrt(self.avg_var.reshape(per) + self.eps)
            return gamma * xn + beta
        mean = ops.mean(x, axes, keepdims=True)
        xc = x - mean
        var = ops.mean(xc * xc, axes, keepdims=True)
        y = gamma * (xc / ops.sqrt(var + self.eps)) + beta
        m = ops.numel(x, axes, self.dtype)
        adjust = m / ops.maximum(m - 1.0, 1.0)  # the unbiased variance (DeZero's)
        size = self.gamma.shape
        d = self.decay
        # a batch of no rows (X[mask] that selected nothing) has NaN statistics: the running
        # ones keep their values, as PyTorch's (NaN there would stay in every prediction)
        seen = m > 0.0
        self._record_state_update(y, [
            (self.avg_mean, ops.where(seen, d * self.avg_mean + (1 - d) * mean.reshape(size),
                                      self.avg_mean)),
            (self.avg_var, ops.where(seen, d * self.avg_var + (1 - d) * adjust *
                                     var.reshape(size), self.avg_var)),
        ])
        return y


class Embedding(Layer):
    """Rows of W (in_size, out_size) picked by integer ids: ids (...) -> (..., out_size).
    W starts as N(0, 1), as PyTorch's and DeZero's EmbedID. Ids index W as NumPy (and
    DeZero's W[ids]) does: -in_size <= id < in_size, a negative id counting from the last
    row (PyTorch refuses those); any other id is a RuntimeCheckError naming it at run time."""

    def __init__(self, in_size: int, out_size: int, dtype="float32"):
        from ..random import next_seed

        in_size = _size("Embedding", "in_size", in_size)
        out_size = _size("Embedding", "out_size", out_size)
        rng = np.random.default_rng(next_seed())
        self.W = Parameter(rng.standard_normal((in_size, out_size))
                           .astype(dt.canonical(dtype)), name="W")

    def forward(self, ids):
        return self.W[ids]


class Sequential(Layer):
    """Apply each layer (or any callable, such as gc.relu) in turn."""

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"Sequential: item {i} is {layer!r}, not a layer or a "
                                f"function (at {user_location()})")
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
