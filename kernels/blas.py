"""graphc's own OpenBLAS: float32/float64 GEMM for Python code (and its address for numba).

Why a private BLAS
------------------
NumPy ships its own OpenBLAS and lets it pick its CPU kernels ("core type") once,
when the library loads.  On some AVX-512 AMD Zen hosts (depending on the OpenBLAS
version, or an inherited ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` in the
environment) that choice is the AVX2 ("Haswell") kernel set, reported to run
sgemm at roughly half the speed of the AVX-512 ("SkylakeX") kernels on large
hosts.  graphc therefore loads a second, independent OpenBLAS -- the one in the
``scipy-openblas32`` wheel, whose symbols carry a ``scipy_`` prefix so they never
clash with NumPy's -- and chooses that copy's core type itself.  (On small Zen 4
VMs the two kernel sets run at the same speed, since Zen 4 executes AVX-512 as
two 256-bit halves; the gain is host dependent.)

Loading (lazy, on first use; never at import time of this module)
-----------------------------------------------------------------
``_load()`` runs once, under a lock:

1. ``GRAPHC_BLAS=numpy`` disables this backend: :func:`gemm` falls back to
   ``np.matmul`` and ``sgemm_ptr`` / ``dgemm_ptr`` are None.
2. The library is located with ``importlib.util.find_spec("scipy_openblas32")``
   *without importing that package*: importing it dlopens the library at once,
   with whatever ``OPENBLAS_CORETYPE`` happens to be in the environment.
3. The core type is ``GRAPHC_BLAS_CORETYPE`` if set (an explicit override; an
   empty value means "let OpenBLAS auto-detect"), else derived from the CPU
   flags in ``/proc/cpuinfo``: avx512f + avx512bw + avx512vl + avx512dq gives
   ``"SkylakeX"``; otherwise the variable is left unset and OpenBLAS
   auto-detects.  ``"Cooperlake"`` is deliberately not requested on
   avx512_bf16 hosts: its sgemm/dgemm kernels *are* the SkylakeX ones (bf16 only
   matters for sbgemm, which graphc does not use), and the scipy-openblas32
   0.3.34 wheel maps a forced ``Cooperlake`` to ``SkylakeX`` on Zen 4 anyway.
4. For the duration of the ``dlopen`` only, ``OPENBLAS_CORETYPE`` is set to that
   choice (or removed), ``OPENBLAS_L2_SIZE`` is removed and
   ``OPENBLAS_NUM_THREADS`` is set to graphc's thread count; the previous
   values are restored right after, so NumPy and every other library see the
   process environment unchanged.  (NumPy's OpenBLAS is already loaded by then:
   this module imports numpy first, and the core type is only read at load.)
5. The core type actually in use is read back with
   ``scipy_openblas_get_corename``.  If the library had already been loaded
   into the process by someone else (e.g. ``import scipy_openblas32``) with a
   different core type, a private copy of the shared object is loaded from a
   temporary file instead, so graphc still gets the core type it asked for.
6. If anything fails, the NumPy fallback is used silently; ``info()["reason"]``
   records why.

OpenBLAS issue 6021 (large K, forced core type, AMD Zen 4/5)
------------------------------------------------------------
OpenBLAS 0.3.34 overrides the GEMM blocking (P=Q=512) on AMD hosts with 1 MB L2,
a multiple of 32 MB L3 and AVX-512F, even when ``OPENBLAS_CORETYPE`` forced an
AVX2-class kernel set.  The Haswell/Zen dgemm micro-kernel copies the B panel
into a stack buffer sized for K-blocks of at most 256, so a K-block of 512
overruns the stack (SIGSEGV, intermittent).  The AVX-512 kernels graphc selects
(SkylakeX) are not affected, and the large-K tests in ``tests/test_blas.py``
(K = 40000 and 100000) pass with them.  As a belt-and-braces workaround, when
an AVX2-class core ends up in use on an AMD host that reports avx512f (only
possible through ``GRAPHC_BLAS_CORETYPE`` or an unusual CPU flag set), graphc
splits the K dimension into chunks of ``_SAFE_K_CHUNK`` (256) and accumulates
with beta = 1, so the kernel never sees a K-block longer than its buffer
(``info()["k_chunk"]`` is then 256, else 0).  Changing ``OPENBLAS_L2_SIZE`` was
checked and does not change the blocking of this wheel, so it is no workaround.

numba
-----
``sgemm_ptr`` / ``dgemm_ptr`` are ctypes function objects (``CFUNCTYPE``) that
nopython code can call directly; array arguments are passed as ``arr.ctypes``
(numba converts that to ``void*``).  Numba bakes such a pointer's address into
the compiled code, so a function calling them cannot be cached to disk.  Numba
kernels that should be cacheable call graphc's OpenBLAS through
``graphc.kernels.cpu.gemm_call.gemm`` instead, which takes the address as a run-time
argument (``gemm_address``) and applies the K split described above
(``gemm_k_chunk``).

Caveats
-------
* Two OpenBLAS thread pools live in the process (NumPy's and graphc's).  OpenBLAS
  workers busy-wait for a while after each call, so alternating multi-threaded
  ``np.matmul`` and :func:`gemm` calls, or running them next to other
  CPU-bound threads (numba ``prange``), can oversubscribe the cores.  Inside
  parallel regions call ``set_num_threads(1)`` first.
* Results are not bitwise identical to ``np.matmul`` (different kernels and
  blocking); float32 agrees to ~1e-6 relative, float64 to ~1e-15.
* Dimensions and leading dimensions must fit a 32-bit int (scipy-openblas32 is
  an LP64 build); larger problems go to NumPy.

Environment variables
---------------------
``GRAPHC_BLAS``           ``numpy`` disables the private OpenBLAS.
``GRAPHC_BLAS_CORETYPE``  force an OpenBLAS core type (e.g. ``Haswell``).
``GRAPHC_NUM_THREADS``    default thread count (else ``len(os.sched_getaffinity(0))``,
                          i.e. ``os.cpu_count()`` unless the process is pinned).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib.util
import os
import shutil
import tempfile
import threading
import time

import numpy as np

# sgemm_ptr / dgemm_ptr are public too, but kept out of __all__ so that a star-import
# does not load the library (they are created lazily, see __getattr__).
__all__ = [
    "SMALL_PROBLEM_MNK",
    "CblasNoTrans",
    "CblasRowMajor",
    "CblasTrans",
    "gemm",
    "get_num_threads",
    "info",
    "measure_gflops",
    "set_num_threads",
]

# CBLAS enum values.
CblasRowMajor = 101
CblasNoTrans = 111
CblasTrans = 112

#: K-chunk used when the issue-6021 configuration is detected (see module docstring).
_SAFE_K_CHUNK = 256

#: Core types whose GEMM kernels are the AVX-512 ones (not affected by issue 6021).
_AVX512_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})

_REQUIRED_AVX512 = ("avx512f", "avx512bw", "avx512vl", "avx512dq")

_GEMM_ARGS = [ctypes.c_int] * 6  # order, transA, transB, M, N, K

#: Prototype of ``cblas_sgemm`` (row/col order, transA, transB, M, N, K, alpha, A,
#: lda, B, ldb, beta, C, ldc).
SGEMM_PROTO = ctypes.CFUNCTYPE(
    None, *_GEMM_ARGS, ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
    ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
)
#: Prototype of ``cblas_dgemm`` (as SGEMM_PROTO with double alpha/beta).
DGEMM_PROTO = ctypes.CFUNCTYPE(
    None, *_GEMM_ARGS, ctypes.c_double, ctypes.c_void_p, ctypes.c_int,
    ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_void_p, ctypes.c_int,
)

_INT32_MAX = 2**31 - 1

#: :func:`gemm` hands products with ``M * N * K`` at or below this to ``np.matmul``:
#: the Python-side cost of a ctypes call (~6-10 us: argument conversion, three
#: ``arr.ctypes.data`` look-ups) exceeds any kernel difference for tiny problems
#: (measured crossover on a Zen 4 VM: between 96**3 and 128**3).  Set to 0 to
#: send everything to OpenBLAS.
SMALL_PROBLEM_MNK = 64**3


class _State:
    """Everything ``_load()`` decides; one instance, filled once."""

    def __init__(self) -> None:
        self.loaded = False
        self.backend = "numpy"
        self.coretype = ""
        self.requested_coretype: str | None = None
        self.reason = ""
        self.library = ""
        self.config = ""
        self.threads = 0  # decided by _load() (GRAPHC_NUM_THREADS is read then)
        self.k_chunk = 0
        self.lib: ctypes.CDLL | None = None
        self.sgemm = None
        self.dgemm = None


# OPENBLAS_THREAD_TIMEOUT graphc's OpenBLAS loads with (log2 of the cycles an idle thread
# spins before it sleeps), unless the environment sets one; the benchmark harness gives
# NumPy's OpenBLAS the same (benchmarks/threads.py)
THREAD_TIMEOUT = 16


def _default_threads() -> int:
    """GRAPHC_NUM_THREADS if set and valid, else the CPUs this process may run on."""
    env = os.environ.get("GRAPHC_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
            if n > 0:
                return n
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_lock = threading.RLock()
_state = _State()

# Filled by _load(); None in NumPy-fallback mode.  Module attribute access before
# the first load goes through __getattr__ below, which loads the library.
_LAZY_NAMES = ("sgemm_ptr", "dgemm_ptr")


def __getattr__(name: str):
    """Load the library lazily when ``sgemm_ptr`` / ``dgemm_ptr`` are first read."""
    if name in _LAZY_NAMES:
        st = _load()
        return st.sgemm if name == "sgemm_ptr" else st.dgemm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- loading


def cpuinfo_fields() -> dict:
    """The fields of the first processor in /proc/cpuinfo ({} where unreadable)."""
    fields: dict = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpu_info() -> tuple[str, set[str]]:
    """(vendor_id, flags) of the first CPU in /proc/cpuinfo; ('', set()) if unreadable."""
    fields = cpuinfo_fields()
    return fields.get("vendor_id", ""), set(fields.get("flags", "").split())


def _choose_coretype(flags: set[str]) -> tuple[str | None, str]:
    """Core type to force (None = let OpenBLAS auto-detect) and a human-readable why."""
    override = os.environ.get("GRAPHC_BLAS_CORETYPE")
    if override is not None:
        override = override.strip()
        if override:
            return override, f"GRAPHC_BLAS_CORETYPE={override}"
        return None, "GRAPHC_BLAS_CORETYPE empty: OpenBLAS auto-detection"
    if all(f in flags for f in _REQUIRED_AVX512):
        return "SkylakeX", "/proc/cpuinfo has " + "+".join(_REQUIRED_AVX512)
    return None, "no full AVX-512 in /proc/cpuinfo: OpenBLAS auto-detection"


def _find_library() -> str:
    """Path of scipy_openblas32's shared library, found without importing the package."""
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scipy_openblas32 is not installed")
    for pkg_dir in spec.submodule_search_locations:
        cands = sorted(glob.glob(os.path.join(pkg_dir, "lib", "libscipy_openblas*.so*")))
        if cands:
            return os.path.realpath(cands[0])
    raise ImportError("scipy_openblas32 is installed but its lib/libscipy_openblas*.so is missing")


