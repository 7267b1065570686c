"""Device random numbers for random_uniform (dropout's mask): counter-based, so a draw is a
pure function of (seed, call number, element index), whatever the launch size.

Each element hashes its index with the node's seed and the call's counter through a 32-bit
integer mixer (Thomas Mueller's hash32): every product is below 2**59, so the same int64
arithmetic runs on the GPU and in the simulator without overflow. float32 takes 24 bits of
one hash, float64 53 bits of two.
"""
from __future__ import annotations

from numba import cuda

from .launch import THREADS, blocks

_MASK = 0xFFFFFFFF


@cuda.jit(device=True, inline=True)
def _mix(x):
    x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    return (x >> 16) ^ x


@cuda.jit(device=True, inline=True)
def _draw(key, i, salt):
    h = _mix((i & 0xFFFFFFFF) ^ _mix((i >> 32) ^ salt))
    return _mix(h ^ key)


@cuda.jit
def _uniform32(out, key):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = (_draw(key, i, 1) >> 8) * 5.9604644775390625e-08  # 2**-24


@cuda.jit
def _uniform64(out, key):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        hi = _draw(key, i, 1) >> 6
        lo = _draw(key, i, 2) >> 5
        out[i] = (hi * 134217728 + lo) * 1.1102230246251565e-16  # (hi * 2**27 + lo) * 2**-53


def stream_key(seed: int, call: int) -> int:
    """The 32-bit key of one call's draws (host side: Python ints, any size)."""
    key = 0
    for part in (seed & _MASK, (seed >> 32) & _MASK, call & _MASK, (call >> 32) & _MASK):
        key = _host_mix(key ^ part)
    return key


def _host_mix(x: int) -> int:
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK
    return (x >> 16) ^ x


def uniform(out, seed: int, call: int) -> None:
    """out (a flat float32 or float64 device array) = uniform [0, 1) draws."""
    kernel = _uniform32 if out.dtype.itemsize == 4 else _uniform64
    kernel[blocks(out.size), THREADS](out, stream_key(seed, call))
