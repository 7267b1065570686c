"""save_weights / load_weights: a model's parameters as an .npz keyed by path name.

Saving writes the .npz members itself (one `NAME.npy` per parameter: any path name, even
`file` or `allow_pickle`, which `np.savez` would take for its own arguments) into a temp
file beside the target, fsyncs it and renames it over the target, so a crash never leaves
half a file or loses the old one. A new file takes the umask's permissions, a replacement
those of the file it replaces (as `gc.save`).

Loading checks the archive's list of members against the model before it inflates a byte:
every parameter present once, nothing else, and each member's size bounded by its
parameter's shape and dtype, so a small hostile file cannot make a load allocate gigabytes.
Members are plain `.npy` (no pickles); each one's header must declare the parameter's dtype
and shape. Only then are the parameters assigned, all at once: a failed load changes nothing.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from ..serialize import _publish
from ..serialize_arrays import BadMember, read_member
from ..tensor import PARAMETER_LOCK


def _as_path(path) -> str:
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def _write_npz(fh, arrays: dict) -> None:
    """An .npz as np.savez writes it (stored members NAME.npy), whatever the names."""
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def save_weights(model, path) -> None:
    path = os.path.abspath(_as_path(path))
    arrays = {name: p.value for name, p in model.named_params()}
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save_weights: the folder {folder!r} does not exist (saving "
                                f"{path!r})")
    _publish(path, lambda fh: _write_npz(fh, arrays))
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


def _not_weights(path: str, why: str) -> ValueError:
    return ValueError(f"load_weights: {path} is not a readable weights file (an .npz of "
                      f"arrays, as save_weights writes): {why}")


def _members(path: str) -> tuple[zipfile.ZipFile, dict]:
    """The open archive and its members by array name (member NAME.npy), read from the
    archive's directory alone; a damaged or non-zip file, a member that is not an .npy, or
    a name twice is one ValueError."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_weights: no weights file at {path}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _not_weights(path, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                           ) from None
    members: dict = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy") or info.is_dir():
            archive.close()
            raise _not_weights(path, f"it holds {info.filename!r}, which is not an .npy array")
        name = info.filename[:-4]
        if name in members:
            archive.close()
            raise _not_weights(path, f"it holds the array {name!r} twice")
        members[name] = info
    return archive, members


def _read_member(archive, info, name: str, param, path: str) -> np.ndarray:
    """Member `name`, which must hold exactly an array of param's dtype and shape (its size
    checked against theirs before it is inflated: serialize_arrays.read_member)."""
    dtype, shape = np.dtype(param.dtype).name, tuple(param.shape)
    try:
        return read_member(archive, info, shape, dtype, to_end=True)
    except BadMember as bad:
        declared = f", the model's parameter is {dtype}{list(shape)}"
        if bad.kind == "size":
            raise ValueError(f"load_weights: {path}: {name!r} is {info.file_size} bytes (an "
                             f".npy of the parameter's dtype and shape is {bad.size} bytes "
                             f"and a header){declared}") from None
        if bad.kind == "type":
            raise ValueError(f"load_weights: {path}: {name!r} is {bad.stored}"
                             f"{list(bad.stored_shape)}{declared}") from None
        if bad.kind == "trailing":
            raise _not_weights(path, f"array {name!r} has bytes after its data") from None
        if bad.kind == "truncated":
            raise _not_weights(path, f"array {name!r} is truncated") from None
        error = bad.error
        text = " ".join(str(error).split()) if isinstance(error, ValueError) else \
            f"{type(error).__name__}: {error}"
        raise _not_weights(path, f"array {name!r}: {text}") from None


def load_weights(model, path) -> None:
    path = _as_path(path)
    params = dict(model.named_params())
    archive, members = _members(path)
    with archive:
        missing = [name for name in params if name not in members]
        if missing:
            raise ValueError(f"load_weights: {path} has no array for parameter {missing[0]!r}"
                             f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}"
                             f"; it holds {', '.join(sorted(members)) or 'nothing'}")
        extra = [name for name in members if name not in params]
        if extra:
            raise ValueError(f"load_weights: {path} holds {extra[0]!r}, which the model does "
                             f"not have (a layer whose input size comes from its first input, "
                             f"such as Linear(out_size), has no weights until it is called "
                             f"once)")
        arrays = {name: _read_member(archive, members[name], name, p, path)
                  for name, p in params.items()}
    with PARAMETER_LOCK:  # a compiled step running in another thread sees all or none
        for name, p in params.items():
            p.value = arrays[name]
