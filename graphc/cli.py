"""The `graphc` command line: dump, compile and inspect graphs; show the machine; the demo.

    graphc dump TARGET [--grad] [--format text|dot|json] [--optimized | --kernels] [--after PASS]
    graphc compile TARGET [--backend cpu]
    graphc info [--measure]
    graphc cache info | clear
    graphc demo [--seconds 3] [--backend auto|cpu|numpy]

TARGET is a graph saved with `gc.save` (a .json file) or `file.py:function`: the file is
imported by path and the function, called with no arguments, returns the output tensor(s).

A mistake in what the user asked for (a bad target, a file that fails to import) is one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import sys
import time

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing failure: printed as one `graphc: error: ...` line, exit status 2."""


def _one_line(exc: BaseException) -> str:
    """`Type: message` of an exception, folded onto one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- targets -------------------------------------------------------------------------------
def _split_target(target: str) -> tuple[str, str] | None:
    """("file.py", "function") for a `file.py:function` target, else None."""
    path, sep, func = target.rpartition(":")
    if sep and path.endswith(".py"):
        return path, func
    return None


def _import_file(path: str):
    """Import a Python file by path as a fresh module (its folder first on sys.path)."""
    shown = path
    if not os.path.isfile(path):
        raise CliError(f"cannot import {shown}: no such file")
    name = "_graphc_target_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot import {shown}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # so the file can import its neighbours
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code is reported
        sys.modules.pop(name, None)
        raise CliError(f"cannot import {shown}: {_one_line(exc)}") from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    return module


def _as_outputs(value, what: str) -> list:
    """The output tensors a target produced, checked: a Tensor or a non-empty list/tuple."""
    from .tensor import Tensor

    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(t, Tensor) for t in value):
        return list(value)
    if isinstance(value, (list, tuple)):
        bad = [type(t).__name__ for t in value if not isinstance(t, Tensor)]
        detail = f"a {type(value).__name__} holding {bad[0]}" if bad else "an empty list"
    else:
        detail = type(value).__name__
    raise CliError(f"{what} returned {detail}; expected a graphc Tensor or a list/tuple of "
                   f"Tensors")


def load_target(target: str, allow_function: bool = False):
    """The output tensors named by TARGET (`saved.json` or `file.py:function`); with
    allow_function, a compiled step (a gc.Function, with its updates) the function returns
    is returned as it is."""
    parts = _split_target(target)
    if parts is not None:
        path, func_name = parts
        if not func_name.isidentifier():
            raise CliError(f"bad target {target!r}: {func_name!r} is not a function name")
        module = _import_file(path)
        func = getattr(module, func_name, None)
        if func is None:
            raise CliError(f"{path} has no function {func_name!r}")
        if not callable(func):
            raise CliError(f"{path}:{func_name} is a {type(func).__name__}, not a function")
        what = f"{path}:{func_name}()"
        try:
            value = func()
        except Exception as exc:  # noqa: BLE001 - any failure of user code is reported
            raise CliError(f"{what} raised {_one_line(exc)}") from None
        from .function import Function

        if allow_function and isinstance(value, Function):
            return value
        return _as_outputs(value, what)
    if target.endswith(".json"):
        if not os.path.isfile(target):
            raise CliError(f"cannot load {target}: no such file")
        from .serialize import load

        try:
            value = load(target)
        except ValueError as exc:  # gc.load reports anything wrong with the files this way
            raise CliError(f"cannot load {target}: {_one_line(exc)}") from None
        return _as_outputs(value.outputs, target)
    raise CliError(f"bad target {target!r}: expected a graph saved with gc.save (a .json "
                   f"file) or file.py:function")


# --- dump --------------------------------------------------------------------------------------
def _grad_roots(outputs) -> tuple[list, int, list]:
    """(outputs followed by the gradients of the first scalar float output y with respect to
    every float placeholder and parameter y depends on, y's index, those tensors)."""
    from . import dtypes as dt
    from .autodiff import grad
    from .graph import toposort

    scalars = [i for i, t in enumerate(outputs) if t.shape == () and dt.is_float(t.dtype)]
    if not scalars:
        shapes = ", ".join(f"{t.dtype}{list(t.shape)}" for t in outputs)
        raise CliError(f"--grad needs a scalar float output to differentiate; the outputs are "
                       f"{shapes}")
    y = outputs[scalars[0]]
    wrt = [n.outputs[0] for n in toposort([y])
           if n.op in ("placeholder", "parameter") and dt.is_float(n.outputs[0].dtype)]
    if not wrt:
        raise CliError("--grad: the output depends on no float placeholder or parameter")
    try:
        grads = grad(y, wrt)
    except Exception as exc:  # noqa: BLE001 - e.g. an op without a VJP in the user's graph
        raise CliError(f"--grad: {_one_line(exc)}") from None
    return list(outputs) + list(grads), scalars[0], wrt


def _grad_header(roots, n_forward: int, y_index: int, wrt, named: bool) -> str:
    """`# gradients: %13 = d%4/dx, ...` naming tensors as the printed graph does (named), or
    by position when the listing names them its own way (the compiled plan)."""
    from .graph import toposort
    from .printing import names_for

    grads = roots[n_forward:]
    if not named:
        wrt_names = ", ".join(w.name or f"#{i}" for i, w in enumerate(wrt))
        return (f"# outputs {n_forward}..{len(roots) - 1} are the gradients of output "
                f"{y_index} with respect to {wrt_names}")
    names = names_for(toposort(roots))
    y = names[roots[y_index]]
    pairs = ", ".join(f"{names[g]} = d{y}/d{w.name or names.get(w, '?')}"
                      for g, w in zip(grads, wrt))
    return f"# gradients: {pairs}"


def cmd_dump(args) -> int:
    from .function import Function
    from .printing import dump

    target = load_target(args.target, allow_function=True)
    if isinstance(target, Function) and not (args.optimized or args.kernels):
        raise CliError(f"{args.target} returned a compiled step (a gc.Function): dump prints "
                       f"its plan with --optimized or --kernels; for the graph, return "
                       f"its output tensors instead")
    if not isinstance(target, list):  # a compiled step: its plan, updates included
        if args.grad or args.format != "text":
            raise CliError("a compiled step prints its plan only; leave out --grad/--format")
        print(_plan_text(target.program, target.executable, args))
        return 0
    outputs = target
    grad_info = None
    if args.grad:
        n_forward = len(outputs)
        outputs, y_index, wrt = _grad_roots(outputs)
        grad_info = (n_forward, y_index, wrt)
    if (args.optimized or args.kernels) and args.format != "text":
        raise CliError("--optimized and --kernels print text only; leave out --format")
    if args.after and args.kernels:
        raise CliError("--after goes with --optimized or alone, not with --kernels")
    if args.optimized and args.after:
        from .backends import Program

        text = _plan_text(Program.of(outputs), None, args)
    elif args.optimized:
        text = dump(outputs, optimized=True)
    elif args.kernels:
        from .backends import describe_plan

        text = describe_plan(outputs, kernels=True)
    else:
        if args.after:
            from .passes import optimize

            try:
                outputs = list(optimize(outputs, upto=args.after))
            except (ValueError, KeyError) as exc:  # an unknown pass name
                raise CliError(f"--after {args.after}: {_one_line(exc)}") from None
        text = dump(outputs, format=args.format)
    if grad_info is not None and args.format == "text":
        named = not (args.optimized or args.kernels)
        text = _grad_header(outputs, *grad_info, named=named) + "\n" + text
    print(text)
    return 0


def _plan_text(program, executable, args) -> str:
    """The cpu plan of a program: after the plan pass --after, or whole (from `executable`,
    with the generated source when --kernels)."""
    if not args.after:
        return executable.describe(kernels=args.kernels)
    from .backends.cpu.runtime import has_kernel
    from .plan import PlanOptions, make_plan
    from .plan.describe import describe_plan

    try:
        plan = make_plan(program, options=PlanOptions(has_kernel=has_kernel), upto=args.after)
    except ValueError as exc:  # an unknown plan pass
        raise CliError(f"--after {args.after}: {_one_line(exc)}") from None
    return describe_plan(plan)


# --- compile -----------------------------------------------------------------------------------
def _progress_printer():
    start = time.perf_counter()

    def progress(message) -> None:
        print(f"  [{time.perf_counter() - start:6.2f}s] {message}", flush=True)

    return progress


def _cache_location() -> str:
    """Where kernels are cached."""
    from .kernels import cache

    return str(cache.cache_dir())


_KERNEL_STATUS = {  # the status words of graphc.kernels.cache.warm / load_kernel, for people
    "compiled": "compiled",
    "loaded": "loaded from the cache",
    "memory": "already loaded in this process",
}


def _batch_sizes(text: str) -> list:
    """`--batch 1,4096` -> [1, 4096]; 0 -> [] (no call)."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1 or 1,4096, got {text!r}")
    if any(n < 0 for n in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 0, got {text!r}")
    return [n for n in sizes if n > 0]


def _zero_feeds(inputs, n: int) -> list:
    """Zeros for every input, with the batch dimension N set to `n`."""
    import numpy as np

    return [np.zeros(tuple(n if d is None else d for d in t.shape), dtype=t.dtype)
            for t in inputs]


def compile_builtins() -> int:
    """`graphc compile --builtins`: the hand-written kernels, ahead of their first use."""
    from .backends.cpu import builtins
    from .progress import CompileProgress

    start = time.perf_counter()
    with CompileProgress(builtins.CASES, "sets of hand-written kernels") as progress:
        done = builtins.precompile(progress)
    for what in done:
        print(f"  hand-written kernels for {what}: ready", flush=True)
    print(f"compiled the hand-written kernels in {time.perf_counter() - start:.2f} s "
          f"(kernel cache: {_cache_location()})")
    return 0


def cmd_compile(args) -> int:
    from .function import compile as gc_compile
    from .graph import placeholders

    if args.builtins:
        compile_builtins()
        if args.target is None:
            return 0
    elif args.target is None:
        raise CliError("nothing to compile: give a TARGET, or --builtins for the "
                       "hand-written kernels")
    from .function import Function

    start = time.perf_counter()
    value = load_target(args.target, allow_function=True)
    if isinstance(value, Function):  # a compiled step (its own backend, updates included):
        fn, inputs, outputs = value, value.program.inputs, value.program.outputs
        args.backend = fn.backend  # the target compiled it; its first calls warm the kernels
    else:
        outputs = value
        inputs = placeholders(outputs)
        start = time.perf_counter()
        try:
            fn = gc_compile(inputs, outputs, backend=args.backend)
        except ValueError as exc:
            raise CliError(f"cannot compile {args.target}: {_one_line(exc)}") from None
    executable = fn.executable
    kernels = None
    if hasattr(executable, "compile_kernels"):  # a backend that reports its own progress
        kernels = executable.compile_kernels(progress=_progress_printer())
    elif hasattr(executable, "kernel_log"):  # the cpu backend: one record per loaded kernel
        kernels = list(executable.kernel_log)
        for info in kernels:
            status = _KERNEL_STATUS.get(info.get("status"), info.get("status"))
            seconds = info.get("seconds")
            took = f" in {seconds:.2f} s" if isinstance(seconds, (int, float)) else ""
            name = info.get("module") or "?"
            if info.get("kernel"):
                name = f"{info['kernel']} [{name}]"
            print(f"  {name}: {status}{took}", flush=True)
    print(f"built the plan in {time.perf_counter() - start:.2f} s", flush=True)
    for n in args.batch:
        # Numba compiles (or loads from its cache) each kernel variant on its first call.
        run_start = time.perf_counter()
        try:
            fn(*_zero_feeds(inputs, n))
        except Exception as exc:  # noqa: BLE001 - reported, the plan itself was built
            raise CliError(f"the first call of the compiled {args.target} (zeros, N={n}) "
                           f"failed: {_one_line(exc)}") from None
        print(f"called once on zeros with N={n}: {time.perf_counter() - run_start:.2f} s "
              f"(compiles or loads the kernels it uses)", flush=True)
    seconds = time.perf_counter() - start
    count = f"{len(kernels)} compiled modules, " if isinstance(kernels, (list, tuple)) else ""
    where = f" (kernel cache: {_cache_location()})" if kernels else ""
    print(f"compiled {args.target}: {len(inputs)} inputs, {len(outputs)} outputs, {count}"
          f"backend {args.backend}, {seconds:.2f} s{where}")
    return 0


def cmd_profile(args) -> int:
    """`graphc profile TARGET`: compile it, call it on made-up feeds, print where the time goes."""
    import numpy as np

    from .function import Function
    from .function import compile as gc_compile
    from .graph import placeholders

    value = load_target(args.target, allow_function=True)
    if isinstance(value, Function):  # a compiled step, updates and backend its own
        fn, inputs = value, value.program.inputs
    else:
        inputs = placeholders(value)
        try:
            fn = gc_compile(inputs, value, backend=args.backend)
        except ValueError as exc:
            raise CliError(f"cannot compile {args.target}: {_one_line(exc)}") from None
    rng = np.random.default_rng(0)
    feeds = []  # floats from a normal distribution; integers (labels, indices) and bools 0
    for t in inputs:
        shape = tuple(args.batch if d is None else d for d in t.shape)
        kind = np.dtype(t.dtype).kind
        feeds.append(rng.standard_normal(shape).astype(t.dtype) if kind == "f"
                     else np.zeros(shape, t.dtype))
    try:
        profile = fn.profile(*feeds, repeat=args.repeat)
    except Exception as exc:  # noqa: BLE001 - reported, the plan itself was built
        raise CliError(f"profiling {args.target} (N={args.batch}) failed: "
                       f"{_one_line(exc)}") from None
    print(profile)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


# --- info --------------------------------------------------------------------------------------
def _cpu_description() -> tuple[str, list[str]]:
    """(model name, AVX-512 flags) from /proc/cpuinfo; the platform's word where unreadable."""
    from graphc.kernels.blas import cpuinfo_fields

    fields = cpuinfo_fields()
    flags = sorted(f for f in fields.get("flags", "").split() if f.startswith("avx512"))
    return fields.get("model name") or platform.processor() or platform.machine(), flags


def _threading_layer() -> str:
    """The threading layer Numba picks, found by running one tiny parallel kernel (~1 s)."""
    import numba
    import numpy

    requested = numba.config.THREADING_LAYER
    try:
        @numba.njit(parallel=True, cache=True)
        def _probe(a):
            total = 0.0
            for i in numba.prange(a.size):
                total += a[i]
            return total

        _probe(numpy.ones(4))
        return f"{numba.threading_layer()} (requested: {requested})"
    except Exception as exc:  # noqa: BLE001 - no threading layer could be loaded
        return f"unavailable ({_one_line(exc)}; requested: {requested})"


def _gpu_rows() -> list:
    """The cuda backend's device (name, compute capability, memory, how products run), or
    why there is none."""
    try:
        from .backends.cuda import device_info
        from .kernels.cuda.gemm import cublas_module

        info = device_info()
    except Exception as exc:  # noqa: BLE001 - numba.cuda is optional here; say why not
        return [("gpu", f"unavailable ({_one_line(exc)})")]
    if info["mode"] == "none":
        why = f"none: {info['why']}; NUMBA_ENABLE_CUDASIM=1 runs backend='cuda' in Numba's " \
              "CUDA simulator"
        return [("gpu", why)]
    major, minor = info["compute_capability"]
    total = info.get("memory_total")
    memory = (f"{total / 2**30:.1f} GiB ({info['memory_free'] / 2**30:.1f} GiB free)"
              if total else "n/a (simulated)")
    matmul = "cuBLAS (nvmath-python)" if cublas_module() is not None else \
        "graphc's tiled shared-memory kernel (no cuBLAS: simulator or no nvmath-python)"
    return [("gpu", info["name"]), ("gpu compute capability", f"{major}.{minor}"),
            ("gpu memory", memory), ("gpu matmul", matmul)]


def cmd_info(args) -> int:
    import numba
    import numpy

    from . import __version__

    rows = [
        ("graphc", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("numpy", numpy.__version__),
        ("numba", numba.__version__),
        ("platform", platform.platform()),
    ]
    model, avx512 = _cpu_description()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = f"{os.cpu_count()} logical" + (f", {usable} usable by this process" if usable else "")
    rows += [
        ("cpu", model),
        ("cores", cores),
        ("avx-512", " ".join(avx512) if avx512 else "none"),
        ("numba threads", f"{numba.config.NUMBA_NUM_THREADS}"),
        ("numba threading layer", _threading_layer()),
    ]
    try:
        from graphc.kernels import blas

        details = blas.info()
        summary = (f"{details.get('backend')} (core {details.get('coretype')}, "
                   f"{details.get('threads')} threads)")
        rows.append(("blas", summary))
        for key, value in details.items():
            if key not in ("backend", "coretype", "threads") and value not in ("", None):
                rows.append((f"  blas {key}", str(value)))
    except Exception as exc:  # noqa: BLE001 - graphc.kernels.blas is optional here; say why not
        rows.append(("blas", f"unavailable ({_one_line(exc)})"))
    rows += _gpu_rows()
    rows.append(("kernel cache", _cache_location()))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.measure:
        from .kernels import blas

        print("measuring sgemm 2048x2048 ...", flush=True)
        gflops = blas.measure_gflops()
        print(f"{'sgemm GFLOP/s':<{width}}  {gflops:.1f}")
    return 0


# --- cache -------------------------------------------------------------------------------------
def _print_mapping(value) -> None:
    if isinstance(value, dict):
        width = max((len(str(k)) for k in value), default=0)
        for key, item in value.items():
            print(f"{key!s:<{width}}  {item}")
    elif value is not None:
        print(value)


def cmd_cache(args) -> int:
    from .kernels import cache

    func = cache.cache_info if args.action == "info" else cache.cache_clear
    try:
        result = func()
    except OSError as exc:
        raise CliError(f"cache {args.action}: {_one_line(exc)}") from None
    if args.action == "clear":
        removed = f"removed {result} files" if isinstance(result, int) else str(result or "")
        print("kernel cache cleared" + (f": {removed}" if removed else ""))
    else:
        _print_mapping(result)
    return 0


# --- demo --------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from . import demo

    checks = [(args.hidden >= 1, "--hidden must be >= 1"),
              (math.isfinite(args.lr), "--lr must be a finite number"),
              (args.seed >= 0, "--seed must be >= 0"),
              (args.batch >= 1, "--batch must be >= 1"),
              (math.isfinite(args.seconds) and args.seconds > 0,
               "--seconds must be a number > 0"),
              (args.epochs is None or args.epochs >= 1, "--epochs must be >= 1")]
    for ok, message in checks:
        if not ok:
            raise CliError(f"demo: {message}")
    return demo.run(args)


def _user_facing(exc: BaseException) -> bool:
    """Whether `exc` is one of graphc's errors about the user's set-up or input (no GPU, an
    unsafe cache folder, a graph error), which the CLI reports as one line."""
    from .errors import GraphcError

    if isinstance(exc, GraphcError):
        return True
    cache = sys.modules.get("graphc.kernels.cache")
    return cache is not None and isinstance(exc, cache.UnsafeCacheDirError)


# --- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="graphc",
        description="graphc: a define-then-run deep-learning compiler.",
    )
    parser.add_argument("--version", action="version", version=f"graphc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    target_help = "a graph saved with gc.save (.json) or file.py:function returning tensors"
    p = sub.add_parser("dump", help="print a graph", description="Print a graph.")
    p.add_argument("target", metavar="TARGET", help=target_help)
    p.add_argument("--grad", action="store_true",
                   help="also the gradient of the first scalar output with respect to every "
                        "float placeholder and parameter")
    p.add_argument("--format", choices=("text", "dot", "json"), default="text")
    stage = p.add_mutually_exclusive_group()
    stage.add_argument("--optimized", action="store_true",
                       help="the compiled plan of the cpu backend")
    stage.add_argument("--kernels", action="store_true",
                       help="the generated kernel source of the cpu backend")
    p.add_argument("--after", metavar="PASS",
                   help="the graph after the optimization passes up to PASS (cse, fold, "
                        "simplify, dce); with --optimized, the plan after the plan pass "
                        "PASS (schedule, fuse_gemm_updates, ..., plan_inplace)")
    p.set_defaults(func=cmd_dump)

    p = sub.add_parser("compile", help="compile a graph ahead of time (fills the kernel cache)",
                       description="Compile a graph so its kernels land in the kernel cache.")
    p.add_argument("target", metavar="TARGET", nargs="?", default=None, help=target_help)
    p.add_argument("--builtins", action="store_true",
                   help="also compile graphc's hand-written kernels (softmax cross entropy, "
                        "small products, convolution and pooling, ...) for float32 and "
                        "float64, so no first compile waits for them (~45 s once; cached "
                        "afterwards)")
    p.add_argument("--backend", default="cpu", help="backend to compile for (default: cpu)")
    p.add_argument("--batch", type=_batch_sizes, default=[1], metavar="N[,N...]",
                   help="then call it once on zeros per batch size N, so that Numba compiles "
                        "the kernels into the cache; large N also reach the parallel kernel "
                        "variants (default 1; 0: do not call)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("profile", help="time each step of a compiled graph",
                       description="Compile a graph, call it on made-up feeds (floats from a "
                                   "normal distribution, integers and bools 0) and print each "
                                   "plan step's mean time a call, what it runs and the line "
                                   "of code that made it.")
    p.add_argument("target", metavar="TARGET", help=target_help)
    p.add_argument("--backend", default="cpu",
                   help="backend to compile for (default: cpu; a compiled step keeps its own)")
    p.add_argument("--batch", type=_positive, default=32, metavar="N",
                   help="the batch size N of the feeds (default 32)")
    p.add_argument("--repeat", type=_positive, default=100, metavar="R",
                   help="timed calls, after one untimed (default 100)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("info", help="versions, CPU, BLAS and threading",
                       description="Show versions, the CPU, the BLAS and the threading layer.")
    p.add_argument("--measure", action="store_true", help="also measure sgemm GFLOP/s")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("cache", help="inspect or clear the kernel cache",
                       description="Inspect or clear the on-disk kernel cache "
                                   "(GRAPHC_CACHE_DIR).")
    p.add_argument("action", choices=("info", "clear"))
    p.set_defaults(func=cmd_cache)

    from . import demo

    p = sub.add_parser("demo", help="train a small MLP on a spiral data set",
                       description=demo.DESCRIPTION)
    demo.add_arguments(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"graphc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `graphc dump ... | head` (before Exception, which it is one of)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if not _user_facing(exc):
            raise
        print(f"graphc: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("graphc: interrupted", file=sys.stderr)
        return 130
