"""``rips_persistence``: validation into one problem, dispatch, the result sorted (with its
representatives, landmarks or vertex births)."""

from __future__ import annotations

import numpy as np

import dataclasses

from .. import _arrays as A
from .. import _control
from . import collapse as C
from ..registry import last_dispatch
from .kernels import _choose_engine, last_stats
from .problem import REPS_COCYCLES, REPS_CYCLES, _check_flag, _landmarks, _validate, op
from .progress import PROGRESS_AFTER_S, ProgressBar, _check_progress
from .reference import GUDHI_NO_REPS
from .result import Bars, PersistenceResult, _finish, _result


#: below this many points a call's own allocations (the (n, n) matrix, the engine's buffers) are
#: small next to the memory available: one reading of it serves the whole call
SMALL_N = 1024


def rips_persistence(X, *, maxdim: int = 1, threshold: float = np.inf, metric: str = "euclidean",
                     distance_matrix: bool = False, coeff: int = 2, backend: str = "auto",
                     progress: bool | str = "auto", return_cycles: bool = False,
                     return_cocycles: bool = False, n_perm: int | None = None,
                     collapse_edges: bool | str = "auto") -> "list[np.ndarray] | PersistenceResult":
    """Persistence diagrams of the Vietoris-Rips filtration of ``X``, and on request a
    representative cycle and cocycle of every bar.

    Args:
        X: ``(n, d)`` point cloud, or with ``distance_matrix=True`` (or ``metric="precomputed"``)
            an ``(n, n)`` distance matrix: non-negative, no NaN, symmetric to within 0.1 % per
            entry (its lower triangle ``D[i, j], i > j`` is used); ``inf`` entries mean "no edge";
            a nonzero diagonal gives vertex birth times, as ripser.py and giotto-ph read it (see
            sparse input below; unlike ripser.py, which then drops zero entries, an off-diagonal 0
            stays an edge of length 0). numpy arrays, torch CPU tensors or anything ``np.asarray`` takes. Also, with
            ``distance_matrix=True``, a ``scipy.sparse`` matrix (any format) or an edge list
            ``(i, j, d)`` of three 1-D arrays, as ripser.py reads sparse input: a stored entry is an
            edge (an explicit 0 one of length 0), a missing one none; an edge may be stored in one
            triangle or in both (then equal within 0.1 %); a nonzero diagonal gives vertex birth
            times, which change H0 only (``aura_lab.persistence.inputs``). Sparse input holding at
            most 40 % of the pairs (maxdim <= 1) or 16 % (maxdim >= 2) runs on the sparse engine (no
            ``(n, n)`` matrix; ``kernels._sparse_by_density``); denser input on the dense matrix (``inf``
            off the edges): ``MemoryError`` up front when it does not fit.
        maxdim: highest homology dimension (>= 0).
        threshold: largest edge length inserted (>= 0). The default ``inf`` means the enclosing
            radius, as ripser; larger values are capped there (the barcode is the same).
        metric: for point clouds, one of ``aura_lab.distance.METRICS``; distances come from
            ``aura_lab.pairwise_distances`` (float32 in -> float32 filtration).
        distance_matrix: ``X`` is a distance matrix.
        coeff: prime p of the coefficient field Z/p (2 <= p <= 46337).
        backend: ``"auto"`` (mojo, else gudhi), ``"mojo"`` or ``"gudhi"``.
        progress: ``True`` shows a ``tqdm.auto`` bar fed from the mojo engine's own counters
            (per dimension: simplices assembled, then columns reduced); ``"auto"`` shows it
            only once a call estimated to be long has run for ``PROGRESS_AFTER_S`` seconds;
            ``False`` never. (gudhi reports no progress.)
        return_cycles: also return a cycle of every bar (mojo engine only).
        return_cocycles: also return a cocycle of every bar (mojo engine only).
        n_perm: compute on ``n_perm`` landmarks (1 <= n_perm <= n) chosen by furthest-point
            sampling (ripser.py's ``get_greedy_perm``: point 0 first, then each the point furthest
            from those chosen); the result is a ``PersistenceResult`` whose ``idx_perm`` are their
            indices (representatives' vertices are rows of ``X``, as ripser.py's) and ``r_cover``
            their covering radius (every point lies within it of a
            landmark, so the diagrams are within ``r_cover`` of the full cloud's in bottleneck
            distance, times 2 for the Rips filtration's scale).
        collapse_edges: strong edge collapse of the radius graph before the mojo engine runs
            (Glisse & Pritam's backward pass, as gudhi's; passes repeat while one removes
            >= 2 % of the edges, ``aura_lab.persistence.collapse``): the same diagrams (bars
            with death > birth) from a smaller graph, on the sparse engine. ``"auto"``: on for
            maxdim >= 3 and for maxdim 2 on a sparse radius graph (a thresholded cloud of >= 1024
            points, sparse input), off otherwise and with representatives; ``True`` / ``False``
            force it (``True`` with ``return_cocycles``: ``ValueError``, cocycles of the
            collapsed filtration are not cocycles of the original complex; cycles are).
            ``last_dispatch().reason`` and ``last_stats()["collapse"]`` say what it did. The
            gudhi backend ignores it (it collapses on its own).

    Representatives (``return_cycles`` / ``return_cocycles``; K_t is the complex at scale t,
    capped at the threshold actually used; an infinite bar has d = inf):

    * the *cycle* of an H_k bar [b, d) is a k-cycle over Z/p (boundary 0) made of simplices of
      diameter <= b, and at every t in [b, d) the cycles of the bars alive at t (b <= t < d)
      are linearly independent modulo the boundaries of K_t. Computed by involuted persistent
      homology (Cufar & Virk 2021): with the pairs known from cohomology, the boundary of the
      bar's death simplex is reduced in homology (an infinite bar: the chain whose boundary
      reduction of the birth simplex gives zero). H0: the single vertex whose component dies
      at d (the component's smallest vertex; for an infinite bar, its component's).
    * the *cocycle* of [b, d) has zero coboundary on every (k+1)-simplex of diameter < d, and
      at every t the restrictions of the cocycles alive at t pair with the cycles alive at t
      through a nonsingular matrix (they form a basis of H^k(K_t)). It is the V column of the
      bar's column in the cohomology reduction. H0: the indicator of the dying component
      just before d (for an infinite bar, of its component at the threshold).
    * each is a pair ``(simplices, coeffs)``: an ``(m, k + 1)`` int64 array of vertex indices
      (rows ascending) and ``(m,)`` int64 coefficients in 1..p-1; signs (p > 2) follow the
      alternating-face orientation of simplices with ascending vertices,
      boundary [v0..vk] = sum_i (-1)^i [v0..^vi..vk].
    * the gudhi backend cannot give them (its flag-complex generators are vertex pairs, the
      longest edges of the birth and death simplices, not cycles): ``RuntimeError``; under
      ``"auto"`` only the mojo engine is tried.

    Ctrl-C (Jupyter's Interrupt) stops the mojo engine within a few milliseconds: its memory
    is freed and ``KeyboardInterrupt`` raised; ``aura_lab.cancellable`` stops it from another
    thread.

    Returns:
        ``maxdim + 1`` arrays; entry k is ``(m_k, 2)`` float64 (birth, death) of the H_k bars with
        death > birth, sorted by birth then death; infinite deaths are ``inf``. With either
        ``return_*`` flag a ``PersistenceResult``: ``dgms`` that list, ``cycles[k][i]`` /
        ``cocycles[k][i]`` the representatives of bar ``dgms[k][i]`` (``None`` when not asked).

    Examples:
        The four corners of a unit square: four components merge at 1, and one loop is born
        at 1 and filled at the diagonal's length.

        >>> import numpy as np, aura_lab
        >>> square = np.array([[0., 0.], [1., 0.], [1., 1.], [0., 1.]])
        >>> h0, h1 = aura_lab.rips_persistence(square, maxdim=1)
        >>> h0
        array([[ 0.,  1.],
               [ 0.,  1.],
               [ 0.,  1.],
               [ 0., inf]])
        >>> np.round(h1, 4)
        array([[1.    , 1.4142]])
    """
    reps = _check_flag("return_cocycles", return_cocycles) * REPS_COCYCLES | _check_flag("return_cycles", return_cycles) * REPS_CYCLES
    prob = _validate(X, maxdim, threshold, metric, distance_matrix, coeff, reps)
    prob = _landmarks(prob, n_perm)
    choice = C.check_choice(collapse_edges)
    sparse = choice == "auto" and prob.n > 0 and _choose_engine(prob, "auto")[0] == "sparse"
    on, why = C.resolve(choice, prob.reported_maxdim, return_cycles, return_cocycles, sparse)
    prob = dataclasses.replace(prob, collapse=on, collapse_why=why)
    progress = _check_progress(progress)
    if reps and prob.births is not None:
        raise ValueError("X: representatives (return_cycles / return_cocycles) are not computed for input "
                         "with vertex birth times (a nonzero diagonal)")
    if reps and op.chosen(backend) == "gudhi":
        raise RuntimeError(GUDHI_NO_REPS)
    if prob.n == 0:
        op.check_backend(backend)
        op.record("none", backend, "empty input: nothing to compute", 0.0)
        empty = [np.empty((0, 2)) for _ in range(prob.reported_maxdim + 1)]
        none = [[] for _ in empty]
        if prob.returns_result:
            return _result(Bars(empty, none if reps & REPS_CYCLES else None, none if reps & REPS_COCYCLES else None), prob)
        return empty
    if progress is True or (progress == "auto" and op.is_long(prob.size)):
        bar = ProgressBar(after_s=0.0 if progress is True else PROGRESS_AFTER_S)
        try:
            with _control.watching(bar):
                dgms = op.run(backend, prob)
        finally:
            bar.close()
    elif prob.n < SMALL_N:  # a few MB at most: one reading of the memory available serves the whole call
        with A.one_memory_reading():
            dgms = op.run(backend, prob)
    else:
        dgms = op.run(backend, prob)
    rec, stats = last_dispatch(), last_stats()
    if rec is not None and rec.backend == "mojo" and stats is not None:
        rec.reason += f"; {stats['engine']} engine: {stats['engine_reason']}"
    if prob.returns_result:
        return _result(dgms if reps else Bars(dgms, None, None), prob)
    return _finish(dgms, prob.reported_maxdim)
