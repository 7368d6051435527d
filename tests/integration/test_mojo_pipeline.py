"""The Mojo build pipeline: per-user cache, keys, diagnostics, concurrent cold starts."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import aura_lab
from aura_lab import _mojo
from aura_lab.registry import backend_status

pytestmark = pytest.mark.requires("mojo")

HELLO = textwrap.dedent(
    """
    from std.python import PythonObject
    from std.python.bindings import PythonModuleBuilder
    from std.os import abort

    @export
    def PyInit_hello() abi("C") -> PythonObject:
        try:
            var m = PythonModuleBuilder("hello")
            m.def_function[add]("add", docstring="add")
            return m.finalize()
        except e:
            abort(String("error creating module:", e))

    def add(a: PythonObject, b: PythonObject) raises -> PythonObject:
        return Int(py=a) + Int(py=b)
    """
)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A private kernels dir and cache; module-level caches are reset around the test."""
    kdir = tmp_path / "kernels"
    kdir.mkdir()
    monkeypatch.setenv("AURA_LAB_KERNELS", str(kdir))
    monkeypatch.setenv("AURA_LAB_CACHE", str(tmp_path / "cache"))
    saved = dict(_mojo._loaded)
    _mojo._loaded.clear()
    yield kdir
    _mojo._loaded.clear()
    _mojo._loaded.update(saved)


def test_cache_is_per_user_and_keyed_on_compiler_and_cpu(sandbox, tmp_path, monkeypatch):
    (sandbox / "hello.mojo").write_text(HELLO)
    path = _mojo.library_path("hello")
    assert path.parent == tmp_path / "cache" / f"mojo-{_mojo.compiler_version()}-{_mojo.cpu_key()}"
    assert Path(aura_lab.__file__).parent not in path.parents
    # another compiler version or CPU never maps to the same file
    with monkeypatch.context() as mp:
        mp.setattr(_mojo, "compiler_version", lambda: "9.9.9")
        assert _mojo.library_path("hello").parent.name.startswith("mojo-9.9.9-")
    with monkeypatch.context() as mp:
        mp.setattr(_mojo, "cpu_key", lambda: "othercpu0000")
        assert _mojo.library_path("hello").parent.name.endswith("-othercpu0000")
    assert _mojo.library_path("hello") == path


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("AURA_LAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _mojo.cache_root() == tmp_path / "aura_lab"
    monkeypatch.setenv("AURA_LAB_CACHE", str(tmp_path / "x"))
    assert _mojo.cache_root() == tmp_path / "x"


def test_build_load_and_source_change_rebuilds(sandbox, capsys):
    (sandbox / "hello.mojo").write_text(HELLO)
    mod = _mojo.load("hello")
    assert mod.add(2, 40) == 42
    assert "compiling kernels/hello.mojo" in capsys.readouterr().err
    first = _mojo.library_path("hello")
    (sandbox / "hello.mojo").write_text(HELLO.replace("Int(py=a) + Int(py=b)", "Int(py=a) * Int(py=b)"))
    second = _mojo.build("hello", quiet=True)
    assert second != first and second.is_file()
    assert first.exists()  # kept: another tree may use it (evicted once unused for 30 days)


def test_compile_error_carries_diagnostics(sandbox):
    (sandbox / "hello.mojo").write_text(HELLO.replace("return Int(py=a) + Int(py=b)", "return undefined_name(a)"))
    with pytest.raises(_mojo.MojoBuildError) as ei:
        _mojo.load("hello")
    assert isinstance(ei.value, RuntimeError)
    assert "undefined_name" in ei.value.diagnostics
    assert "mojo build of kernels/hello.mojo failed" in str(ei.value) and "undefined_name" in str(ei.value)


def test_unknown_kernel(sandbox):
    with pytest.raises(ValueError, match="unknown kernel 'nope'"):
        _mojo.build("nope")


def test_concurrent_cold_cache_all_succeed(sandbox, tmp_path):
    (sandbox / "hello.mojo").write_text(HELLO)
    code = "from aura_lab import _mojo; print(_mojo.load('hello').add(1, 2))"
    env = {**os.environ, "AURA_LAB_KERNELS": str(sandbox), "AURA_LAB_CACHE": str(tmp_path / "cold")}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert out.strip() == "3"
    assert sum("compiling kernels/hello.mojo" in err for _, err in results) == 1  # one compiled, the others waited


def test_broken_kernel_explicit_raises_and_auto_falls_back(monkeypatch, tmp_path):
    kdir = tmp_path / "kernels"
    kdir.mkdir()
    (kdir / "distance.mojo").write_text("this is not mojo\n")
    monkeypatch.setenv("AURA_LAB_KERNELS", str(kdir))
    monkeypatch.setenv("AURA_LAB_CACHE", str(tmp_path / "cache"))
    from aura_lab.distance import op

    monkeypatch.setattr(op, "auto_candidates", lambda size=None: (["mojo", "torch", "numpy"], "test order"))
    saved = dict(_mojo._loaded)
    _mojo._loaded.clear()
    try:
        X = np.random.default_rng(0).random((5, 3))
        with pytest.raises(RuntimeError, match="mojo build of kernels/distance.mojo failed"):
            aura_lab.pairwise_distances(X, backend="mojo")
        with pytest.warns(aura_lab.AuraFallbackWarning, match="auto skipped mojo"):
            D = aura_lab.pairwise_distances(X)
        assert aura_lab.last_dispatch().backend == "torch"
        assert np.allclose(D, aura_lab.pairwise_distances(X, backend="numpy"))
    finally:
        _mojo._loaded.clear()
        _mojo._loaded.update(saved)


def test_every_kernel_builds():
    for name in _mojo.kernel_names():
        assert _mojo.build(name, quiet=True).is_file()
    assert "kernels built" in backend_status("mojo").detail


def test_mojo_calls_release_the_gil():
    """A Python thread keeps running while a mojo kernel computes."""
    import threading
    import time

    X = np.random.default_rng(0).random((4096, 64)).astype(np.float32)
    out = np.empty((4096, 4096), np.float32)
    aura_lab.pairwise_distances(X, backend="mojo", out=out)  # warm
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.01)
    before = len(ticks)
    t0 = time.perf_counter()
    aura_lab.pairwise_distances(X, backend="mojo", out=out)
    t1 = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if t0 <= x <= t1]
    assert before > 0 and len(during) >= 2, (len(during), t1 - t0)


def test_loading_a_kernel_leaves_child_processes_in_this_environment():
    """The Mojo runtime setenv()s PYTHONEXECUTABLE/PYTHONPATH when a module loads; we undo it."""
    _mojo.load("distance")
    r = subprocess.run([sys.executable, "-c", "import sys, os; print(sys.executable); print(os.environ.get('PYTHONPATH'))"],
                       capture_output=True, text=True, check=True)
    exe, pypath = r.stdout.splitlines()
    assert exe == sys.executable
    assert pypath == str(os.environ.get("PYTHONPATH"))
