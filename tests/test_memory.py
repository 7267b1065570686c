"""Liveness-based memory planning (graphc.plan.memory.plan_memory), on its own and in
a compiled training step."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphc as gc
from graphc.plan.memory import ALIGN, plan_memory


class Buf:
    """A buffer key (plan_memory compares candidates by identity)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def _plan(spec, inplace=None, reuse=True):
    """spec: name -> (defined_at, last_use, nbytes), in definition order."""
    keys = {name: Buf(name) for name in spec}
    defined = {keys[n]: d for n, (d, _, _) in spec.items()}
    last = {keys[n]: u for n, (_, u, _) in spec.items()}
    size = {keys[n]: s for n, (_, _, s) in spec.items()}
    cands = {keys[k]: [keys[c] for c in cs] for k, cs in (inplace or {}).items()}
    plan = plan_memory(list(keys.values()), defined, last, size, cands, reuse=reuse)
    return plan, keys, defined, last


def _off(plan, keys, name):
    return plan.offsets[keys[name]]


def _inplace_names(plan):
    return {k.name: v.name for k, v in plan.inplace.items()}


def check_no_overlap(plan, keys, defined, last):
    """Every pair of buffers that are live at the same step occupies disjoint bytes, except a
    buffer written in place of an operand that dies at the step defining it."""
    for a, b in itertools.combinations(keys, 2):
        if not (defined[a] <= last[b] and defined[b] <= last[a]):
            continue  # never live together
        lo_a, hi_a = plan.offsets[a], plan.offsets[a] + plan.sizes[a]
        lo_b, hi_b = plan.offsets[b], plan.offsets[b] + plan.sizes[b]
        if hi_a <= lo_b or hi_b <= lo_a:
            continue
        pair = (plan.inplace.get(a) is b and last[b] == defined[a]) or \
            (plan.inplace.get(b) is a and last[a] == defined[b])
        assert pair, f"{a} [{lo_a},{hi_a}) and {b} [{lo_b},{hi_b}) overlap while both live"


def test_bytes_are_reused_after_the_last_use():
    plan, keys, *_ = _plan({"A": (0, 1, 100), "B": (1, 2, 100), "C": (2, 3, 100)})
    assert _off(plan, keys, "A") == 0
    assert _off(plan, keys, "B") != _off(plan, keys, "A")   # A is read by step 1
    assert _off(plan, keys, "C") == _off(plan, keys, "A")   # A is dead by step 2
    assert plan.peak == 2 * 128 and plan.naive == 3 * 128
    assert plan.inplace == {}


def test_a_buffer_that_dies_at_a_step_is_not_reused_by_that_step_without_inplace():
    # B is defined at the step that reads A for the last time; with no in-place permission
    # the kernel would overwrite its own operand
    plan, keys, *_ = _plan({"A": (0, 1, 64), "B": (1, 2, 64)})
    assert _off(plan, keys, "B") != _off(plan, keys, "A")
    assert plan.peak == 128


def test_sizes_are_rounded_to_the_alignment_and_offsets_aligned():
    plan, keys, defined, last = _plan({"A": (0, 3, 1), "B": (0, 3, 65), "C": (1, 3, 0)})
    assert plan.sizes[keys["A"]] == ALIGN and plan.sizes[keys["B"]] == 2 * ALIGN
    assert plan.sizes[keys["C"]] == ALIGN                      # empty: still its own bytes
    assert all(off % ALIGN == 0 for off in plan.offsets.values())
    assert plan.peak == max(plan.offsets[k] + plan.sizes[k] for k in keys.values())
    check_no_overlap(plan, keys.values(), defined, last)


def test_first_fit_fills_a_hole_that_is_big_enough():
    plan, keys, *_ = _plan({
        "A": (0, 1, 64), "B": (0, 5, 64), "C": (0, 1, 128),   # A, C die after step 1
        "D": (2, 5, 128),
    })
    # A at 0, B at 64, C at 128; at step 2 the holes are [0,64) and [128,256): D takes 128
    assert [_off(plan, keys, n) for n in "ABC"] == [0, 64, 128]
    assert _off(plan, keys, "D") == 128
    assert plan.peak == 256


def test_inplace_when_the_operand_dies_at_that_step_and_sizes_match():
    plan, keys, *_ = _plan({"A": (0, 1, 256), "B": (1, 2, 256)}, inplace={"B": ["A"]})
    assert _inplace_names(plan) == {"B": "A"}
    assert _off(plan, keys, "B") == _off(plan, keys, "A")
    assert plan.peak == 256


