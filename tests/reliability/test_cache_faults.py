"""Faults in the kernel cache (aura_lab/_cache.py, aura_lab/_mojo.py): a damaged library is
rebuilt, never loaded; an unwritable cache, or one that is not private, falls back to a
private one; the lock and seal files follow no planted link; a build killed with SIGKILL
never blocks the next; a live build is waited for with a limit; a full disk says so; two
source trees sharing a cache keep each other's builds."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import namedtuple

import pytest

import aura_lab
from aura_lab import _cache, _mojo

from ..integration.test_mojo_pipeline import HELLO, sandbox  # noqa: F401  (the fixture)

pytestmark = pytest.mark.requires("mojo")

_ADD = "from aura_lab import _mojo; print(_mojo.load('hello').add(40, 2))"


def _load_in_child(sandbox, extra_env=None) -> subprocess.CompletedProcess:
    """A fresh interpreter loading the hello kernel from the sandbox's cache (a library once
    dlopen()ed stays mapped in its process, so reloading is tested in new processes)."""
    env = {**os.environ, "AURA_LAB_KERNELS": str(sandbox), **(extra_env or {})}
    return subprocess.run([sys.executable, "-c", _ADD], env=env, capture_output=True, text=True, timeout=300)


def _build_hello(sandbox):
    (sandbox / "hello.mojo").write_text(HELLO)
    lib = _mojo.build("hello", quiet=True)
    assert _mojo.is_intact(lib) and _mojo.seal_path(lib).is_file()
    return sandbox, lib


@pytest.fixture
def built(sandbox):  # noqa: F811
    """The sandbox with hello compiled into its cache (a build of its own: it takes the lock)."""
    return _build_hello(sandbox)


@pytest.fixture(scope="module")
def hello_library(tmp_path_factory):
    """hello compiled once for this file, in a kernels dir and cache of its own."""
    root = tmp_path_factory.mktemp("hello")
    (root / "kernels").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AURA_LAB_KERNELS", str(root / "kernels"))
        mp.setenv("AURA_LAB_CACHE", str(root / "cache"))
        return _build_hello(root / "kernels")[1]


@pytest.fixture
def copied(sandbox, hello_library):  # noqa: F811
    """As ``built``, from a copy of ``hello_library`` (the same sources give the same file name,
    so ``build`` finds it): a compile less per test."""
    (sandbox / "hello.mojo").write_text(HELLO)
    lib = _mojo.library_path("hello")
    for src, dst in ((hello_library, lib), (_mojo.seal_path(hello_library), _mojo.seal_path(lib))):
        shutil.copy(src, dst)
    return _build_hello(sandbox)


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "unsealed"])
def test_a_damaged_library_is_rebuilt_not_loaded(copied, damage):
    sandbox, lib = copied
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
    root = _mojo.build_dir()  # created on first use
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


# ------------------------------------------------------------------------------ a private cache

def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_cache_directories_and_lock_are_private(built):
    sandbox, lib = built
    root, build_dir = _cache.configured_root(), lib.parent
    assert _cache.cache_root() == root and build_dir.parent == root
    assert _mode(root) == 0o700 and _mode(build_dir) == 0o700
    assert _mode(build_dir / "hello.lock") == 0o600
    assert [p.name for p in build_dir.iterdir() if p.name.endswith(".tmp")] == []  # no seal temporary left


def _make_foreign(path):
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)


def _make_world_writable(path):
    path.mkdir()
    path.chmod(0o777)


def _make_symlink(path):
    (path.parent / "elsewhere").mkdir(mode=0o700)
    path.symlink_to(path.parent / "elsewhere")


NOT_PRIVATE = {"foreign-owned": (_make_foreign, r"is owned by uid 65534, not by this user"),
               "world-writable": (_make_world_writable, r"can be written by its group or others \(mode 0777\)"),
               "a symlink": (_make_symlink, r"is a symbolic link")}


@pytest.mark.parametrize("how", [pytest.param("foreign-owned", marks=pytest.mark.requires("root")), "world-writable", "a symlink"])
def test_a_cache_root_that_is_not_private_is_refused(sandbox, how):  # noqa: F811
    configured = _cache.configured_root()
    make, why = NOT_PRIVATE[how]
    make(configured)
    with pytest.warns(aura_lab.AuraCacheWarning, match=rf"{why}.* \(a cache must be private.*uses the temporary cache"):
        root = _cache.cache_root()
    assert root != configured and not _cache.not_private(root)
    assert _mojo.build_dir().parent == root and _cache.cache_root() == root  # one fallback per process and directory


@pytest.mark.parametrize("how", [pytest.param("foreign-owned", marks=pytest.mark.requires("root")), "world-writable"])
def test_a_build_dir_that_is_not_private_is_refused(sandbox, how):  # noqa: F811
    (sandbox / "hello.mojo").write_text(HELLO)
    configured = _cache.configured_root()
    assert _cache.cache_root() == configured  # private: used
    make, why = NOT_PRIVATE[how]
    planted = configured / _mojo.build_dir().name
    planted.rmdir()
    make(planted)
    with pytest.warns(aura_lab.AuraCacheWarning, match=rf"holds {planted.name}, which {why}"):
        build_dir = _mojo.build_dir()
    assert build_dir.name == planted.name and build_dir.parent == _cache.cache_root() != configured
    assert _mode(build_dir) == 0o700
    assert _mojo.load("hello").add(20, 22) == 42  # built and loaded from the fallback
    assert _mojo.library_path("hello").is_relative_to(build_dir) and list(planted.iterdir()) == []


def test_a_symlinked_lock_file_is_not_followed(sandbox, tmp_path):  # noqa: F811
    (sandbox / "hello.mojo").write_text(HELLO)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (_mojo.build_dir() / "hello.lock").symlink_to(victim)
    with pytest.raises(_mojo.MojoBuildError, match=r"hello.lock is a symbolic link: refusing to use it"):
        _mojo.build("hello")
    assert victim.read_text() == "precious\n"


def test_the_seal_is_written_through_a_fresh_temporary_file(sandbox, tmp_path):  # noqa: F811
    target = _mojo.build_dir() / "hello-0123456789abcdef.so"
    target.write_bytes(b"a library")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    old_name = _mojo.seal_path(target).with_suffix(f".{os.getpid()}.tmp")  # the name used to be predictable
    old_name.symlink_to(victim)
    _mojo._seal(target)
    assert victim.read_text() == "precious\n" and _mojo.is_intact(target)
    assert _mode(_mojo.seal_path(target)) == 0o600


def test_the_lock_files_content_is_not_printed_raw(sandbox, monkeypatch, capfd):  # noqa: F811
    (sandbox / "hello.mojo").write_text(HELLO)
    lock = _mojo.build_dir() / "hello.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
         "os.write(fd, b'\\x1b]0;owned\\x07\\x1b[2J')\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)", str(lock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("AURA_LAB_LOCK_TIMEOUT", "0.3")
        with pytest.raises(_mojo.MojoBuildError, match=r"waiting for process \? \(the lock file holds ") as e:
            _mojo.build("hello")
    finally:
        holder.kill()
        holder.wait()
    err = capfd.readouterr().err
    assert "waiting for process ?" in err
    assert "\x1b" not in err and "\x1b" not in str(e.value) and r"\x1b" in str(e.value)


# ------------------------------------------------------------------------------ two source trees

def _fake_compiler(tmp_path):
    """A stand-in for ``mojo`` that logs each run and writes a small file naming its source
    (a build here is then a few ms, and each source gives different bytes)."""
    log = tmp_path / "compiler.log"
    fake = tmp_path / "fake-mojo"
    fake.write_text(f'#!/bin/sh\necho "$2" >> {log}\nfor a; do out="$a"; done\nprintf "library of %s" "$2" > "$out"\n')
    fake.chmod(0o755)
    return fake, log


def _runs(log) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_two_source_trees_sharing_a_cache_keep_their_builds(sandbox, tmp_path, monkeypatch):  # noqa: F811
    tree_a, tree_b = sandbox, tmp_path / "kernels-b"
    tree_b.mkdir()
    (tree_a / "hello.mojo").write_text(HELLO)
    (tree_b / "hello.mojo").write_text(HELLO + "\n# tree B: one comment more\n")
    fake, log = _fake_compiler(tmp_path)
    monkeypatch.setattr(_mojo, "mojo_binary", lambda: fake)
    built = {}
    for tree in [tree_a, tree_b, tree_a, tree_b, tree_a]:
        monkeypatch.setenv("AURA_LAB_KERNELS", str(tree))
        built.setdefault(tree, _mojo.build("hello", quiet=True))
        assert _mojo.build("hello", quiet=True) == built[tree] and _mojo.is_intact(built[tree])
    assert _runs(log) == 2 and built[tree_a] != built[tree_b]  # no rebuild on a switch
    assert sorted(p.name for p in _mojo.build_dir().glob("hello-*.so")) == sorted(p.name for p in built.values())


def test_builds_unused_for_30_days_are_evicted(sandbox, tmp_path, monkeypatch):  # noqa: F811
    (sandbox / "hello.mojo").write_text(HELLO)
    fake, log = _fake_compiler(tmp_path)
    monkeypatch.setattr(_mojo, "mojo_binary", lambda: fake)
    used = _mojo.build("hello", quiet=True)
    stale = used.with_name("hello-0000000000000000.so")
    stale.write_bytes(b"an old build")
    _mojo._seal(stale)
    month_ago = time.time() - 31 * 86400
    for p in (used, stale):
        os.utime(p, (month_ago, month_ago))
    assert _mojo.build("hello", quiet=True) == used  # a use: touched, so it stays
    assert used.stat().st_mtime > month_ago
    (sandbox / "hello.mojo").write_text(HELLO + "\n# changed\n")
    new = _mojo.build("hello", quiet=True)  # a build evicts what nobody used for 30 days
    assert _runs(log) == 2 and new != used
    assert new.is_file() and used.is_file() and _mojo.is_intact(used)
    assert not stale.exists() and not _mojo.seal_path(stale).exists()


def test_a_load_that_races_with_an_eviction_is_retried(copied, monkeypatch):
    real_build, paths = _mojo.build, []

    def build_then_evicted(stem, **kw):
        path = real_build(stem, quiet=True)
        if not paths:  # another process removes it between the check and the load
            path.unlink()
        paths.append(path)
        return path

    monkeypatch.setattr(_mojo, "build", build_then_evicted)
    assert _mojo.load("hello").add(2, 3) == 5
    assert len(paths) == 2 and _mojo.is_intact(paths[0])
