# Mixture-of-Experts routing: kernel.mojo (scores, top-k, the experts' token lists),
# abi.mojo (the parameter block, generated from aura_lab/routing/problem.py), ops.mojo (the
# same kernel as a MAX graph custom op).
