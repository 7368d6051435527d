"""Stopping and watching a running kernel: a control block shared with the Mojo kernels.

A ``Control`` is a few int64 words whose address goes into every kernel's parameter block
(the ``control`` field). The kernels poll word ``CANCEL`` between chunks of work (a chunk is
at most a few tens of milliseconds at the sizes the bench runs) and return early once it is
nonzero; the persistence engine also counts its progress into ``STAGE``/``DONE``/``TOTAL``.

Two ways to cancel:

* **Ctrl-C / Jupyter's Interrupt** (SIGINT, main thread). ``native`` runs a long native
  call on a worker thread while the main thread waits interruptibly; on
  ``KeyboardInterrupt`` (or any exception a signal handler raises) it sets the flag, waits
  for the kernel to return (memory freed, no thread left running) and re-raises it; further
  interrupts while it waits (Interrupt clicked twice) are swallowed, never abandon the kernel.
* **From another thread** (the comparison panel's Stop button)::

      with aura_lab.cancellable() as token:   # in the thread that runs the ops
          ...                                  # token.cancel() from any thread
  every op call inside the block then stops within one chunk and raises ``Cancelled``
  (a ``KeyboardInterrupt``), and so does every later call in the block.

A call that is cancelled while it writes into a user's ``out=`` leaves ``out`` partially
written; nothing else is touched. The decode step (``selective_state_update``), which
advances the caller's ``state`` in place, is never stopped midway (``run_whole``): ``state``
is either as it was (cancelled before the step) or advanced by the whole token.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable

import numpy as np

from .errors import Cancelled

CANCEL, STAGE, DONE, TOTAL = 0, 1, 2, 3
WORDS = 8
# a native call estimated (single-threaded) to take longer than this runs on a worker thread so
# that the main thread can take Ctrl-C (the hand-off measured 0.1-0.2 ms: about 1 % above it)
INTERRUPTIBLE_NS = 20_000_000
POLL_S = 0.05


class Control:
    """The words a kernel polls (cancel flag) and updates (progress counters)."""

    def __init__(self):
        self.words = np.zeros(WORDS, np.int64)
        self.watchers: list[Callable[["Control"], None]] = []  # progress displays (see watching)
        self.long = False  # the op call now running is estimated long (see run_op)

    @property
    def address(self) -> int:
        return self.words.ctypes.data

    def cancel(self) -> None:
        """Ask the running kernel (and every later op call under this control) to stop."""
        self.words[CANCEL] = 1

    @property
    def cancelled(self) -> bool:
        return bool(self.words[CANCEL])

    def progress(self) -> tuple[int, int, int]:
        """(stage, done, total) as the kernel last wrote them."""
        return int(self.words[STAGE]), int(self.words[DONE]), int(self.words[TOTAL])

    def reset_progress(self) -> None:
        self.words[STAGE:TOTAL + 1] = 0

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled("aura_lab: cancelled (the control's cancel() was called)")


_local = threading.local()


def current() -> Control | None:
    """The control of the innermost ``cancellable`` block in this thread, if any."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def address() -> int:
    """The ``control`` field for a kernel's parameter block: the current control, or 0."""
    ctl = current()
    return 0 if ctl is None else ctl.address


def _stack() -> list:
    return _local.__dict__.setdefault("stack", [])


class cancellable:
    """``with cancellable(control) as ctl``: run the block's op calls under ``control`` (a new
    one if not given), which it yields; ``control.cancel()`` from any thread stops them (see
    the module docstring). A class, not a generator: leaving the block is one statement, so
    a Ctrl-C landing while it exits cannot leave the control active for later calls."""

    def __init__(self, control: Control | None = None):
        self.control = control if control is not None else Control()

    def __enter__(self) -> Control:
        stack = _stack()
        self.depth = len(stack)
        stack.append(self.control)
        return self.control

    def __exit__(self, *exc) -> None:
        del _stack()[self.depth:]


@contextlib.contextmanager
def watching(on_poll: Callable[[Control], None]):
    """Within the block, native calls report to ``on_poll(control)`` every ``POLL_S`` seconds
    while they run (and once when they end): a progress bar reading the counters."""
    with cancellable(current()) as ctl:
        ctl.watchers.append(on_poll)
        try:
            yield ctl
        finally:
            ctl.watchers.remove(on_poll)


def run_op(fn: Callable[[], object], *, long: bool):
    """One op call (``Op.run`` for the cancellable backends): ``fn()`` under the current
    control, or a fresh one, with ``long`` telling its native calls whether to run
    interruptibly (see ``native``). Raises ``Cancelled`` if the control was cancelled before
    or during the call. A short call outside any ``cancellable`` block has nothing to poll
    for (Ctrl-C lands when it returns, within ``INTERRUPTIBLE_NS``): it runs as is."""
    outer = current()
    if outer is None and not long:
        return fn()
    ctl = outer if outer is not None else Control()
    ctl.raise_if_cancelled()
    stack, enclosing_long = _stack(), ctl.long  # a nested op call restores the outer one's
    depth = len(stack)
    try:  # no Python call between an interrupt and the first line of `finally`
        stack.append(ctl)
        ctl.long = long
        out = fn()
    finally:
        del stack[depth:]
        ctl.long = enclosing_long
    ctl.raise_if_cancelled()
    return out


