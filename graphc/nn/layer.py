"""`Layer` (alias `Model`): parameters and sub-layers registered by attribute, as DeZero's
(and inside lists, tuples and dicts held by an attribute).

A layer's parameters are found by walking its attributes in assignment order (a `None`
placeholder assigned in `__init__` keeps a lazily created parameter's place), so there is no
registry to keep in sync and a subclass that forgets `super().__init__()` still works.
Attributes whose names start with `_` are private and never walked.
"""
from __future__ import annotations

import weakref

from ..errors import user_location
from ..graph import toposort
from ..tensor import Parameter, Tensor


class Layer:
    """Subclass it and define `forward`; calling the layer calls `forward` and builds graph.

    `params()` yields every Parameter once, in a stable order; `named_params()` gives each
    with its path name (`l1.W`, `blocks.0.b`), which `save_weights`/`load_weights` use.
    """

    # names of attributes holding running statistics: saved and loaded, never trained
    state_names: tuple = ()

    def __call__(self, *inputs, **kwargs):
        """forward(*inputs); if it raises, the parameters a first call made lazily (sized
        from the rejected input) are dropped again, in this layer and its sub-layers, so the
        corrected call sizes them afresh: a failed call changes nothing."""
        lazy = [(layer, name) for layer in self.sublayers()
                for name, value in vars(layer).items() if value is None]
        try:
            return self.forward(*inputs, **kwargs)
        except BaseException:
            for layer, name in lazy:
                if vars(layer).get(name) is not None:
                    setattr(layer, name, None)
            raise

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # --- walking the tree -----------------------------------------------------------------
    def _children(self, prefix: str):
        """(path, value) for each public Parameter or Layer, also inside lists, tuples and
        dicts, nested (`blocks.0.1.W`, `heads.cls.W`: PyTorch's ModuleList and ModuleDict
        as plain containers; a dict's keys in its order, as str)."""
        for name, value in vars(self).items():
            if not name.startswith("_"):
                yield from _contained(prefix + name, value)

    def _walk(self, prefix: str, seen_layers: set):
        """(path, Parameter, owner layer, attribute) depth first, each layer visited once."""
        seen_layers.add(id(self))
        for path, value in self._children(prefix):
            if isinstance(value, Parameter):
                yield path, value, self, path[len(prefix):]
            elif id(value) not in seen_layers:
                yield from value._walk(path + ".", seen_layers)

    def named_params(self, trainable: bool | None = None):
        """(path, Parameter) pairs, each Parameter once (at its first path). trainable=True
        leaves out running statistics, False gives only them, None gives all."""
        seen, paths = set(), {}
        for path, p, owner, attr in self._walk("", set()):
            if paths.setdefault(path, p) is not p:
                raise ValueError(f"{type(self).__name__}: two Parameters have the path name "
                                 f"{path!r} (two dict keys that print the same, such as 1 "
                                 f"and '1'); weights saved by name would keep one of them "
                                 f"(at {user_location()})")
            if id(p) in seen:
                continue
            seen.add(id(p))
            is_state = attr in owner.state_names
            if trainable is None or trainable != is_state:
                yield path, p

    def params(self, trainable: bool | None = None):
        """Every Parameter once, in assignment order (see named_params)."""
        for _, p in self.named_params(trainable):
            yield p

    def sublayers(self):
        """This layer and every sub-layer, each once, depth first."""
        seen: set = set()
        stack = [self]
        while stack:
            layer = stack.pop()
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            yield layer
            children = [v for _, v in layer._children("") if isinstance(v, Layer)]
            stack.extend(reversed(children))

    # --- running statistics ---------------------------------------------------------------
    def _record_state_update(self, marker: Tensor, pairs) -> None:
        """Remember (Parameter, new value) pairs built by a train-mode call; `marker` is a
        tensor of that call's graph, used to find the pairs that belong to a given loss. They
        are kept as long as the marker's node lives (see pending_state_updates)."""
        node = marker.node
        key = id(node)
        _PENDING[key] = (weakref.ref(node, lambda _, key=key: _PENDING.pop(key, None)), self,
                         list(pairs))

    def state_updates(self, loss) -> list:
        """The running-statistic updates (Parameter, new value) of this layer's and its
        sub-layers' train-mode calls whose graph `loss` (a tensor or a list) contains; of
        two calls of one layer, the later one wins."""
        return pending_state_updates(loss, {id(layer) for layer in self.sublayers()})

    # --- weights ----------------------------------------------------------------------------
    def save_weights(self, path) -> None:
        """Write every parameter (running statistics too) to an .npz keyed by path name,
        atomically: a crash leaves the old file or the new one, never half of one."""
        from .weights import save_weights

        save_weights(self, path)

    def load_weights(self, path) -> None:
        """Read weights written by save_weights. Every name, shape and dtype is checked
        before any parameter changes, so a failed load leaves the model as it was."""
        from .weights import load_weights

        load_weights(self, path)

    def __repr__(self) -> str:
        n = sum(1 for _ in self.named_params())
        return f"<{type(self).__name__} with {n} parameters>"


Model = Layer

# id(marker node) -> (weak reference to it, layer, [(Parameter, new value)]): the running-
# statistic updates of train-mode calls, found from a loss's graph. An entry goes when its
# graph does (no count limit: a limit had dropped the updates of a training loss built 16
# train-mode calls before the optimizer's updates()).
_PENDING: dict = {}


def pending_state_updates(loss, layers=None) -> list:
    """(Parameter, new value) for the train-mode layer calls in `loss`'s graph (a tensor or a
    list), of the layers whose ids are in `layers` (None: any layer); of two calls that
    update one Parameter, the one made later wins."""
    roots = [loss] if isinstance(loss, Tensor) else list(loss)
    found = []
    for node in toposort(roots):
        entry = _PENDING.get(id(node))
        if entry is not None and entry[0]() is node and (layers is None or
                                                         id(entry[1]) in layers):
            found.append((node.id, entry[2]))
    chosen: dict = {}
    for _, pairs in sorted(found, key=lambda item: item[0]):
        chosen.update({id(p): (p, v) for p, v in pairs})
    return list(chosen.values())


def _contained(path: str, value, within: frozenset = frozenset()):
    """(path, Parameter or Layer) in value, walking lists, tuples and dicts to any depth (a
    container that holds itself is walked once: `within` are the containers around)."""
    if isinstance(value, (Parameter, Layer)):
        yield path, value
    elif isinstance(value, (list, tuple, dict)) and id(value) not in within:
        within = within | {id(value)}
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from _contained(f"{path}.{key}", item, within)
