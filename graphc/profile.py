"""Where a compiled function's time goes: `Function.profile(*feeds, repeat=R)`.

The function runs R times (after `warmup` untimed calls) through a runner of its own plan
that reads the clock between plan steps, and the result lists each step's mean time per
call with what it runs, the shapes it writes and the user's line that made it, the way
PyTensor's `profile=True` and tinygrad's DEBUG=2 report per kernel. Parameters, and the
random streams of dropout, are as they were before the call: profiling a training step
does not train.

Each step's time includes one clock read (~0.05-0.1 µs), which matters only for the
smallest kernels; on the cuda backend every launch is followed by a device synchronise,
so the steps do not overlap as they would in a plain call, and a step's time is its
kernels' time on the device plus their launch.
"""
from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter_ns

from .plan.describe import comment_safe
from .shapes import bind, fmt_shape

END = "end"      # the key of what a call does after its last step (outputs, updates)
FEEDS = "feeds"  # the key of copying feeds to the device (cuda)


class Ticks:
    """Nanoseconds per key, summed over calls: `start()` at a call's beginning, then
    `tick(key)` after each part charges the time since the previous read to `key`."""

    __slots__ = ("last", "totals")

    def __init__(self, keys):
        self.totals = dict.fromkeys(keys, 0)
        self.last = 0

    def start(self) -> None:
        self.last = perf_counter_ns()

    def tick(self, key) -> None:
        now = perf_counter_ns()
        self.totals[key] += now - self.last
        self.last = now

    def reset(self) -> None:
        for key in self.totals:
            self.totals[key] = 0


@dataclass(frozen=True)
class ProfileRow:
    step: object       # the plan step's index, or "feeds" / "end"
    what: str          # what it runs, and the shapes it writes
    where: str         # the user's line that created it ("" for feeds / end)
    seconds: float     # mean seconds per call


class Profile:
    """The rows of one profile, in plan order; `str()` is a table, `top(k)` the k slowest."""

    def __init__(self, backend: str, n, repeat: int, rows: list):
        self.backend, self.n, self.repeat, self.rows = backend, n, repeat, rows

    @property
    def seconds(self) -> float:
        """Mean seconds of a whole call (the rows' sum)."""
        return sum(r.seconds for r in self.rows)

    def top(self, k: int = 5) -> list:
        return sorted(self.rows, key=lambda r: r.seconds, reverse=True)[:k]

    def __str__(self) -> str:
        total = self.seconds or 1e-30
        batch = f", batch size {self.n}" if self.n is not None else ""
        lines = [(f"profile: {self.backend} backend{batch}, mean of {self.repeat} calls: "
                 f"{self.seconds * 1e6:.1f} µs a call"),
                 f"{'step':>5}  {'µs':>10}  {'%':>5}  what  [where]"]
        for r in self.rows:
            where = f"  [{r.where}]" if r.where else ""
            lines.append(f"{r.step!s:>5}  {r.seconds * 1e6:10.2f}  "
                         f"{100 * r.seconds / total:5.1f}  {r.what}{where}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<graphc.Profile {self.backend} {len(self.rows)} rows, "
                f"{self.seconds * 1e6:.1f} µs a call>")


def plan_rows(plan, totals: dict, n, repeat: int) -> list:
    """ProfileRows of a compiled plan (cpu, cuda) from Ticks totals keyed by step index."""
    from .plan.describe import step_head

    steps = {s.index: s for s in plan.steps}
    rows = []
    for key, ns in totals.items():
        seconds = ns / 1e9 / repeat
        step = steps.get(key)
        if step is None:
            what = {END: "outputs and updates after the last step",
                    FEEDS: "copy the feeds to the device"}.get(key, str(key))
            rows.append(ProfileRow(key, what, "", seconds))
            continue
        outs = {id(t) for t in plan.out_tensors}
        nodes = step.members if hasattr(step, "members") else step.nodes  # (+ an epilogue)
        stored = [t for nd in nodes for t in nd.outputs if plan.kinds.get(t) or id(t) in outs]
        shapes = ", ".join(f"{plan.names[t]} {t.dtype}{fmt_shape(bind(t.shape, n))}"
                           for t in stored[-2:])
        more = f" (+{len(stored) - 2} more)" if len(stored) > 2 else ""
        what = step_head(step)
        a, b = getattr(step, "a", None), getattr(step, "b", None)
        rate = ""
        if a is not None and b is not None:  # a product: its operands' shapes and its rate
            what += "".join(f" {plan.names.get(t, '?')}{fmt_shape(bind(t.shape, n))}{op}"
                            for t, op in ((a, " @"), (b, "")))
            sa, sb = bind(a.shape, n), bind(b.shape, n)
            if len(sa) == 2 and len(sb) == 2 and seconds > 0:
                m, k = sa[::-1] if step.trans_a else sa
                cols = sb[0] if step.trans_b else sb[1]
                rate = f" ({2 * m * k * cols / seconds / 1e9:.1f} GFLOP/s)"
        what += (f" -> {shapes}{more}" if shapes else "") + rate
        for update in (getattr(step, "update", None), getattr(step, "post", None)):
            if update is not None:
                what += f"; updates {update.param.name} in place"
        node = step.nodes[0] if step.nodes else getattr(step, "epilogue", None)
        where = comment_safe(node.loc) if node is not None else ""
        rows.append(ProfileRow(key, comment_safe(what), where, seconds))
    return rows


def node_rows(ran: list, totals: dict, shapes: dict, repeat: int) -> list:
    """ProfileRows of the numpy backend: one per node it ran (`ran[i]` under key i)."""
    rows = []
    for key, ns in totals.items():
        seconds = ns / 1e9 / repeat
        if key == END:
            rows.append(ProfileRow(key, "outputs and updates after the last node", "", seconds))
            continue
        node = ran[key]
        t = node.outputs[0]
        what = f"{node.op} -> {t.dtype}{fmt_shape(shapes.get(key, t.shape))}"
        rows.append(ProfileRow(key, comment_safe(what), comment_safe(node.loc), seconds))
    return rows
