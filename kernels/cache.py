"""On-disk cache for generated Numba kernels and for Numba's cache of graphc's own kernels.

The code generator produces, for each fused kernel, a Python source string that
defines one or more ``numba.njit(..., cache=True)`` functions, plus the name of
the entry function. :func:`load_kernel` writes that source to a module file
under the cache folder (Numba caches machine code per source *file*) and runs
the bytes it generated itself as module ``gk_<key>``, registered in
``sys.modules`` (Numba rebuilds a cached function by importing its module by
name). Nothing graphc loads is read back from the folder as code: the module
is executed from memory, and Python never imports it, so no ``.pyc`` is used.

Layout::

    $GRAPHC_CACHE_DIR                 default: $XDG_CACHE_HOME/graphc or ~/.cache/graphc
    ├── kernels/
    │   ├── gk_<key[:24]>.py          header (key, body checksum) + generated source
    │   └── __pycache__/
    │       └── gk_<...>.<func>-<line>.py311.nbi / .nbc   (Numba's cache, verified)
    └── numba/<folder>_<hash>/        Numba's cache of graphc.kernels.cpu.nn & co.

Security (as ssh treats its keys): every folder above is created 0700 whatever
the umask, and before anything is loaded graphc checks that each is a folder
owned by the current user and not writable by group or others; otherwise it
raises :class:`UnsafeCacheDirError` naming the folder and ``GRAPHC_CACHE_DIR``.
A module file whose bytes are not exactly the source being loaded (planted,
edited, truncated) is replaced before use. Numba's index and data files are
pickles, so unpickling one runs code: graphc writes them framed with a sha256
of the file's name and payload and reads only intact frames (anything else is
a cache miss). That stops corrupt, truncated, swapped or foreign files; a
process running as the same user can still write valid frames (or edit graphc
itself), which no file check can prevent.

The cache key is a sha256 over the source, the entry name, the source text of
every helper module listed in ``deps`` (Numba does not track changes in
imported helper modules, e.g. ``graphc.kernels.mathlib``, whose IR gets
inlined), the graphc, Numba, NumPy and Python versions, and the CPU name and
features that Numba compiles for.

Typical use by the code generator::

    fn, info = load_kernel(src, "kernel_main", deps=("graphc.kernels.mathlib",))
    info = warm(fn, *example_args)   # first call: compiles or loads; logs
    fn(*args)

Set ``GRAPHC_LOG=compile`` to get one line per kernel on stderr from
:func:`warm`, for example
``graphc: kernel gk_0123... compiled in 0.41s (key 0123abcd...)``.

Robustness:

* Module files are written to a temp file in the same folder, then published
  with ``os.link`` (first writer wins) or ``os.replace``. Two processes that
  compile the same kernel at the same time both succeed.
* :func:`cache_clear` takes an exclusive ``flock`` on ``.lock`` in the cache
  root; publishing and running a module holds it shared, so a clear from
  another process never removes a file between the two. Numba's own reads and
  writes during a clear become cache misses and skipped saves, never errors.
* A folder that cannot be used (read-only, a file in its place) is replaced
  by a temporary folder for the process, with one warning.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import importlib
import importlib.util
import io
import json
import os
import pickle
import platform
import shutil
import stat
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
    fcntl = None

__all__ = [
    "UnsafeCacheDirError",
    "cache_clear",
    "cache_dir",
    "cache_info",
    "is_compiled",
    "kernel_dir",
    "kernel_key",
    "load_kernel",
    "module_name",
    "numba_dir",
    "sibling",
    "use_graphc_cache",
    "warm",
]

ENV_CACHE_DIR = "GRAPHC_CACHE_DIR"
ENV_LOG = "GRAPHC_LOG"
KERNEL_SUBDIR = "kernels"
NUMBA_SUBDIR = "numba"
MODULE_PREFIX = "gk_"
KERNEL_PACKAGE = "graphc.kernels."  # graphc's hand-written kernels: nn, conv, gemm_call, ...
_KEY_CHARS = 24  # hex characters of the key used in the module name (96 bits)
_FORMAT_VERSION = "graphc-kernel-cache-v1"
_HEADER_LINE0 = "# graphc generated kernel -- do not edit (managed by graphc.kernels.cache)\n"
_NUMBA_MAGIC = b"graphc-numba-cache-v1\n"  # framing of Numba's index/data files
_LOAD_ATTEMPTS = 3  # a module file removed under us (no flock on this file system): retries

_lock = threading.RLock()
# (kernel_dir, key) -> (entry callable, info dict from the first load)
_loaded: dict[tuple[str, str], tuple[Callable[..., Any], dict]] = {}
# id(entry callable) -> info; used by warm() (the callable is kept alive by _loaded)
_info_by_fn: dict[int, dict] = {}
# configured cache root that could not be used -> the temporary root used instead
_fallback: dict[str, Path] = {}
# (cache root that passed the check, uid) -> (inode, mode, owner) of its folders then
_checked: dict[tuple, tuple] = {}


class UnsafeCacheDirError(PermissionError):
    """The kernel cache folder is owned by another user or writable by group/others, so
    a kernel loaded from it could have been planted: graphc refuses to use it."""


# ---------------------------------------------------------------------------
# Locations and permissions
# ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """Return the configured graphc cache root, resolved from the environment on each call.

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
    """Return the configured folder of generated kernel modules (not created)."""
    return cache_dir() / KERNEL_SUBDIR


