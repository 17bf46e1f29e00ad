import itertools

import pytest
import torch

from bench import profile as prof
from bench import timing
from bench.benchmarks import transfer
from bench.measurement import measured
from bench.profile import build as profile_build
from bench.registry import RunContext


def test_pcie_rates_are_the_one_table_in_telemetry():
    from bench import doctor, telemetry

    assert transfer.pcie_rate_Bps is telemetry.pcie_rate_Bps and doctor.pcie_link_Bps is telemetry.pcie_rate_Bps
    assert transfer.PCIE_LANE_Bps is telemetry.PCIE_LANE_Bps is doctor.PCIE_LANE_Bps
    assert transfer.pcie_rate_Bps(5.0, 16.0) == transfer.pcie_rate_Bps(5, 16)  # NVML stats arrive as floats
    assert transfer.pcie_rate_Bps("x", 16) is None


def test_quick_pageable_sizes_step_by_16_and_keep_the_largest():
    assert transfer.sizes(True, step=transfer.PAGEABLE_QUICK_STEP) == [4096 * 16 ** i for i in range(5)] + [1 << 30]
    assert transfer.sizes(True, 1 << 20, step=16) == [4096, 65536, 1 << 20]


def test_size_sweep_spans_4kib_to_1gib():
    q, f = transfer.sizes(quick=True), transfer.sizes(quick=False)
    assert q[0] == f[0] == 4096 and q[-1] == f[-1] == 1 << 30
    assert all(b == 4 * a for a, b in itertools.pairwise(q)) and all(b == 2 * a for a, b in itertools.pairwise(f))
    capped = transfer.sizes(quick=True, max_bytes=1 << 21)
    assert capped[-1] == 1 << 21 and capped == sorted(set(capped))


def test_pcie_theoretical_rates_per_direction():
    # PCIe spec: 8/16/32 GT/s per lane with 128b/130b encoding, x16
    assert transfer.pcie_rate_Bps(3, 16) == pytest.approx(15.75e9, rel=1e-3)
    assert transfer.pcie_rate_Bps(4, 16) == pytest.approx(31.51e9, rel=1e-3)
    assert transfer.pcie_rate_Bps(5, 16) == pytest.approx(63.02e9, rel=1e-3)
    assert transfer.pcie_rate_Bps(5, 8) == pytest.approx(transfer.pcie_rate_Bps(5, 16) / 2)
    assert transfer.pcie_rate_Bps(None, 16) is None and transfer.pcie_rate_Bps(5, 0) is None
    assert transfer.pcie_rate_Bps(9, 16) is None


def test_cpu_mode_records_the_link_as_skipped(cpu_target):
    ctx = RunContext(target=cpu_target, quick=True)
    pts = transfer.BENCHMARK.sweep(ctx)
    recs = [m for p in pts for m in transfer.BENCHMARK.run_point(ctx, p)]
    assert recs and all(m.status == "skipped" and m.reason == transfer.NO_DEVICE for m in recs)
    assert transfer.BENCHMARK.summarize(recs, {}) == {}


def test_copy_check_is_bitwise_and_sees_poison():
    src = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    assert transfer._same(src.clone(), src, "src").passed
    bad = src.clone()
    bad[17] = float("nan")
    chk = transfer._same(bad, src, "src")
    assert not chk.passed and "1 of 1000" in chk.detail
    off = src.clone()
    off[3] = torch.nextafter(off[3], torch.tensor(10.0))  # one ulp: a copy is exact, no tolerance
    assert not transfer._same(off, src, "src").passed


ALPHA, BETA = {"h2d": 9e-6, "d2h": 11e-6, "bidir": 14e-6}, {"h2d": 55e9, "d2h": 52e9, "bidir": 90e9}


def _records(memory="pinned", noise=0.0):
    recs = []
    for d in ("h2d", "d2h", "bidir"):
        for s in transfer.sizes(quick=True):
            nbytes = 2 * s if d == "bidir" else s
            t = ALPHA[d] + nbytes / BETA[d]
            tm = timing.summarize([t * (1 - noise), t, t * (1 + noise)], "cuda_events")
            recs.append(measured(benchmark="transfer", kernel=d, impl="torch", mode="cuda", device="gpu",
                                 params={"memory": memory, "size_bytes": s}, timing=tm, bytes=nbytes,
                                 pcie_generation=5, pcie_width=16, pcie_current_generation=5,
                                 pcie_current_width=16))
    return recs


