"""Reading the IDX files of MNIST and Fashion-MNIST (gzipped or not), checked before use.

An IDX file is a 4-byte magic number (0, 0, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values. Only unsigned bytes (type 0x08) are read:
the only type these data sets use. A file that is too short, too long, or of the wrong
kind is one ValueError naming the file and what was expected.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

UBYTE = 0x08
# values read from one file at most: 1.3x EMNIST's largest (814,255 images of 28x28); a
# hostile header could claim more, and a gzipped file would inflate to it
MAX_VALUES = 1 << 30


def _open(path: str):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_idx(path: str, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file of rank `ndim` (3 for images, 1 for labels)."""
    try:
        with _open(path) as f:
            return _parse(f, path, ndim)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read it as a gzipped IDX file "
                         f"({' '.join(str(exc).split())}); the file may be truncated or "
                         f"damaged") from None


def _parse(f, path: str, ndim: int) -> np.ndarray:
    magic = f.read(4)
    want = bytes([0, 0, UBYTE, ndim])
    if len(magic) < 4:
        raise ValueError(f"{path}: truncated: {len(magic)} bytes, shorter than the 4-byte "
                         f"IDX magic number")
    if magic != want:
        raise ValueError(f"{path}: bad magic number 0x{magic.hex()}; expected 0x{want.hex()} "
                         f"(an IDX file of unsigned bytes with {ndim} dimension(s))")
    header = f.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise ValueError(f"{path}: truncated in the header: expected {ndim} dimension sizes")
    dims = tuple(int(d) for d in np.frombuffer(header, ">u4"))
    count = math.prod(dims)  # (Python ints: np.prod in int64 wrapped to -1, read all)
    if count > MAX_VALUES:
        raise ValueError(f"{path}: the header declares {dims}, {count} values; more than "
                         f"graphc reads from one IDX file ({MAX_VALUES})")
    body = f.read(count)
    if len(body) < count:
        raise ValueError(f"{path}: truncated: the header declares shape {dims} ({count} "
                         f"bytes of data), the file holds {len(body)}")
    if f.read(1):
        raise ValueError(f"{path}: longer than the header declares (shape {dims}, "
                         f"{count} bytes of data)")
    return np.frombuffer(body, np.uint8).reshape(dims)


def find_file(name: str, root: str, what: str) -> str:
    """`root/name` or `root/name.gz`; missing: an error naming both paths tried."""
    tried = [os.path.join(root, name), os.path.join(root, name + ".gz")]
    for path in tried:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{what}: no {name} in {root} (looked for {tried[0]} and "
                            f"{tried[1]}); download the IDX files into that folder, or pass "
                            f"root= or set GRAPHC_DATA to the folder that holds them")