def numba_dir() -> Path:
    """Return the configured folder of Numba's cache of the hand-written kernels."""
    return cache_dir() / NUMBA_SUBDIR


def _private_dir(path: Path) -> None:
    """Create `path` mode 0700 (whatever the umask) if missing, then check it as ssh checks
    ~/.ssh: a folder, owned by this user, not writable by group or others.

    Raises UnsafeCacheDirError for a folder that fails the check, OSError when the folder
    cannot be created or used."""
    try:
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
    except FileExistsError:
        pass
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path} is not a folder")
    problems = []
    owned = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    if not owned:
        problems.append(f"it is owned by uid {st.st_uid}, not by you (uid {os.getuid()})")
    if st.st_mode & 0o022:
        problems.append(f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})")
    if problems:
        fix = f"Run `chmod 700 {path}` if it is yours, or set" if owned else "Set"
        raise UnsafeCacheDirError(
            f"graphc refuses to load kernels from {path}: {' and '.join(problems)}, so a "
            f"kernel in it could have been planted. {fix} {ENV_CACHE_DIR} to a folder only "
            f"you can write.")
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{path} is not writable")


def _cache_folders(root: Path) -> tuple:
    return (root, root / KERNEL_SUBDIR, root / KERNEL_SUBDIR / "__pycache__",
            root / NUMBA_SUBDIR)


def _prepare(root: Path) -> None:
    """Create and check the cache root and its subfolders (see _private_dir). A root that
    passed and whose folders still stat the same (inode, mode, owner) is not checked
    again: a plan of thousands of kernels asks for the root once per kernel."""
    folders = _cache_folders(root)
    me = os.getuid() if hasattr(os, "getuid") else None
    stamp = _stamp(folders)
    if stamp is not None and _checked.get((str(root), me)) == stamp:
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        _private_dir(folder)
    _checked[(str(root), me)] = _stamp(folders)


def _stamp(folders) -> tuple | None:
    """(inode, mode, owner) of each folder; None when one is missing."""
    try:
        return tuple((st.st_ino, st.st_mode, st.st_uid) for st in map(os.stat, folders))
    except OSError:
        return None


def _active_root() -> Path:
    """The cache root this process uses: the configured one once it is checked private, or,
    when it cannot be used at all (read-only, a file in its place), a temporary folder for
    this process, announced by one warning."""
    root = cache_dir()
    fallback = _fallback.get(str(root))
    if fallback is not None:
        return fallback
    try:
        _prepare(root)
        return root
    except UnsafeCacheDirError:
        raise
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="graphc-cache-"))
        _prepare(fallback)
        atexit.register(shutil.rmtree, fallback, ignore_errors=True)
        _fallback[str(root)] = fallback
        warnings.warn(
            f"graphc: cannot use the kernel cache folder {root} ({exc.__class__.__name__}: "
            f"{exc}); caching kernels in {fallback} for this process only. Set "
            f"{ENV_CACHE_DIR} to a folder you can write.", RuntimeWarning, stacklevel=3)
        return fallback


@contextlib.contextmanager
def _flock(root: Path, exclusive: bool):
    """Hold a shared (loading) or exclusive (clearing) lock on the cache root's .lock file;
    a file system without flock just runs unlocked."""
    fd = None
    with contextlib.suppress(OSError):
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # (releases the lock)


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


