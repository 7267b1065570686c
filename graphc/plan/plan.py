"""The Plan: what every backend consumes. An immutable record built by the plan passes
(graphc.plan.PLAN_PASSES), each of which returns an updated copy; `PlanGraph` answers the
questions the passes and the backends ask of it (who reads what, what a step reads, when a
buffer dies), each written once."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .steps import FallbackStep, FusedGroup, KernelStep, MatmulStep


@dataclass(frozen=True)
class PlanOptions:
    fastmath: bool = False     # relax IEEE rules in generated kernels (and simplify)
    memory_reuse: bool = True  # intermediates share arena bytes by liveness
    inplace: bool = True       # a kernel may write its output over an operand dying there
    has_kernel: object = None  # the backend's: node or pattern name -> has a kernel for it


@dataclass(frozen=True)
class Plan:
    program: object           # the graphc.backends.Program compiled
    roots: tuple              # optimised outputs, then optimised update values
    nodes: tuple              # the optimised graph, topologically sorted
    names: dict               # tensor -> "%k", for printing
    options: PlanOptions
    steps: tuple = ()
    lowered: dict = field(default_factory=dict)   # FusedGroup index -> LoweredGroup
    kinds: dict = field(default_factory=dict)     # tensor -> feed/param/const/arena/fresh/
                                                  #   view/absorbed/inplace
    inplace_pairs: dict = field(default_factory=dict)    # output -> operand whose array
                                                         #   the kernel writes it into
    inplace_updates: dict = field(default_factory=dict)  # id(update value) -> Parameter
    update_notes: tuple = ()  # which updates were fused into a step, and why not the others
    passes: tuple = ()        # names of the plan passes run so far

    @property
    def out_tensors(self) -> tuple:
        return self.roots[:len(self.program.outputs)]

    @property
    def update_values(self) -> tuple:
        return self.roots[len(self.program.outputs):]

    @cached_property
    def graph(self) -> PlanGraph:
        return PlanGraph(self)


class PlanGraph:
    """Read-only questions about a plan's graph and steps."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.users: dict = {}
        for node in plan.nodes:
            for t in node.inputs:
                self.users.setdefault(t, []).append(node)
        self.root_ids = {id(t) for t in plan.out_tensors}
        self.update_ids = {id(t) for t in plan.update_values}
        self.step_of: dict = {}
        for step in plan.steps:
            for node in step.nodes:
                for t in node.outputs:
                    self.step_of[t] = step
            if isinstance(step, FusedGroup) and step.epilogue is not None:
                self.step_of[step.epilogue.outputs[0]] = step

    def virtual(self, t) -> bool:
        """A broadcast/transpose absorbed by its consumers (never materialised)."""
        from .schedule import is_swap_transpose

        if t.node.op in ("placeholder", "parameter", "constant"):
            return False
        return t not in self.step_of and (t.node.op == "broadcast_to" or is_swap_transpose(t))

    def source_of(self, t):
        """The array t reads: through reshapes and absorbed broadcasts/transposes."""
        while t.node.op == "reshape" or (t.node.op in ("broadcast_to", "transpose") and
                                         self.virtual(t)):
            t = t.node.inputs[0]
        return t

    def base(self, t):
        """The buffer a view tensor lives in (after storage is assigned)."""
        kinds = self.plan.kinds
        while kinds.get(t) == "view":
            t = t.node.inputs[0]
        return t

    def reads(self, step) -> list:
        """The tensors a step reads, as the arrays it is handed (a matmul's operands after
        absorbed transposes; a fused group's external inputs once lowered)."""
        if isinstance(step, MatmulStep):
            return [step.a, step.b]
        if isinstance(step, FusedGroup) and step.index in self.plan.lowered:
            return list(self.plan.lowered[step.index].inputs)
        nodes = step.members if isinstance(step, FusedGroup) else step.nodes
        return [x for n in nodes for x in n.inputs]

    @cached_property
    def readers(self) -> dict:
        """tensor -> the indices of the steps that read its array (looking through views),
        ascending: built in one walk, so asking about every parameter stays linear."""
        readers: dict = {}
        for step in self.plan.steps:
            for x in self.reads(step):
                indices = readers.setdefault(self.source_of(x), [])
                if not indices or indices[-1] != step.index:
                    indices.append(step.index)
        return readers

    def read_after(self, t, index: int, skip=()) -> bool:
        """Whether a step after step `index` (other than those in `skip`) reads t's array."""
        return any(i > index and i not in skip for i in self.readers.get(t, ()))

    @cached_property
    def last_checked(self) -> int:
        """The index of the last step that may fail a run-time check (-1: none)."""
        from .updates import CHECKED_KERNELS

        return max((s.index for s in self.plan.steps if isinstance(s, FallbackStep) or
                    (isinstance(s, KernelStep) and s.kernel in CHECKED_KERNELS)), default=-1)

    @cached_property
    def root_sources(self) -> dict:
        """id(array) -> the outputs and update values that read it (through views)."""
        sources: dict = {}
        for w in self.plan.out_tensors + self.plan.update_values:
            sources.setdefault(id(self.source_of(w)), []).append(w)
        return sources

    def writes(self, step) -> list:
        """The tensors a step stores."""
        if isinstance(step, FusedGroup) and step.index in self.plan.lowered:
            low = self.plan.lowered[step.index]
            return list(low.outputs) + ([low.reduce_out] if low.reduce_out is not None else [])
        if isinstance(step, KernelStep) and step.stores:
            return list(step.stores)
        return list(step.outputs)

    def needed_outside(self, group):
        """For a fused group: whether a member's value is used outside it (so stored)."""
        member_ids = {n.id for n in group.nodes}
        epi = group.epilogue

        def check(t):
            if id(t) in self.root_ids or id(t) in self.update_ids:
                return True
            return any(u.id not in member_ids and u is not epi for u in self.users.get(t, []))

        return check

    def liveness(self) -> tuple[dict, dict]:
        """(defined, last): the step that writes each arena buffer, and the last step that
        reads each buffer (outputs and update values live past every step)."""
        kinds = self.plan.kinds
        defined, last = {}, {}
        for step in self.plan.steps:
            for t in self.reads(step):
                b = self.base(t)
                if kinds.get(b) == "arena":
                    last[b] = max(last.get(b, -1), step.index)
            for t in self.writes(step):
                if kinds.get(t) == "arena":
                    defined[t] = step.index
                    last.setdefault(t, step.index)
        end = len(self.plan.steps)
        for t in self.plan.update_values + self.plan.out_tensors:
            b = self.base(t)
            if kinds.get(b) == "arena":
                last[b] = end
        return defined, last
