"""Where aura_lab keeps what it builds and measures, and the key of this machine's CPU.

    $AURA_LAB_CACHE  (default: $XDG_CACHE_HOME/aura_lab, else ~/.cache/aura_lab)
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
from functools import lru_cache
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    env = os.environ.get("AURA_LAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "aura_lab"


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
