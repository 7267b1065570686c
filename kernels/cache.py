"""On-disk cache for generated Numba kernels.

The code generator produces, for each fused kernel, a Python source string that
defines one or more ``numba.njit(..., cache=True)`` functions, plus the name of
the entry function. :func:`load_kernel` writes that source to a real module
file under the cache directory and imports it *by module name*, so that Numba's
own on-disk cache (``__pycache__/*.nbi`` / ``*.nbc`` next to the file) can be
reused by later processes. Numba cannot load a cached function from a module
that was executed from a path without being importable by name: the second
process fails with ``ModuleNotFoundError: No module named '<dynamic>'``.

Layout::

    $GRAPHC_CACHE_DIR                 default: $XDG_CACHE_HOME/graphc or ~/.cache/graphc
    └── kernels/                      appended to sys.path
        ├── gk_<key[:24]>.py          header (key, body checksum) + generated source
        └── __pycache__/
            ├── gk_<...>.cpython-311.pyc
            └── gk_<...>.<func>-<line>.py311.nbi / .nbc   (Numba's cache)

The cache key is a sha256 over the source, the entry name, the source text of
every helper module listed in ``deps`` (Numba does not track changes in
imported helper modules, e.g. ``graphc.kernels.mathlib``, whose IR gets inlined), the
graphc, Numba, NumPy and Python versions, and the CPU name and features that
Numba compiles for. Numba records the CPU per cache entry as well, but putting
it in the key keeps a cache directory shared by different machines from
thrashing one module's index.

Typical use by the code generator::

    fn, info = load_kernel(src, "kernel_main", deps=("graphc.kernels.mathlib",))
    info = warm(fn, *example_args)   # first call: compiles or loads; logs
    fn(*args)

Set ``GRAPHC_LOG=compile`` to get one line per kernel on stderr from
:func:`warm`, for example
``graphc: kernel gk_0123... compiled in 0.41s (key 0123abcd...)``.

Robustness:

* Module files are written to a temp file in the same directory, then
  published with ``os.link`` (first writer wins, so the file other processes
  already imported is never replaced) or ``os.replace``. Two processes that
  compile the same kernel at the same time both succeed.
* Each module file starts with a header that holds the full key and a sha256
  of the body. A file that is truncated or corrupt (bad checksum, or import
  fails with e.g. ``SyntaxError``) is rewritten and imported again.
* A truncated or corrupt Numba index/data file normally makes Numba raise
  (``EOFError``/``UnpicklingError``) on the first call. After import, the
  module's index files are checked and unreadable ones deleted. Each
  dispatcher's cache-file object is switched to a subclass that treats an
  unreadable file as a cache miss. As a last resort, :func:`warm` catches a
  non-Numba error, deletes the module's Numba cache files and retries once.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "cache_clear",
    "cache_dir",
    "cache_info",
    "kernel_dir",
    "kernel_key",
    "load_kernel",
    "module_name",
    "warm",
]

ENV_CACHE_DIR = "GRAPHC_CACHE_DIR"
ENV_LOG = "GRAPHC_LOG"
KERNEL_SUBDIR = "kernels"
MODULE_PREFIX = "gk_"
_KEY_CHARS = 24  # hex characters of the key used in the module name (96 bits)
_FORMAT_VERSION = "graphc-kernel-cache-v1"
_HEADER_LINE0 = "# graphc generated kernel -- do not edit (managed by graphc.kernels.cache)\n"
_HEADER_LINES = 4

_lock = threading.RLock()
# (kernel_dir, key) -> (entry callable, info dict from the first load)
_loaded: dict[tuple[str, str], tuple[Callable[..., Any], dict]] = {}
# id(entry callable) -> info; used by warm() (the callable is kept alive by _loaded)
_info_by_fn: dict[int, dict] = {}
# kernel directories this module appended to sys.path
_path_entries: list[str] = []


# ---------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """Return the graphc cache root, resolved from the environment on each call.

    This is ``$GRAPHC_CACHE_DIR`` if set, otherwise ``$XDG_CACHE_HOME/graphc``
    (when ``XDG_CACHE_HOME`` is an absolute path), otherwise
    ``~/.cache/graphc``. The directory is not created.
    """
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return (base / "graphc").absolute()


def kernel_dir() -> Path:
    """Return the directory that holds the generated kernel modules (not created)."""
    return cache_dir() / KERNEL_SUBDIR


def _activate_kernel_dir() -> Path:
    """Create the kernel directory and make it the graphc entry on ``sys.path``.

    Kernel directories this module added earlier (for a different
    ``GRAPHC_CACHE_DIR``) are removed from ``sys.path``, so that a module name
    always resolves to the current directory.
    """
    kdir = kernel_dir()
    kdir.mkdir(parents=True, exist_ok=True)
    entry = str(kdir)
    with _lock:
        for old in list(_path_entries):
            if old != entry:
                with contextlib.suppress(ValueError):
                    sys.path.remove(old)
                _path_entries.remove(old)
        if entry not in sys.path:
            sys.path.append(entry)
            importlib.invalidate_caches()
        if entry not in _path_entries:
            _path_entries.append(entry)
    return kdir


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


def _graphc_version() -> str:
    try:
        return importlib.metadata.version("graphc")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


@lru_cache(maxsize=1)
def _environment_fingerprint() -> str:
    """Describe the toolchain and CPU: versions, CPU name and features, as JSON."""
    import llvmlite
    import llvmlite.binding as llb
    import numba
    import numpy

    cpu_name = numba.config.CPU_NAME or llb.get_host_cpu_name()
    cpu_features = numba.config.CPU_FEATURES
    if not cpu_features:
        cpu_features = llb.get_host_cpu_features().flatten()
    info = {
        "format": _FORMAT_VERSION,
        "graphc": _graphc_version(),
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "implementation": sys.implementation.cache_tag,
        "machine": platform.machine(),
        "cpu_name": cpu_name,
        "cpu_features": cpu_features,
    }
    return json.dumps(info, sort_keys=True)


def _dep_source(name: str) -> bytes:
    """Return the source bytes of the helper module *name* without importing it.

    Raises:
        ModuleNotFoundError: if the module cannot be found.
        ValueError: if the module has no source file (a built-in or extension).
    """
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"kernel dependency {name!r} not found", name=name)
    origin = spec.origin
    if not origin or not spec.has_location or not origin.endswith(".py"):
        raise ValueError(f"kernel dependency {name!r} has no Python source file ({origin!r})")
    with open(origin, "rb") as f:
        return f.read()


def kernel_key(source: str, entry: str, deps: tuple[str, ...] = ()) -> str:
    """Return the cache key (64 hex characters) of a generated kernel.

    The key covers the source, the entry name, the name and current source
    text of every module in *deps*, and the environment fingerprint (graphc,
    Numba, llvmlite, NumPy and Python versions, CPU name and features). The
    order of *deps* does not matter.
    """
    h = hashlib.sha256()

    def part(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    part(_FORMAT_VERSION.encode())
    part(source.encode("utf-8"))
    part(entry.encode("utf-8"))
    for name in sorted(set(deps)):
        part(name.encode("utf-8"))
        part(_dep_source(name))
    part(_environment_fingerprint().encode("utf-8"))
    return h.hexdigest()


def module_name(key: str) -> str:
    """Return the module name of the kernel with cache key *key*: ``gk_<key[:24]>``."""
    return MODULE_PREFIX + key[:_KEY_CHARS]


# ---------------------------------------------------------------------------
# Module files
# ---------------------------------------------------------------------------


def _render(key: str, entry: str, source: str) -> bytes:
    body = source if source.endswith("\n") else source + "\n"
    body_b = body.encode("utf-8")
    header = (
        _HEADER_LINE0
        + f"# key: {key}\n"
        + f"# entry: {entry}\n"
        + f"# body-sha256: {hashlib.sha256(body_b).hexdigest()}\n"
    )
    return header.encode("utf-8") + body_b


def _file_is_valid(path: Path, key: str) -> bool:
    """Return whether *path* has an intact header for *key* and a matching body checksum."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    lines = data.split(b"\n", _HEADER_LINES)
    if len(lines) != _HEADER_LINES + 1:
        return False
    if lines[0] + b"\n" != _HEADER_LINE0.encode() or lines[1] != f"# key: {key}".encode():
        return False
    prefix = b"# body-sha256: "
    if not lines[3].startswith(prefix):
        return False
    recorded = lines[3][len(prefix) :].decode("ascii", "replace")
    return recorded == hashlib.sha256(lines[4]).hexdigest()


