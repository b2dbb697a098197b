"""Host-side integer helpers for launch grids and tile sizes.

`triton.cdiv` / `triton.next_power_of_2` are constexpr functions in recent Triton, and calling them
from Python costs microseconds each; a forward+backward computes a dozen of these, which showed up
as host overhead in `python -m kernels.profile`. These are the plain-integer equivalents.
"""
from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for integers, b > 0."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()