def test_summary_fits_every_curve_and_states_the_link():
    s = transfer.BENCHMARK.summarize(_records("pinned") + _records("pageable"), {})["host_link"]
    link = prof.HostLink.model_validate(s)
    assert link.link == "PCIe Gen5 x16" and link.theoretical_Bps == pytest.approx(63.02e9, rel=1e-3)
    assert len(link.curves) == 2 * 3 * len(transfer.sizes(quick=True)) and len(link.fits) == 6
    for d in ("h2d", "d2h", "bidir"):
        f = link.fit(d, "pinned")
        assert f.alpha_s == pytest.approx(ALPHA[d], rel=1e-6) and f.beta_Bps == pytest.approx(BETA[d], rel=1e-6)
        assert f.max_rel_err < 1e-6
    # a 16 KiB host->device copy, predicted from the fit
    assert link.fit("h2d").time_s(16384) == pytest.approx(ALPHA["h2d"] + 16384 / BETA["h2d"], rel=1e-6)
    # the peaks are the best pinned points, below the link's line rate
    assert link.peak_h2d_Bps == max(c.bandwidth_Bps for c in link.curves if c.direction == "h2d"
                                    and c.memory == "pinned")
    assert link.peak_h2d_Bps < link.theoretical_Bps and link.pcie_current_generation == 5


def test_failed_copies_feed_nothing():
    recs = _records()
    bad = measured(benchmark="transfer", kernel="h2d", impl="torch", mode="cuda", device="gpu",
                   params={"memory": "pinned", "size_bytes": 1 << 40}, timing=None, bytes=1 << 40,
                   check=transfer._same(torch.tensor([float("nan")]), torch.tensor([1.0]), "x"))
    s = transfer.BENCHMARK.summarize(recs + [bad], {})["host_link"]
    assert bad.status == "failed" and all(c["size_bytes"] != 1 << 40 for c in s["curves"])


def test_profile_round_trips_with_host_link(cpu_target):
    s = transfer.BENCHMARK.summarize(_records(noise=0.02), {})
    p = prof.Profile(name="x", device=profile_build.device_info(cpu_target), **s)
    again = prof.validate(p.model_dump(mode="json", exclude_none=True))
    assert again.host_link == p.host_link and again.host_link.fit("d2h") is not None
    assert again.host_link.fit("d2h", "pageable") is None


def test_link_read_through_the_telemetry_nvml_adapter(cpu_target):
    import types

    from bench import telemetry

    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: "h0", nvmlDeviceGetUUID=lambda h: "GPU-abc",
        nvmlDeviceGetMaxPcieLinkGeneration=lambda h: 5, nvmlDeviceGetMaxPcieLinkWidth=lambda h: 16,
        nvmlDeviceGetCurrPcieLinkGeneration=lambda h: 4, nvmlDeviceGetCurrPcieLinkWidth=lambda h: 16)
    try:
        telemetry.reset_session(fake)
        info = transfer.pcie_link(cpu_target)
    finally:
        telemetry.reset_session()
    assert info == {"pcie_generation": 5, "pcie_width": 16, "pcie_current_generation": 4,
                    "pcie_current_width": 16}


def test_nvml_absent_means_unknown_link(cpu_target):
    from bench import telemetry

    telemetry.reset_session()
    try:
        telemetry.reset_session(object())  # a "pynvml" whose nvmlInit does not exist: NVML unusable
        assert transfer.pcie_link(cpu_target) == {}
    finally:
        telemetry.reset_session()


@pytest.mark.gpu
@pytest.mark.parametrize("memory", ["pinned", "pageable"])
def test_gpu_copy_point(gpu_target, memory):
    ctx = RunContext(target=gpu_target, quick=True, min_time_s=0.01)
    recs = transfer.BENCHMARK.run_point(ctx, {"memory": memory, "size_bytes": 1 << 24})
    assert {m.kernel for m in recs} == {"h2d", "d2h", "bidir"}
    assert all(m.status == "ok" and m.check.passed and m.timing.clock.startswith("cuda_events") for m in recs), \
        [m.reason for m in recs]
    # 16 MiB: past the latency knee, within what any PCIe Gen3+ x16 link (or faster) can carry per direction
    assert all(1e9 < m.bandwidth_Bps / (2 if m.kernel == "bidir" else 1) < 2e11 for m in recs)


@pytest.mark.gpu
def test_gpu_sweep_is_capped_at_1gib_and_quick_pageable_is_sparser(gpu_target):
    pts = transfer.BENCHMARK.sweep(RunContext(target=gpu_target, quick=True))
    pinned = [p["size_bytes"] for p in pts if p["memory"] == "pinned"]
    pageable = [p["size_bytes"] for p in pts if p["memory"] == "pageable"]
    assert max(pinned) == max(pageable) == 1 << 30 and len(pageable) < len(pinned)
