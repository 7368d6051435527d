"""Where aura_lab keeps what it builds and measures, and the key of this machine's CPU.

    $AURA_LAB_CACHE  (default: $XDG_CACHE_HOME/aura_lab, else ~/.cache/aura_lab)

The cache holds libraries that are loaded into the process, so it must be private: the
root and every directory aura_lab makes in it are created with mode 0700, and on every use
each is checked (``not_private``) to be a real directory (not a symbolic link) owned by this
user that neither its group nor others can write. A directory that fails the check, or
cannot be written, is not used: the process falls back, with an ``AuraCacheWarning``, to a
private temporary cache of its own, removed at exit (as ssh refuses a ``~/.ssh`` that others
can write).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import platform
import shutil
import stat
import tempfile
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .errors import AuraCacheWarning

#: the mode of every directory the cache creates: this user only
PRIVATE_MODE = 0o700

#: configured root -> the temporary cache used instead of it in this process
_fallbacks: dict[Path, Path] = {}
_fallback_lock = threading.Lock()


def configured_root() -> Path:
    """The cache directory the environment asks for."""
    env = os.environ.get("AURA_LAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "aura_lab"


def cache_root() -> Path:
    """``configured_root()``, created with mode 0700 when missing, if it is private
    (``not_private``) and can be written; else (with a warning, once per directory) a private
    temporary cache of this process, removed at exit. Checked on every call."""
    root = configured_root()
    if root in _fallbacks:
        return _fallbacks[root]
    try:
        why = _make_private(root)
        if why is None:
            _check_writable(root)
            return root
    except OSError as e:
        return _fall_back(root, f"cannot be written ({e.strerror or e})")
    return _fall_back(root, why, exposed=True)


def cache_dir(name: str) -> Path:
    """``cache_root() / name``, created with mode 0700 when missing and checked like the root
    on every call; one that is not private, or cannot be created, makes this process fall back
    to its temporary cache (with a warning), and the same directory there is returned."""
    path = cache_root() / name
    try:
        why = _make_private(path)
    except OSError as e:
        why = f"cannot be created ({e.strerror or e})"
    if why is None:
        return path
    _fall_back(configured_root(), f"holds {name}, which {why}", exposed=not why.startswith("cannot"))
    path = cache_root() / name
    path.mkdir(mode=PRIVATE_MODE, exist_ok=True)
    return path


def not_private(path: Path) -> str | None:
    """Why the directory ``path`` may not hold code that this process loads, None when it may:
    it is a symbolic link, is not a directory, is owned by another user, or can be written by
    its group or others. Raises ``OSError`` when it cannot be examined (``os.lstat``)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"can be written by its group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _make_private(path: Path) -> str | None:
    """Create the directory ``path`` with mode 0700 (missing parents with the umask's mode)
    unless something exists there, then ``not_private(path)``."""
    try:
        os.makedirs(path, mode=PRIVATE_MODE)
    except FileExistsError:
        pass
    return not_private(path)


@lru_cache(maxsize=16)
def _check_writable(root: Path) -> None:
    """OSError unless a file can be created in ``root`` (a success is remembered)."""
    with tempfile.TemporaryFile(dir=root):
        pass


def _fall_back(root: Path, why: str, exposed: bool = False) -> Path:
    """The private temporary cache used instead of ``root`` from now on in this process,
    made and announced once per ``root``: ``why`` it is not used (``exposed``: because it, or
    a directory in it, is not private)."""
    with _fallback_lock:
        if root not in _fallbacks:
            tmp = Path(tempfile.mkdtemp(prefix="aura_lab-cache-"))  # mode 0700, a random name
            atexit.register(shutil.rmtree, tmp, ignore_errors=True)
            risk = "" if not exposed else " (a cache must be private: another user could plant a library there that " \
                                      "would run in this process)"
            warnings.warn(f"aura_lab: the cache directory {root} {why}{risk}; this process uses the temporary cache "
                          f"{tmp} instead, so kernels compile again in every process (set AURA_LAB_CACHE to a "
                          f"directory of your own that only you can write)", AuraCacheWarning, stacklevel=4)
            _fallbacks[root] = tmp
        return _fallbacks[root]


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a fresh temporary file in ``path``'s directory (``mkstemp``: mode
    0600, an unpredictable name, never an existing file or link), flush it to disk, then
    ``os.replace`` it onto ``path``: a reader, or a writer interrupted midway, never sees a
    partial file; on any failure the temporary file is removed and ``path`` is as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def memoized(cache: dict, key, lock: threading.Lock, make: Callable[[], object]):
    """``cache[key]``, made once by ``make()`` while holding ``lock`` (the fast path, a hit,
    takes no lock): a kernel loads, a graph compiles, once per process."""
    value = cache.get(key)
    if value is None:
        with lock:
            value = cache.get(key)
            if value is None:
                value = cache[key] = make()
    return value


@lru_cache(maxsize=1)
def cpu_key() -> str:
    """A short hash of the CPU model and feature flags: caches never cross CPUs."""
    ident = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        lines = [ln for ln in info.splitlines() if ln.split(":")[0].strip() in ("model name", "flags", "Features")]
        ident += "\n".join(sorted(set(lines)))
    except OSError:
        ident += platform.processor()
    return hashlib.sha256(ident.encode()).hexdigest()[:12]