def _is_mapped(path: str) -> bool:
    """Whether the shared object at ``path`` is already loaded into this process."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return any(line.rstrip().endswith(path) for line in fh)
    except OSError:
        return False


@contextlib.contextmanager
def _scoped_env(updates: dict[str, str | None]):
    """Temporarily set (str) or remove (None) environment variables, then restore them."""
    saved = {k: os.environ.get(k) for k in updates}
    try:
        for k, v in updates.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _dlopen(path: str, coretype: str | None, threads: int) -> ctypes.CDLL:
    env = {
        "OPENBLAS_CORETYPE": coretype,
        "OPENBLAS_L2_SIZE": None,
        "OPENBLAS_NUM_THREADS": str(threads),
        # idle BLAS threads spin for 2**16 cycles (~20 µs) and then sleep: waking a
        # sleeping thread cost each 2-thread product ~20 µs (a 512x64x64 float32 product
        # took 45-53 µs on 2 threads, as on one, against 26-28 µs with the thread still
        # spinning from the last product; NumPy's own OpenBLAS, spinning ~60 ms by
        # default, took 26), while a Numba kernel that runs next shares the cores with the
        # spinning thread for at most those ~20 µs (2026-12-02, Zen 4, 2 cores). A user's
        # own setting wins.
        "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT",
                                                  str(THREAD_TIMEOUT)),
    }
    with _scoped_env(env):
        return ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)


def _dlopen_private_copy(path: str, coretype: str | None, threads: int) -> ctypes.CDLL:
    """Load a fresh instance of the library from a temporary copy (different inode)."""
    tmpdir = tempfile.mkdtemp(prefix="graphc-openblas-")
    try:
        dst = os.path.join(tmpdir, os.path.basename(path))
        shutil.copyfile(path, dst)
        return _dlopen(dst, coretype, threads)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)  # the mapping survives the unlink


def _corename(lib: ctypes.CDLL) -> str:
    fn = lib.scipy_openblas_get_corename
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    return (fn() or b"").decode("ascii", "replace")


def _config(lib: ctypes.CDLL) -> str:
    fn = lib.scipy_openblas_get_config
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    return (fn() or b"").decode("ascii", "replace")


def _try_load_openblas(st: _State) -> None:
    vendor, flags = _cpu_info()
    coretype, why = _choose_coretype(flags)
    st.requested_coretype = coretype
    path = _find_library()
    preloaded = _is_mapped(path)
    lib = _dlopen(path, coretype, st.threads)
    core = _corename(lib)
    notes = [why]
    if coretype and core.lower() != coretype.lower():
        if preloaded:
            lib = _dlopen_private_copy(path, coretype, st.threads)
            core = _corename(lib)
            notes.append(
                "library was already loaded by someone else; using a private copy"
            )
        if core.lower() != coretype.lower():
            notes.append(f"OpenBLAS selected {core} instead of {coretype}")
    elif preloaded and not coretype:
        notes.append("library was already loaded by someone else (core type not ours)")

    sg = SGEMM_PROTO(ctypes.cast(lib.scipy_cblas_sgemm, ctypes.c_void_p).value)
    dg = DGEMM_PROTO(ctypes.cast(lib.scipy_cblas_dgemm, ctypes.c_void_p).value)
    setn = lib.scipy_openblas_set_num_threads
    setn.argtypes = [ctypes.c_int]
    setn.restype = None
    getn = lib.scipy_openblas_get_num_threads
    getn.argtypes = []
    getn.restype = ctypes.c_int
    setn(st.threads)
    st.threads = getn()  # OpenBLAS clamps to its MAX_THREADS

    if vendor == "AuthenticAMD" and "avx512f" in flags and core.lower() not in _AVX512_CORES:
        st.k_chunk = _SAFE_K_CHUNK
        notes.append(
            f"AVX2-class core {core} on an AVX-512 AMD host: K split into chunks of "
            f"{_SAFE_K_CHUNK} (OpenBLAS issue 6021 workaround)"
        )

    st.lib, st.sgemm, st.dgemm = lib, sg, dg
    st.coretype = core
    st.config = _config(lib)
    st.library = path
    st.backend = "scipy-openblas32"
    st.reason = "; ".join(notes)


def _load() -> _State:
    """Load the private OpenBLAS once (thread-safe) and return the module state."""
    st = _state
    if st.loaded:
        return st
    with _lock:
        if st.loaded:
            return st
        st.threads = _default_threads()
        if os.environ.get("GRAPHC_BLAS", "").strip().lower() == "numpy":
            st.reason = "GRAPHC_BLAS=numpy"
        else:
            try:
                _try_load_openblas(st)
            except Exception as exc:  # noqa: BLE001 - any failure means: use NumPy
                st.backend, st.lib, st.sgemm, st.dgemm = "numpy", None, None, None
                st.k_chunk, st.library, st.config = 0, "", ""
                st.reason = f"scipy-openblas32 unavailable: {type(exc).__name__}: {exc}"
        if st.backend == "numpy":
            st.coretype = "numpy"
        g = globals()
        g["sgemm_ptr"], g["dgemm_ptr"] = st.sgemm, st.dgemm
        st.loaded = True
    return st


# ------------------------------------------------------------------------ Python API


def info() -> dict:
    """Describe the BLAS backend in use (loads it if needed).

    Keys: ``backend`` ("scipy-openblas32" or "numpy"), ``coretype`` (what
    OpenBLAS reports via get_corename; "numpy" in fallback mode), ``reason``
    (why this backend / core type), ``library`` (path of the shared object,
    "" in fallback mode), ``threads`` (graphc's OpenBLAS thread count),
    plus ``requested_coretype``, ``config`` (OpenBLAS build string) and
    ``k_chunk`` (0, or the issue-6021 K-chunk in force).
    """
    st = _load()
    return {
        "backend": st.backend,
        "coretype": st.coretype,
        "reason": st.reason,
        "library": st.library,
        "threads": st.threads,
        "requested_coretype": st.requested_coretype,
        "config": st.config,
        "k_chunk": st.k_chunk,
    }


def set_num_threads(n: int) -> None:
    """Set the number of threads of graphc's OpenBLAS (NumPy's is untouched).

    OpenBLAS clamps ``n`` to its build's MAX_THREADS (64 for scipy-openblas32);
    ``info()["threads"]`` reports the value in force.  In NumPy-fallback mode the
    number is only recorded.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    st = _load()
    with _lock:
        st.threads = n
        if st.lib is not None:
            st.lib.scipy_openblas_set_num_threads(n)
            st.threads = st.lib.scipy_openblas_get_num_threads()


