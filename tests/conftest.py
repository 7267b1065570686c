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


def _cpu_available() -> bool:
    """True when the fused CPU backend can be imported and has registered itself.

    `graphc/backends/cpu/` may exist as an empty folder (a namespace package) before the
    backend is written, so importing it is not enough: the backend must also be registered.
    """
    try:
        import graphc.backends.cpu  # noqa: F401
        from graphc.function import _backend

        _backend("cpu")
    except Exception:  # noqa: BLE001 - any failure means "not available yet"
        return False
    return True


BACKENDS = ["numpy"] + (["cpu"] if _cpu_available() else [])


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The name of a backend to compile with; tests using it run once per backend."""
    return request.param


settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
