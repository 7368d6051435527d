"""Every exception and warning aura_lab raises of its own (the ground floor: imports nothing).

* ``BackendUnavailable`` (a ``RuntimeError``): a backend cannot run here at all: not
  installed, a kernel that does not compile (``MojoBuildError``), a MAX graph that does not
  build (``MaxGraphError``). Raised as is for an explicitly named backend; ``auto`` catches
  it and tries the next backend with an ``AuraFallbackWarning``.
* ``UnsupportedProblem`` (a ``ValueError``): a backend that runs here cannot take this
  problem (e.g. past the Mojo persistence engine's index range); the message names the
  argument. Same treatment: raised for an explicit backend, a fallback under ``auto``.
* ``Cancelled`` (a ``KeyboardInterrupt``): a running op was stopped through its control
  (``aura_lab.cancellable``; the panel's Stop). Ctrl-C raises the plain ``KeyboardInterrupt``.
"""

from __future__ import annotations


class AuraFallbackWarning(RuntimeWarning):
    """``backend="auto"`` could not use its first choice and fell back."""


class BackendUnavailable(RuntimeError):
    """A backend that cannot run here; raised for explicit requests, caught by ``auto``."""


class AuraCacheWarning(UserWarning):
    """The cache directory cannot be used as configured; what happens instead is said."""


class UnsupportedProblem(ValueError):
    """This backend cannot take this problem (its limits); ``auto`` tries the next one."""


class MojoUnavailable(BackendUnavailable):
    """The Mojo compiler or runtime cannot be used here."""


class MojoBuildError(BackendUnavailable):
    """A kernel failed to compile; ``.diagnostics`` holds the compiler's output."""

    def __init__(self, stem: str, command: list[str], diagnostics: str):
        self.stem = stem
        self.command = command
        self.diagnostics = diagnostics
        super().__init__(
            f"mojo build of kernels/{stem}.mojo failed:\n{diagnostics.strip()}\n"
            f"command: {' '.join(command)}"
        )


class MaxGraphError(BackendUnavailable):
    """Building or compiling a MAX graph failed; the message carries MAX's diagnostics."""


class Cancelled(KeyboardInterrupt):
    """An op call stopped through ``aura_lab.cancellable``'s ``cancel()`` (e.g. a Stop button)."""
