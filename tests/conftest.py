"""Shared fixtures: the backends every op and example test runs on, and hypothesis profiles."""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# run from a checkout without installing: make `import graphc` find this repository's package
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# The suite compiles into a kernel cache of its own beside the tests (kept between runs, so
# a second run is fast), never into the user's: a GRAPHC_CACHE_DIR the caller set wins (CI).
TEST_KERNEL_CACHE = os.path.join(_ROOT, ".test-kernel-cache")
os.environ.setdefault("GRAPHC_CACHE_DIR", TEST_KERNEL_CACHE)


# Every backend the suite runs on, listed explicitly: one that fails to import fails the
# suite (a silently dropped backend would let CI go green on numpy alone).
BACKENDS = ["numpy", "cpu"]


def _cuda_mode() -> str:
    """How the cuda backend runs here: "gpu" where an NVIDIA device node exists, else
    "simulator" (Numba's CUDA simulator, switched on now, before numba.cuda is imported:
    so the same tests run unchanged on a GPU and without one)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "simulator"
    if os.path.exists("/dev/nvidiactl"):
        return "gpu"
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    return "simulator"


CUDA_MODE = _cuda_mode()
# The op-table suite (tests/test_ops.py) also runs the cuda backend; its test ids say the
# mode: test_forward[cuda-simulator-...] or [cuda-gpu-...].
OP_BACKENDS = BACKENDS + ["cuda"]


def backend_id(name: str) -> str:
    return f"cuda-{CUDA_MODE}" if name == "cuda" else name


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The name of a backend to compile with; tests using it run once per backend."""
    return request.param


settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


CUDA_GRADS_ALL = os.environ.get("GRAPHC_TEST_CUDA_GRADS") == "all"
# window ops: in the simulator one numeric gradient of these takes minutes (every CUDA thread
# a Python thread); their backward ops' device kernels are checked by their own forward
# cases and by tests/test_cuda.py's CNN training step, which must match the cpu step
SIMULATOR_SLOW_GRADS = ("conv2d", "deconv2d", "im2col", "col2im", "max_pool2d",
                        "max_pool2d_grad", "max_pool2d_select", "avg_pool2d",
                        "avg_pool2d_grad", "matmul_shared", "matmul_shared_t",
                        "matmul_batch_sum")


def _simulator_sample(item) -> bool:
    """Whether a cuda gradient check runs in the simulator: test_grad at each op's first
    shape set, window ops left out (see SIMULATOR_SLOW_GRADS)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    case = params.get("case")
    if case is None:
        return True
    return (getattr(item, "originalname", "") == "test_grad" and
            params.get("shapes") == case.shapes[0] and case.op not in SIMULATOR_SLOW_GRADS)


def pytest_collection_modifyitems(config, items):
    """The op table's gradient checks on the cuda backend are `slow`: each is hundreds of
    calls, and the simulator runs every CUDA thread as a Python thread. In the simulator the
    suite keeps a sample (`_simulator_sample`; every one of the 390 would take hours on 2
    cores, which CI cannot afford): the device kernels a gradient runs are the forward
    kernels of the backward ops, which the cuda forward tests check case by case. On a real
    GPU, or with GRAPHC_TEST_CUDA_GRADS=all, every check runs."""
    dropped = []
    for item in items:
        if "[cuda-simulator-" in item.name:
            # the simulator runs kernels on NumPy scalars, which warn where integer
            # arithmetic wraps (compiled device code wraps silently, as NumPy's arrays do)
            item.add_marker(pytest.mark.filterwarnings(
                "ignore:overflow encountered in scalar:RuntimeWarning"))
        if "[cuda-" in item.name and getattr(item, "originalname", "") in (
                "test_grad", "test_grad_with_batch_dim"):
            item.add_marker(pytest.mark.slow)
            if CUDA_MODE == "simulator" and not CUDA_GRADS_ALL and not _simulator_sample(item):
                dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        keep = set(map(id, dropped))
        items[:] = [item for item in items if id(item) not in keep]
