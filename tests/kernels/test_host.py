"""The host-side integer helpers agree with triton's (which are slow to call from Python)."""
import triton

from kernels._host import cdiv, next_power_of_2


def test_cdiv_and_next_power_of_2_match_triton():
    for a in range(300):
        assert next_power_of_2(a) == triton.next_power_of_2(a) if a > 0 else next_power_of_2(a) == 1
        for b in (1, 3, 16, 64, 127):
            assert cdiv(a, b) == triton.cdiv(a, b)
    assert next_power_of_2(2**20 + 1) == 2**21 and next_power_of_2(2**20) == 2**20