def _graphc_version() -> str:
    """graphc's own version string (pyproject.toml's, checked by tests/test_warm_start.py).
    importlib.metadata.version("graphc") gave the same string but scanned every installed
    distribution and imported the email package: 26 ms of each warm compile."""
    from . import __version__

    return __version__


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
    """The module file's bytes: a header naming the key and the body's sha256, then the
    source (the header is for people; the loader compares whole files)."""
    body = source if source.endswith("\n") else source + "\n"
    body_b = body.encode("utf-8")
    header = (
        _HEADER_LINE0
        + f"# key: {key}\n"
        + f"# entry: {entry}\n"
        + f"# body-sha256: {hashlib.sha256(body_b).hexdigest()}\n"
    )
    return header.encode("utf-8") + body_b


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file at `path` holds exactly `data`."""
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def _publish(path: Path, data: bytes, *, replace: bool) -> bool:
    """Atomically create *path* with *data*; return whether this call wrote it.

    The data goes to a temp file in the same directory first. With
    ``replace=False`` the temp file is hard-linked into place, which fails if
    *path* already exists (first writer wins, and a file other processes may
    be using is never swapped). Where hard links are unsupported, or with
    ``replace=True``, ``os.replace`` is used.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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


def _ensure_file(path: Path, data: bytes) -> None:
    """Make sure *path* holds exactly *data*: a file with any other content (planted,
    edited, truncated, another key's) is replaced, and its Numba cache files dropped."""
    if _holds(path, data):
        return
    if os.path.lexists(path):
        _log(f"graphc: kernel {path.stem}: replacing {path}, whose content is not the "
             f"kernel's source")
        _purge_module_artifacts(path.parent, path.stem)
        _publish(path, data, replace=True)
        return
    if _publish(path, data, replace=False) or _holds(path, data):
        return  # (or another process published the same bytes first)
    _purge_module_artifacts(path.parent, path.stem)
    _publish(path, data, replace=True)


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


def _run_module(name: str, path: Path, data: bytes):
    """Run the verified bytes `data` as module `name` with `path` as its file (Numba's
    cache locator needs a real file) and register it in sys.modules (Numba imports the
    module by name when it rebuilds a cached function). The file is never read back as
    code, so neither a swapped file nor a planted .pyc can run."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    code = compile(data, str(path), "exec", dont_inherit=True)
    previous = sys.modules.get(name)
    sys.modules[name] = mod
    try:
        exec(code, mod.__dict__)  # noqa: S102 - graphc's own generated source, from memory
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    return mod


def _load_module(root: Path, name: str, path: Path, data: bytes):
    """Publish the module file and run it, holding the cache's shared lock, so that a
    `graphc cache clear` elsewhere cannot remove the file in between (Numba needs it to
    exist while the module defines its functions). Without a working flock a failure
    with the file gone is retried."""
    for attempt in range(_LOAD_ATTEMPTS):
        with _flock(root, exclusive=False):
            _ensure_file(path, data)
            try:
                return _run_module(name, path, data)
            except Exception as exc:
                if _holds(path, data) or attempt == _LOAD_ATTEMPTS - 1:
                    raise  # the file is intact, so the source itself is at fault
                _log(f"graphc: kernel {name}: {exc!r} while its file was removed; retrying")
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------
# Numba's cache files: framed with a digest, verified before unpickling
# ---------------------------------------------------------------------------


def _digest(name: str, payload: bytes) -> bytes:
    """Binds a payload to its file name: a file copied over another's name fails."""
    return hashlib.sha256(name.encode("utf-8") + b"\0" + payload).digest()


def _frame(path, payload: bytes) -> bytes:
    """The bytes of a verified cache file at `path`: magic, sha256(file name, payload),
    payload."""
    return _NUMBA_MAGIC + _digest(os.path.basename(path), payload) + payload


