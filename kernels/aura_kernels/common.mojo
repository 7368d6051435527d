# Shared definitions for aura_lab's compute kernels (no Python dependency: this package
# is also precompiled as the MAX custom-op library).

comptime F32 = DType.float32
comptime F64 = DType.float64
