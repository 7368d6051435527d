"""What ``rips_persistence`` returns: the sorted diagrams, and with representatives or landmarks
a ``PersistenceResult`` (the engine's representative records parsed into chains)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _arrays as A
from .problem import REPS_COCYCLES, REPS_CYCLES, Kind, PersistenceProblem


def _finish(dgms, maxdim: int) -> list[np.ndarray]:
    return [d for d, _ in _sorted(dgms, maxdim)]


def _sorted(dgms, maxdim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per dimension the diagram as returned (bars with death > birth, sorted by birth then
    death) and the positions of its bars in ``dgms[k]``."""
    out = []
    for k in range(maxdim + 1):
        a = np.asarray(dgms[k], np.float64).reshape(-1, 2) if k < len(dgms) else np.empty((0, 2))
        keep = np.flatnonzero(a[:, 1] > a[:, 0])
        a = a[keep]
        order = np.lexsort((a[:, 1], a[:, 0]))
        out.append((np.ascontiguousarray(a[order]), keep[order]))
    return out


Chain = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Bars:
    """What a backend returns when representatives are asked for: per dimension the bars in
    the engine's order and their cycles / cocycles (``None`` when not asked for)."""

    dgms: list[np.ndarray]
    cycles: list[list[Chain]] | None
    cocycles: list[list[Chain]] | None


@dataclass(frozen=True)
class PersistenceResult:
    """``rips_persistence(..., return_cycles=..., return_cocycles=...)``: ``dgms`` the list of
    diagrams, and ``cycles[k][i]`` / ``cocycles[k][i]`` the ``(simplices, coeffs)`` of bar
    ``dgms[k][i]`` (see ``rips_persistence`` for their definitions), ``None`` when not asked."""

    dgms: list[np.ndarray]
    cycles: list[list[Chain]] | None
    cocycles: list[list[Chain]] | None
    coeff: int
    #: with ``n_perm``: the landmarks' indices into the input, and their covering radius
    idx_perm: np.ndarray | None = None
    r_cover: float | None = None

    def ripser_cocycles(self) -> list[list[np.ndarray]]:
        """The cocycles in ripser.py's shape (``do_cocycles=True``): per dimension and bar an
        ``(m, k + 2)`` int64 array of k + 1 vertices and the coefficient (H0 included)."""
        if self.cocycles is None:
            raise ValueError("return_cocycles: this result was computed without cocycles")
        return [[np.column_stack([s, c]) for s, c in dim] for dim in self.cocycles]


def _result(bars: Bars, prob: PersistenceProblem) -> PersistenceResult:
    """The sorted diagrams with their representatives in the same order."""
    dgms, cycles, cocycles = [], [] if bars.cycles is not None else None, [] if bars.cocycles is not None else None
    for k, (dgm, pos) in enumerate(_sorted(bars.dgms, prob.reported_maxdim)):
        dgms.append(dgm)
        for reps, out in ((bars.cycles, cycles), (bars.cocycles, cocycles)):
            if reps is not None:
                out.append([reps[k][i] for i in pos] if k < len(reps) else [])
    if prob.idx_perm is not None:  # landmarks' vertices as rows of X, as ripser.py
        cycles, cocycles = (None if r is None else [[_on_rows(c, prob.idx_perm) for c in dim] for dim in r]
                            for r in (cycles, cocycles))
    return PersistenceResult(dgms, cycles, cocycles, prob.coeff, prob.idx_perm, prob.r_cover)


def _on_rows(chain: Chain, idx_perm: np.ndarray) -> Chain:
    """A chain over the landmarks with its vertices as indices into the input's rows."""
    simplices, coeffs = chain
    return idx_perm[simplices], coeffs


def _parse_reps(words: np.ndarray, dims: np.ndarray, want: int) -> tuple[list, list]:
    """The engine's representative records (reps.mojo) as per-dimension lists of chains, in
    the engine's bar order (``dims``: the dimension of each bar)."""
    first = {k: int(np.searchsorted(dims, k)) for k in range(int(dims.max()) + 1 if dims.size else 0)}
    counts = np.bincount(dims, minlength=len(first)) if dims.size else np.zeros(0, np.int64)
    cycles = [[None] * int(c) for c in counts]
    cocycles = [[None] * int(c) for c in counts]
    i = 0
    while i < words.size:
        bar, kind, nv, m = (int(v) for v in words[i:i + 4])
        block = words[i + 4:i + 4 + m * (nv + 1)].reshape(m, nv + 1)
        i += 4 + m * (nv + 1)
        if kind == Kind.MERGES:
            _h0_reps(block, first.get(0, 0), cycles[0], cocycles[0] if want & REPS_COCYCLES else None)
            continue
        k = int(dims[bar])
        (cycles if kind == Kind.CYCLE else cocycles)[k][bar - first[k]] = (np.ascontiguousarray(block[:, :nv]),
                                                                          np.ascontiguousarray(block[:, nv]))
    return (cycles if want & REPS_CYCLES else None), (cocycles if want & REPS_COCYCLES else None)



def _h0_reps(merges: np.ndarray, first: int, cycles: list, cocycles: list | None) -> None:
    """H0 representatives from the union-find merges (dying root, surviving root or -1 for
    an essential class, bar or -1): the dying root; with ``cocycles``, the dying component's
    vertices (their total size checked against the available memory first)."""
    ones = np.ones(1, np.int64)
    for dying, surviving, bar in merges.tolist():
        if bar >= 0:
            cycles[bar - first] = (np.array([[dying]], np.int64), ones.copy())
    if cocycles is None:
        return
    size, total = {}, 0
    for dying, surviving, bar in merges.tolist():
        total += size.get(dying, 1) if bar >= 0 else 0
        if surviving >= 0:
            size[surviving] = size.get(surviving, 1) + size.pop(dying, 1)
    A.check_memory(16 * total, f"the H0 cocycles ({total} vertex entries)")
    members: dict[int, list[int]] = {}
    for dying, surviving, bar in merges.tolist():
        comp = members.pop(dying, [dying]) if surviving >= 0 else members.get(dying, [dying])
        if bar >= 0:
            cocycles[bar - first] = (np.sort(np.array(comp, np.int64)).reshape(-1, 1), np.ones(len(comp), np.int64))
        if surviving >= 0:
            members.setdefault(surviving, [surviving]).extend(comp)
