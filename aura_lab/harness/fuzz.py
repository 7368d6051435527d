"""Crash-proof fuzzing of every public op x backend, each case run in a child process.

A case is a JSON-able *spec*: ``{"op", "backend", "seed", "args": {name: value}}`` where a
value is plain JSON or ``{"$array": recipe}`` (recipe: dtype, shape, fill, layout, container),
``{"$list": [recipes]}`` or ``{"$obj": kind}``. ``cases()`` is the hypothesis strategy that
draws them from ``OPS`` (one declarative row per op: its arrays' shapes over named sizes, its
keyword pools, its expected result). ``Worker`` is a persistent child process that builds the
arguments from a spec deterministically, calls the op and reports back: the result's problems
(wrong shape/dtype, an input written that was not ``out=``/``state``) or the exception raised.
``verdict`` turns that (or a signal, or a hang past the per-case timeout) into a failure
message, None for a pass: an exception of a sane type whose message names an argument passes.

Two kinds of case go beyond argument values: ``{"$alias": "X"}`` passes another argument's
very array (``out=X``: an overlap that must raise ``ValueError`` naming ``out``), and a spec
with ``"interrupts": [us, us]`` is hit by two SIGINTs that many microseconds into the call
(after one clean warm-up call): it may raise ``KeyboardInterrupt``, but nothing may run on
after it (``out=`` unchanged later), no control may be left active, and a clean call after
it must give the warm-up's outcome again.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .._cache import write_atomically
from ..collection import collection_persistence
from ..diagrams import betti_curves, bottleneck_distance
from ..distance import pairwise_distances
from ..persistence import rips_persistence
from ..routing import route
from ..ssd import selective_scan, selective_state_update

# ------------------------------------------------------------------------ building arguments

FILLS = ("normal", "neg", "pos", "zeros", "negzero", "nan", "inf", "tiny", "huge", "mixed", "int")
LAYOUTS = ("c", "transpose", "stride", "reverse", "fortran", "readonly")
CONTAINERS = ("numpy", "torch", "list")
DTYPES = ("float64", "float32", "float16", "bfloat16", "int32", "int64", "uint8", "bool", "complex64", "object", "str")


def _values(rng: np.random.Generator, fill: str, shape: tuple) -> np.ndarray:
    v = np.asarray(rng.standard_normal(shape))
    special = {"zeros": 0.0, "negzero": -0.0, "nan": np.nan, "inf": np.inf, "tiny": 1e-40, "huge": 1e38}
    if fill in special:
        return np.full(shape, special[fill]) * (np.sign(v) if fill in ("tiny", "huge") else 1)
    if fill == "mixed" and v.size:
        pick = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-40, 1e38, -1e38])
        where = rng.random(shape) < 0.3
        v[where] = rng.choice(pick, size=int(where.sum()))
    if fill == "distmat" and len(shape) == 2 and shape[0] == shape[1]:
        pts = rng.standard_normal((shape[0], 2))
        return np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    if fill == "diagram" and v.size:
        b = np.abs(v[..., :1])
        return np.concatenate([b, b + np.abs(v[..., 1:])], axis=-1)
    if fill == "cu":
        return np.sort(rng.integers(0, 8, shape), axis=None).reshape(shape)
    return {"neg": -np.abs(v), "pos": np.abs(v), "int": np.round(3 * v)}.get(fill, v)


def _np_array(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "object":
        return values.astype(object)
    if dtype == "str":
        return values.astype(str)
    with np.errstate(all="ignore"):
        return values.astype("float32" if dtype == "bfloat16" else dtype)


def build_array(rec: dict, rng: np.random.Generator):
    """The array a recipe describes: values, dtype, then layout, then container."""
    shape, layout = tuple(rec["shape"]), rec.get("layout", "c")
    base = shape[::-1] if layout == "transpose" else shape[:-1] + (2 * shape[-1],) if layout == "stride" and shape else shape
    a = _np_array(_values(rng, rec.get("fill", "normal"), base), rec.get("dtype", "float64"))
    container = rec.get("container", "numpy")
    if container == "torch" and a.dtype.kind in "biufc":
        import torch

        a = torch.from_numpy(np.ascontiguousarray(a))
        if rec.get("dtype") == "bfloat16":
            a = a.to(torch.bfloat16)
    a = np.asarray(a) if container != "torch" else a
    torch_like = not isinstance(a, np.ndarray)
    if layout == "transpose":
        a = a.permute(*reversed(range(a.ndim))) if torch_like else a.T
    elif layout == "stride" and shape:
        a = a[..., ::2]
    elif layout == "reverse" and shape:
        a = a.flip(0) if torch_like else a[::-1]
    elif layout == "fortran" and not torch_like:
        a = np.asfortranarray(a)
    elif layout == "readonly" and not torch_like:
        a.setflags(write=False)
    return a.tolist() if container == "list" else a


def build_value(v, rng: np.random.Generator):
    if isinstance(v, dict) and "$array" in v:
        return build_array(v["$array"], rng)
    if isinstance(v, dict) and "$list" in v:
        return [build_array(r, rng) for r in v["$list"]]
    if isinstance(v, dict) and "$obj" in v:
        return {"object": object(), "set": {1, 2}, "bytes": b"ab", "lambda": lambda: 0}[v["$obj"]]
    if isinstance(v, list):
        return tuple(build_value(x, rng) for x in v)
    return v


def build_args(spec: dict) -> dict:
    rng = np.random.default_rng(spec.get("seed", 0))
    args = {k: build_value(v, rng) for k, v in spec["args"].items() if not _is_alias(v)}
    for k, v in spec["args"].items():
        if _is_alias(v):  # the very same array as another argument (out=X)
            args[k] = args.get(v["$alias"])
    return {k: args[k] for k in spec["args"]}


def _is_alias(v) -> bool:
    return isinstance(v, dict) and "$alias" in v


# ------------------------------------------------------------------------ expected results

def _shape(a) -> tuple:
    return tuple(a.shape)


def _dt(a) -> str:
    return str(a.dtype).replace("torch.", "")


def _eff_dtype(rec: dict | None) -> str | None:
    """The dtype an op sees for an array recipe (lists through np.asarray, bfloat16 as float32)."""
    if rec is None:
        return None
    d = rec.get("dtype", "float64")
    if rec.get("container") == "list":
        return {"f": "float64", "i": "int64", "u": "int64", "b": "bool", "c": "complex128"}.get(np.dtype(
            "float32" if d == "bfloat16" else d if d not in ("object", "str") else "float64").kind, d)
    return "float32" if d == "bfloat16" else d


def _rec(spec: dict, name: str) -> dict | None:
    v = spec["args"].get(name)
    return v["$array"] if isinstance(v, dict) and "$array" in v else None


def _kind(spec: dict, names) -> str:
    return "torch" if any((_rec(spec, n) or {}).get("container") == "torch" for n in names) else "numpy"


def _check(problems: list, what: str, got, want) -> None:
    if got != want:
        problems.append(f"{what}: expected {want}, got {got}")


def _check_array(problems: list, what: str, a, shape: tuple, dtype: str | None, kind: str) -> None:
    is_t = type(a).__module__.startswith("torch")
    if not (is_t or isinstance(a, np.ndarray)):
        problems.append(f"{what}: expected an array, got {type(a).__name__}")
        return
    _check(problems, f"{what} kind", "torch" if is_t else "numpy", kind)
    _check(problems, f"{what} shape", _shape(a), tuple(shape))
    if dtype is not None:
        _check(problems, f"{what} dtype", _dt(a), dtype)


def expect_distances(spec, res, args) -> list:
    p = []
    x, y = _rec(spec, "X"), _rec(spec, "Y") or _rec(spec, "X")
    f32 = all(_eff_dtype(r) == "float32" for r in (x, y))
    kind = _kind(spec, ("out",) if args.get("out") is not None else ("X", "Y"))
    _check_array(p, "result", res, (x["shape"][0], y["shape"][0]), "float32" if f32 else "float64", kind)
    if args.get("out") is not None and res is not args["out"]:
        p.append("result: is not the out= array")
    if _is_alias(spec["args"].get("out")) and np.size(res):  # an empty out overlaps nothing
        p.append(f"out: the same array as {spec['args']['out']['$alias']} accepted (the result is garbage)")
    return p


def expect_route(spec, res, args) -> list:
    p, (t, e), k = [], _rec(spec, "logits")["shape"], args["k"]
    kind = _kind(spec, ("logits", "bias"))
    for name, shape, dtype in (("weights", (t, k), "float32"), ("experts", (t, k), "int32"),
                               ("counts", (e,), "int64"), ("permutation", (t * k,), "int64"),
                               ("offsets", (e + 1,), "int64")):
        _check_array(p, name, getattr(res, name), shape, dtype, kind)
    if args.get("capacity_factor") is not None:
        _check_array(p, "kept", res.kept, (t, k), "bool", kind)
    return p


def _y_dtype(spec) -> str:
    """y follows x: a tensor's own dtype (bfloat16 too), else the numpy dtype x becomes."""
    x = _rec(spec, "x")
    return x["dtype"] if x["container"] == "torch" else _eff_dtype(x)


