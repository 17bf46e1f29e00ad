import pytest

from bench import distributed, timing
from bench import profile as prof
from bench.benchmarks import allreduce
from bench.measurement import measured
from bench.registry import RunContext

SIZES = [8, 4100, 65_540]  # two floats, an odd-ish size, a bit over 64 KiB


def test_message_sweeps():
    gq, gf = allreduce.message_sizes(True, True), allreduce.message_sizes(True, False)
    assert gq[0] == gf[0] == 8 and gq[-1] == 256 * 2**20 and gf[-1] == 2**30
    cq = allreduce.message_sizes(False, True)
    assert cq[0] == 8 and cq[-1] <= 1 << 20 and cq == sorted(set(cq))


def test_world_size_one_is_skipped_with_the_reason(cpu_target):
    ctx = RunContext(target=cpu_target, quick=True, options={"ranks": 1})
    assert allreduce.BENCHMARK.sweep(ctx) == [{"world_size": 1}]
    (m,) = allreduce.BENCHMARK.run_point(ctx, {"world_size": 1})
    assert m.status == "skipped" and m.reason == allreduce.ONE_RANK and m.timing is None
    s = allreduce.BENCHMARK.summarize([m], {})
    assert s == {"interconnect": {"notes": [allreduce.ONE_RANK]}}


def test_gloo_two_ranks_checked_then_timed(cpu_target):
    ctx = RunContext(target=cpu_target, quick=True, min_time_s=0.002, options={"ranks": 2})
    recs = allreduce.BENCHMARK.run_point(ctx, {"world_size": 2})
    assert [m.params["size_bytes"] for m in recs] == allreduce.message_sizes(False, True)
    for m in recs:
        assert m.status == "ok" and m.check.passed and m.mode == "cpu" and m.impl == "gloo", m.reason
        assert m.timing.median_s > 0 and m.bandwidth_Bps == pytest.approx(m.params["size_bytes"] / m.timing.median_s)
        assert m.extra["busbw_Bps"] == pytest.approx(m.bandwidth_Bps)  # n = 2: factor 1
        assert len(m.extra["rank_medians_s"]) == 2 and m.timing.median_s == max(m.extra["rank_medians_s"])


def test_gloo_four_ranks_sum_exactly(cpu_target):
    rows = distributed.launch(allreduce.rank_sweep, 4, target=cpu_target, args=(SIZES, 11, 0.001), timeout_s=120)
    assert [r["size_bytes"] for r in rows] == [8, 4100, 65_540]
    for r in rows:
        assert r["bad"] == 0 and r["timing"]["n"] >= 5 and len(r["rank_medians_s"]) == 4


def sweep_with_a_wrong_rank(info, sizes, seed, min_time_s):
    """Rank 1 draws its contribution from another seed: the sum is wrong everywhere it lands."""
    from bench import checks

    if info.rank == 1:
        real = checks.generator
        checks.generator = lambda dev, s: real(dev, s + 1)
    return allreduce.rank_sweep(info, sizes, seed, min_time_s)


def test_a_wrong_contribution_fails_the_check_on_every_rank(cpu_target):
    rows = distributed.launch(sweep_with_a_wrong_rank, 2, target=cpu_target, args=(SIZES, 5, 0.001),
                              timeout_s=120)
    assert all(r["bad"] > 0 and "timing" not in r for r in rows)


def _rec(n, size, t):
    tm = timing.summarize([t * 0.98, t, t * 1.03], "cuda_events")
    return measured(benchmark="allreduce", kernel="all_reduce", impl="nccl", mode="cuda", device="gpu",
                    params={"world_size": n, "size_bytes": size, "dtype": "float32"}, timing=tm, bytes=size)


def test_summary_fits_alpha_beta_per_world_size():
    law = {2: (12e-6, 150e9), 8: (25e-6, 180e9)}
    recs = [_rec(n, s, a + s / b) for n, (a, b) in law.items() for s in allreduce.message_sizes(True, True)]
    ic = prof.Interconnect.model_validate(allreduce.BENCHMARK.summarize(recs, {})["interconnect"])
    ar = ic.all_reduce
    for n, (a, b) in law.items():
        f = ar.fit(n)
        assert f.alpha_s == pytest.approx(a, rel=1e-6) and f.beta_Bps == pytest.approx(b, rel=1e-6)
        # "how long does a 16 KiB all-reduce take", straight from the fit
        assert f.time_s(16384) == pytest.approx(a + 16384 / b, rel=1e-6)
    assert ar.fit(4) is None
    top8 = max((p for p in ar.curve if p.world_size == 8), key=lambda p: p.size_bytes)
    assert top8.busbw_Bps == pytest.approx(top8.algbw_Bps * 2 * 7 / 8)
    assert ar.peak_busbw_Bps == max(p.busbw_Bps for p in ar.curve)


@pytest.mark.gpu
def test_one_gpu_skips_and_one_nccl_rank_runs_the_rank_code(gpu_target):
    """On one GPU the sweep is world size 1 (skipped: nothing to reduce, no ranks started); the rank code itself
    still runs under NCCL with one rank: exact check, device barriers, CUDA-event timing."""
    import torch

    ctx = RunContext(target=gpu_target, quick=True)
    if torch.cuda.device_count() == 1:
        assert allreduce.BENCHMARK.sweep(ctx) == [{"world_size": 1}]
        (m,) = allreduce.BENCHMARK.run_point(ctx, {"world_size": 1})
        assert m.status == "skipped" and m.reason == allreduce.ONE_RANK and m.impl == "nccl" and m.mode == "cuda"
    rows = distributed.launch(allreduce.rank_sweep, 1, target=gpu_target, args=([8, 1 << 20], 7, 0.005), timeout_s=240)
    assert [r["size_bytes"] for r in rows] == [8, 1 << 20]
    for r in rows:
        assert r["bad"] == 0 and r["timing"]["clock"] == "cuda_events" and r["timing"]["n"] >= 5
        assert 0 < r["timing"]["median_s"] < 0.01
