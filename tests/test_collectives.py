"""bench.collectives: algbw and busbw as nccl-tests defines them (doc/PERFORMANCE.md), and their inverse."""
import pytest

from bench import collectives as C


def test_all_reduce_busbw_is_algbw_times_2_n_minus_1_over_n():
    assert C.busbw_Bps("all_reduce", 100.0, 2) == pytest.approx(100.0)
    assert C.busbw_Bps("all_reduce", 100.0, 4) == pytest.approx(150.0)
    assert C.busbw_Bps("all_reduce", 100.0, 8) == pytest.approx(175.0)
    assert C.busbw_Bps("all_reduce", 100.0, 1) == 0.0
    with pytest.raises(ValueError):
        C.busbw_Bps("all_reduce", 1.0, 0)


def test_all_to_all_busbw_is_algbw_times_n_minus_1_over_n():
    assert C.algbw_Bps(1e9, 0.5) == pytest.approx(2e9)
    # 2 ranks halve it, 8 ranks keep 7/8, 1 rank moves nothing across a link
    assert C.busbw_Bps("all_to_all", 100.0, 2) == pytest.approx(50.0)
    assert C.busbw_Bps("all_to_all", 100.0, 8) == pytest.approx(87.5)
    assert C.busbw_Bps("all_to_all", 100.0, 1) == 0.0
    with pytest.raises(ValueError):
        C.algbw_Bps(1.0, 0.0)
    with pytest.raises(ValueError):
        C.busbw_Bps("all_to_all", 1.0, 0)
    with pytest.raises(ValueError):
        C.bus_factor("broadcast", 4)  # type: ignore[arg-type]


@pytest.mark.parametrize("op", ["all_reduce", "all_to_all"])
@pytest.mark.parametrize("n", [2, 3, 8, 72])
def test_time_is_the_inverse_of_busbw(op, n):
    nbytes, t = 3e6, 1.7e-4
    bus = C.busbw_Bps(op, C.algbw_Bps(nbytes, t), n)
    assert C.time_s(op, nbytes, bus, n) == pytest.approx(t)
    with pytest.raises(ValueError):
        C.time_s(op, nbytes, 0.0, n)
