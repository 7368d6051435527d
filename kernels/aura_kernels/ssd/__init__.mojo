# The Mamba-2 selective scan: scan.mojo (the sequential recurrence, the forward for
# inference and decode), chunked.mojo (the chunked training forward and backward as chunk
# matrix products), chunk_gemm.mojo (their GEMM micro-kernel), grad.mojo (the sequential
# backward and what the chunked one shares with it), abi.mojo and grad_abi.mojo (the parameter
# blocks, generated from aura_lab/ssd/problem.py), ops.mojo (MAX graph custom ops).