def _read_frame(path) -> bytes | None:
    """The payload of the verified cache file at `path`; None when the file is missing or
    is not an intact frame written under this name (never unpickled or loaded)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    head = len(_NUMBA_MAGIC) + 32
    if raw[:len(_NUMBA_MAGIC)] != _NUMBA_MAGIC or \
            raw[len(_NUMBA_MAGIC):head] != _digest(os.path.basename(path), raw[head:]):
        _log(f"graphc: ignoring Numba cache file {path}: not written by graphc or damaged")
        return None
    return raw[head:]


@lru_cache(maxsize=1)
def _numba_classes():
    """(cache-file class, function-cache class, locator class) that verify Numba's cache
    files, or None when Numba's internal caching API is not the one expected (then caching
    to disk is turned off for graphc's kernels rather than trusting unverified pickles)."""
    try:
        from numba.core.caching import (
            FunctionCache,
            IndexDataCacheFile,
            _CacheLocator,
        )
    except ImportError:  # pragma: no cover - internal API moved
        return None

    class VerifiedCacheFile(IndexDataCacheFile):
        """Numba's index and data files in a frame: magic, sha256(name, payload),
        payload. A file that is not an intact frame is a cache miss, never unpickled; a
        save that fails (a concurrent `cache clear`) is skipped."""

        def _read_payload(self, path: str) -> bytes | None:
            return _read_frame(path)

        def _write_payload(self, path: str, payload: bytes) -> None:
            with self._open_for_write(path) as f:
                f.write(_frame(path, payload))

        def _load_index(self):
            payload = self._read_payload(self._index_path)
            if payload is None:
                return {}
            try:
                stream = io.BytesIO(payload)
                if pickle.load(stream) != self._version:
                    return {}
                stamp, overloads = pickle.loads(stream.read())
            except Exception as exc:  # noqa: BLE001 - an unreadable index is an empty one
                _log(f"graphc: ignoring unreadable Numba index {self._index_path}: {exc!r}")
                return {}
            if stamp != self._source_stamp or not isinstance(overloads, dict):
                return {}
            return overloads

        def _save_index(self, overloads):
            payload = pickle.dumps(self._version, protocol=-1) + \
                self._dump((self._source_stamp, overloads))
            self._write_payload(self._index_path, payload)

        def _load_data(self, name):
            path = self._data_path(name)
            payload = self._read_payload(path)
            if payload is None:  # load() treats OSError as "entry missing"
                raise OSError(f"no intact Numba cache data {path}")
            try:
                return _CachedCodeUnpickler(io.BytesIO(payload)).load()
            except Exception as exc:
                raise OSError(f"unreadable Numba cache data {path}: {exc!r}") from exc

        def _save_data(self, name, data):
            self._write_payload(self._data_path(name), self._dump(data))

        def save(self, key, data):
            try:
                super().save(key, data)
            except OSError as exc:
                _log(f"graphc: Numba cache not saved ({exc!r})")

    class RobustFunctionCache(FunctionCache):
        """A cache problem is a miss (load) or a skipped save, never a failed compile."""

        def load_overload(self, sig, target_context):
            try:
                return _load_without_refresh(self, sig, target_context)
            except Exception as exc:  # noqa: BLE001 - e.g. a cache from another Numba
                _log(f"graphc: ignoring Numba cache entry of {self._name}: {exc!r}")
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except OSError as exc:
                _log(f"graphc: Numba cache of {self._name} not saved ({exc!r})")

    class FolderLocator(_CacheLocator):
        """Numba's locator for a function, with its files in a private graphc folder."""

        def __init__(self, inner, folder: str):
            self._inner = inner
            self._py_file = inner._py_file  # (Numba names it in warnings)
            self._folder = folder

        def ensure_cache_path(self):
            _private_dir(Path(self._folder))

        def get_cache_path(self):
            return self._folder

        def get_source_stamp(self):
            return self._inner.get_source_stamp()

        def get_disambiguator(self):
            return self._inner.get_disambiguator()

    return VerifiedCacheFile, RobustFunctionCache, FolderLocator


class _CachedCodeUnpickler(pickle.Unpickler):
    """pickle.loads for Numba's cache data, with environments rebuilt by `_rebuild_env`."""

    def find_class(self, module, name):
        if module == "numba.core.environment" and name == "_rebuild_env":
            return _rebuild_env
        return super().find_class(module, name)


def _rebuild_env(modname, consts, env_name):
    """numba.core.environment._rebuild_env, without importing a Numba implementation module
    only to take its globals.

    A cached kernel keeps the Environment of every function compiled into it, and Numba
    rebuilds each one from its module's globals, importing the module: np.empty's
    implementation names numba.np.arrayobj, whose import (with numba.cpython.unicode,
    charseq, hashing, ...) took 50-70 ms of a warm start. An environment's globals are read
    only by object-mode code (numba.core.pylowering); graphc's kernels and the Numba
    functions compiled into them are nopython code, which reads only the constants, restored
    here as Numba does. So an environment of a numba.* module that is not imported yet gets
    a dict naming the module and nothing else; any other (graphc's own modules, already
    imported) is rebuilt by Numba's own function."""
    from numba.core import environment

    if modname in sys.modules or not str(modname).startswith("numba."):
        return environment._rebuild_env(modname, consts, env_name)
    env = environment.lookup_environment(env_name)
    if env is not None:
        return env
    env = environment.Environment({"__name__": modname})
    env.consts[:] = consts
    env.env_name = env_name
    environment.Environment._memo[env_name] = env
    return env