def test_no_inplace_when_the_operand_is_read_later():
    plan, keys, *_ = _plan({"A": (0, 2, 256), "B": (1, 3, 256)}, inplace={"B": ["A"]})
    assert plan.inplace == {}
    assert _off(plan, keys, "B") != _off(plan, keys, "A")


def test_no_inplace_when_sizes_differ():
    plan, keys, *_ = _plan({"A": (0, 1, 256), "B": (1, 2, 128)}, inplace={"B": ["A"]})
    assert plan.inplace == {}
    assert _off(plan, keys, "B") != _off(plan, keys, "A")


def test_an_operand_is_overwritten_by_at_most_one_buffer():
    plan, keys, defined, last = _plan(
        {"A": (0, 1, 64), "B": (1, 2, 64), "C": (1, 2, 64)},
        inplace={"B": ["A"], "C": ["A"]})
    assert _inplace_names(plan) == {"B": "A"}
    assert len({_off(plan, keys, n) for n in "BC"}) == 2
    check_no_overlap(plan, keys.values(), defined, last)


def test_the_first_eligible_candidate_is_taken():
    plan, _keys, *_ = _plan(
        {"A": (0, 2, 64), "B": (0, 1, 64), "C": (1, 3, 64)}, inplace={"C": ["A", "B"]})
    assert _inplace_names(plan) == {"C": "B"}          # A is still read at step 2


def test_reuse_false_gives_every_buffer_its_own_bytes():
    spec = {"A": (0, 1, 100), "B": (1, 2, 64), "C": (2, 3, 200), "D": (3, 4, 1)}
    plan, keys, *_ = _plan(spec, inplace={"B": ["A"], "D": ["C"]}, reuse=False)
    assert plan.inplace == {}
    expect, cursor = [], 0
    for name in spec:
        expect.append(cursor)
        cursor += plan.sizes[keys[name]]
    assert [_off(plan, keys, n) for n in spec] == expect
    assert plan.peak == plan.naive == cursor


@pytest.mark.parametrize("seed", range(40))
def test_random_plans_never_overlap_live_buffers(seed):
    rng = np.random.default_rng(seed)
    n_steps = int(rng.integers(2, 12))
    spec, inplace = {}, {}
    names = []
    for step in range(n_steps):
        for _ in range(int(rng.integers(1, 4))):
            name = f"b{len(names)}"
            last = int(rng.integers(step, n_steps + 1))
            spec[name] = (step, last, int(rng.choice([8, 64, 100, 128, 256, 1000])))
            earlier = [m for m in names if spec[m][0] < step]
            if earlier and rng.random() < 0.7:
                inplace[name] = list(rng.choice(earlier, size=min(3, len(earlier)),
                                                replace=False))
            names.append(name)
    for reuse in (True, False):
        plan, keys, defined, last = _plan(spec, inplace, reuse=reuse)
        check_no_overlap(plan, keys.values(), defined, last)
        assert plan.peak <= plan.naive == sum(plan.sizes.values())
        for k, c in plan.inplace.items():
            assert last[c] == defined[k] and plan.sizes[k] == plan.sizes[c]
            assert plan.offsets[k] == plan.offsets[c]
        assert len({id(c) for c in plan.inplace.values()}) == len(plan.inplace)
        if not reuse:
            assert plan.peak == plan.naive


# --- a compiled training step -----------------------------------------------------------------
def _mlp_step(seed=0, **options):
    rng = np.random.default_rng(seed)
    x = gc.placeholder((None, 16), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    W1 = gc.Parameter(rng.standard_normal((16, 32)).astype(np.float32) * 0.3, name="W1")
    b1 = gc.Parameter(np.zeros(32, np.float32), name="b1")
    W2 = gc.Parameter(rng.standard_normal((32, 10)).astype(np.float32) * 0.3, name="W2")
    b2 = gc.Parameter(np.zeros(10, np.float32), name="b2")
    h = gc.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    loss = gc.softmax_cross_entropy(logits, t)
    params = [W1, b1, W2, b2]
    grads = gc.grad(loss, params)
    step = gc.compile([x, t], [loss, gc.softmax(logits)],
                      updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)], **options)
    return step, params


