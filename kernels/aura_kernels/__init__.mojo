# aura_kernels: the compute code of aura_lab's Mojo kernels, one module per family (the
# persistence engine: the subpackage persistence/, one module per stage), with no Python
# dependency. Two consumers build on it:
#   * the Python extension modules kernels/<family>.mojo (`mojo build ... -I kernels`),
#     the `mojo` backend;
#   * the MAX custom-op library: `mojo precompile kernels/aura_kernels` (modules
#     <family>_ops.mojo register ops with @extensibility.register), the `max` backend.
# So both backends run the same kernel code.
