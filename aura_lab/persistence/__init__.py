"""Vietoris-Rips persistent homology: ``rips_persistence(X, maxdim=1, ...)``.

Backends:

* ``gudhi`` - the reference: ``gudhi.RipsComplex`` on the same distance matrix, edge collapse,
  expansion to ``maxdim + 1``, persistent cohomology over Z/``coeff`` in float64.
* ``mojo`` - aura_lab's own engine (``kernels/aura_kernels/persistence/``, binding
  ``kernels/persistence.mojo``), the ripser algorithm family written
  fresh: H0 by union-find over the sorted edges, H1..H_maxdim by persistent cohomology with
  clearing, implicit coboundaries through the combinatorial number system, apparent and emergent
  pairs; both cores for the edge list, the apparent-pair filters, the column assembly and the
  column reduction (rounds of a parallel phase and a short sequential pairing phase). Two
  modes: on the full matrix (SIMD row scans over all n vertices) or on the radius graph in CSR
  form (cofacets from the intersection of neighbour lists: the cost is the degree, not n; no
  (n, n) matrix). ``kernels._ENGINE`` (internal) picks one; by default sparse input well below
  complete runs sparse, everything else dense (``last_dispatch().reason`` says which and why).

``gudhi`` is one of the registry's reference backends (``aura_lab.registry.REFERENCE_BACKENDS``);
``backend="auto"`` runs mojo, else (mojo unavailable, or the problem past the engine's limits)
falls back to gudhi with an ``AuraFallbackWarning``.

Conventions (shared by both backends, so their diagrams agree bar for bar):

* Filtration values are the pairwise distances: float32 inputs give a float32 filtration (as
  ripser and giotto-ph), float64 and every other numeric dtype a float64 one.
* Vertices are born at 0 (sparse input with a nonzero diagonal: at their birth times, H0 only,
  see ``aura_lab.persistence.inputs``); an edge {i, j}, i > j, enters at D[i, j] (the lower triangle, as gudhi
  reads a full matrix; ripser.py reads the upper one, which matters only for matrices that are
  not exactly symmetric: on fract-r, whose rounded entries differ by up to 1e-5, the diagrams
  then differ by 1e-6); a simplex at its largest edge. Edges longer than the threshold, and
  infinite distances, are never inserted.
* The threshold defaults to (and is capped at) the enclosing radius min_i max_j D[i, j], from
  which on the complex is a cone: the barcode is the one of the full Rips filtration, with
  exactly one infinite bar, in H0, when the cloud is connected.
* Only bars with death > birth are reported; infinite deaths are ``inf``; each dimension is a
  ``(k, 2)`` float64 array sorted by birth, then death.

The package, one module per stage as ``ssd`` and ``routing``: ``inputs`` (sparse input, vertex
births, landmarks), ``problem`` (validation into one ``PersistenceProblem``, the filtration,
``op``), ``progress``, ``estimate`` (the engine's memory before it runs), ``graph`` (the CSR
radius graph of the sparse engine), ``result``, ``reference`` (gudhi), ``kernels`` (the mojo
engine) and ``api`` (``rips_persistence``). The constants re-exported here are read in their
own module: set or patch them there (``persistence.kernels._ENGINE``,
``persistence.estimate.ESTIMATE_MAX_SAMPLE``).
"""

from __future__ import annotations

from . import reference, kernels, collapse, batch  # noqa: F401,I001  (register the backends, gudhi first as before; collapse, batch: their ABIs)
from .api import rips_persistence
from .estimate import (BUDGET_FRACTION, COLUMN_FRACTION, ENGINE_MIN_BUDGET, ENTRY_BYTES, ESTIMATE_MAX_CALLS,
                       ESTIMATE_MAX_LOCAL, ESTIMATE_MAX_SAMPLE, ESTIMATE_WORK, GROWTH_SLACK, estimate_engine_bytes,
                       simplex_counts)
from .kernels import ABI, ENGINES, MAX_ENGINE_DIM, SPARSE_MAX_DENSITY, SPARSE_MAX_DENSITY_H1, SPARSE_MIN_N, STAT_FIELDS, last_stats
from .problem import (MAX_COEFF, MAX_MAXDIM, REPS_COCYCLES, REPS_CYCLES, SYM_RTOL, PersistenceProblem,
                      effective_threshold, enclosing_radius, op)
from .progress import PROGRESS_AFTER_S, ProgressBar
from .reference import GUDHI_BYTES_PER_SIMPLEX, GUDHI_NO_REPS, gudhi_reference
from .result import Bars, Chain, PersistenceResult

__all__ = ["ABI", "BUDGET_FRACTION", "COLUMN_FRACTION", "ENGINES", "ENGINE_MIN_BUDGET", "ENTRY_BYTES",
           "ESTIMATE_MAX_CALLS", "ESTIMATE_MAX_LOCAL", "ESTIMATE_MAX_SAMPLE", "ESTIMATE_WORK", "GROWTH_SLACK",
           "GUDHI_BYTES_PER_SIMPLEX", "GUDHI_NO_REPS", "MAX_COEFF", "MAX_ENGINE_DIM", "MAX_MAXDIM", "PROGRESS_AFTER_S",
           "REPS_COCYCLES", "REPS_CYCLES", "SPARSE_MAX_DENSITY", "SPARSE_MAX_DENSITY_H1", "SPARSE_MIN_N", "STAT_FIELDS", "SYM_RTOL", "Bars",
           "Chain", "PersistenceProblem", "PersistenceResult", "ProgressBar", "effective_threshold", "enclosing_radius",
           "estimate_engine_bytes", "gudhi_reference", "last_stats", "op", "rips_persistence", "simplex_counts"]