def expect_scan(spec, res, args) -> list:
    p, x = [], _rec(spec, "x")
    kind = _kind(spec, ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states"))
    y = res[0] if args.get("return_final_states") else res
    _check_array(p, "y", y, x["shape"], _y_dtype(spec), kind)
    if args.get("return_final_states"):
        b, _, h, pp = x["shape"]
        n = _rec(spec, "B")["shape"][-1]
        fdt = "float64" if _eff_dtype(x) == "float64" else "float32"
        _check_array(p, "final_states", res[1], (b, h, pp, n), fdt, kind)
    return p


def expect_step(spec, res, args) -> list:
    p, x = [], _rec(spec, "x")
    kind = _kind(spec, ("state", "x", "dt", "A", "B", "C", "D", "z", "dt_bias"))
    _check_array(p, "y", res, x["shape"], _y_dtype(spec), kind)
    return p


def _check_dgms(p: list, dgms, count: int, where: str = "dgms") -> None:
    if not isinstance(dgms, list) or len(dgms) != count:
        p.append(f"{where}: expected a list of {count} diagrams, got {type(dgms).__name__} of {len(dgms) if hasattr(dgms, '__len__') else '?'}")
        return
    for i, d in enumerate(dgms):
        if not (isinstance(d, np.ndarray) and d.ndim == 2 and d.shape[1] == 2 and d.dtype == np.float64):
            p.append(f"{where}[{i}]: expected an (m, 2) float64 array, got {getattr(d, 'shape', type(d))} {getattr(d, 'dtype', '')}")


def expect_rips(spec, res, args) -> list:
    p = []
    reps = args.get("return_cycles") or args.get("return_cocycles")
    _check_dgms(p, res.dgms if reps else res, args.get("maxdim", 1) + 1)
    return p


def expect_collection(spec, res, args) -> list:
    p, hd = [], args.get("homology_dimensions", (0, 1))
    _check(p, "len(result)", len(res), len(args["X"]))
    for i, r in enumerate(res):
        if isinstance(hd, int):
            _check_dgms(p, [r], 1, f"result[{i}]")
        else:
            _check_dgms(p, r, len(hd), f"result[{i}]")
    return p


def expect_bottleneck(spec, res, args) -> list:
    return [] if isinstance(res, float) else [f"result: expected a float, got {type(res).__name__}"]


def expect_betti(spec, res, args) -> list:
    p, ts = [], args["ts"]
    count = 1 if isinstance(args["dgms"], np.ndarray) else len(args["dgms"])
    _check_array(p, "result", res, (count, int(np.asarray(ts, dtype=np.float64).size)), "int64", "numpy")
    return p


# ------------------------------------------------------------------------ the table of ops

@dataclass(frozen=True)
class OpInfo:
    """One op: how to call it, the arrays it takes (shapes over named sizes), its keyword pools
    (valid values; wrong ones are drawn from ``WRONG``), and the expected result."""

    fn: Callable  # the public function
    backends: tuple
    arrays: dict  # name -> (shape template of size names, preferred fill, required)
    keywords: dict  # name -> tuple of valid values
    expect: Callable
    sizes: dict = field(default_factory=dict)  # size name -> (lo, hi)
    written: tuple = ()  # arguments the op may write (out=, state)
    required: tuple = ()  # keywords always passed
    aliases: tuple = ()  # (written argument, input it may alias, sizes made equal {size: to})


_D, _S, _P = ("numpy", "torch", "mojo", "max", "auto"), ("n", "d"), ("mojo", "gudhi", "auto")
OPS = {
    "pairwise_distances": OpInfo(
        pairwise_distances, _D, {"X": (("n", "d"), "normal", True), "Y": (("m", "d"), "normal", False),
                                 "out": (("n", "m"), "zeros", False)},
        {"metric": ("euclidean", "sqeuclidean", "cosine", "cityblock", "chebyshev")}, expect_distances,
        {"n": (0, 9), "m": (0, 9), "d": (0, 5)}, written=("out",),
        aliases=(("out", "X", {"m": "d"}), ("out", "Y", {"n": "m", "d": "m"}))),
    "route": OpInfo(
        route, _D, {"logits": (("T", "E"), "normal", True), "bias": (("E",), "normal", False)},
        {"k": (1, 2, 3, 0, 9), "scoring": ("softmax", "sigmoid"), "renormalize": (True, False), "scale": (1.0, 2.5),
         "n_groups": (None, 1, 2), "topk_groups": (None, 1, 2), "capacity_factor": (None, 0.5, 1.0, 2.0)},
        expect_route, {"T": (0, 9), "E": (1, 8)}, required=("k",)),
    "selective_scan": OpInfo(
        selective_scan, _D,
        {"x": (("b", "l", "h", "p"), "normal", True), "dt": (("b", "l", "h"), "pos", True), "A": (("h",), "neg", True),
         "B": (("b", "l", "g", "n"), "normal", True), "C": (("b", "l", "g", "n"), "normal", True),
         "D": (("h",), "normal", False), "z": (("b", "l", "h", "p"), "normal", False),
         "dt_bias": (("h",), "normal", False), "initial_states": (("b", "h", "p", "n"), "normal", False),
         "cu_seqlens": (("s",), "cu", False)},
        {"dt_softplus": (False, True), "dt_limit": ([0.0, float("inf")], [0.001, 0.1]),
         "return_final_states": (False, True), "chunk_size": (256, 1, 2, 3)}, expect_scan,
        {"b": (0, 2), "l": (0, 6), "h": (1, 4), "g": (1, 2), "p": (1, 3), "n": (1, 3), "s": (2, 3)}),
    "selective_state_update": OpInfo(
        selective_state_update, _D,
        {"state": (("b", "h", "p", "n"), "normal", True), "x": (("b", "h", "p"), "normal", True),
         "dt": (("b", "h"), "pos", True), "A": (("h",), "neg", True), "B": (("b", "g", "n"), "normal", True),
         "C": (("b", "g", "n"), "normal", True), "D": (("h", "p"), "normal", False),
         "z": (("b", "h", "p"), "normal", False), "dt_bias": (("h",), "normal", False)},
        {"dt_softplus": (False, True), "dt_limit": ([0.0, float("inf")], [0.001, 0.1])}, expect_step,
        {"b": (0, 2), "h": (1, 4), "g": (1, 2), "p": (1, 3), "n": (1, 3)}, written=("state",)),
    "rips_persistence": OpInfo(
        rips_persistence, _P, {"X": (_S, "normal", True)},
        {"maxdim": (0, 1, 2, 3), "threshold": (float("inf"), 0.0, 0.5, 1.5), "metric": ("euclidean", "cityblock", "cosine"),
         "coeff": (2, 3, 5), "progress": (False,), "return_cycles": (False, True), "return_cocycles": (False, True)},
        expect_rips, {"n": (0, 10), "d": (0, 3)}),
    "rips_persistence_matrix": OpInfo(
        rips_persistence, _P, {"X": (("n", "n"), "distmat", True)},
        {"distance_matrix": (True,), "maxdim": (0, 1, 2), "threshold": (float("inf"), 1.0), "coeff": (2, 3),
         "progress": (False,), "return_cycles": (False, True), "return_cocycles": (False, True)},
        expect_rips, {"n": (0, 9)}),
    "collection_persistence": OpInfo(
        collection_persistence, _P, {"X": (("c", "n", "d"), "normal", True)},
        {"homology_dimensions": ([0, 1], 0, 1, [1]), "threshold": (float("inf"), 1.0),
         "metric": ("euclidean", "chebyshev"), "coeff": (2, 3), "n_jobs": (None, 1)},
        expect_collection, {"c": (0, 3), "n": (0, 7), "d": (1, 3)}),
    "bottleneck_distance": OpInfo(
        bottleneck_distance, (), {"dgm_a": (("k", 2), "diagram", True), "dgm_b": (("j", 2), "diagram", True)},
        {"e": (0.0, 0.1)}, expect_bottleneck, {"k": (0, 5), "j": (0, 5)}),
    "betti_curves": OpInfo(
        betti_curves, (), {"dgms": (("c", "k", 2), "diagram", True), "ts": (("t",), "pos", True)},
        {}, expect_betti, {"c": (0, 3), "k": (0, 5), "t": (0, 6)}),
}

#: wrong kinds drawn for any keyword (and for a whole array argument)
WRONG = (None, "abc", "", -1, 0, 2 ** 31, 2 ** 63, 1.5, -0.0, float("nan"), float("inf"), -float("inf"), True,
         [1, 2], [], {"a": 1}, {"$obj": "object"}, {"$obj": "set"}, {"$obj": "bytes"})


# ------------------------------------------------------------------------ calling the op

def _fingerprint(v):
    """A fingerprint of a built argument's contents, to catch inputs written in place."""
    if isinstance(v, (list, tuple)):
        return [_fingerprint(x) for x in v]
    if type(v).__module__.startswith("torch"):
        return v.detach().float().numpy().tobytes() if v.dtype.is_floating_point else v.numpy().tobytes()
    if isinstance(v, np.ndarray):
        return v.tobytes() if v.dtype.kind != "O" else repr(v.tolist())
    return None


def run_case(spec: dict) -> dict:
    """Build the arguments, call the op; the outcome as JSON (problems found, or the exception).
    A spec with ``interrupts`` runs clean, interrupted, then clean again (see the docstring)."""
    if not spec.get("interrupts"):
        return _run_once(spec)
    warm = _run_once(spec)
    hit = _run_once(spec, spec["interrupts"])
    again = _run_once(spec)
    if _summary(again) != _summary(warm):
        hit["broken"] = f"after the interrupted call, a clean one {_summary(again)} instead of {_summary(warm)}"
    return hit


def _summary(outcome: dict) -> str:
    return "returned" + str(outcome["problems"]) if outcome.get("ok") else "raised " + outcome.get("raised", "?")


def _run_once(spec: dict, interrupts=()) -> dict:
    import warnings

    info = OPS[spec["op"]]
    args = build_args(spec)
    before = {k: _fingerprint(v) for k, v in args.items() if k not in info.written}
    call = dict(args)
    first = call.pop(next(iter(info.arrays)))  # the op's first array is positional
    if info.backends and spec.get("backend") is not None:
        call["backend"] = spec["backend"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = _with_interrupts(lambda: info.fn(first, **call), interrupts)
    except KeyboardInterrupt as e:
        if interrupts:
            return {"interrupted": True, "problems": _after_interrupt(args, info)}
        return _raised(e)
    except BaseException as e:  # noqa: BLE001 (reported, judged by verdict)
        return _raised(e)
    problems = info.expect(spec, res, args)
    if info.backends and spec.get("backend") not in (*info.backends, None):
        problems.append(f"backend: {spec['backend']!r} accepted")
    problems += [f"{k}: input written in place" for k, v in args.items()
                 if k in before and before[k] != _fingerprint(v)]
    if interrupts:
        problems += _after_interrupt(args, info)
    return {"ok": True, "problems": problems}


def _raised(e: BaseException) -> dict:
    return {"raised": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__],
            "module": type(e).__module__, "message": str(e)[:2000]}


def _with_interrupts(fn: Callable, interrupts):
    """``fn()`` with a SIGINT sent to this (main) thread ``us`` microseconds into it for each
    of ``interrupts``. ``_interrupt`` raises ``KeyboardInterrupt`` only where the signal lands
    inside ``fn`` (a signal whose handler runs after ``fn`` has returned is dropped), so the
    harness itself is never hit."""
    if not interrupts:
        return fn()
    signal.signal(signal.SIGINT, _interrupt)  # for good: a late signal may be handled any time
    main = threading.main_thread().ident

    def send():
        t0 = time.perf_counter()
        for us in interrupts:
            time.sleep(max(0.0, t0 + us / 1e6 - time.perf_counter()))
            signal.pthread_kill(main, signal.SIGINT)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        return _interruptible(fn)
    finally:
        sender.join()


def _interruptible(fn: Callable):
    return fn()


def _interrupt(signum, frame):
    """The fuzz child's SIGINT handler: Ctrl-C inside ``_interruptible``, nothing elsewhere."""
    while frame is not None:
        if frame.f_code is _interruptible.__code__:
            raise KeyboardInterrupt
        frame = frame.f_back


def _after_interrupt(args: dict, info: "OpInfo") -> list:
    """What an interrupted call must not leave: an active control, a kernel still writing."""
    from .. import _control

    problems = [] if _control.current() is None else ["an interrupted call left its control active"]
    written = {k: _fingerprint(args[k]) for k in info.written if args.get(k) is not None}
    time.sleep(0.05)
    problems += [f"{k}: written after the call returned" for k, v in written.items() if _fingerprint(args[k]) != v]
    return problems


SANE = ("ValueError", "TypeError", "MemoryError", "RuntimeError")
_SHORT_OK = ":,[=)"


def names_argument(message: str, names) -> bool:
    """True when ``message`` names one of ``names`` (short names must look like one: ``A:``)."""
    for name in names:
        for m in re.finditer(rf"(?<![\w.]){re.escape(name)}(?![\w])", message):
            after = message[m.end():m.end() + 1]
            before = message[m.start() - 1:m.start()] if m.start() else ""
            if len(name) > 2 or after in _SHORT_OK or before in "'`(" and before:
                return True
    return False


def verdict(spec: dict, outcome: dict) -> str | None:
    """None for a pass, else why the case failed."""
    if "crash" in outcome or "broken" in outcome:
        return outcome.get("crash") or outcome["broken"]
    if outcome.get("ok") or outcome.get("interrupted"):
        return "; ".join(outcome["problems"]) or None
    mro, msg = outcome["mro"], outcome["message"]
    if "BackendUnavailable" in mro:
        return None
    if not any(s in mro for s in SANE) or "KeyboardInterrupt" in mro:
        return f"raised {outcome['raised']} (not a sane type): {msg[:300]}"
    names = [*spec["args"], *(["backend"] if OPS[spec["op"]].backends else [])]
    if not names_argument(msg, names):
        return f"raised {outcome['raised']} without naming an argument ({', '.join(names)}): {msg[:300]}"
    return None


# ------------------------------------------------------------------------ the child process

def _child_main() -> None:
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything the ops print goes to stderr, never into the reply pipe
    for line in sys.stdin:
        try:
            reply = run_case(json.loads(line))
        except Exception as e:  # building the arguments failed: the fuzzer's own bug, reported
            reply = {"raised": type(e).__name__, "mro": ["FuzzerError"], "message": f"fuzzer: {e!r}"}
        out.write(json.dumps(reply, default=str) + "\n")
        out.flush()


class Worker:
    """The persistent child: ``run(spec)`` gives the outcome, or ``{"crash": ...}`` after a
    signal or a hang (the child is then killed and started again on the next case)."""

    CHILD = "from aura_lab.harness.fuzz import _child_main; _child_main()"

    def __init__(self, timeout: float = 60.0, child: str = CHILD):
        self.timeout, self.child, self.proc = timeout, child, None

    def _start(self):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-c", self.child],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, text=True, bufsize=1)

    def run(self, spec: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if not ready:
            self.close()
            return {"crash": f"hang: no result within {self.timeout:g} s"}
        rc = self.proc.wait()
        self.proc = None
        return {"crash": f"child died: {'signal ' + str(-rc) if rc < 0 else 'exit ' + str(rc)}"}

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# ------------------------------------------------------------------------ drawing cases

def _recipe(draw, st, template: tuple, fill: str, sizes: dict, mutate: bool) -> dict:
    """An array of the template's shape (mutate: maybe a wrong one, an odd dtype or fill)."""
    shape = [sizes[s] if isinstance(s, str) else s for s in template]
    if mutate and draw(st.integers(0, 9)) == 0:  # a wrong shape: one size off, or a dim more/less
        how = draw(st.sampled_from(("grow", "add", "drop"))) if shape else "add"
        if how == "grow":
            i = draw(st.integers(0, len(shape) - 1))
            shape[i] += 1
        elif how == "add":
            shape.append(draw(st.integers(1, 2)))
        else:
            shape.pop()
    odd = mutate and draw(st.integers(0, 7)) == 0
    dtype = draw(st.sampled_from(DTYPES)) if odd else draw(st.sampled_from(("float64", "float32")))
    container = draw(st.sampled_from(CONTAINERS)) if draw(st.booleans()) else "numpy"
    if dtype == "bfloat16" or (container == "torch" and dtype in ("object", "str")):
        container = "torch" if dtype == "bfloat16" else "numpy"
    return {"dtype": dtype, "shape": shape, "fill": draw(st.sampled_from(FILLS)) if odd else fill,
            "layout": draw(st.sampled_from(LAYOUTS)) if draw(st.booleans()) else "c", "container": container}


def _array_arg(draw, st, template: tuple, fill: str, sizes: dict, mutate: bool):
    if mutate and draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(WRONG))
    if template[0] == "c":  # a collection: a list of arrays
        return {"$list": [_recipe(draw, st, template[1:], fill, sizes, mutate) for _ in range(sizes["c"])]}
    return {"$array": _recipe(draw, st, template, fill, sizes, mutate)}


def cases(ops=None):
    """The hypothesis strategy of specs over ``ops`` (names of ``OPS``; default all)."""
    from hypothesis import strategies as st

    names = sorted(ops or OPS)

    @st.composite
    def case(draw):
        name = draw(st.sampled_from(names))
        info = OPS[name]
        sizes = {s: draw(st.integers(lo, hi)) for s, (lo, hi) in info.sizes.items()}
        odd = draw(st.booleans())  # half the cases valid (they reach the kernels), half odd
        alias = draw(st.sampled_from(info.aliases)) if info.aliases and draw(st.integers(0, 5)) == 0 else None
        if alias:  # out= the very array of an input, the sizes tied so that the shapes match
            sizes.update({s: sizes[to] for s, to in alias[2].items()})
        args = {}
        for arg, (template, fill, required) in info.arrays.items():
            if alias and arg == alias[0]:
                args[arg] = {"$alias": alias[1]}
            elif required or (alias and arg == alias[1]) or draw(st.booleans()):
                args[arg] = _array_arg(draw, st, template, fill, sizes, odd)
        for kw, pool in info.keywords.items():
            if kw in info.required or draw(st.booleans()):
                args[kw] = draw(st.sampled_from(pool)) if not odd or draw(st.integers(0, 9)) else draw(st.sampled_from(WRONG))
        backend = None
        if info.backends:
            backend = draw(st.sampled_from(info.backends)) if not odd or draw(st.integers(0, 14)) else draw(st.sampled_from(("bogus", *WRONG)))
        spec = {"op": name, "backend": backend, "seed": draw(st.integers(0, 2 ** 16)), "args": args}
        if info.backends and draw(st.integers(0, 7)) == 0:  # two Ctrl-C's, microseconds into the call
            spec["interrupts"] = sorted(draw(st.integers(0, 3000)) for _ in range(2))
        return spec

    return case()


# ------------------------------------------------------------------------ runs and regressions

@dataclass
class FuzzReport:
    cases: int = 0
    per_op: dict = field(default_factory=dict)
    returned: dict = field(default_factory=dict)  # per op, the cases that returned a result
    failures: list = field(default_factory=list)  # (spec, why), each shrunk by hypothesis

    def summary(self) -> str:
        lines = [f"cases tried: {self.cases}", "per op (returned a result / tried): " + ", ".join(
            f"{k} {self.returned.get(k, 0)}/{v}" for k, v in sorted(self.per_op.items())),
                 f"failures found: {len(self.failures)}"]
        lines += [f"  {why}\n    {json.dumps(spec)}" for spec, why in self.failures]
        return "\n".join(lines)


def fuzz(*, minutes: float | None = None, examples: int | None = None, seed: int = 0, ops=None,
         timeout: float = 60.0, batch: int = 50, worker: Worker | None = None,
         on_failure: Callable | None = None) -> FuzzReport:
    """Run hypothesis batches of ``batch`` cases (seeds ``seed``, ``seed + 1``, ...) until
    ``examples`` cases or ``minutes`` have passed; each failure is shrunk and kept."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    report, own = FuzzReport(), worker is None
    worker = worker or Worker(timeout)
    end = None if minutes is None else time.monotonic() + 60 * minutes
    last = []

    def one(spec):
        report.cases += 1
        report.per_op[spec["op"]] = report.per_op.get(spec["op"], 0) + 1
        outcome = worker.run(spec)
        report.returned[spec["op"]] = report.returned.get(spec["op"], 0) + bool(outcome.get("ok"))
        why = verdict(spec, outcome)
        if why:
            last.append((spec, why))
            raise AssertionError(why)

    try:
        for i in range(10 ** 9):
            if (end is not None and time.monotonic() > end) or (examples is not None and report.cases >= examples):
                break
            n = batch if examples is None else max(1, min(batch, examples - report.cases))
            test = settings(max_examples=n, database=None, deadline=None, derandomize=False,
                            phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))(
                hseed(seed + i)(given(cases(ops))(one)))
            try:
                test()
            except AssertionError:
                if last[-1] not in report.failures:
                    report.failures.append(last[-1])
                    if on_failure:
                        on_failure(*last[-1])
    finally:
        if own:
            worker.close()
    return report


def load_regressions(path) -> list:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else []


def save_regressions(path, failures) -> int:
    """Add the failing specs not stored yet to the JSON file at ``path``; returns how many."""
    stored = load_regressions(path)
    known = {json.dumps(r["spec"], sort_keys=True) for r in stored}
    new = [{"spec": s, "found": why} for s, why in failures if json.dumps(s, sort_keys=True) not in known]
    if new:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(Path(path), "[\n" + ",\n".join(json.dumps(r) for r in stored + new) + "\n]\n")
    return len(new)