def _load_without_refresh(cache, sig, target_context):
    """Numba's FunctionCache.load_overload without its `target_context.refresh()`.

    The refresh imports and registers every implementation Numba has (~0.3 s of a warm
    start: numba.cpython.*, numba.np.*, numba.typed.*, their typing templates), which only
    typing and lowering need, that is a compile; and a compile refreshes the context itself
    (numba.core.compiler.CompilerBase). Rebuilding cached machine code needs the code
    generator and the NRT's symbols, which are set up here."""
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    load = getattr(cache, "_load_overload", None)
    if guard is None or load is None:  # another Numba: its own path, refresh included
        return type(cache).__mro__[1].load_overload(cache, sig, target_context)
    from numba.core.runtime import rtsys

    rtsys.initialize(target_context)  # (once per process; what the refresh did first)
    with guard():
        return load(sig, target_context)
    return None  # (the guard swallowed a spurious I/O error: a miss)


NRT_PREFIX = "nrt_"  # graphc's cache of the NRT's machine code: numba/nrt_<key>.nrt
_original_nrt = None  # numba's compile_nrt_functions while _cached_nrt_functions stands in


def _nrt_path(root: Path) -> Path:
    key = hashlib.sha256(_environment_fingerprint().encode("utf-8")).hexdigest()
    return root / NUMBA_SUBDIR / f"{NRT_PREFIX}{key[:_KEY_CHARS]}.nrt"


def _pack(parts) -> bytes:
    return b"".join(len(p).to_bytes(8, "little") + p for p in parts)


def _unpack(data: bytes, count: int) -> list:
    """The `count` parts `_pack` joined; ValueError for anything else."""
    parts, at = [], 0
    for _ in range(count):
        size = int.from_bytes(data[at:at + 8], "little")
        at += 8
        if at > len(data) or at + size > len(data):
            raise ValueError("truncated")
        parts.append(data[at:at + size])
        at += size
    if at != len(data):
        raise ValueError(f"{len(data) - at} bytes after the last part")
    return parts


def _install_nrt_cache() -> None:
    """Have Numba's runtime (NRT) set-up take its machine code from graphc's cache, if the
    NRT is not set up yet in this process."""
    global _original_nrt
    try:
        from numba.core.runtime import nrtdynmod, rtsys
    except ImportError:  # pragma: no cover - internal API moved
        return
    if getattr(rtsys, "_init", True) or _original_nrt is not None or \
            not callable(getattr(nrtdynmod, "compile_nrt_functions", None)):
        return
    _original_nrt = nrtdynmod.compile_nrt_functions
    nrtdynmod.compile_nrt_functions = _cached_nrt_functions


def _cached_nrt_functions(ctx):
    """numba.core.runtime.nrtdynmod.compile_nrt_functions, whose LLVM module (the NRT's
    atomic reference counts and a few helpers) Numba optimizes and compiles in every
    process: 17-25 ms of a warm start, against 3-4 ms to load its machine code. Kept in
    graphc's cache as Numba keeps a cached function's (its object code, and the bitcode
    that code compiled later links against), in a verified frame under a name keyed on the
    toolchain and CPU. Stands in for Numba's function once, in the process's first NRT
    set-up (see _install_nrt_cache)."""
    from numba.core.runtime import nrtdynmod

    nrtdynmod.compile_nrt_functions = _original_nrt
    try:
        path = _nrt_path(_active_root())
    except OSError as exc:  # (an unsafe folder too): Numba's own set-up, nothing cached
        _log(f"graphc: the NRT's machine code not cached ({exc})")
        return _original_nrt(ctx)
    payload = _read_frame(path)
    if payload is not None:
        try:
            name, obj, bitcode = _unpack(payload, 3)
            state = (name.decode("ascii"), "object", (obj, bitcode))
        except (ValueError, UnicodeDecodeError) as exc:
            _log(f"graphc: ignoring the NRT cache file {path}: {exc}")
        else:
            return ctx.codegen().unserialize_library(state)
    ir_mod, library = nrtdynmod.create_nrt_module(ctx)
    library.add_ir_module(ir_mod)
    library.enable_object_caching()
    library.finalize()
    try:
        name, _kind, (obj, bitcode) = library.serialize_using_object_code()
        _publish(path, _frame(path, _pack([name.encode("ascii"), obj, bitcode])),
                 replace=True)
    except (OSError, ValueError, UnicodeEncodeError) as exc:
        _log(f"graphc: the NRT's machine code not cached ({exc!r})")
    return library