def run_whole(fn: Callable[[], object]):
    """One op call that is never stopped midway (``Op(whole=True)``: the decode step, which
    advances the caller's ``state`` in place and is one token long): ``Cancelled`` before it
    starts if the current control is cancelled, else ``fn()`` runs to its end on this thread,
    its kernels polling a control of their own that nobody cancels. A cancel or Ctrl-C that
    arrives meanwhile takes effect after it (Ctrl-C is raised once the kernel returns)."""
    outer = current()
    if outer is not None:
        outer.raise_if_cancelled()
    stack = _stack()
    depth = len(stack)
    try:
        stack.append(Control())
        return fn()
    finally:
        del stack[depth:]


def native(fn: Callable[[], object]):
    """A call into the kernels (``kernel.scan(block.address)``): the Python work around it
    (validation, allocation, imports) stays on the calling thread. On the main thread, in a
    long op call (``run_op``) or under ``watching``, ``fn`` runs on a worker thread while this
    thread waits and feeds the watchers; Ctrl-C then cancels the kernel and is re-raised once
    it has returned. Elsewhere ``fn`` runs here."""
    ctl = current()
    if ctl is None:
        return fn()
    ctl.raise_if_cancelled()
    if ctl.watchers or (ctl.long and threading.current_thread() is threading.main_thread()):
        ctl.reset_progress()
        out = _on_worker(fn, ctl)
    else:
        out = fn()
    ctl.raise_if_cancelled()  # at once: no Python work on the partial results
    return out


def _poll(ctl: Control) -> None:
    for w in list(ctl.watchers):
        w(ctl)


class _Finished:
    """The worker's end, as the waiting thread sees it: ``done`` set, then ``lock`` (held
    from the start) released, as the worker's very last actions, after the kernel returned.
    The waiter blocks in ``lock.acquire`` (one C call: a signal interrupts it before or
    after it takes the lock, never halfway, unlike ``threading.Event.wait``, whose Python
    ``Condition`` left half released raised "release unlocked lock" in one of 180 rounds of
    repeated signals) and trusts ``done`` alone (an interrupt may land just after it took the
    lock: ``done`` is already set then)."""

    def __init__(self):
        self.done = False
        self.lock = threading.Lock()
        self.lock.acquire()

    def set(self) -> None:
        self.done = True
        self.lock.release()

    def wait(self, timeout: float) -> bool:
        """True once the worker has finished; else after ``timeout`` seconds, False."""
        return self.done or self.lock.acquire(timeout=timeout) or self.done


class _Job:
    """One native call handed to a worker thread, which must *claim* it before running it;
    the waiting thread may *withdraw* it first. Between them exactly one wins (under a lock
    in which the main thread runs no signal handler): a job withdrawn is never run, a job
    claimed is waited for. So a signal landing anywhere in the hand-off, even inside
    ``Thread.start`` (whose wait for the new thread is interruptible: the thread then runs
    although ``start`` raised), cannot leave a kernel running after the call has raised."""

    PENDING, RUNNING, WITHDRAWN = 0, 1, 2

    def __init__(self, fn, ctl: Control):
        self.fn, self.ctl = fn, ctl
        self.state = self.PENDING
        self.state_lock = threading.Lock()
        self.finished = _Finished()
        self.out = self.err = None

    def run(self) -> None:
        """The worker thread's body (a second thread started for the same job returns)."""
        with self.state_lock:
            if self.state != self.PENDING:
                return
            self.state = self.RUNNING
        try:
            with cancellable(self.ctl):
                self.out = self.fn()
        except BaseException as e:  # handed to the waiting thread
            self.err = e
        finally:
            self.finished.set()

    def withdraw(self) -> bool:
        """True if the job never ran and now never will (idempotent); False once claimed."""
        with self.state_lock:
            if self.state == self.PENDING:
                self.state = self.WITHDRAWN
            return self.state == self.WITHDRAWN


def _on_worker(fn, ctl: Control):
    """``fn()`` on a worker thread while this thread waits, feeding the watchers. The first
    exception raised here (Ctrl-C, any signal handler's exception, an error from a watcher)
    cancels the kernel; the wait goes on through every later one (a second Ctrl-C included)
    and the first is raised once nothing runs on the caller's buffers: the job withdrawn
    before it started, or the kernel returned. Every step is repeated until it completes
    without an exception, so an exception at any point only records itself.
    ``Thread.join``/``is_alive`` are not used: on Python 3.11 an interrupted ``join`` marks a
    still running thread as stopped."""
    job = _Job(fn, ctl)
    pending: BaseException | None = None
    launched = False
    while True:
        try:
            try:
                if pending is None:
                    if not launched:
                        threading.Thread(target=job.run, name="aura-kernel", daemon=True).start()
                        launched = True
                    while not job.finished.wait(POLL_S):
                        _poll(ctl)
                elif not job.withdraw():  # claimed: it runs, cancelled, until it returns
                    while not job.finished.wait(POLL_S):
                        ctl.cancel()
                break
            except BaseException as e:
                if pending is None:
                    pending = e
                    ctl.cancel()
        except BaseException:  # a further signal while the first one was being recorded
            continue
    if pending is not None:
        raise pending
    _poll(ctl)
    if job.err is not None:
        raise job.err
    return job.out
