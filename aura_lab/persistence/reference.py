"""The ``gudhi`` backend, the reference: ``gudhi.RipsComplex`` on the same validated matrix, edge
collapse, expansion to ``maxdim + 1`` (one dimension at a time, within the memory budget)."""

from __future__ import annotations

import warnings

import numpy as np

from .. import _arrays as A
from ..errors import UnsupportedProblem
from . import inputs as G
from .problem import PersistenceProblem, op


GUDHI_NO_REPS = ("rips_persistence: the gudhi backend cannot give representatives: its flag persistence generators "
                 "(SimplexTree.flag_persistence_generators) are vertex pairs (the longest edges of a bar's birth and "
                 "death simplices), not cycles or cocycles; use backend='mojo' (or 'auto')")


def _gudhi_limits(prob: PersistenceProblem) -> None:
    if prob.reps:
        raise UnsupportedProblem(GUDHI_NO_REPS)


@op.impl("gudhi", check=_gudhi_limits)
def _gudhi(prob: PersistenceProblem) -> list[np.ndarray]:
    """gudhi's diagrams; with vertex birth times H0 from the reference ``h0_with_births``
    (births change H0 only)."""
    D, thr = prob.filtration
    dgms = gudhi_reference(D, prob.maxdim, thr, prob.coeff)
    if prob.births is not None:
        dgms[0] = G.h0_with_births(prob.X, thr)
    return dgms


def gudhi_reference(D: np.ndarray, maxdim: int, threshold: float, coeff: int = 2) -> list[np.ndarray]:
    """gudhi's diagrams of the validated full matrix ``D`` (float64 arithmetic on its values):
    edges <= threshold, edge collapse (the barcode is unchanged), expansion to ``maxdim + 1``."""
    import gudhi

    n = D.shape[0]
    D64 = np.asarray(D, np.float64)
    rc = gudhi.RipsComplex(distance_matrix=D64, max_edge_length=float(threshold))
    st = rc.create_simplex_tree(max_dimension=1)
    if maxdim >= 1 and n > 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(10):
                before = st.num_simplices()
                st.collapse_edges(nb_iterations=1)
                if st.num_simplices() == before:
                    break
        _guarded_expansion(st, n, maxdim + 1)
    # persistence_dim_max: also when the complex has no simplex of dimension maxdim + 1
    st.compute_persistence(homology_coeff_field=coeff, min_persistence=0.0, persistence_dim_max=True)
    return [st.persistence_intervals_in_dimension(k) for k in range(maxdim + 1)]


#: gudhi's simplex tree plus its persistence data, bytes per simplex (measured: sphere3 at
#: dimension 3, 56 M simplices, 13.5 GB peak)
GUDHI_BYTES_PER_SIMPLEX = 250


def _guarded_expansion(st, n: int, top: int) -> None:
    """``st.expansion(top)`` one dimension at a time; MemoryError when the next dimension's
    estimated size (each k-simplex gains about mean-degree / (k + 2) cofacets) would not fit."""
    edges = sum(1 for s, _ in st.get_skeleton(1) if len(s) == 2)
    degree = 2.0 * edges / max(n, 1)
    total, prev_total, count = st.num_simplices(), n, edges  # count: simplices of the top dimension so far
    budget = 0.8 * A.available_memory()
    for k in range(2, top + 1):
        estimate = count * degree / (k + 1)
        if (total + estimate) * GUDHI_BYTES_PER_SIMPLEX > budget:
            raise MemoryError(
                f"rips_persistence (gudhi): expanding to dimension {k} would add ~{estimate:.3g} simplices to "
                f"{total} (~{A.fmt_bytes((total + estimate) * GUDHI_BYTES_PER_SIMPLEX)}), more than the "
                f"{A.fmt_bytes(budget)} budget (80% of available memory); lower maxdim or the threshold")
        st.expansion(k)
        prev_total, total = total, st.num_simplices()
        count = total - prev_total
        if count == 0:
            break
