# aura_kernels: the compute code of aura_lab's Mojo kernels, one subpackage per op (distance/,
# neighbors/, persistence/, routing/, ssd/), each holding its kernels, the generated parameter
# blocks (abi.mojo, <stage>_abi.mojo) and its MAX op (ops.mojo), with no Python dependency;
# common.mojo the helpers they share. Two consumers build on it:
#   * the Python extension modules kernels/<family>.mojo (`mojo build ... -I kernels`),
#     the `mojo` backend;
#   * the MAX custom-op library: `mojo precompile kernels/aura_kernels` (modules
#     <op>/ops.mojo register ops with @extensibility.register), the `max` backend.
# So both backends run the same kernel code.
