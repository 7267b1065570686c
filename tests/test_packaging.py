"""Packaging: the top-level kernels/ folder installs as graphc.kernels, and neither a
top-level `kernels` nor `benchmarks` package lands in site-packages (both names are taken by
other projects)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _packages_on_disk() -> set:
    """Every folder with an __init__.py under graphc/ and kernels/, by installed name."""
    found = set()
    for top, installed in (("graphc", "graphc"), ("kernels", "graphc.kernels")):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in files and "__pycache__" not in folder:
                rel = os.path.relpath(folder, os.path.join(ROOT, top))
                found.add(installed if rel == "." else installed + "." + rel.replace(os.sep, "."))
    return found


def test_pyproject_lists_every_package_and_maps_kernels_under_graphc():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)["tool"]["setuptools"]
    assert set(config["packages"]) == _packages_on_disk()
    assert config["package-dir"]["graphc.kernels"] == "kernels"
    assert not any(p.split(".")[0] in ("kernels", "benchmarks") for p in config["packages"])


def test_generated_kernels_import_helpers_from_graphc_kernels():
    from graphc.kernels.codegen.elementwise import KernelSpec, render

    spec = KernelSpec("t", 1, (("float32", (True,)),), (("v0", "exp(x0)", ""),),
                      (("v0", "float32"),))
    source = render(spec)
    assert "from graphc.kernels.mathlib import" in source
    assert "from kernels" not in source


@pytest.mark.slow
def test_an_install_has_graphc_kernels_and_no_top_level_kernels_or_benchmarks(tmp_path):
    target = tmp_path / "site"
    # (with build isolation: pip brings the setuptools pyproject asks for, as a user's does)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), ROOT],
                   check=True, capture_output=True, text=True)
    assert (target / "graphc" / "kernels" / "mathlib.py").is_file()
    assert (target / "graphc" / "kernels" / "cpu" / "nn.py").is_file()
    assert not (target / "kernels").exists()
    assert not (target / "benchmarks").exists()
    # outside the clone, `import kernels` and `import benchmarks` fail; graphc.kernels works
    probe = ("import importlib.util as u, graphc.kernels.mathlib as m; "
             "print(m.__file__); print(u.find_spec('kernels'), u.find_spec('benchmarks'))")
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert out[0].startswith(str(target))
    assert out[1] == "None None"


def test_the_suite_never_compiles_into_the_users_kernel_cache():
    from graphc.kernels import cache

    here = os.path.realpath(str(cache.cache_dir()))
    users = os.path.realpath(os.path.join(os.path.expanduser("~"), ".cache", "graphc"))
    assert here != users
    assert os.environ["GRAPHC_CACHE_DIR"]  # conftest's private cache, or the caller's own
