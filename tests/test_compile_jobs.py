"""The first compile's helper process (graphc.backends.cpu.compile_jobs): both processes
take kernels from one queue of claim files, the costliest first, each kernel exactly once."""
from __future__ import annotations

import itertools
import os

from graphc.backends.cpu import compile_jobs as cj


def _jobs():
    fused = [{"kind": "fused", "source": f"# kernel {i}\n", "deps": [], "args": []}
             for i in range(5)]
    hand = [{"kind": "hand", "module": "graphc.kernels.cpu.nn",
             "name": "softmax_cross_entropy_fused", "args": [["int", k]]} for k in (1, 2)]
    mm = [{"kind": "matmul", "module": "graphc.kernels.cpu.gemm_call", "name": "gemm",
           "args": []}]
    return fused + hand + mm


def test_groups_keep_a_functions_signatures_together_costliest_first():
    groups = cj.groups(_jobs())
    assert len(groups[0]) == 2  # both signatures of the softmax kernel, first
    assert groups[0][0]["name"] == "softmax_cross_entropy_fused"
    assert groups[1][0]["name"] == "gemm"
    assert sum(len(g) for g in groups) == len(_jobs())


def test_two_processes_sharing_the_claim_folder_take_each_kernel_exactly_once(tmp_path):
    groups = cj.groups(_jobs())
    mine, helper = cj.Queue(groups, str(tmp_path)), cj.Queue(groups, str(tmp_path))
    a, b = iter(mine), iter(helper)
    taken_a, taken_b = [], []
    for job in a:  # interleaved, as two processes run
        taken_a.append(job)
        taken_b += list(itertools.islice(b, 1))
    taken_b += list(b)
    assert taken_a and taken_b
    assert sorted(map(str, taken_a + taken_b)) == sorted(map(str, _jobs()))
    assert sorted(mine.others(), key=str) == sorted(taken_b, key=str)
    assert len(os.listdir(tmp_path)) == len(groups)


def test_without_a_helper_every_job_is_this_processes(monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_JOBS", "1")
    queue, helper = cj.start_helper(_jobs())
    assert helper is None
    assert len(list(queue)) == len(_jobs()) and queue.others() == []
