"""`python -m benchmarks`: thread limits first, then the numeric libraries, then the run."""
import atexit
import os
import shutil
import sys
import tempfile

from .config import parse_args
from .threads import configure_process


def fresh_inductor_cache() -> None:
    """An empty torch.compile cache for this run, so its first call is a cold compile, like
    JAX's (no persistent cache by default) and graphc's cold column. A set
    TORCHINDUCTOR_CACHE_DIR is left alone."""
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return
    path = tempfile.mkdtemp(prefix="graphc-bench-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    atexit.register(shutil.rmtree, path, True)


if __name__ == "__main__":
    config = parse_args()  # exits on --help or a bad option before anything loads
    configure_process(config.threads, config.pin, config.wait_policy)
    fresh_inductor_cache()
    from .harness import main

    sys.exit(main())