_package_stamps: dict[str, tuple] = {}
_PACKAGE_TAG = "graphc-package"
_KERNELS_ROOT = os.path.dirname(os.path.abspath(__file__))  # graphc.kernels


def _package_stamp(py_file: str) -> tuple:
    """(folder, name, mtime, size) of every .py file beside `py_file` and in graphc.kernels
    itself (mathlib.py, ...), read once per process.

    Numba stamps a cached kernel with its own file only, but a kernel of conv.py has the
    intrinsics of tile.py and pool_lanes.py and the jitted helpers of gemm_call.py and
    mathlib.py compiled into it: an edit there left the old machine code loading. With the
    package in the stamp, a change to any kernel module recompiles these kernels once."""
    here = os.path.dirname(os.path.abspath(py_file))
    stamp = _package_stamps.get(here)
    if stamp is None:
        entries = []
        for folder in sorted({here, _KERNELS_ROOT}):
            try:
                for name in sorted(os.listdir(folder)):
                    if name.endswith(".py"):
                        st = os.stat(os.path.join(folder, name))
                        entries.append((folder, name, st.st_mtime_ns, st.st_size))
            except OSError:
                entries.append((folder, "(unreadable)", 0, 0))
        stamp = _package_stamps[here] = tuple(entries)
    return stamp


def _with_package(stamp, py_file: str, anywhere: bool = False):
    """A hand-written kernel's stamp with its package's (graphc.kernels' modules, or any
    module when `anywhere`: stamp_package); any other (a generated kernel, whose cache key
    already holds its helper modules' source) as it was."""
    if isinstance(stamp, tuple) and stamp[:1] == (_PACKAGE_TAG,):
        return stamp
    path = os.path.abspath(py_file)
    if not anywhere and os.path.commonpath([path, _KERNELS_ROOT]) != _KERNELS_ROOT:
        return stamp
    return (_PACKAGE_TAG, stamp, _package_stamp(path))


def stamp_package(mod) -> None:
    """Stamp the disk cache of every njit(cache=True) kernel of module `mod` with its whole
    package (_package_stamp), in Numba's own cache folder too (a direct caller of the
    kernels, before any plan points them at graphc's). Kernel modules call this last."""
    for disp in _dispatchers(mod):
        try:
            cache_file = disp._cache._cache_file
            cache_file._source_stamp = _with_package(
                cache_file._source_stamp, disp._cache._impl.locator._py_file, anywhere=True)
        except AttributeError:  # pragma: no cover - internal API moved
            continue
    if _pointed:  # a module imported after use_graphc_cache ran (conv.py is imported when a
        use_graphc_cache()  # plan first runs one of its kernels): pointed like the others


def _point_cache(disp, folder: str | None) -> None:
    """Make dispatcher `disp` read and write only verified Numba cache files, in `folder`
    (None: where Numba put them). Without the expected internals its disk cache is turned
    off instead."""
    classes = _numba_classes()
    cache = getattr(disp, "_cache", None)
    try:
        verified, robust, locator = classes
        impl = cache._impl
        if folder is not None:  # (created, private, when Numba first saves there)
            impl._locator = locator(impl.locator, folder)
            cache._cache_path = folder
        stamp = _with_package(cache._cache_file._source_stamp, impl.locator._py_file)
        cache._cache_file = verified(cache._cache_path, impl.filename_base, stamp)
        cache.__class__ = robust
    except (TypeError, AttributeError):  # pragma: no cover - internal API moved
        from numba.core.caching import NullCache

        disp._cache = NullCache()


def _type_plain_arrays(disp) -> None:
    """Have dispatcher `disp` type a plain ndarray argument without numpy.ma.

    Numba types an argument through Dispatcher.typeof_pyval the first time it meets its
    kind (dtype, rank, layout), and its ndarray case first asks whether the array is a
    numpy.ma.MaskedArray, so a process's first such call imports numpy.ma: 12 ms of a warm
    start. For an object whose type is exactly numpy.ndarray that question is moot, and
    this types it as Numba does (numba.core.typing.typeof._typeof_ndarray) without it;
    every other value, subclasses included, takes Numba's own path."""
    if "typeof_pyval" in vars(disp):
        return
    try:
        import numpy as np
        from numba.core import types
        from numba.np.numpy_support import from_dtype, map_layout
    except ImportError:  # pragma: no cover - internal API moved
        return
    numba_typeof, active = disp.typeof_pyval, getattr(disp, "_types_active_call", set())

    def typeof_pyval(val):
        if type(val) is np.ndarray:
            try:
                tp = types.Array(from_dtype(val.dtype), val.ndim, map_layout(val),
                                 readonly=not val.flags.writeable)
            except Exception:  # noqa: BLE001 - e.g. an unsupported dtype: Numba's own error
                return numba_typeof(val)
            active.add(tp)
            return tp
        return numba_typeof(val)

    disp.typeof_pyval = typeof_pyval


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


