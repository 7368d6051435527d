# Pairwise distances: kernel.mojo (tiled, SIMD, both cores; the metric tile routines the
# radius graph reuses), abi.mojo (the parameter block, generated from
# aura_lab/distance/problem.py), ops.mojo (the same kernel as a MAX graph custom op).