def _publish(path: Path, data: bytes, *, replace: bool) -> bool:
    """Atomically create *path* with *data*; return whether this call wrote it.

    The data goes to a temp file in the same directory first. With
    ``replace=False`` the temp file is hard-linked into place, which fails if
    *path* already exists (first writer wins, and a file other processes may
    have imported is never swapped). Where hard links are unsupported, or with
    ``replace=True``, ``os.replace`` is used.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        if not replace:
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError:
                pass  # no hard links on this filesystem: fall back to replace
        os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _ensure_file(path: Path, key: str, data: bytes) -> bool:
    """Make sure *path* holds *data*; return whether this call (re)wrote it."""
    if path.exists():
        if _file_is_valid(path, key):
            return False
        _log(f"graphc: kernel {path.stem}: rebuilding corrupt source file {path}")
        _purge_module_artifacts(path.parent, path.stem)
        return _publish(path, data, replace=True)
    if _publish(path, data, replace=False):
        return True
    # Another process published it between our exists() check and link().
    if _file_is_valid(path, key):
        return False
    _purge_module_artifacts(path.parent, path.stem)
    return _publish(path, data, replace=True)


def _numba_cache_files(kdir: Path, name: str) -> list[str]:
    pattern = os.path.join(glob.escape(str(kdir / "__pycache__")), f"{name}.*.nb[ic]")
    return glob.glob(pattern)


def _purge_module_artifacts(kdir: Path, name: str) -> int:
    """Delete the bytecode and Numba cache files of module *name*; return the count."""
    pyc = os.path.join(glob.escape(str(kdir / "__pycache__")), f"{name}.*.pyc")
    n = 0
    for p in glob.glob(pyc) + _numba_cache_files(kdir, name):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
            n += 1
    return n


def _import(name: str, path: Path):
    """Import module *name* and check that it comes from *path*."""
    want = os.path.realpath(path)
    mod = sys.modules.get(name)
    if mod is not None:
        if os.path.realpath(getattr(mod, "__file__", "") or "") == want:
            return mod
        del sys.modules[name]  # same kernel, imported earlier from another cache dir
    importlib.invalidate_caches()
    mod = importlib.import_module(name)
    got = os.path.realpath(getattr(mod, "__file__", "") or "")
    if got != want:
        del sys.modules[name]
        raise ImportError(f"kernel module {name} resolved to {got!r}, expected {want!r}")
    return mod


# ---------------------------------------------------------------------------
# Numba cache hardening
# ---------------------------------------------------------------------------


def _dispatchers(mod) -> list:
    """Return the Numba dispatchers defined in *mod* that have a disk cache."""
    out = []
    for obj in vars(mod).values():
        cache = getattr(obj, "_cache", None)
        if getattr(cache, "_cache_file", None) is not None and (
            getattr(obj, "__module__", None) == mod.__name__
        ):
            out.append(obj)
    return out


def _check_numba_index(path: str) -> bool:
    """Return False if the Numba index file at *path* exists but cannot be read."""
    import numba

    try:
        with open(path, "rb") as f:
            version = pickle.load(f)
            data = f.read()
        if version == numba.__version__:
            _stamp, overloads = pickle.loads(data)
            if not isinstance(overloads, dict):
                return False
    except FileNotFoundError:
        return True
    except Exception:  # noqa: BLE001 - any unpickling failure means "corrupt"
        return False
    return True


@lru_cache(maxsize=1)
def _robust_cache_file_class():
    """Return (base class, subclass) for numba's IndexDataCacheFile, or None.

    The subclass treats an unreadable index as empty and an unreadable data
    file as missing, so a corrupt file becomes a cache miss and gets
    overwritten when Numba saves the new result.
    """
    try:
        from numba.core.caching import IndexDataCacheFile
    except ImportError:  # pragma: no cover - internal API moved
        return None

    class _RobustIndexDataCacheFile(IndexDataCacheFile):
        def _load_index(self):
            try:
                return super()._load_index()
            except Exception as exc:  # noqa: BLE001 - corrupt index == empty index
                _log(f"graphc: ignoring unreadable Numba index {self._index_path}: {exc!r}")
                return {}

        def _load_data(self, name):
            try:
                return super()._load_data(name)
            except OSError:
                raise
            except Exception as exc:
                # IndexDataCacheFile.load() treats OSError as "entry missing".
                raise OSError(f"unreadable Numba cache data {name}: {exc!r}") from exc

    return IndexDataCacheFile, _RobustIndexDataCacheFile


def _harden_numba_cache(mod) -> None:
    """Remove unreadable Numba index files of *mod* and use robust cache-file readers."""
    classes = _robust_cache_file_class()
    for disp in _dispatchers(mod):
        cache_file = disp._cache._cache_file
        index = getattr(cache_file, "_index_path", None)
        if index and not _check_numba_index(index):
            _log(f"graphc: kernel {mod.__name__}: removing corrupt Numba index {index}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(index)
        if classes is not None and type(cache_file) is classes[0]:
            cache_file.__class__ = classes[1]


def _index_exists(fn, kdir: Path, name: str, entry: str) -> bool:
    cache_file = getattr(getattr(fn, "_cache", None), "_cache_file", None)
    index = getattr(cache_file, "_index_path", None)
    if index:
        return os.path.exists(index)
    pattern = os.path.join(glob.escape(str(kdir / "__pycache__")), f"{name}.{entry}-*.nbi")
    return bool(glob.glob(pattern))


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _log_enabled() -> bool:
    tokens = {t.strip() for t in os.environ.get(ENV_LOG, "").split(",")}
    return bool(tokens & {"compile", "all"})


def _log(msg: str) -> None:
    if _log_enabled():
        print(msg, file=sys.stderr, flush=True)


def is_compiled(source: str, entry: str, deps: tuple[str, ...] = ()) -> bool:
    """Whether Numba's machine code for this kernel is in the cache already (a look at the
    file system: nothing is imported or compiled)."""
    kdir = kernel_dir()
    key = kernel_key(source, entry, deps)
    name = module_name(key)
    if (str(kdir), key) in _loaded:
        return True
    pattern = os.path.join(glob.escape(str(kdir / "__pycache__")), f"{name}.{entry}-*.nbi")
    return bool(glob.glob(pattern))


def load_kernel(
    source: str, entry: str, deps: tuple[str, ...] = ()
) -> tuple[Callable[..., Any], dict]:
    """Write *source* to the kernel cache, import it by module name, return *entry*.

    Args:
        source: Python source of the generated module. Its functions should use
            ``numba.njit(..., cache=True)`` so Numba caches their machine code
            next to the module.
        entry: name of the function to return.
        deps: names of helper modules the source imports (e.g.
            ``("graphc.kernels.mathlib",)``). Their source text is part of the key,
            because Numba does not notice when they change.

    Returns:
        ``(fn, info)``. ``fn`` is the entry callable (a Numba dispatcher). Numba
        compiles lazily, so nothing has been compiled yet; call :func:`warm`
        (or ``fn`` itself) to trigger it. ``info`` is a dict with keys
        ``key``, ``module``, ``path``, ``seconds`` (time spent in this call)
        and ``status``:

        * ``"loaded"``: Numba's index file for *entry* already exists, so the
          first call is expected to load from Numba's cache;
        * ``"compiled"``: no index yet, so the first call will compile;
        * ``"memory"``: this process already loaded this key, and the same
          module object is returned.

        :func:`warm` reports what actually happened on the first call.

    Raises:
        AttributeError: the module does not define *entry*.
        SyntaxError, ImportError, ...: the generated source itself fails to
            import (after a rebuild of the file, if it was already on disk).
    """
    if not entry.isidentifier():
        raise ValueError(f"invalid entry name {entry!r}")
    t0 = time.perf_counter()
    deps = tuple(deps)
    key = kernel_key(source, entry, deps)
    name = module_name(key)
    with _lock:
        kdir = _activate_kernel_dir()
        memo = _loaded.get((str(kdir), key))
        if memo is not None:
            fn, info = memo
            return fn, dict(info, status="memory", seconds=time.perf_counter() - t0)

        path = kdir / f"{name}.py"
        data = _render(key, entry, source)
        wrote = _ensure_file(path, key, data)
        try:
            mod = _import(name, path)
        except Exception as exc:
            if wrote:
                raise  # the file we just wrote is intact, so the source is at fault
            # Intact checksum but failed import (e.g. corrupt bytecode): rebuild.
            _log(f"graphc: kernel {name}: import failed ({exc!r}); rebuilding")
            sys.modules.pop(name, None)
            _purge_module_artifacts(kdir, name)
            _publish(path, data, replace=True)
            mod = _import(name, path)

        try:
            fn = getattr(mod, entry)
        except AttributeError:
            raise AttributeError(f"generated kernel {name} defines no {entry!r}") from None
        _harden_numba_cache(mod)
        status = "loaded" if _index_exists(fn, kdir, name, entry) else "compiled"
        info = {
            "key": key,
            "module": name,
            "path": str(path),
            "status": status,
            "seconds": time.perf_counter() - t0,
        }
        _loaded[(str(kdir), key)] = (fn, info)
        _info_by_fn[id(fn)] = info
    return fn, dict(info)


def _cache_counts(fn) -> tuple[int, int, int] | None:
    stats = getattr(fn, "stats", None)
    overloads = getattr(fn, "overloads", None)
    if stats is None or overloads is None:
        return None
    return sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), len(overloads)


def warm(fn: Callable[..., Any], *example_args: Any) -> dict:
    """Call *fn* once with *example_args*, timing it, and report compile vs cache load.

    Numba compiles (or loads from its disk cache) on the first call for a new
    signature. This function makes that call and reads the dispatcher's cache
    counters to tell what happened. With ``GRAPHC_LOG=compile`` it prints one
    line to stderr.

    If the call fails with a non-Numba error (e.g. ``EOFError`` from a
    truncated Numba cache file), the kernel's Numba cache files are deleted
    and the call is retried once.

    Returns:
        A dict with ``key``, ``module``, ``path`` (from :func:`load_kernel`;
        ``None`` for a callable that did not come from it), ``seconds`` (time
        of the call, including compilation or cache load) and ``status``:
        ``"compiled"``, ``"loaded"`` (from Numba's disk cache) or ``"memory"``
        (this signature was already compiled in this process).
    """
    base = _info_by_fn.get(id(fn))
    if base is None:  # a kernel of a regular module (graphc.kernels.cpu.nn): Numba's own cache
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"
        base = {"key": None, "module": name, "path": None}
    before = _cache_counts(fn)
    t0 = time.perf_counter()
    try:
        fn(*example_args)
    except Exception as exc:
        if not _should_retry(exc, base):
            raise
        kdir = Path(base["path"]).parent
        n = _purge_module_artifacts(kdir, base["module"])
        _log(
            f"graphc: kernel {base['module']}: first call failed ({exc!r}); "
            f"removed {n} cache files, retrying"
        )
        fn(*example_args)
    seconds = time.perf_counter() - t0
    after = _cache_counts(fn)
    if before is None or after is None:
        status = base.get("status", "compiled")
    elif after[2] == before[2]:
        status = "memory"
    elif after[0] > before[0]:
        status = "loaded"
    else:
        status = "compiled"
    info = {
        "key": base.get("key"),
        "module": base.get("module"),
        "path": base.get("path"),
        "status": status,
        "seconds": seconds,
    }
    if status != "memory" and _log_enabled():
        what = "compiled" if status == "compiled" else "loaded from cache"
        where = f"key {info['key'][:8]}..." if info["key"] else "Numba's cache beside the module"
        _log(f"graphc: kernel {info['module']} {what} in {seconds:.2f}s ({where})")
    return info


def _should_retry(exc: Exception, base: dict) -> bool:
    """Decide whether a failed first call may be caused by a corrupt Numba cache."""
    if base.get("path") is None:
        return False
    from numba.core.errors import NumbaError

    if isinstance(exc, NumbaError):
        return False  # typing/lowering errors do not come from the disk cache
    return bool(_numba_cache_files(Path(base["path"]).parent, base["module"]))


def _kernel_files(kdir: Path) -> list[Path]:
    files = list(kdir.glob(f"{MODULE_PREFIX}*.py")) + list(kdir.glob(f".{MODULE_PREFIX}*.tmp"))
    pyc = kdir / "__pycache__"
    if pyc.is_dir():
        files += list(pyc.glob(f"{MODULE_PREFIX}*"))
    return [p for p in files if p.is_file()]


def cache_info() -> dict:
    """Summarize the kernel cache.

    Returns:
        ``{"dir", "kernel_dir", "kernels", "files", "bytes"}``: the cache
        root, the kernel directory, the number of kernel modules, and the
        number and total size of the files that belong to kernels (sources,
        bytecode, Numba index/data files). Numba files stored elsewhere
        because ``NUMBA_CACHE_DIR`` is set are not counted.
    """
    kdir = kernel_dir()
    files = _kernel_files(kdir) if kdir.is_dir() else []
    total = 0
    for p in files:
        with contextlib.suppress(FileNotFoundError):
            total += p.stat().st_size
    return {
        "dir": str(cache_dir()),
        "kernel_dir": str(kdir),
        "kernels": sum(1 for p in files if p.suffix == ".py" and p.parent == kdir),
        "files": len(files),
        "bytes": total,
    }


def cache_clear() -> int:
    """Delete every kernel file in the cache directory and return how many were removed.

    Only files named like kernels (``gk_*``) are touched, so a mistaken
    ``GRAPHC_CACHE_DIR`` cannot wipe unrelated data. Kernels already imported
    in this process keep working. They are dropped from the in-process table,
    so the next :func:`load_kernel` writes and compiles them again.
    """
    kdir = kernel_dir()
    removed = 0
    if kdir.is_dir():
        for p in _kernel_files(kdir):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed += 1
    _forget(kdir)
    return removed


def _forget(kdir: Path | None = None) -> None:
    """Drop in-process state for kernels in *kdir* (all kernels if ``None``)."""
    with _lock:
        for (d, key), (fn, _info) in list(_loaded.items()):
            if kdir is not None and d != str(kdir):
                continue
            del _loaded[(d, key)]
            _info_by_fn.pop(id(fn), None)
            name = module_name(key)
            mod_dir = os.path.dirname(getattr(sys.modules.get(name), "__file__", None) or "")
            if mod_dir and os.path.realpath(mod_dir) == os.path.realpath(d):
                del sys.modules[name]
        importlib.invalidate_caches()