def get_num_threads() -> int:
    """Thread count graphc's OpenBLAS uses."""
    return _load().threads


def _numpy_gemm(a, b, out, trans_a, trans_b, alpha, beta):
    """Reference / fallback: out = alpha * op(a) @ op(b) + beta * out, with NumPy."""
    a = np.asarray(a)
    b = np.asarray(b)
    opa = np.swapaxes(a, -1, -2) if trans_a else a
    opb = np.swapaxes(b, -1, -2) if trans_b else b
    if out is None:
        prod = np.matmul(opa, opb)
        return prod if alpha == 1.0 else prod * alpha
    if alpha == 1.0 and beta == 0.0 and not (
        np.may_share_memory(out, a) or np.may_share_memory(out, b)
    ):
        return np.matmul(opa, opb, out=out)
    prod = np.matmul(opa, opb)
    if alpha != 1.0:
        prod = prod * alpha
    if beta == 0.0:
        out[...] = prod
    else:
        out[...] = prod + beta * out
    return out


def _is_blas_operand(x, dtype) -> bool:
    return (
        isinstance(x, np.ndarray)
        and x.ndim == 2
        and x.dtype == dtype
        and x.flags.c_contiguous
        and x.flags.aligned
    )


def gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """``alpha * op(a) @ op(b) + beta * out`` with graphc's OpenBLAS.

    ``op(x)`` is ``x.T`` when the matching ``trans_*`` flag is set, so ``a`` is
    (M, K) or, with ``trans_a``, (K, M); ``b`` is (K, N) or, with ``trans_b``,
    (N, K).  The result is (M, N).

    ``out``: optional C-contiguous (M, N) array of the same dtype, written in place
    and returned.  ``beta`` scales its previous contents (BLAS semantics: with
    ``beta == 0`` the old contents, even NaN, are ignored).  Without ``out`` a new
    array is returned and ``beta`` has no effect.

    The BLAS path is used for 2-D C-contiguous float32/float64 operands of one
    dtype; anything else (other dtypes, mixed dtypes, non-contiguous views, N-D
    arrays, empty or tiny products -- see ``SMALL_PROBLEM_MNK`` --,
    ``GRAPHC_BLAS=numpy`` or no scipy-openblas32) is computed with ``np.matmul``
    with the same semantics.  ``out`` overlapping ``a`` or ``b``
    is handled through a temporary.
    """
    st = _state if _state.loaded else _load()
    dtype = getattr(a, "dtype", None)
    fn = None
    if st.sgemm is not None and dtype in (np.float32, np.float64):
        fn = st.sgemm if dtype == np.float32 else st.dgemm
    if fn is None or not (_is_blas_operand(a, dtype) and _is_blas_operand(b, dtype)):
        return _numpy_gemm(a, b, out, trans_a, trans_b, alpha, beta)

    M, K = (a.shape[1], a.shape[0]) if trans_a else a.shape
    Kb, N = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if K != Kb:
        raise ValueError(
            f"gemm: inner dimensions differ: op(a) is {(M, K)}, op(b) is {(Kb, N)}"
        )
    if out is not None:
        if out.shape != (M, N):
            raise ValueError(f"gemm: out has shape {out.shape}, expected {(M, N)}")
        if not (_is_blas_operand(out, dtype) and out.flags.writeable):
            return _numpy_gemm(a, b, out, trans_a, trans_b, alpha, beta)  # numpy raises
    if M == 0 or N == 0 or K == 0 or M * N * K <= SMALL_PROBLEM_MNK or \
            max(M, N, K) > _INT32_MAX:
        return _numpy_gemm(a, b, out, trans_a, trans_b, alpha, beta)

    target = out
    if out is None:
        target = np.empty((M, N), dtype=dtype)
        beta = 0.0
    elif np.may_share_memory(out, a) or np.may_share_memory(out, b):
        target = out.copy() if beta != 0.0 else np.empty_like(out)

    ta = CblasTrans if trans_a else CblasNoTrans
    tb = CblasTrans if trans_b else CblasNoTrans
    lda, ldb = a.shape[1], b.shape[1]
    pa, pb, pc = a.ctypes.data, b.ctypes.data, target.ctypes.data
    kc = st.k_chunk
    if not kc or K <= kc:
        fn(CblasRowMajor, ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, N)
    else:
        # issue-6021 workaround: never hand the kernel more than kc of K at once
        isz = a.itemsize
        for k0 in range(0, K, kc):
            kk = min(kc, K - k0)
            oa = (k0 * lda if trans_a else k0) * isz
            ob = (k0 if trans_b else k0 * ldb) * isz
            fn(CblasRowMajor, ta, tb, M, N, kk, alpha, pa + oa, lda, pb + ob, ldb,
               beta if k0 == 0 else 1.0, pc, N)
    if target is not out and out is not None:
        out[...] = target
        return out
    return target


def measure_gflops(n=2048, dtype=np.float32, repeats=3) -> float:
    """GFLOP/s of ``gemm`` on (n x n) @ (n x n) of ``dtype``: best of ``repeats`` runs.

    One untimed warm-up call precedes the timed ones; the output buffer is
    preallocated, so only the product itself is timed.  In NumPy-fallback mode
    this measures ``np.matmul``.
    """
    n = int(n)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    gemm(a, b, out=c)
    best = float("inf")
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        gemm(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9
