"""Optimizers as graph: each returns the `updates` list of a compiled step.

`opt.updates(loss, model)` differentiates the loss with respect to the model's trainable
parameters, lets the hooks rewrite the gradients, and builds each parameter's new value with
DeZero's update rule. Optimizer state (momentum, moments, Adam's step count) lives in
Parameters made once per optimizer and parameter, so the whole update runs inside the
compiled step, and BatchNorm's running statistics are added too:

    step = gc.compile([x, t], [loss, acc], updates=opt.updates(loss, model))
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from .. import ops
from ..autodiff import grad
from ..errors import user_location
from ..graph import toposort
from ..nn.layer import pending_state_updates
from ..tensor import Parameter, Tensor


class Slot(NamedTuple):
    """One trainable parameter in an update: its path name, itself, and its gradient."""
    name: str
    param: Parameter
    grad: Tensor


def _hyper(owner: str, name: str, value):
    """A hyperparameter: a real number, or a graphc tensor (a 0-d Parameter whose `.value`
    a schedule sets between steps: the compiled step reads it at every call)."""
    if isinstance(value, Tensor):
        if value.shape != () or not value.dtype.startswith("float"):
            raise TypeError(f"{owner}: {name} must be a number or a 0-d float tensor, got "
                            f"{value!r} (at {user_location()})")
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise TypeError(f"{owner}: {name} must be a number (or a 0-d gc.Parameter, to change "
                        f"it between steps), got {type(value).__name__} {value!r} (at "
                        f"{user_location()})")
    if not np.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r} (at "
                         f"{user_location()})")
    return float(value)


class Optimizer:
    """Base class: subclasses define `update_one(slot, ctx)` returning (Parameter, new
    value) pairs, and may define `step_state()` for state shared by all parameters.

    Hyperparameters (lr, momentum, ...) are numbers baked into the compiled step when
    `updates` builds it: setting `opt.lr` afterwards does not reach that step, and warns
    so. To change one between steps (a schedule), give a 0-d Parameter instead,
    `lr = gc.Parameter(np.float32(0.1))`, and set `lr.value`."""

    HYPER: tuple = ()  # the hyperparameters' attribute names

    def __init__(self):
        self.target = None
        self.hooks: list = []
        self._state: dict = {}  # (id(param), key) -> (param, state Parameter)
        self._built = False  # whether updates() has baked the hyperparameters into a graph

    def __setattr__(self, name, value):
        if name in type(self).HYPER:
            value = _hyper(type(self).__name__, name, value)
            old = getattr(self, name, None)
            same = value is old or (isinstance(value, float) and value == old)
            if getattr(self, "_built", False) and not same:
                warnings.warn(f"{type(self).__name__}.{name} was changed after updates() "
                              f"built a training step: a step compiled from it keeps the "
                              f"old value. Call updates() and gc.compile again, or pass a "
                              f"0-d gc.Parameter as {name} and set its .value between steps",
                              stacklevel=2)
        object.__setattr__(self, name, value)

    def setup(self, target):
        """Remember the model (DeZero's `opt.setup(model)`); returns the optimizer."""
        self.target = target
        return self

    def add_hook(self, hook) -> None:
        """A hook maps the list of Slots to a new one (WeightDecay, ClipGrad, FreezeParam);
        hooks run in the order they were added, before the update rule."""
        if not callable(hook):
            raise TypeError(f"add_hook: {hook!r} is not callable (at {user_location()})")
        self.hooks.append(hook)

    def updates(self, loss: Tensor, model=None) -> list:
        """The (Parameter, new value) list for gc.compile(..., updates=...)."""
        model = self.target if model is None else model
        if model is None:
            raise TypeError(f"{type(self).__name__}.updates: give the model (updates(loss, "
                            f"model)) or call setup(model) first (at {user_location()})")
        if not isinstance(loss, Tensor):
            raise TypeError(f"{type(self).__name__}.updates(loss, model): loss must be a "
                            f"graphc Tensor, got {type(loss).__name__} (the arguments in "
                            f"the other order?) (at {user_location()})")
        named = _trainable(model, loss)
        self._built = True
        grads = grad(loss, [p for _, p in named]) if named else []
        slots = [Slot(name, p, g) for (name, p), g in zip(named, grads)]
        for hook in self.hooks:
            slots = list(hook(slots))
        ctx, result = self.step_state()
        for slot in slots:
            result.extend(self.update_one(slot, ctx))
        # running statistics of every train-mode layer call in the loss's graph, whether
        # `model` is a Layer or a list of its Parameters (as PyTorch's forward updates them)
        result.extend(pending_state_updates(loss))
        return result

    def step_state(self):
        """(context for update_one, updates of state shared by all parameters)."""
        return None, []

    def update_one(self, slot: Slot, ctx) -> list:
        raise NotImplementedError

    def state(self, slot: Slot, key: str, fill: float = 0.0) -> Parameter:
        """The optimizer's `key` state for slot's parameter, made on first use (float like the
        parameter, filled with `fill`) and reused by later `updates` calls."""
        entry = self._state.get((id(slot.param), key))
        if entry is None:
            value = np.full(slot.param.shape, fill, slot.param.dtype)
            entry = (slot.param, Parameter(value, name=f"{slot.name}.{key}"))
            self._state[(id(slot.param), key)] = entry
        return entry[1]

    def shared_state(self, key: str, value) -> Parameter:
        """State shared by all parameters (Adam's step count), made once, named
        `<optimizer>.<key>`, and listed by state_params with the rest."""
        entry = self._state.get((None, key))
        if entry is None:
            name = f"{type(self).__name__.lower()}.{key}"
            entry = self._state[(None, key)] = (None, Parameter(value, name=name))
        return entry[1]

    def state_params(self) -> list:
        """Every state Parameter made so far, shared ones (Adam's step count) included: save
        them with the model's to resume training exactly."""
        return [p for _, p in self._state.values()]


def _trainable(model, loss) -> list:
    """(name, Parameter) for the trainable parameters the loss depends on (the others would
    get zero gradients: DeZero skips a parameter without a gradient)."""
    if hasattr(model, "named_params"):
        named = list(model.named_params(trainable=True))
    elif isinstance(model, Parameter):
        named = [(model.name or "param0", model)]
    else:
        items = list(model)
        for i, p in enumerate(items):
            if not isinstance(p, Parameter):
                raise TypeError(f"updates: the model must be a Layer or Parameters; item {i} "
                                f"is {p!r} (at {user_location()})")
        named = [(p.name or f"param{i}", p) for i, p in enumerate(items)]
    used = {id(node.value) for node in toposort([loss]) if node.op == "parameter"}
    chosen = [(name, p) for name, p in named if id(p) in used]
    if not chosen and used:
        warnings.warn(f"updates: the loss depends on {len(used)} Parameter(s), but none of "
                      f"them is a trainable parameter of the model, so nothing will be "
                      f"trained (a layer held somewhere the model does not walk: attributes, "
                      f"lists, tuples and dicts are walked; names starting with _ are not)",
                      stacklevel=3)
    return chosen


class SGD(Optimizer):
    """p <- p - lr * g."""

    HYPER = ("lr",)

    def __init__(self, lr: float = 0.01):
        super().__init__()
        self.lr = lr

    def update_one(self, slot, ctx):
        return [(slot.param, slot.param - self.lr * slot.grad)]


class MomentumSGD(Optimizer):
    """v <- momentum * v - lr * g; p <- p + v (DeZero's form). With a constant lr this is
    PyTorch's SGD(momentum=...) (buf <- momentum * buf + g; p <- p - lr * buf, buf = -v/lr);
    when lr changes between steps (a 0-d Parameter schedule) the velocity keeps the old
    steps' lr, where PyTorch's buffer applies the new lr to all of it."""

    HYPER = ("lr", "momentum")

    def __init__(self, lr: float = 0.01, momentum: float = 0.9):
        super().__init__()
        self.lr, self.momentum = lr, momentum

    def update_one(self, slot, ctx):
        v = self.state(slot, "momentum")
        v_new = self.momentum * v - self.lr * slot.grad
        return [(v, v_new), (slot.param, slot.param + v_new)]


class AdaGrad(Optimizer):
    """h <- h + g^2; p <- p - lr * g / (sqrt(h) + eps)."""

    HYPER = ("lr", "eps")

    def __init__(self, lr: float = 0.001, eps: float = 1e-8):
        super().__init__()
        self.lr, self.eps = lr, eps

    def update_one(self, slot, ctx):
        h = self.state(slot, "h")
        g = slot.grad
        h_new = h + g * g
        return [(h, h_new), (slot.param, slot.param - self.lr * g / (ops.sqrt(h_new) + self.eps))]


class AdaDelta(Optimizer):
    """msg <- rho msg + (1-rho) g^2; dx = sqrt((msdx + eps) / (msg + eps)) g;
    msdx <- rho msdx + (1-rho) dx^2; p <- p - dx."""

    HYPER = ("rho", "eps")

    def __init__(self, rho: float = 0.95, eps: float = 1e-6):
        super().__init__()
        self.rho, self.eps = rho, eps

    def update_one(self, slot, ctx):
        msg, msdx = self.state(slot, "msg"), self.state(slot, "msdx")
        rho, eps, g = self.rho, self.eps, slot.grad
        msg_new = rho * msg + (1 - rho) * g * g
        dx = ops.sqrt((msdx + eps) / (msg_new + eps)) * g
        msdx_new = rho * msdx + (1 - rho) * dx * dx
        return [(msg, msg_new), (msdx, msdx_new), (slot.param, slot.param - dx)]


class Adam(Optimizer):
    """t <- t + 1; m <- m + (1-beta1)(g - m); v <- v + (1-beta2)(g^2 - v);
    p <- p - lr_t m / (sqrt(v) + eps), lr_t = alpha sqrt(1 - beta2^t) / (1 - beta1^t)
    (DeZero's and the Adam paper's efficient form: eps is added to sqrt(v) before the bias
    correction; PyTorch's Adam adds it after, so it equals this one with its eps at step t
    set to eps / sqrt(1 - beta2^t))."""

    HYPER = ("alpha", "beta1", "beta2", "eps")

    def __init__(self, alpha: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        super().__init__()
        self.alpha, self.beta1, self.beta2, self.eps = alpha, beta1, beta2, eps
        # the step count, in float64 so the bias corrections are exact to float32
        self.t = self.shared_state("t", np.zeros((), np.float64))

    def step_state(self):
        t_new = self.t + 1.0
        lr = self.alpha * ops.sqrt(1.0 - self.beta2 ** t_new) / (1.0 - self.beta1 ** t_new)
        return lr, [(self.t, t_new)]

    def update_one(self, slot, ctx):
        m, v = self.state(slot, "m"), self.state(slot, "v")
        g, p = slot.grad, slot.param
        m_new = m + (1 - self.beta1) * (g - m)
        v_new = v + (1 - self.beta2) * (g * g - v)
        lr = ops.cast(ctx, p.dtype)
        # (lr applied last: m_new's kernel then computes m_new alone and writes it in place)
        return [(m, m_new), (v, v_new), (p, p - m_new / (ops.sqrt(v_new) + self.eps) * lr)]
