"""The package's layers: every import (module level and inside functions) goes to the same
layer or one below, the import graph has no cycle, and the registry imports no backend."""

import ast
from pathlib import Path

import aura_lab

PKG = Path(aura_lab.__file__).resolve().parent

#: bottom to top; a module may import its own layer (without a cycle) and the ones below
LAYERS = [
    {"errors"},
    {"_arrays", "_abi", "_cache", "_control"},
    {"registry"},
    {"_mojo", "_max", "_auto"},
    {"distance", "ssd", "routing", "persistence", "diagrams", "neighbors"},
    {"models", "collection"},
    {"estimators"},
    {"harness"},
    {"widgets", "cli"},
    {""},  # aura_lab/__init__.py, the public API
]


def _modules() -> dict[str, Path]:
    """'ssd.kernels' -> path, '' for the package itself."""
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known) -> set[str]:
    """The package modules ``name`` imports, anywhere in the file."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if name else []
    base = here if is_pkg else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "aura_lab" or a.name.startswith("aura_lab."):
                    found.add(a.name.removeprefix("aura_lab").lstrip("."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - (node.level - 1)]
                mod = ".".join([*parent, *(node.module.split(".") if node.module else [])])
            elif node.module and (node.module == "aura_lab" or node.module.startswith("aura_lab.")):
                mod = node.module.removeprefix("aura_lab").lstrip(".")
            else:
                continue
            for a in node.names:  # `from . import x` imports the submodule x when there is one
                sub = f"{mod}.{a.name}" if mod else a.name
                found.add(sub if sub in known else mod)
    return {m for m in found if m in known and m != name}


def _layer(name: str) -> int:
    top = name.split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def _graph():
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def test_every_module_is_in_a_layer():
    for name in _modules():
        assert any(name.split(".")[0] in layer for layer in LAYERS), f"aura_lab.{name} is in no layer of {__name__}"


def test_imports_go_down_or_sideways():
    for name, deps in _graph().items():
        for dep in deps:
            same_package = name.split(".")[0] == dep.split(".")[0]
            assert same_package or _layer(dep) <= _layer(name), f"aura_lab.{name} imports aura_lab.{dep}, a higher layer"


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(f"aura_lab.{x}" for x in [*path, m, d]))
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


#: every op is a package of the same stages: ``problem`` (validation into one problem, the
#: kernel ABI), ``reference`` (the independent oracle), ``kernels`` (mojo and max), ``api``
#: (the public functions), and ``torch_impl`` where torch is one of its backends
OP_STAGES = {"api", "problem", "reference", "kernels"}


def test_every_op_is_a_package_of_the_same_stages():
    import importlib
    import pkgutil

    for name in ("distance", "ssd", "routing", "persistence"):
        pkg = importlib.import_module(f"aura_lab.{name}")
        stages = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
        assert OP_STAGES <= stages, f"aura_lab.{name} lacks {sorted(OP_STAGES - stages)}"
        assert ("torch_impl" in stages) == ("torch" in pkg.op.backends), name


#: the kernels' side of the same shape: kernels/aura_kernels/<op>/ holds the op's compute
#: modules, its generated parameter block ``abi.mojo`` and, where the op has a max backend, the
#: MAX custom op ``ops.mojo``; only the shared helpers stay at the top
KERNEL_OPS = {"distance", "neighbors", "persistence", "routing", "ssd"}


def test_every_op_is_a_kernel_folder_of_the_same_files():
    from aura_lab import _mojo
    from aura_lab._abi import KernelABI
    from aura_lab.registry import Op

    root = _mojo.kernels_dir() / "aura_kernels"
    assert sorted(p.name for p in root.glob("*.mojo")) == ["__init__.mojo", "common.mojo"]
    assert {p.name for p in root.iterdir() if p.is_dir()} == KERNEL_OPS
    for name in KERNEL_OPS:
        assert (root / name / "__init__.mojo").is_file() and (root / name / "abi.mojo").is_file(), name
    with_max = {name for name in ("distance", "routing", "ssd", "persistence") if "max" in Op.registry[name].backends}
    assert {name for name in KERNEL_OPS if (root / name / "ops.mojo").is_file()} == with_max
    for abi in KernelABI.registry.values():  # every generated block lives in its op's folder
        assert abi.mojo_path(_mojo.kernels_dir()).parent.name in KERNEL_OPS, abi.name


def test_registry_imports_no_backend_or_harness():
    assert _graph()["registry"] <= {"errors", "_control"}


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    p = tmp_path / "mod.py"
    p.write_text("from .errors import X\ndef f():\n    from . import _mojo\n    import aura_lab.harness.core\n")
    assert _imports("distance", p, _modules()) == {"errors", "_mojo", "harness.core"}


def test_ruff_finds_nothing():
    """The project's lint rules (pyproject.toml [tool.ruff]) hold on every Python file."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is not installed (it is in the test extra)"
    proc = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=PKG.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
