"""Child process of ``test_cancel.test_repeated_signals_never_abandon_a_running_kernel``:
``python tests/reliability/interrupt_rounds.py OP BACKEND ROUNDS SEED``.

Runs the long call of OP on BACKEND ROUNDS times, each time hit by two or three signals at
random moments and random gaps (SIGINT, or SIGUSR1 whose handler raises ``Stop``, as a
supervisor's would). Each call must raise the *first* signal's exception, and once it has
raised nothing may still run: no entry of the caller's ``out=`` written afterwards (distance)
and no CPU burnt by an abandoned kernel thread. A crash (the use-after-free this guards
against) kills the process, which the parent reports. Prints one line per round and ``ok``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np

import aura_lab


class Stop(Exception):
    """What the SIGUSR1 handler raises."""


#: the handlers raise only while a call runs: a signal handled after it (the sender may fire
#: just as the call returns) must not hit the script itself
_ARMED = {"on": False}


def _raise_stop(signum, frame):
    if _ARMED["on"]:
        raise Stop("SIGUSR1")


def _raise_interrupt(signum, frame):
    if _ARMED["on"]:
        raise KeyboardInterrupt


EXPECTED = {signal.SIGINT: KeyboardInterrupt, signal.SIGUSR1: Stop}


def _distance():
    """Few rows, very long ones: a panel of 32 x 512 x 65536 takes ~0.3 s, the transposition
    of Y ~0.1 s (the window an abandoned kernel would write in); distances i - j != 0."""
    X = np.repeat(np.arange(512, dtype=np.float32)[:, None], 65536, axis=1)
    out = np.zeros((512, 512), np.float32)
    return (lambda b: aura_lab.pairwise_distances(X, backend=b, out=out)), out


def _scan():
    l, h, p, n = 60_000, 32, 64, 1024
    x = np.full((1, l, h, p), 0.01, np.float32)
    dt = np.full((1, l, h), 0.1, np.float32)
    B = np.full((1, l, 1, n), 0.01, np.float32)
    A = -np.ones(h, np.float32)
    return (lambda b: aura_lab.selective_scan(x, dt, A, B, B, backend=b)), None


def _training():
    import torch

    l, h, p, n = 32_768, 16, 64, 256  # 16 384 tokens ended before the first signal (0.38 s on max) once the chunked kernels ran in lockstep
    x = torch.full((1, l, h, p), 0.01, requires_grad=True)
    dt = torch.full((1, l, h), 0.1)
    B = torch.full((1, l, 1, n), 0.01)
    A = -torch.ones(h)

    def call(b):
        aura_lab.selective_scan(x, dt, A, B, B, backend=b).sum().backward()

    return call, None


def _routing():
    T, E = 2_000_000, 256
    logits = np.empty((T, E), np.float32)
    logits[:] = np.linspace(-1, 1, E, dtype=np.float32)
    bias = np.zeros(E, np.float32)
    return (lambda b: aura_lab.route(logits, 8, scoring="sigmoid", bias=bias, n_groups=8, topk_groups=4, backend=b)), None


def _persistence():
    X = np.random.default_rng(0).standard_normal((3000, 8))
    return (lambda b: aura_lab.rips_persistence(X, maxdim=2, backend=b, progress=False)), None


CASES = {"distance": _distance, "ssd": _scan, "ssd_train": _training, "routing": _routing,
         "persistence": _persistence}


def _warm(op: str, backend: str) -> None:
    """Compile and load the kernel (and the MAX graph for float32) on a small input."""
    rng = np.random.default_rng(1)
    if op == "distance":
        X = rng.standard_normal((40, 8)).astype(np.float32)
        aura_lab.pairwise_distances(X, backend=backend, out=np.zeros((40, 40), np.float32))
    elif op in ("ssd", "ssd_train"):
        import torch

        x = torch.full((1, 70, 2, 4), 0.1, requires_grad=op == "ssd_train")
        y = aura_lab.selective_scan(x, torch.full((1, 70, 2), 0.1), -torch.ones(2), torch.full((1, 70, 1, 8), 0.1),
                                    torch.full((1, 70, 1, 8), 0.1), backend=backend)
        if op == "ssd_train":
            y.sum().backward()
    elif op == "routing":
        aura_lab.route(rng.standard_normal((64, 256)).astype(np.float32), 8, scoring="sigmoid",
                       bias=np.zeros(256, np.float32), n_groups=8, topk_groups=4, backend=backend)
    else:
        aura_lab.rips_persistence(rng.standard_normal((30, 3)), maxdim=2, backend=backend, progress=False)


def _signals_at(rng, main: int, running: dict) -> tuple[list, threading.Thread]:
    """Two or three signals, the first 0.05-0.5 s in, then gaps of 1-250 ms; none is sent
    once the call has returned (``running["call"]`` false)."""
    kinds = [[signal.SIGINT, signal.SIGINT], [signal.SIGINT, signal.SIGUSR1], [signal.SIGUSR1, signal.SIGINT],
             [signal.SIGINT, signal.SIGINT, signal.SIGINT]][rng.integers(4)]
    gaps = [rng.uniform(0.05, 0.5), *rng.uniform(0.001, 0.25, len(kinds) - 1)]

    def fire():
        for sig, gap in zip(kinds, gaps):
            time.sleep(gap)
            if not running["call"]:
                return
            signal.pthread_kill(main, sig)

    return kinds, threading.Thread(target=fire, daemon=True)


def _one_round(call, backend: str, kinds, sender, running: dict):
    """The call, hit by the sender's signals: (the exception it raised or None, seconds)."""
    raised = None
    t0 = time.perf_counter()
    try:
        try:
            _ARMED["on"] = True
            sender.start()  # inside: on a loaded machine the first signal may land in start itself
            call(backend)
        finally:
            _ARMED["on"] = False  # first: from here on no handler raises
            running["call"] = False
    except (KeyboardInterrupt, Stop) as e:
        raised = e
    elapsed = time.perf_counter() - t0
    sender.join()
    return raised, elapsed


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _thread_ticks() -> dict:
    """{(thread id, name): CPU clock ticks} of this process's OS threads (Linux), to name the
    thread that burnt CPU after a call returned."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        out[(tid, name)] = int(rest[11]) + int(rest[12])  # utime + stime
    return out


def _busiest(before: dict, after: dict) -> str:
    hz = os.sysconf("SC_CLK_TCK")
    busy = sorted(((after[k] - before.get(k, 0)) / hz, k) for k in after)
    return ", ".join(f"{name} ({tid}) {s:.2f} s" for s, (tid, name) in reversed(busy[-4:]) if s > 0) or "none"


def main(op: str, backend: str, rounds: int, seed: int) -> None:
    signal.signal(signal.SIGUSR1, _raise_stop)
    signal.signal(signal.SIGINT, _raise_interrupt)
    _warm(op, backend)
    call, out = CASES[op]()
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        running = {"call": True}
        kinds, sender = _signals_at(rng, threading.main_thread().ident, running)
        try:
            raised, elapsed = _one_round(call, backend, kinds, sender, running)
        except BaseException as e:  # noqa: BLE001 - report what escaped
            raise SystemExit(f"round {r}: {op}/{backend} raised {type(e).__name__}: {e}") from e
        if raised is None:
            raise SystemExit(f"round {r}: {op}/{backend} was not interrupted ({elapsed:.2f} s): the case is too short")
        # the first signal's exception, or a later one's when two landed in the Python code
        # around the kernel (an exception replacing another while frames unwind is Python's)
        if not isinstance(raised, tuple(EXPECTED[k] for k in kinds)):
            raise SystemExit(f"round {r}: raised {type(raised).__name__} for signals {[s.name for s in kinds]}")
        if out is not None:
            out[...] = 0
        cpu0, ticks0 = _cpu_seconds(), _thread_ticks()
        time.sleep(0.25)
        burnt, ticks1 = _cpu_seconds() - cpu0, _thread_ticks()
        written = 0 if out is None else int(np.count_nonzero(out))
        print(f"round {r}: {[s.name for s in kinds]} -> {type(raised).__name__} after {elapsed:.2f} s; "
              f"afterwards {written} entries written, {burnt:.2f} CPU s", flush=True)
        if written or burnt > 0.15:
            raise SystemExit(f"round {r}: the kernel ran on after the call returned "
                             f"({written} entries of out= written, {burnt:.2f} CPU s in 0.25 s; busiest threads: "
                             f"{_busiest(ticks0, ticks1)})")
    print("ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
