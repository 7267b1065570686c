"""What a first compile tells the user while it waits: one line on stderr, and on a terminal
a progress bar redrawn in place. `GRAPHC_LOG=quiet` silences both.

A bar of our own (a few characters and a carriage return) rather than tqdm: graphc does not
take a dependency for twenty lines, and the bar must never write when stderr is a file or a
pipe (logs and CI output stay one line per compile).
"""
from __future__ import annotations

import os
import sys

ANNOUNCE_FROM = 3  # kernels to compile (~0.3 s each) from which a user is told why it waits
BAR_WIDTH = 24


def quiet() -> bool:
    return "quiet" in os.environ.get("GRAPHC_LOG", "").split(",")


class CompileProgress:
    """`announce` once, `advance(name)` per kernel compiled, `close()` at the end."""

    def __init__(self, total: int, what: str = "kernels", stream=None):
        self.total, self.done, self.what = total, 0, what
        self.stream = sys.stderr if stream is None else stream
        self.active = total >= ANNOUNCE_FROM and not quiet()
        isatty = getattr(self.stream, "isatty", None)
        self.bar = self.active and bool(isatty and isatty())
        if self.active:
            self.stream.write(f"graphc: compiling {total} {what} (first run; cached "
                              f"afterwards)\n")
            self.stream.flush()

    def advance(self, name: str = "") -> None:
        self.done += 1
        if not self.bar:
            return
        filled = BAR_WIDTH * min(self.done, self.total) // max(self.total, 1)
        label = name if len(name) <= 40 else name[:37] + "..."
        self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                          f"{self.done}/{self.total} {label}\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.bar:
            self.stream.write("\r\033[K")  # the bar leaves no trace; the line above stays
            self.stream.flush()
            self.bar = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
