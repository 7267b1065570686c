"""The arrays of a saved graph, .npz members or inline base64, each checked before it is read.

A constant's or Parameter's array must be exactly what its node declares: a stored (3, 2)
array behind a declared (3, 60000) would let a kernel read past its end. Only the members
the nodes name are opened, and a member's size is bounded by its declared shape and dtype
before a byte of it is inflated, so a zip bomb costs nothing unless a node asks for that
many elements. Arrays come back native-endian, C-contiguous, and never as objects.
"""
from __future__ import annotations

import base64
import math
import re
import zipfile

import numpy as np

from .serialize_schema import Invalid, show

NPY_HEADER_MOST = 4096  # bytes of magic and header numpy writes before an array's data
_MEMBER_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
# a plain file name beside the graph: no folder, no drive, no control characters
_ARRAYS_FILE = re.compile(r"[^/\\:\x00-\x1f]{1,200}\.npz")


def arrays_file_name(value, field: str) -> str:
    """The "arrays" field: the name of an .npz in the graph file's own folder."""
    if not isinstance(value, str) or not _ARRAYS_FILE.fullmatch(value):
        raise Invalid(field, f"{show(value)} is not the name of an .npz file beside the graph "
                             f"(a plain file name: no folder, no '..', no absolute path)")
    return value


def nbytes(shape, dtype: str) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def native(arr: np.ndarray, dtype: str) -> np.ndarray:
    """A C-contiguous, native-byte-order copy of `arr` as `dtype`; bool bytes become 0/1."""
    if dtype == "bool":
        arr = arr.view(np.uint8) != 0
    return np.array(arr, dtype=np.dtype(dtype), order="C")


def encode_inline(arr: np.ndarray) -> str:
    """base64 of the array's little-endian C-order bytes (dtype and shape are the node's)."""
    little = np.asarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return base64.b64encode(little.tobytes(order="C")).decode("ascii")


def decode_inline(text, shape: tuple, dtype: str, field: str) -> np.ndarray:
    """The array a node holds inline, its length checked before it is decoded."""
    size = nbytes(shape, dtype)
    want = 4 * ((size + 2) // 3)
    if not isinstance(text, str) or len(text) != want:
        got = f"{len(text)} characters" if isinstance(text, str) else show(text)
        raise Invalid(field, f"holds {got}; a {dtype} array of shape {shape} is {want} "
                             f"base64 characters")
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise Invalid(field, f"is not base64: {exc}") from None
    if len(data) != size:
        raise Invalid(field, f"decodes to {len(data)} bytes, expected {size}")
    little = np.dtype(dtype).newbyteorder("<")
    return native(np.frombuffer(data, little).reshape(shape), dtype)


class NpzArrays:
    """The .npz beside a saved graph: opened on the first read, members read one by one."""

    def __init__(self, path: str):
        self.path = path
        self._zip = None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def open_if_there(self) -> bool:
        """Open the archive now, so a save that replaces it later cannot take it away; False
        when there is no file of that name. (Any other failure is left to the first read,
        which names it.)"""
        try:
            self._zip = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            return False
        except Exception:  # noqa: BLE001 - reported by _open, with the field that reads it
            self._zip = None
        return True

    def _open(self, field: str) -> zipfile.ZipFile:
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except Exception as exc:  # noqa: BLE001 - missing, truncated or not a zip at all
                raise Invalid(field, f"cannot read the arrays in {self.path!r}: "
                                     f"{type(exc).__name__}: {exc}") from None
        return self._zip

    def read(self, key, shape: tuple, dtype: str, field: str) -> np.ndarray:
        """Member `key`, which must hold exactly a `dtype` array of `shape`."""
        if not isinstance(key, str) or not _MEMBER_KEY.fullmatch(key):
            raise Invalid(field, f"{show(key)} is not an array name (letters, digits, _)")
        archive = self._open(field)
        try:
            info = archive.getinfo(key + ".npy")
        except KeyError:
            raise Invalid(field, f"{self.path!r} has no array {key!r}") from None
        try:
            return read_member(archive, info, shape, dtype)
        except BadMember as bad:
            where = f"array {key!r} in {self.path!r}"
            if bad.kind == "size":
                raise Invalid(field, f"{where} is {info.file_size} bytes; a {dtype} array of "
                                     f"shape {shape} is {bad.size} bytes and a header") from None
            if bad.kind == "type":
                raise Invalid(field, f"{where} is {bad.stored} of shape {bad.stored_shape}; "
                                     f"the node declares {dtype} of shape {shape}") from None
            if bad.kind == "damaged":
                raise Invalid(field, f"cannot read {where}: {type(bad.error).__name__}: "
                                     f"{bad.error}") from None
            raise Invalid(field, f"{where} is truncated") from None


class BadMember(Exception):
    """Why an archive member is not the array declared: `kind` "size" (its size is not the
    declared array's and an .npy header: `size`, the array's bytes), "type" (its header
    declares `stored` of `stored_shape`), "damaged" (`error`, raised reading it),
    "truncated", or "trailing" (bytes after the data)."""

    def __init__(self, kind: str, **details):
        super().__init__(kind)
        self.kind = kind
        self.__dict__.update(details)


def read_member(archive, info, shape: tuple, dtype: str, to_end: bool = False) -> np.ndarray:
    """Archive member `info`, which must hold exactly a `dtype` array of `shape`: its size
    is bounded by theirs before a byte of it is inflated, its .npy header must declare them,
    and it comes back native-endian and C-contiguous. to_end: the member must also end with
    its data (reading to its end checks the zip's CRC). BadMember otherwise."""
    size = nbytes(shape, dtype)
    if not size < info.file_size <= size + NPY_HEADER_MOST:
        raise BadMember("size", size=size)
    try:
        with archive.open(info) as fh:
            stored_shape, fortran, stored = _npy_header(fh)
            if stored.hasobject or stored.name != dtype or stored_shape != shape:
                raise BadMember("type", stored=stored, stored_shape=stored_shape)
            data = fh.read(size)
            if to_end and len(data) == size and fh.read(1):
                raise BadMember("trailing")
    except BadMember:
        raise
    except Exception as exc:  # noqa: BLE001 - any damage inside the archive
        raise BadMember("damaged", error=exc) from None
    if len(data) != size:
        raise BadMember("truncated")
    arr = np.frombuffer(data, stored).reshape(shape, order="F" if fortran else "C")
    return native(arr, dtype)


def _npy_header(fh) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran order, dtype) of a .npy stream, read without reading its data."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f".npy version {version} is not one graphc writes")
    return tuple(shape), bool(fortran), dtype