def _batches(n_batches, n=64):
    rng = np.random.default_rng(7)
    for _ in range(n_batches):
        yield (rng.standard_normal((n, 16)).astype(np.float32),
               rng.integers(0, 10, n).astype(np.int64))


def test_compiled_step_arena_is_smaller_than_its_buffers():
    step, _ = _mlp_step()
    mem = step.executable.bind(64).memory
    assert len(mem.sizes) >= 6
    assert mem.naive == sum(mem.sizes.values())
    assert mem.peak < sum(mem.sizes.values())
    assert mem.inplace                          # e.g. tanh over the matmul's result
    offsets, sizes = mem.offsets, mem.sizes
    assert max(offsets[k] + sizes[k] for k in offsets) == mem.peak
    # a new batch size gets its own layout, scaled with N
    big = step.executable.bind(256).memory
    assert big.peak > mem.peak
    # the arena starts on a cache line, so every buffer at a 64-byte offset does too
    runner = step.executable.bind(64)
    assert runner.arena.ctypes.data % 64 == 0 and runner.arena.nbytes >= mem.peak


def test_memory_reuse_off_gives_the_naive_layout_and_the_same_results():
    fast, fast_params = _mlp_step()
    naive, naive_params = _mlp_step(memory_reuse=False)
    mem = naive.executable.bind(64).memory
    assert mem.inplace == {} and mem.peak == mem.naive
    assert fast.executable.bind(64).memory.peak < mem.peak
    for xv, tv in _batches(5):
        loss_a, prob_a = fast(xv, tv)
        loss_b, prob_b = naive(xv, tv)
        np.testing.assert_array_equal(loss_a, loss_b)
        np.testing.assert_array_equal(prob_a, prob_b)
    for p, q in zip(fast_params, naive_params):
        np.testing.assert_array_equal(p.value, q.value)


def test_memory_reuse_matches_the_numpy_backend():
    fast, fast_params = _mlp_step()
    ref, ref_params = _mlp_step(backend="numpy")
    for xv, tv in _batches(5):
        loss_a, prob_a = fast(xv, tv)
        loss_b, prob_b = ref(xv, tv)
        np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
        np.testing.assert_allclose(prob_a, prob_b, rtol=1e-4, atol=1e-6)
    for p, q in zip(fast_params, ref_params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-4, atol=1e-6)


def test_unknown_compile_option_is_rejected():
    x = gc.placeholder((None, 2), name="x")
    with pytest.raises(TypeError, match="memory_reus"):
        gc.compile([x], x * 2.0, memory_reus=False)


def test_inplace_off_gives_no_inplace_buffers_and_the_same_results():
    plain, plain_params = _mlp_step(inplace=False)
    inplace, inplace_params = _mlp_step()
    mem = inplace.executable.bind(64).memory
    assert mem.inplace and plain.executable.bind(64).memory.inplace == {}
    assert mem.peak <= plain.executable.bind(64).memory.peak
    # the kernel that computes in place writes into its operand's array (no separate out)
    kernels = inplace.executable.describe(64, kernels=True)
    assert "in place of" in kernels
    for xv, tv in _batches(3):
        for a, b in zip(plain(xv, tv), inplace(xv, tv)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for p, q in zip(plain_params, inplace_params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "inplace-off"])
def test_a_kernel_updating_the_parameter_it_reads_gets_it_once(inplace):
    """An update written straight into its parameter by a kernel that also reads it: the
    kernel writes into that operand (one argument). The parameter passed twice had sent
    LLVM's vector loop to its scalar fallback (two arrays overlapping exactly)."""
    init = np.random.default_rng(5).standard_normal(3000).astype(np.float32)
    p = gc.Parameter(init.copy(), name="p")
    step = gc.compile([], [], updates=[(p, p - 0.1 * gc.tanh(p) * gc.exp(-p * p))],
                      inplace=inplace)
    plan = step.executable.plan
    writer = next(low for low in plan.lowered.values()
                  if plan.kinds.get(low.outputs[0]) == "inplace")
    assert writer.spec.aliases == ((0, writer.inputs.index(p)),)
    runner = step.executable.bind(None).source
    call = next(line for line in runner.splitlines() if writer.spec.name + "_serial(" in line)
    assert call.split("#")[0].count("p0") == 1
    q = init.astype(np.float64)
    for _ in range(2):
        step()
        q = q - 0.1 * np.tanh(q) * np.exp(-q * q)
    np.testing.assert_allclose(p.value, q, rtol=1e-6, atol=1e-6)
