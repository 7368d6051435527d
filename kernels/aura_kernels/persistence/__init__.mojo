# Vietoris-Rips persistent homology: the ripser algorithm family, written fresh in Mojo.
# Python reaches it through the binding kernels/persistence.mojo (see there for rips() and
# free_bars()); the driver is engine.run_rips.
#
# Input (PersistenceParams.sparse picks the layout, a compile-time parameter of Filtration):
# dense, the full (n, n) symmetric distance matrix, float32 or float64, zero diagonal (vertex
# births come separately: births, n float64, or 0); sparse,
# the radius graph in CSR form (indptr int64 (n + 1), indices int32 ascending per row, both
# directions, no self loops, dist = the distances, each <= threshold). Both validated
# by aura_lab/persistence/ (which also caps maxdim at n - 2, checks that every binomial
# coefficient C(n, k <= maxdim + 2) fits in 62 - coefficient-bits bits, and rounds the threshold
# to the matrix dtype). Output (engine.mojo; the slots, status codes and record kinds are
# declared in aura_lab/persistence/problem.py and generated into abi.mojo):
# info[INFO_STATUS] STATUS_OK, STATUS_OUT_OF_MEMORY (memory budget exceeded), STATUS_CANCELLED
# or STATUS_INCONSISTENT (a homology low without a partner: a bug); info[INFO_BARS] the address
# of a float64 buffer of (dim, birth, death) triples (death -1 = infinite), info[INFO_NBARS]
# their count, info[INFO_FAIL_DIM] the dimension being built when the budget ran out,
# info[INFO_FAIL_BYTES] the bytes asked for then, info[INFO_PEAK_BYTES] the peak bytes the
# engine held; with the reps flags (cocycles 1, cycles 2), info[INFO_REPS] the address of the
# int64 representative records (reps.mojo, KIND_*) and info[INFO_NREPS] their length;
# stats[dim * STAT_WORDS + STAT_*] per-dimension counters.
#
# Filtration: vertices at 0, a simplex at its largest edge; ties are broken by the simplex
# index in the combinatorial number system, {v_k > ... > v_0} -> sum_i C(v_i, i + 1), larger
# index first (ripser's "reverse colexicographic" order). Cohomology is reduced in reverse
# filtration order: columns = k-simplices sorted by (diameter desc, index asc); the pivot of a
# coboundary column is its (k+1)-cofacet with the smallest (diameter, -index).
#
# * H0: edges <= threshold (generated in index order, radix-sorted by diameter, stable), then
#   union-find from the shortest; a merging edge kills the younger root and gives [0, d); with
#   vertex birth times (PersistenceParams.births; ripser.py's rule) the younger root is the one
#   born later (ties: the larger vertex), its bar [birth, d) only when d > birth, and every
#   root left [birth, inf). With maxdim 1 (either layout): the edges
#   in a zero-persistence apparent pair (which never merge) are dropped during the edge scan,
#   and only the rest is sorted and goes through union-find (h0._dim0_h1).
# * Reduction: adding a reduced column pushes only its cofacets after the pivot it cancels
#   (the entries before it cancel within the column: reduce._eliminate).
# * Hk, k >= 1: columns are the k-simplices that are not pivots of dimension k-1 (clearing) and
#   not in a zero-persistence apparent pair. Each column's coboundary is enumerated on the fly
#   (cofacet index = above + C(v, j) + below as the new vertex v sweeps downwards) into a 4-ary
#   heap (4 children side by side: fewer levels, so fewer cache misses, than a binary heap); a
#   pivot found in the pivot -> column hash map is eliminated by adding that column's
#   coboundary (V-matrix columns are stored, R is implicit); a pivot in an apparent pair is
#   eliminated by adding the coboundary of its apparent facet; otherwise it is a new pair.
#   Emergent pairs: a column whose largest-index equal-diameter cofacet is free is paired at
#   once without enumerating its coboundary.
# * Sparse mode: the cofacets of s are the common neighbours of its vertices, found by walking
#   their neighbour lists downwards together (simplices.sweep_next, Ripser's sparse enumerator);
#   a distance is a binary search in a neighbour list. The assembly lists each simplex's common
#   neighbours once and tests its cofacets against that list. Simplex indices still run over
#   all n vertices (the Python side checks their range).
# * Dense mode: full-matrix rows make cofacet sweeps SIMD: for all candidate vertices v of a simplex s at
#   once, max_{w in s} D[w, v] is a vector max over the rows of s's vertices (simplices.Rows).
#   The assembly keeps that row max for s and tests each cofacet s + v against two rows only.
# * All cores (chunks handed out dynamically by common.run_chunks): the edge list, the
#   apparent-pair filters, the column assembly, the emergent-pair search, and the reduction,
#   in rounds: a parallel phase reduces a window of columns against the pivots known so far,
#   a short sequential phase pairs them in column order (see reduce.mojo).
# * Memory: every large buffer grows through a byte budget (80% of available memory); running
#   out stops the engine with status 1 instead of an out-of-memory kill.
#
# Files, by stage:
#   containers.mojo  Entry, Bar, the memory budget, Buffer (growable), OwnedArray, Scratch,
#                    ChunkBuffers, the pivot hash map, the 4-ary heap
#   sort.mojo        quicksort, the parallel two-half sort + merge, the radix sort by diameter
#   simplices.mojo   the binomial table, Filtration: decode/encode, the SIMD row scans (dense),
#                    the common-neighbour sweeps and distance lookup (sparse),
#                    apparent/emergent-pair predicates, coboundary pushing; the STAT_* slots
#   h0.mojo          edges under the threshold, union-find, the H1 columns
#   assemble.mojo    columns of dimension k + 1 from the k-simplices
#   reduce.mojo      emergent-pair search and the windowed parallel reduction
#   reps.mojo        representatives: cocycle records (V columns), cycles by involuted
#                    homology reduction of the death simplices, the record buffer
#   engine.mojo      the driver run(), the bar buffer and info[]
#   batch.mojo       many small clouds in one call (collections)
#   collapse.mojo    the strong edge collapse of a radius graph
#   abi.mojo, batch_abi.mojo, collapse_abi.mojo   the parameter blocks (generated)
