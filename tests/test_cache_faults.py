"""Faults in the kernel cache (aura_lab/_cache.py, aura_lab/_mojo.py): a damaged library is
rebuilt, never loaded; an unwritable cache falls back to a private one; a build killed with
SIGKILL never blocks the next; a live build is waited for with a limit; a full disk says so."""

import os
import signal
import subprocess
import sys
import time
from collections import namedtuple

import pytest

import aura_lab
from aura_lab import _cache, _mojo

from .test_mojo_pipeline import HELLO, sandbox  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(not _mojo.status()[0], reason=f"Mojo compiler missing: {_mojo.status()[2]}")

_ADD = "from aura_lab import _mojo; print(_mojo.load('hello').add(40, 2))"


def _load_in_child(sandbox, extra_env=None) -> subprocess.CompletedProcess:
    """A fresh interpreter loading the hello kernel from the sandbox's cache (a library once
    dlopen()ed stays mapped in its process, so reloading is tested in new processes)."""
    env = {**os.environ, "AURA_LAB_KERNELS": str(sandbox), **(extra_env or {})}
    return subprocess.run([sys.executable, "-c", _ADD], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def built(sandbox):  # noqa: F811
    (sandbox / "hello.mojo").write_text(HELLO)
    lib = _mojo.build("hello", quiet=True)
    assert _mojo.is_intact(lib) and _mojo.seal_path(lib).is_file()
    return sandbox, lib


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "unsealed"])
def test_a_damaged_library_is_rebuilt_not_loaded(built, damage):
    sandbox, lib = built
    data = bytearray(lib.read_bytes())
    if damage == "truncated":
        lib.write_bytes(data[: len(data) // 3])
    elif damage == "corrupted":  # same size, a run of bytes in the middle overwritten
        mid = len(data) // 2
        data[mid:mid + 4096] = b"\xcc" * 4096
        lib.write_bytes(data)
    else:  # a cache written before seals existed
        _mojo.seal_path(lib).unlink()
    assert not _mojo.is_intact(lib)
    r = _load_in_child(sandbox)
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
    why = "has no checksum seal" if damage == "unsealed" else "does not match its checksum"
    assert why in r.stderr and "compiling kernels/hello.mojo" in r.stderr
    assert _mojo.is_intact(lib)
    r = _load_in_child(sandbox)  # and the rebuilt one is simply loaded
    assert r.returncode == 0 and r.stdout.strip() == "42" and "compiling" not in r.stderr


def test_an_unwritable_cache_falls_back_to_a_private_one(sandbox, tmp_path, monkeypatch):  # noqa: F811
    (sandbox / "hello.mojo").write_text(HELLO)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("AURA_LAB_CACHE", str(blocker / "cache"))  # unwritable even for root
    with pytest.warns(aura_lab.AuraCacheWarning, match=r"cannot be written .* uses the temporary cache"):
        root = _cache.cache_root()
    assert root != blocker / "cache" and root.is_dir()
    assert _mojo.load("hello").add(1, 2) == 3
    assert _mojo.library_path("hello").is_relative_to(root)
    assert _cache.cache_root() == root  # one fallback per process and directory


def _wait_for(cond, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_build_killed_with_sigkill_never_blocks_the_next(sandbox, tmp_path):  # noqa: F811
    (sandbox / "hello.mojo").write_text(HELLO)
    env = {**os.environ, "AURA_LAB_KERNELS": str(sandbox), "AURA_LAB_CACHE": str(tmp_path / "cache")}
    child = subprocess.Popen([sys.executable, "-c", _ADD], env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    build_dir = tmp_path / "cache" / f"mojo-{_mojo.compiler_version()}-{_mojo.cpu_key()}"
    _wait_for(lambda: any(build_dir.glob(".hello-*")))  # holding the lock, compiling
    os.killpg(child.pid, signal.SIGKILL)  # the interpreter and its compiler, mid-build
    child.wait()
    lib = _mojo.build("hello", quiet=True)  # in this process: must neither wait nor fail
    assert _mojo.is_intact(lib) and not any(build_dir.glob(".hello-*"))
    assert _mojo.load("hello").add(2, 2) == 4


def test_a_live_build_elsewhere_is_waited_for_with_a_limit(sandbox, tmp_path, monkeypatch):  # noqa: F811
    (sandbox / "hello.mojo").write_text(HELLO)
    root = _mojo.build_dir()
    root.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from aura_lab import _mojo\n"
         "with _mojo._build_lock(Path(sys.argv[1]), 'hello', 'x', True):\n print('held', flush=True); time.sleep(120)",
         str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("AURA_LAB_LOCK_TIMEOUT", "0.5")
        with pytest.raises(_mojo.MojoBuildError, match=rf"timed out after 0.5 s waiting for process {holder.pid}, which is building"):
            _mojo.build("hello")
    finally:
        holder.kill()
        holder.wait()
    assert _mojo.build("hello", quiet=True).is_file()  # the lock died with its holder


def test_a_full_disk_gives_a_clear_error(sandbox, tmp_path, monkeypatch):  # noqa: F811
    (sandbox / "hello.mojo").write_text(HELLO)
    Usage = namedtuple("Usage", "total used free")
    with monkeypatch.context() as mp:
        mp.setattr(_mojo.shutil, "disk_usage", lambda p: Usage(1 << 30, (1 << 30) - (5 << 20), 5 << 20))
        with pytest.raises(_mojo.MojoBuildError, match=r"is full \(5 MiB free; a build needs about 64 MiB\)"):
            _mojo.build("hello")
    # the compiler running out of space mid-build (a stand-in compiler that says what one would)
    fake = tmp_path / "mojo"
    fake.write_text("#!/bin/sh\necho 'error: write failed: No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(_mojo, "mojo_binary", lambda: fake)
    with pytest.raises(_mojo.MojoBuildError, match=r"is full .*\n.*No space left on device"):
        _mojo.build("hello")
    assert not any(_mojo.build_dir().glob(".hello-*")) and not _mojo.library_path("hello").exists()
