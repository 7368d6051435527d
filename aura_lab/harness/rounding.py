"""Float32 rounding-error bounds, from the standard analysis (Higham, "Accuracy and Stability
of Numerical Algorithms", ch. 3): the tolerances of comparisons whose two sides round
differently (another CPU's BLAS, another summation order), computed from the data instead of
read off one machine's output.

A float32 sum of ``n`` products, in any order and with or without FMA, is within
``gamma(n) * sum |products|`` of the exact sum; and ``(1 + gamma(a)) (1 + gamma(b)) <= 1 +
gamma(a + b)``, so rounding counts along a computation's longest path add up.
"""

from __future__ import annotations

#: the float32 unit roundoff
U32 = 2.0**-24


def gamma(n: int) -> float:
    """gamma_n = n u / (1 - n u): the relative error bound of an n-term float32 sum of products."""
    return n * U32 / (1 - n * U32)
