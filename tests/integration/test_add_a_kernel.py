"""The docs' "How to add a kernel" (docs/adding-a-kernel.md) builds a working op: its module,
kernel and harness entry are taken from the page's code blocks as they stand, the kernel is compiled, and
both backends are checked through the public function and the harness."""

import importlib.util
import re
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import aura_lab
from aura_lab import _mojo, harness
from aura_lab._abi import KernelABI
from aura_lab.registry import Op

RECIPE = Path(__file__).resolve().parents[2] / "docs" / "adding-a-kernel.md"


def recipe_block(first_line: str) -> str:
    """The fenced code block of the recipe page that starts with ``first_line``."""
    for block in re.findall(r"```(?:python|mojo)\n(.*?)```", RECIPE.read_text(), re.S):
        code = textwrap.dedent(block)
        if code.startswith(first_line):
            return code
    raise AssertionError(f"{RECIPE.name}: no code block starting with {first_line!r}")


def load_as(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy op's module and harness entry loaded as aura_lab.scale / aura_lab.harness.scale,
    and a private kernels folder holding its kernel, the generated block and the helpers."""
    (tmp_path / "scale.py").write_text(recipe_block("# aura_lab/scale.py"))
    (tmp_path / "harness_scale.py").write_text(recipe_block("# aura_lab/harness/scale.py"))
    module = load_as("aura_lab.scale", tmp_path / "scale.py")
    entry = load_as("aura_lab.harness.scale", tmp_path / "harness_scale.py")
    kernels = tmp_path / "kernels"
    (kernels / "aura_kernels").mkdir(parents=True)
    (kernels / "scale.mojo").write_text(recipe_block("# kernels/scale.mojo"))
    real = Path(_mojo.kernels_dir())
    shutil.copy(real / "_common.mojo", kernels)
    for name in ("__init__.mojo", "common.mojo"):
        shutil.copy(real / "aura_kernels" / name, kernels / "aura_kernels")
    module.ABI.write(kernels)  # what `python tools/gen_abi.py` does for the repository's kernels
    monkeypatch.setenv("AURA_LAB_KERNELS", str(kernels))
    monkeypatch.setitem(harness.FAMILIES, "scale", "aura_lab.harness.scale")
    yield module, entry
    for name in ("aura_lab.scale", "aura_lab.harness.scale"):
        sys.modules.pop(name, None)
    Op.registry.pop("scale", None)
    KernelABI.registry.pop("scale", None)
    _mojo._loaded.pop("scale", None)


def test_the_toy_op_runs_on_numpy_and_through_auto(toy):
    module, _ = toy
    x = np.arange(5.0)
    np.testing.assert_array_equal(module.scale(x, 2.0, backend="numpy"), 2.0 * x)
    assert aura_lab.last_dispatch().op == "scale" and aura_lab.last_dispatch().backend == "numpy"
    with pytest.raises(ValueError, match=r"x: expected a 1-D array \(n,\), got shape \(2, 2\)"):
        module.scale(np.ones((2, 2)), 2.0)
    assert module.op.backends == ("numpy", "mojo")
    assert "comptime SCALE_LAYOUT" in module.ABI.mojo_source()


@pytest.mark.requires("mojo")
def test_the_toy_kernel_compiles_and_agrees(toy):
    module, entry = toy
    x = np.random.default_rng(0).standard_normal(1000)
    y = module.scale(x, 3.0, backend="mojo")
    np.testing.assert_array_equal(y, 3.0 * x)
    assert aura_lab.last_dispatch().backend == "mojo"
    checks = harness.validate("scale")
    assert [c.backend for c in checks] == ["numpy", "mojo"] and all(c.passed for c in checks)
    assert checks == entry.validate()
