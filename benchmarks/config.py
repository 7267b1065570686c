"""Command line and run settings. Imports nothing heavy: it is parsed before numpy loads."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

WORKLOAD_NAMES = {
    "W1": "tiny-mlp", "W2": "mnist-mlp", "W3": "lenet", "W4": "elementwise", "W5": "vgg-block",
}
WORKLOAD_KEYS = tuple(WORKLOAD_NAMES)
FRAMEWORKS = ("graphc cpu", "graphc numpy", "torch eager", "torch.compile", "jax jit",
              "numpy hand")
SKIPPABLE = ("limits", "compile", "check", "cliffs")


@dataclass
class Config:
    """How much to measure. `quick` shrinks W4 and the repetition budget."""

    quick: bool = False
    sweep: bool = False                  # the MLP size sweep (sweep.py) instead of W1..W5
    only: tuple = WORKLOAD_KEYS          # workload keys to run, e.g. ("W1",)
    frameworks: tuple = FRAMEWORKS       # framework rows to run
    json_path: str | None = "bench-results.json"
    threads: int = 2
    pin: bool = True                     # restrict the process to `threads` CPUs
    wait_policy: str = "passive"         # idle threads sleep; see threads.configure_process
    skip: tuple = ()                     # any of SKIPPABLE
    warmup: int = 5
    min_reps: int = 10
    max_reps: int = 20000
    min_time_s: float = 2.0              # seconds of timing per framework, at least

    @classmethod
    def for_mode(cls, quick: bool, **overrides) -> Config:
        if quick:
            base = {"quick": True, "warmup": 2, "min_reps": 3, "max_reps": 2000,
                    "min_time_s": 0.3}
        else:
            base = {}
        base.update(overrides)
        return cls(**base)


def resolve_keys(text: str) -> tuple:
    """'W2,lenet' -> ('W2', 'W3'): keys or names, any case, in suite order."""
    by_name = {name: key for key, name in WORKLOAD_NAMES.items()}
    wanted = set()
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        key = word.upper() if word.upper() in WORKLOAD_NAMES else by_name.get(word.lower())
        if key is None:
            choices = ", ".join(f"{k} ({n})" for k, n in WORKLOAD_NAMES.items())
            raise argparse.ArgumentTypeError(f"unknown workload {word!r}; expected one of "
                                             f"{choices}")
        wanted.add(key)
    return tuple(k for k in WORKLOAD_KEYS if k in wanted)


def _frameworks(text: str) -> tuple:
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    for w in wanted:
        if w not in FRAMEWORKS:
            raise argparse.ArgumentTypeError(
                f"unknown framework {w!r}; expected some of {', '.join(FRAMEWORKS)}")
    return tuple(f for f in FRAMEWORKS if f in wanted)


def _skip(text: str) -> tuple:
    wanted = tuple(w.strip() for w in text.split(",") if w.strip())
    for w in wanted:
        if w not in SKIPPABLE:
            raise argparse.ArgumentTypeError(
                f"cannot skip {w!r}; expected some of {', '.join(SKIPPABLE)}")
    return wanted


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time graphc against PyTorch and JAX on the same data and weights.")
    p.add_argument("--quick", action="store_true",
                   help="fewer repetitions, W4 with 1M elements instead of 16M")
    p.add_argument("--sweep", action="store_true",
                   help="MLP training steps over hidden sizes 16-1024 and batches 1-1024, "
                        "float32 and float64, graphc against torch eager, JAX jit and a "
                        "hand-written NumPy step (sweep.py; JSON to sweep-results.json)")
    p.add_argument("--only", type=resolve_keys, default=None, metavar="NAME",
                   help="workloads to run, comma separated: W1..W5 or names like mnist-mlp")
    p.add_argument("--frameworks", type=_frameworks, default=None, metavar="LIST",
                   help=f"framework rows, comma separated, from: {', '.join(FRAMEWORKS)}")
    p.add_argument("--json", dest="json_path", default="bench-results.json", metavar="PATH",
                   help="where to write the results (default bench-results.json); '-' for none")
    p.add_argument("--threads", type=int, default=2, help="threads per framework (default 2)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not restrict the process to --threads CPUs")
    p.add_argument("--wait-policy", choices=("passive", "default"), default="passive",
                   help="passive (default): idle OpenMP/OpenBLAS threads sleep rather than "
                        "spin and steal the pinned CPUs from the next framework; default: "
                        "the libraries' own settings")
    p.add_argument("--skip", type=_skip, default=(), metavar="LIST",
                   help=f"parts to leave out, comma separated, from: {', '.join(SKIPPABLE)}")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls before timing")
    p.add_argument("--reps", type=int, default=None,
                   help="exactly this many timed calls (default: enough for ~2 s, 0.3 s quick)")
    return p


def parse_args(argv=None) -> Config:
    args = build_parser().parse_args(argv)
    overrides = {"json_path": None if args.json_path == "-" else args.json_path,
                 "threads": args.threads, "pin": args.pin, "skip": args.skip,
                 "wait_policy": args.wait_policy, "sweep": args.sweep}
    if args.only is not None:
        overrides["only"] = args.only
    if args.frameworks is not None:
        overrides["frameworks"] = args.frameworks
    if args.warmup is not None:
        overrides["warmup"] = args.warmup
    if args.reps is not None:
        overrides.update(min_reps=args.reps, max_reps=args.reps, min_time_s=0.0)
    return Config.for_mode(args.quick, **overrides)
