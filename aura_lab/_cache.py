"""Where aura_lab keeps what it builds and measures, and the key of this machine's CPU.

    $AURA_LAB_CACHE  (default: $XDG_CACHE_HOME/aura_lab, else ~/.cache/aura_lab)
"""

from __future__ import annotations

import atexit
import hashlib
import os
import platform
import shutil
import tempfile
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .errors import AuraCacheWarning


def configured_root() -> Path:
    """The cache directory the environment asks for."""
    env = os.environ.get("AURA_LAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "aura_lab"


def cache_root() -> Path:
    """``configured_root()`` if it can be written, else (with a warning, once per directory)
    a private temporary cache of this process, removed at exit."""
    return _usable(configured_root())


@lru_cache(maxsize=16)
def _usable(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
        return root
    except OSError as e:
        tmp = Path(tempfile.mkdtemp(prefix="aura_lab-cache-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        warnings.warn(f"aura_lab: the cache directory {root} cannot be written ({e.strerror or e}); this process "
                      f"uses the temporary cache {tmp} instead, so kernels compile again in every process "
                      f"(set AURA_LAB_CACHE to a writable directory)", AuraCacheWarning, stacklevel=3)
        return tmp


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
