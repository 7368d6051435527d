# The radius graph (every pair within a threshold, as CSR) of a point cloud: kernel.mojo,
# abi.mojo (the parameter block, generated from aura_lab/neighbors.py). The persistence
# binding runs it as the sparse engine's first stage.
