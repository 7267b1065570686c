"""graphc's kernels and code generators (installed as graphc.kernels; nothing here imports
graphc's IR, tests/test_codegen_targets.py checks)."""

# graphc's version, defined here so that the kernel cache keys on it without importing
# graphc (graphc.__version__ is this string; tests/test_warm_start.py checks pyproject's)
__version__ = "0.1.0"


def indexed_shape_error(got, want) -> str | None:
    """The run-time error of an index whose result is not the shape the graph was built for:
    a fixed slice of the batch axis (x[:5], x[-5:]) has the size the graph declares only
    when the batch has that many rows. (Every backend raises it, naming the user's line,
    rather than return a result of another shape than the rest of the graph expects.)"""
    got, want = tuple(int(d) for d in got), tuple(int(d) for d in want)
    if got == want:
        return None
    return (f"this index gives shape {got}, but the graph was built for {want} (a fixed "
            f"slice of the batch axis needs at least as many rows as it takes)")
