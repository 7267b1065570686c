"""graphc's kernels and code generators (installed as graphc.kernels; nothing here imports
graphc's IR, tests/test_codegen_targets.py checks)."""

# graphc's version, defined here so that the kernel cache keys on it without importing
# graphc (graphc.__version__ is this string; tests/test_warm_start.py checks pyproject's)
__version__ = "0.1.0"
