"""`python -m benchmarks`: thread limits first, then the numeric libraries, then the run."""
import sys

from .config import parse_args
from .threads import configure_process

if __name__ == "__main__":
    config = parse_args()  # exits on --help or a bad option before anything loads
    configure_process(config.threads, config.pin, config.wait_policy)
    from .harness import main

    sys.exit(main())
