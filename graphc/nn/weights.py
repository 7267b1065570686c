"""save_weights / load_weights: a model's parameters as an .npz keyed by path name.

Saving writes a temp file beside the target, fsyncs it and renames it over the target, so a
crash never leaves half a file or loses the old one. Loading reads plain `.npy` members only
(no pickles), checks every name, shape and dtype against the model first, and only then
assigns: a failed load changes nothing.
"""
from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

from ..tensor import PARAMETER_LOCK


def _as_path(path) -> str:
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def save_weights(model, path) -> None:
    path = _as_path(path)
    arrays = {name: p.value for name, p in model.named_params()}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".graphc-weights-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (where the OS lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read(path: str) -> dict:
    """Every member of the .npz, as arrays; a damaged or non-npz file is one ValueError."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_weights: no weights file at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"load_weights: {path} is not a readable weights file (.npz of "
                         f"arrays): {' '.join(str(exc).split())}") from None


def load_weights(model, path) -> None:
    path = _as_path(path)
    arrays = _read(path)
    params = dict(model.named_params())
    missing = [name for name in params if name not in arrays]
    if missing:
        raise ValueError(f"load_weights: {path} has no array for parameter {missing[0]!r}"
                         f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
                         f"it holds {', '.join(sorted(arrays)) or 'nothing'}")
    extra = [name for name in arrays if name not in params]
    if extra:
        raise ValueError(f"load_weights: {path} holds {extra[0]!r}, which the model does not "
                         f"have (a layer whose input size comes from its first input, such as "
                         f"Linear(out_size), has no weights until it is called once)")
    for name, p in params.items():
        arr = arrays[name]
        if arr.shape != p.shape or arr.dtype != np.dtype(p.dtype):
            raise ValueError(f"load_weights: {path}: {name!r} is {arr.dtype}{list(arr.shape)}"
                             f", the model's parameter is {p.dtype}{list(p.shape)}")
    with PARAMETER_LOCK:  # a compiled step running in another thread sees all or none
        for name, p in params.items():
            p.value = arrays[name]