# id(dispatcher) -> the folder its Numba cache was pointed at
_pointed: dict[int, str] = {}
# each kernel file's Numba cache subfolder: a warm start called use_graphc_cache six
# times, ~5 ms each when every call hashed every kernel file's path again
_subpaths: dict[str, str] = {}


def use_graphc_cache() -> None:
    """Point Numba's disk cache of every njit(cache=True) function of graphc's kernel
    modules imported so far (graphc.kernels.cpu.nn, .conv, ...) at a private folder under
    the graphc cache (checked like the kernel folder; cleared by `graphc cache clear`),
    with verified files. Cheap when already done for the current cache folder; call it
    once the modules are imported and before their functions compile."""
    root = _active_root()
    with _lock:
        _install_nrt_cache()
        modules = [m for name, m in list(sys.modules.items())
                   if name.startswith(KERNEL_PACKAGE) and m is not None]
        for mod in modules:
            for disp in _dispatchers(mod):
                py_file = disp._cache._impl.locator._py_file
                sub = _subpaths.get(py_file)
                if sub is None:
                    locator = type(disp._cache._impl.locator)
                    sub = _subpaths[py_file] = locator.get_suitable_cache_subpath(py_file)
                folder = str(root / NUMBA_SUBDIR / sub)
                if _pointed.get(id(disp)) != folder:
                    _point_cache(disp, folder)
                    _type_plain_arrays(disp)
                    _pointed[id(disp)] = folder


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
    kdir = _active_root() / KERNEL_SUBDIR
    key = kernel_key(source, entry, deps)
    name = module_name(key)
    if (str(kdir), key) in _loaded:
        return True
    folders = [str(kdir / "__pycache__")]
    if os.environ.get("NUMBA_CACHE_DIR"):  # where Numba then keeps the generated modules'
        from numba.core.caching import _CacheLocator

        sub = _CacheLocator.get_suitable_cache_subpath(str(kdir / f"{name}.py"))
        folders.append(os.path.join(os.environ["NUMBA_CACHE_DIR"], sub))
    return any(glob.glob(os.path.join(glob.escape(folder), f"{name}.{entry}-*.nbi"))
               for folder in folders)


def load_kernel(
    source: str, entry: str, deps: tuple[str, ...] = ()
) -> tuple[Callable[..., Any], dict]:
    """Write *source* to the kernel cache, run it as module ``gk_<key>``, return *entry*.

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
        UnsafeCacheDirError: the cache folder is not private to this user.
        AttributeError: the module does not define *entry*.
        SyntaxError, ...: the generated source itself fails to run.
    """
    if not entry.isidentifier():
        raise ValueError(f"invalid entry name {entry!r}")
    t0 = time.perf_counter()
    deps = tuple(deps)
    key = kernel_key(source, entry, deps)
    name = module_name(key)
    with _lock:
        root = _active_root()
        _install_nrt_cache()
        kdir = root / KERNEL_SUBDIR
        memo = _loaded.get((str(kdir), key))
        if memo is not None:
            fn, info = memo
            return fn, dict(info, status="memory", seconds=time.perf_counter() - t0)

        path = kdir / f"{name}.py"
        mod = _load_module(root, name, path, _render(key, entry, source))
        try:
            fn = getattr(mod, entry)
        except AttributeError:
            raise AttributeError(f"generated kernel {name} defines no {entry!r}") from None
        for disp in _dispatchers(mod):
            _point_cache(disp, None)
            _type_plain_arrays(disp)
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


