"""The device the cuda backend runs on: whether there is one (a GPU, or Numba's CUDA
simulator), what it is (`graphc info`), and the device copies of Parameters.

A Parameter used by a cuda function lives on the device between calls: its `mirror` is a
`DeviceMirror`, shared by every cuda function that uses it. At most one side is newer:
after a cuda step updated it, the device copy (`device_newer`: `p.value`, `p.data` and
every host-backend function that uses `p` copy it back before they read); after a cpu or
numpy function updated it, the host array (`host_newer`: the next cuda call uploads it
first). Assigning `p.value` writes both at once. (graphc.function puts these checks into
the calls of just the functions that share a Parameter with a cuda function.)
"""
from __future__ import annotations

from ...errors import GraphcError

SIMULATOR_HINT = ("set NUMBA_ENABLE_CUDASIM=1 (before graphc is imported) to run the cuda "
                  "backend in Numba's CUDA simulator")


class CudaUnavailableError(GraphcError, RuntimeError):
    """backend="cuda" where neither a CUDA GPU nor the simulator is available."""


def unavailable_reason() -> str | None:
    """Why the cuda backend cannot run in this process, or None when it can."""
    try:
        from numba import cuda
    except ImportError as exc:
        return f"numba.cuda cannot be imported ({exc}); pip install \"graphc[cuda]\""
    if cuda.is_available():
        return None
    return ("no CUDA GPU or CUDA driver was found (numba.cuda.is_available() is False); "
            "a GPU needs its NVIDIA driver and pip install \"graphc[cuda]\"")


def require_device(loc: str = "") -> None:
    why = unavailable_reason()
    if why is not None:
        where = f" (at {loc})" if loc else ""
        raise CudaUnavailableError(f"backend 'cuda' is not available{where}: {why}; or "
                                   f"{SIMULATOR_HINT}")


def simulated() -> bool:
    from graphc.kernels.cuda.launch import SIMULATED

    return SIMULATED


def device_info() -> dict:
    """name, compute capability, memory and mode ('gpu' or 'simulator') of the current
    device; {'mode': 'none', 'why': ...} without one."""
    why = unavailable_reason()
    if why is not None:
        return {"mode": "none", "why": why}
    from numba import cuda

    ctx = cuda.current_context()
    dev = ctx.device
    if simulated():
        return {"mode": "simulator", "name": "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)",
                "compute_capability": dev.compute_capability, "memory_total": None}
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    free, total = ctx.get_memory_info()
    return {"mode": "gpu", "name": name, "compute_capability": dev.compute_capability,
            "memory_total": int(total), "memory_free": int(free)}


def device_key() -> str:
    """The device a kernel is built for, as a comment line of its source (so the kernel cache
    keys kernels by compute capability)."""
    info = device_info()
    major, minor = info.get("compute_capability", (0, 0))
    return f"{info['mode']} compute capability {major}.{minor}"


class DeviceMirror:
    """The device copy of one Parameter (see the module docstring)."""

    def __init__(self, host):
        from numba import cuda

        self.array = cuda.to_device(host)
        self.device_newer = False
        self.host_newer = False

    def pull(self, host) -> None:
        """Copy the device value into the host array if a step changed it since."""
        if self.device_newer:
            self.array.copy_to_host(host)
            self.device_newer = False

    def push(self, host) -> None:
        """Upload the host value (just assigned, or updated by a host-backend function)."""
        self.array.copy_to_device(host)
        self.device_newer = self.host_newer = False


def mirror_of(param) -> DeviceMirror:
    """The Parameter's device copy, made (uploaded) on first use."""
    if param.mirror is None:
        mirror = DeviceMirror(param.data)
        param.mirror = mirror
        for fn in list(param.users):  # host functions compiled before: keep them in step
            fn._watch_mirrors()
    return param.mirror
