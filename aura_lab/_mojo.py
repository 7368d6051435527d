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
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

from ._cache import cache_root, cpu_key, memoized
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
    return Path(get_package_root())


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
    return cache_root() / f"mojo-{compiler_version()}-{cpu_key()}"


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


def compile_into(target: Path, name: str, args: list[str], *, what: str, force: bool = False, quiet: bool = False) -> Path:
    """Run ``mojo <args> -o <tmp>/<target.name>`` and rename the result to ``target``.

    One compiler per ``name`` at a time (an ``fcntl`` lock in the cache directory; the other
    processes wait, then find the result); the output is written in a private directory and
    renamed into place, so no reader ever sees a partial file; the output keeps the target's
    file name (``mojo precompile`` names the package after it). Older builds of ``name`` in
    the cache directory are removed. Failures raise ``MojoBuildError`` with the diagnostics.
    """
    if target.is_file() and not force:
        return target
    root = build_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if target.is_file() and not force:
            return target
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
                raise MojoBuildError(name, cmd, diag)
            os.replace(tmp, target)
        finally:  # also on Ctrl-C (subprocess.run kills the compiler first): no partial file stays
            shutil.rmtree(tmpdir, ignore_errors=True)
        for old in [*root.glob(f"{name}-*.so"), *root.glob(f"{name}-*/{target.name}")]:  # older sources
            if old != target:
                with contextlib.suppress(OSError):
                    old.unlink()
                    if old.parent != root:
                        old.parent.rmdir()
        if not quiet:
            _say(f"built {what} in {time.perf_counter() - t0:.1f} s -> {target}")
    return target


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
    _preload_runtime()
    path = build(stem)
    spec = importlib.util.spec_from_file_location(stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _restore_environment()
    return mod


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
        return library_path(stem).is_file()
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
