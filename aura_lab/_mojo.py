"""Build and load the Mojo kernels (``kernels/*.mojo``) as Python extension modules.

Each kernel family is one ``.mojo`` file that defines ``PyInit_<stem>``. On first use it
is compiled with ``mojo build <file> --emit shared-lib -I <kernels dir>`` into a per-user
cache, never into site-packages or the source tree:

    $AURA_LAB_CACHE  (default: $XDG_CACHE_HOME/aura_lab, else ~/.cache/aura_lab)
      mojo-<compiler version>-<cpu key>/<stem>-<source hash>.so

The key covers the compiler version, the CPU (model and flags: a cache is never reused on
another CPU) and the hash of the binding's source, the shared helpers ``_*.mojo`` and the
compute package ``aura_kernels/`` (a change there rebuilds every kernel). ``mojo.importer`` is not used: its cache omits the compiler
and the CPU, it writes next to the sources, and concurrent first imports race
(``file too short``). Here a build takes an exclusive ``fcntl`` lock, compiles into a
temporary file and renames it into place, so any number of processes can start on a cold
cache: one compiles, the others wait and load the result.

The cache and its ``mojo-*`` directory must be private (``_cache.cache_dir``: else a
temporary cache is used). Builds of other sources stay (two source trees can share a cache)
until unused for ``EVICT_AFTER_S``; a load touches its library, and a load that races with an
eviction is retried once.

Fork: the Mojo runtime's worker threads do not survive ``os.fork``; a multi-threaded kernel
call in a child forked after a kernel was loaded would wait for them forever. Such a child
runs its kernels on one thread (``registry.single_thread_after_fork``, with a warning).

libpython: on its first start in a process the Mojo runtime looks for libpython by running
``sh -c "python3 -c ..."`` (whatever ``python3`` is first on PATH, possibly another
interpreter) unless ``MOJO_PYTHON_LIBRARY`` is set: ~0.7 s of the first kernel call, and a
child in the caller's process group, which Jupyter's interrupt (sent to the group) reaches
too (a CI run saw it killed mid-start and the interrupt shown late; not reproduced). Importing
this module points the runtime at this interpreter's libpython
(``point_the_runtime_at_this_python``), so no such child runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

from . import registry
from ._cache import PRIVATE_MODE, cache_dir, cache_root, cpu_key, memoized, write_atomically  # noqa: F401 (cache_root: re-exported)
from .errors import MojoBuildError, MojoUnavailable
from .registry import BackendStatus, register_backend

_lock = threading.Lock()
_loaded: dict[str, object] = {}


def kernels_dir() -> Path:
    """The directory holding ``*.mojo``: $AURA_LAB_KERNELS, else inside the installed wheel,
    else the source tree."""
    env = os.environ.get("AURA_LAB_KERNELS")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parent
    for cand in (here / "kernels", here.parent / "kernels"):
        if cand.is_dir() and any(cand.glob("*.mojo")):
            return cand
    raise MojoUnavailable(f"no kernels/*.mojo found next to {here}")


def kernel_names() -> list[str]:
    """Stems of the buildable kernel modules (files starting with '_' are shared helpers)."""
    return sorted(p.stem for p in kernels_dir().glob("*.mojo") if not p.stem.startswith("_"))


@lru_cache(maxsize=1)
def compiler_version() -> str:
    try:
        return importlib.metadata.version("mojo-compiler")
    except importlib.metadata.PackageNotFoundError:
        raise MojoUnavailable(
            "the Mojo compiler is not installed (pip install mojo-compiler==1.2.0, "
            "or run `make test`/`make lab`, which set up .venv)"
        ) from None


@lru_cache(maxsize=1)
def _package_root() -> Path:
    try:
        from mojo._package_root import get_package_root
    except ImportError as e:  # pragma: no cover - depends on the install
        raise MojoUnavailable(f"cannot import the mojo package: {e}") from None
    with root_logging_untouched():
        return Path(get_package_root())


@contextlib.contextmanager
def root_logging_untouched():
    """Undo what a library's module-level ``logging.debug(...)`` does to an unconfigured root
    logger: its implicit ``basicConfig()`` adds a stderr handler, after which every library's
    INFO records (a Dask scheduler's dozen lines per start and stop) print in the caller's
    notebook. mojo's ``get_package_root`` is one such call."""
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        yield
    finally:
        if not before:
            for h in [h for h in root.handlers if h not in before]:
                root.removeHandler(h)


@lru_cache(maxsize=1)
def mojo_binary() -> Path:
    root = _package_root()
    for cand in (Path(sys.prefix) / "bin" / "mojo", root / "bin" / "mojo"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise MojoUnavailable(f"the mojo compiler binary was not found (looked in {sys.prefix}/bin and {root}/bin)")


def files_hash(paths) -> str:
    h = hashlib.sha256()
    root = kernels_dir()
    for p in paths:
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def sources_hash(stem: str) -> str:
    """Hash of ``<stem>.mojo``, the binding helpers ``_*.mojo`` and the compute package
    ``aura_kernels/`` it imports from."""
    d = kernels_dir()
    return files_hash([d / f"{stem}.mojo", *sorted(d.glob("_*.mojo")), *sorted(d.glob("aura_kernels/**/*.mojo"))])


def build_dir() -> Path:
    """This compiler's and CPU's directory of the cache: private, created when missing (see
    ``_cache.cache_dir``)."""
    return cache_dir(f"mojo-{compiler_version()}-{cpu_key()}")


def library_path(stem: str) -> Path:
    return build_dir() / f"{stem}-{sources_hash(stem)}.so"


@lru_cache(maxsize=1)
def _preload_runtime() -> None:
    """Built ``.so`` files carry an absolute RUNPATH to the venv that built them; load the
    runtime libraries of *this* environment globally so the sonames always resolve."""
    lib = _package_root() / "lib"
    for name in ("libKGENCompilerRTShared.so", "libAsyncRTMojoBindings.so"):
        path = lib / name
        if not path.is_file():
            raise MojoUnavailable(f"Mojo runtime library missing: {path} (is max==26.7.0 installed?)")
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)


def _say(msg: str) -> None:
    print(f"aura_lab: {msg}", file=sys.stderr, flush=True)


#: a build is refused below this much free disk in the cache (a kernel library is ~1 MiB,
#: the compiler's temporaries a few tens of MiB)
MIN_FREE_BYTES = 64 << 20
#: how long a build waits for another process's build of the same kernel
#: ($AURA_LAB_LOCK_TIMEOUT seconds): a hung compiler elsewhere never blocks a user for good
LOCK_TIMEOUT_S = 900.0
#: a build of other sources (another source tree, an older version) is removed once it has
#: been neither built nor loaded for this long: loading touches a library's mtime
EVICT_AFTER_S = 30 * 86400


def seal_path(target: Path) -> Path:
    """The file beside a build holding its size and SHA-256, written once it is complete."""
    return target.with_name(target.name + ".sha256")


def _digest(path: Path) -> str:
    return f"{path.stat().st_size} {hashlib.sha256(path.read_bytes()).hexdigest()}"


def is_intact(target: Path) -> bool:
    """``target`` exists and matches its seal (a truncated, corrupted or unsealed file does
    not: it is rebuilt rather than loaded into a crash)."""
    try:
        return seal_path(target).read_text().strip() == _digest(target)
    except OSError:
        return False


def _seal(target: Path) -> None:
    """Write ``target``'s seal (``write_atomically``: never through an existing file or link)."""
    write_atomically(seal_path(target), _digest(target) + "\n")


def _open_lock(path: Path, name: str) -> int:
    """A descriptor of the lock file ``path`` (created with mode 0600), which must be a regular
    file of this user: a symbolic link is never followed (``O_NOFOLLOW``), anything else is
    refused with a ``MojoBuildError`` naming it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        why = "is a symbolic link" if os.path.islink(path) else f"cannot be opened ({e.strerror or e})"
        raise MojoBuildError(name, [], f"the lock file {path} {why}: refusing to use it (remove it)") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        os.close(fd)
        raise MojoBuildError(name, [], f"the lock file {path} is not a regular file of this user: refusing to use it (remove it)")
    return fd


def _lock_owner(fd: int) -> str:
    """The pid the lock file holds, for messages: its content only when that is a pid (it
    reaches the terminal), else an escaped excerpt."""
    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    if re.fullmatch(r"[0-9]{1,10}", text):
        return text
    return f"? (the lock file holds {ascii(text[:32])})" if text else "?"


@contextlib.contextmanager
def _build_lock(root: Path, name: str, what: str, quiet: bool):
    """An exclusive ``fcntl`` lock on ``<root>/<name>.lock`` (``_open_lock``), holding the
    owner's pid. The kernel drops it when its owner dies (kill -9 included), so a killed build
    never blocks the next one; a live owner is waited for at most ``$AURA_LAB_LOCK_TIMEOUT``
    seconds."""
    timeout = float(os.environ.get("AURA_LAB_LOCK_TIMEOUT") or LOCK_TIMEOUT_S)
    path = root / f"{name}.lock"
    fd = _open_lock(path, name)
    try:
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                owner = _lock_owner(fd)
                if time.monotonic() > deadline:
                    raise MojoBuildError(name, [], f"timed out after {timeout:g} s waiting for process {owner}, which is "
                                         f"building {what} ({path}); set AURA_LAB_LOCK_TIMEOUT to wait longer") from None
                if not told and not quiet:
                    _say(f"waiting for process {owner}, which is building {what} ...")
                    told = True
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _check_space(where: Path, name: str, diag: str = "") -> None:
    """MojoBuildError saying the disk is full when it (nearly) is."""
    free = shutil.disk_usage(where).free
    if free < MIN_FREE_BYTES or "No space left on device" in diag:
        raise MojoBuildError(name, [], f"the disk holding the cache {where} is full ({free >> 20} MiB free; a build needs "
                             f"about {MIN_FREE_BYTES >> 20} MiB): free some space or set AURA_LAB_CACHE elsewhere\n{diag}")


def compile_into(target: Path, name: str, args: list[str], *, what: str, force: bool = False, quiet: bool = False) -> Path:
    """Run ``mojo <args> -o <tmp>/<target.name>`` and rename the result to ``target``.

    One compiler per ``name`` at a time (``_build_lock``; the other processes wait, then find
    the result); the output is written in a private directory and renamed into place, so no
    reader ever sees a partial file; the output keeps the target's file name (``mojo
    precompile`` names the package after it) and is sealed with its size and checksum: a
    build that does not match its seal is rebuilt, with a message. The target returned is
    touched (its mtime is its last use); builds of ``name`` from other sources unused for
    ``EVICT_AFTER_S`` and private directories left by killed builds are removed. Failures
    raise ``MojoBuildError`` with the diagnostics (a full disk says so).
    """
    if not force and is_intact(target):
        return _touch(target)
    root = build_dir()
    if target.parent != root:  # the MAX package's own directory, inside the private build dir
        target.parent.mkdir(mode=PRIVATE_MODE, exist_ok=True)
    with _build_lock(root, name, what, quiet):
        if not force and is_intact(target):
            return _touch(target)
        if target.exists() and not force:
            why = "does not match its checksum (truncated or corrupted)" if seal_path(target).exists() else "has no checksum seal"
            _say(f"the cached {target} {why}: rebuilding it")
        _check_space(target.parent, name)
        for stale in target.parent.glob(f".{name}-*"):  # left by a killed build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        seconds = _compile(target, name, args, what, quiet)
        _evict_unused(root, name, target)
        if not quiet:
            _say(f"built {what} in {seconds:.1f} s -> {target}")
    return target


def _compile(target: Path, name: str, args: list[str], what: str, quiet: bool) -> float:
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    tmp = tmpdir / target.name
    cmd = [str(mojo_binary()), *args, "-o", str(tmp)]
    if not quiet:
        _say(f"compiling {what} with Mojo {compiler_version()} (first use; takes ~5-20 s) ...")
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        if r.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            diag = "\n".join(ln for ln in (r.stdout + r.stderr).splitlines() if "Crashpad" not in ln)
            _check_space(target.parent, name, diag)
            raise MojoBuildError(name, cmd, diag)
        try:
            os.replace(tmp, target)
            _seal(target)
        except OSError as e:
            _check_space(target.parent, name, str(e))
            raise
    finally:  # also on Ctrl-C (subprocess.run kills the compiler first): no partial file stays
        shutil.rmtree(tmpdir, ignore_errors=True)
    return time.perf_counter() - t0


def _touch(target: Path) -> Path:
    """Mark ``target`` as used now (its mtime), so that ``_evict_unused`` keeps it."""
    with contextlib.suppress(OSError):
        os.utime(target)
    return target


def _evict_unused(root: Path, name: str, target: Path, max_age_s: float = EVICT_AFTER_S) -> None:
    """Remove the builds of ``name`` other than ``target`` (other sources: another source
    tree, an older version) that were not built or loaded for ``max_age_s``, with their seals
    and leftover seal temporaries. Called under the build lock."""
    cutoff = time.time() - max_age_s
    for old in [*root.glob(f"{name}-*.so"), *root.glob(f"{name}-*/{target.name}")]:
        with contextlib.suppress(OSError):
            if old == target or old.stat().st_mtime >= cutoff:
                continue
            for leftover in old.parent.glob(glob.escape(seal_path(old).name) + ".*.tmp"):
                leftover.unlink()
            seal_path(old).unlink(missing_ok=True)
            old.unlink()
            if old.parent != root:
                old.parent.rmdir()


def build(stem: str, *, force: bool = False, quiet: bool = False) -> Path:
    """Compile ``kernels/<stem>.mojo`` into the cache (no-op when already built)."""
    src = kernels_dir() / f"{stem}.mojo"
    if not src.is_file():
        raise ValueError(f"unknown kernel {stem!r}; available: {', '.join(kernel_names())}")
    args = ["build", str(src), "--emit", "shared-lib", "-I", str(src.parent)]
    return compile_into(library_path(stem), stem, args, what=f"kernels/{stem}.mojo", force=force, quiet=quiet)


def load(stem: str):
    """Import the extension module for ``kernels/<stem>.mojo``, compiling it if needed."""
    return memoized(_loaded, stem, _lock, lambda: _import(stem))


def _import(stem: str):
    """Build (if needed) and load ``stem``; a load whose file vanished in between (another
    process evicted it) builds and loads once more."""
    _mark_runtime_started()
    _preload_runtime()
    try:
        mod = _load_file(stem, build(stem))
    except (FileNotFoundError, ImportError):
        mod = _load_file(stem, build(stem))
    _restore_environment()
    return mod


def _load_file(stem: str, path: Path):
    spec = importlib.util.spec_from_file_location(stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------ libpython

def this_libpython() -> Path | None:
    """The shared libpython of the running interpreter, or None (a static build has none)."""
    import sysconfig

    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    lib = Path(sysconfig.get_config_var("LIBDIR") or "") / (sysconfig.get_config_var("LDLIBRARY") or "")
    return lib if lib.is_file() else None


def point_the_runtime_at_this_python() -> None:
    """Set ``MOJO_PYTHON_LIBRARY`` (unless set) so that the runtime's first start does not run
    its libpython search, a ``python3`` child (see the module docstring)."""
    if "MOJO_PYTHON_LIBRARY" not in os.environ and (lib := this_libpython()) is not None:
        os.environ["MOJO_PYTHON_LIBRARY"] = str(lib)


point_the_runtime_at_this_python()


# ------------------------------------------------------------------------------ fork

#: set once this process has started the Mojo runtime (loaded a kernel module or a MAX graph)
_runtime_started = False


def _mark_runtime_started() -> None:
    """Record that the Mojo runtime (and its worker threads) may run in this process."""
    global _runtime_started
    _runtime_started = True


def _after_fork_in_child() -> None:
    """In a child forked after the runtime started: kernels on one thread from now on (the
    runtime's worker pool stayed behind in the parent; a 1-thread call never uses it)."""
    if _runtime_started:
        registry.single_thread_after_fork(
            "this process was forked from one in which aura_lab had started the Mojo runtime (a kernel "
            "or a MAX graph), and the runtime's worker threads do not survive a fork")


os.register_at_fork(after_in_child=_after_fork_in_child)


# Initialising a Mojo extension setenv()s these at the C level (PYTHONEXECUTABLE points at
# the interpreter found on PATH, PYTHONPATH=":"). os.environ never sees it, but every
# child process would: a `python` or `mojo` started later runs outside this venv.
_MOJO_ENV_SIDE_EFFECTS = ("PYTHONEXECUTABLE", "PYTHONPATH", "MOJO_PYTHON_LIBRARY")


def _restore_environment() -> None:
    for key in _MOJO_ENV_SIDE_EFFECTS:
        if key in os.environ:
            os.putenv(key, os.environ[key])
        else:
            os.unsetenv(key)


def is_built(stem: str) -> bool:
    try:
        return is_intact(library_path(stem))
    except MojoUnavailable:
        return False


def status() -> tuple[bool, str, str]:
    """(available, version, reason) without compiling anything."""
    try:
        version = compiler_version()
        mojo_binary()
        _package_root()
        kernels_dir()
    except MojoUnavailable as e:
        return False, "", str(e)
    return True, version, ""


def _probe() -> BackendStatus:
    ok, version, reason = status()
    if not ok:
        return BackendStatus("mojo", False, "", reason)
    built = [k for k in kernel_names() if is_built(k)]
    detail = f"kernels built: {', '.join(built) or 'none yet (compiled on first use)'}"
    return BackendStatus("mojo", True, version, detail=detail)


register_backend("mojo", _probe)