def sibling(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Another function of the generated module *fn* came from (:func:`load_kernel`), which
    :func:`warm` reports as the same kernel (one module file and cache for a kernel's entry
    points)."""
    info = _info_by_fn[id(fn)]
    other = getattr(sys.modules[info["module"]], name)
    _info_by_fn[id(other)] = info
    return other


def _cache_counts(fn) -> tuple[int, int, int] | None:
    inner = getattr(fn, "kernels", None)  # a Python function over Numba kernels
    if inner is not None and not hasattr(fn, "stats"):
        counts = [_cache_counts(k) for k in inner]
        if any(c is None for c in counts):
            return None
        return tuple(sum(c[i] for c in counts) for i in range(3))
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

    Returns:
        A dict with ``key``, ``module``, ``path`` (from :func:`load_kernel`;
        ``None`` for a callable that did not come from it), ``seconds`` (time
        of the call, including compilation or cache load) and ``status``:
        ``"compiled"``, ``"loaded"`` (from Numba's disk cache) or ``"memory"``
        (this signature was already compiled in this process).
    """
    base = _info_by_fn.get(id(fn))
    if base is None:  # a hand-written kernel (graphc.kernels.cpu.nn): see use_graphc_cache
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"
        base = {"key": None, "module": name, "path": None}
    before = _cache_counts(fn)
    t0 = time.perf_counter()
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
        where = f"key {info['key'][:8]}..." if info["key"] else "graphc's Numba cache"
        _log(f"graphc: kernel {info['module']} {what} in {seconds:.2f}s ({where})")
    return info


def _kernel_files(root: Path) -> list[Path]:
    """Every file graphc's caches hold under `root`: kernel modules, their temp files,
    bytecode and Numba files, and Numba's files of the hand-written kernels (only names
    graphc writes, so a mistaken GRAPHC_CACHE_DIR cannot wipe unrelated data)."""
    kdir = root / KERNEL_SUBDIR
    files = list(kdir.glob(f"{MODULE_PREFIX}*.py")) + list(kdir.glob(f".{MODULE_PREFIX}*.tmp"))
    files += list((kdir / "__pycache__").glob(f"{MODULE_PREFIX}*"))
    numba = root / NUMBA_SUBDIR
    # (Numba's own files there, another project's with NUMBA_CACHE_DIR pointing at this
    # folder, are not graphc's: only files that open with graphc's frame are; a temp file
    # is named by graphc's writer, and may be cut short by a crash)
    for pattern in ("*/*.nbi", "*/*.nbc", f"{NRT_PREFIX}*.nrt"):
        files += [p for p in numba.glob(pattern) if _framed(p)]
    for pattern in ("*/*.nbi.tmp.*", "*/*.nbc.tmp.*", f".{NRT_PREFIX}*.tmp"):
        files += list(numba.glob(pattern))
    return [p for p in files if p.is_file()]


def _framed(path: Path) -> bool:
    """Whether the file at `path` begins as every cache file graphc writes does."""
    try:
        with open(path, "rb") as f:
            return f.read(len(_NUMBA_MAGIC)) == _NUMBA_MAGIC
    except OSError:
        return False


def cache_info() -> dict:
    """Summarize the kernel cache.

    Returns:
        ``{"dir", "kernel_dir", "numba_dir", "kernels", "files", "bytes"}``: the
        configured cache root, the folder of generated kernels, the folder of Numba's
        cache of the hand-written kernels, the number of kernel modules, and the number
        and total size of the files graphc caches there.
    """
    root = cache_dir()
    files = _kernel_files(root) if root.is_dir() else []
    total = 0
    for p in files:
        with contextlib.suppress(FileNotFoundError):
            total += p.stat().st_size
    return {
        "dir": str(root),
        "kernel_dir": str(kernel_dir()),
        "numba_dir": str(numba_dir()),
        "kernels": sum(1 for p in files if p.suffix == ".py" and p.parent.name == KERNEL_SUBDIR),
        "files": len(files),
        "bytes": total,
    }


def cache_clear() -> int:
    """Delete every file graphc caches (generated kernels, their Numba files, Numba's cache
    of the hand-written kernels) and return how many were removed.

    Folders are kept, so their checked permissions stay. Compiles running meanwhile, here
    or in other processes, still succeed (see the module docstring). Kernels already
    loaded in this process keep working; they are dropped from the in-process table, so
    the next :func:`load_kernel` writes and compiles them again.
    """
    root = cache_dir()
    removed = 0
    with _lock:
        if root.is_dir():
            with _flock(root, exclusive=True):
                for p in _kernel_files(root):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                        removed += 1
        _forget(root / KERNEL_SUBDIR)
    return removed


def _forget(kdir: Path | None = None) -> None:
    """Drop the in-process table entries of kernels in *kdir* (all kernels if ``None``).

    Modules stay in sys.modules: a dispatcher still in use may need to import its module by
    name to rebuild a cached function; the next load of that kernel replaces the entry."""
    with _lock:
        for (d, key), (fn, _info) in list(_loaded.items()):
            if kdir is not None and d != str(kdir):
                continue
            del _loaded[(d, key)]
            _info_by_fn.pop(id(fn), None)
