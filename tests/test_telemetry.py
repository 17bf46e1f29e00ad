"""NVML telemetry on fake readings: the adapter's fallbacks, the sampler's start/stop, the summary math, the
run-level summary in the profile, and the runner stamping every record."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import profile as P
from bench import runner
from bench import telemetry as T
from bench.measurement import Measurement
from bench.profile import build as profile_build
from bench.registry import RunContext
from bench.target import Target
from bench.telemetry import sampler as telemetry_sampler

_spec = importlib.util.spec_from_file_location("fake_pynvml", Path(__file__).parent / "fixtures/nvml/fake_pynvml.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)


def fake_target(fixture: str = "healthy_h100_sxm") -> Target:
    t = F.load(fixture)["target"]
    return Target(backend="cuda", reason="fake GPU for tests", name=t["name"], torch_device="cuda:0",
                  memory_bytes=t["memory_bytes"], compute_units=t["compute_units"], cache_bytes=t["cache_bytes"],
                  capability=(9, 0), uuid=t["uuid"])


def device(fixture: str) -> T.NvmlDevice:
    return T.NvmlSession(F.FakeNVML(fixture)).device_for(fake_target(fixture))


@pytest.fixture(autouse=True)
def _fresh_session():
    T.reset_session()
    yield
    T.reset_session()


# ---- decoding and summary math -------------------------------------------------------------------------
def test_decode_reasons():
    assert T.decode_reasons(0) == []
    assert T.decode_reasons(0x1) == ["gpu_idle"]
    assert T.decode_reasons(0x4 | 0x20) == ["sw_power_cap", "sw_thermal_slowdown"]
    assert T.decode_reasons(0x8 | 0x1000) == ["hw_slowdown", "0x1000"]


def test_summary_math():
    samples = [
        {"sm_clock_Hz": 1.98e9, "power_W": 300.0, "gpu_temp_C": 40.0, "reasons": 0x0, "processes": 1},
        {"sm_clock_Hz": 1.755e9, "power_W": 700.0, "gpu_temp_C": 60.0, "reasons": 0x4},
        {"sm_clock_Hz": 1.5e9, "power_W": 690.0, "gpu_temp_C": 65.0, "reasons": 0x4 | 0x1},
        {"sm_clock_Hz": None, "power_W": 650.0, "gpu_temp_C": None, "reasons": None, "processes": 2},
    ]
    ident = {"name": "NVIDIA H100 80GB HBM3", "sm_clock_max_Hz": 1.98e9, "power_limit_W": 700.0}
    s = T.summarize(samples, ident, interval_s=0.05, duration_s=0.2)
    assert s.status == "ok" and s.samples == 4 and s.gpu == "NVIDIA H100 80GB HBM3"
    assert (s.sm_clock_Hz.min, s.sm_clock_Hz.median, s.sm_clock_Hz.max) == (1.5e9, 1.755e9, 1.98e9)
    assert (s.power_W.min, s.power_W.median, s.power_W.max) == (300.0, 670.0, 700.0)  # even count: mean of middle two
    assert s.gpu_temp_C.median == 60.0
    # shares are over the samples that had a reading (3 here), not all samples
    assert s.clocks_event_share == {"gpu_idle": pytest.approx(1 / 3), "sw_power_cap": pytest.approx(2 / 3)}
    assert s.throttled and s.throttle_reasons == ["sw_power_cap"]  # gpu_idle never counts as throttling
    assert s.processes_max == 2 and s.sm_clock_max_Hz == 1.98e9 and s.power_limit_W == 700.0
    assert s.mem_temp_C is None  # no reading at all: no statistic


def test_clocks_under_load_leave_out_idle_samples():
    """A window opens and closes on an idle GPU (clocks parked low): clocks judged under load skip those."""
    idle = {"sm_clock_Hz": 3.45e8, "mem_clock_Hz": 2.619e9, "reasons": 0x1, "gpu_util_pct": 0.0}
    busy = {"sm_clock_Hz": 1.98e9, "mem_clock_Hz": 2.619e9, "reasons": 0x0, "gpu_util_pct": 100.0}
    s = T.summarize([idle] * 6 + [busy] * 4 + [idle])
    assert s.sm_clock_Hz.median == 3.45e8  # every sample: mostly the idle start
    assert s.busy_samples == 4 and s.sm_clock_busy_Hz.median == 1.98e9 and s.mem_clock_busy_Hz.min == 2.619e9
    # without reasons, utilisation decides; with neither reading a sample counts as under load
    assert T.under_load({"gpu_util_pct": 12.0}) is False and T.under_load({"gpu_util_pct": 97.0}) is True
    assert T.under_load({"reasons": 0x4, "gpu_util_pct": 0.0}) is True  # the idle bit, not a lagging average
    assert T.under_load({}) is True
    assert T.summarize([idle]).sm_clock_busy_Hz is None and T.summarize([idle]).busy_samples == 0


def test_throttle_share_threshold():
    n = 100
    few = [{"reasons": 0x20 if i < 9 else 0} for i in range(n)]
    many = [{"reasons": 0x20 if i < 10 else 0} for i in range(n)]
    assert not T.summarize(few).throttled  # 9% of samples: noise
    assert T.summarize(many).throttle_reasons == ["sw_thermal_slowdown"]  # 10%: a condition
    assert T.summarize([]).samples == 0 and T.summarize([]).sm_clock_Hz is None


def test_summary_dict_and_brief():
    s = T.summarize([{"sm_clock_Hz": 1.98e9, "power_W": 612.0, "gpu_temp_C": 62.0, "reasons": 4}],
                    {"sm_clock_max_Hz": 1.98e9, "power_limit_W": 700.0})
    d = T.summary_dict(s)
    json.dumps(d)  # plain JSON
    assert T.parse(d) == s
    line = T.brief(d)
    assert "SM 1.98 GHz (100% of max)" in line and "612 W of 700 W" in line and "sw_power_cap 100%" in line
    u = T.summary_dict(T.unavailable("CPU target"))
    assert u == {"status": "unavailable", "reason": "CPU target"}
    assert T.brief(u) == "telemetry unavailable: CPU target" and T.brief(None) == "no telemetry"


# ---- the NVML adapter on fake readings -------------------------------------------------------------------
def test_identity_and_sample_of_a_healthy_h100():
    dev = device("healthy_h100_sxm")
    ident = dev.identity()
    assert ident["pci_device_id"] == 0x2330 and ident["pci_vendor_id"] == 0x10DE
    assert ident["name"] == "NVIDIA H100 80GB HBM3" and ident["driver"] == "580.95.05"
    assert ident["power_limit_W"] == 700.0 and ident["power_default_limit_W"] == 700.0  # mW -> W
    assert ident["sm_clock_max_Hz"] == 1.98e9 and ident["mem_clock_max_Hz"] == 2.619e9  # MHz -> Hz
    assert ident["pcie_max_gen"] == 5 and ident["pcie_max_width"] == 16 and ident["mig_enabled"] is False
    assert ident["memory_total_bytes"] == 85520809984 and ident["memory_info_version"] == 2
    assert ident["matched"] == "uuid"
    s = dev.sample(processes=True)
    assert s["sm_clock_Hz"] == 1.98e9 and s["power_W"] == 310.0 and s["gpu_temp_C"] == 41.0
    assert s["mem_temp_C"] == 45.0 and s["reasons"] == 0 and s["processes"] == 0 and s["pcie_gen"] == 5
    h = dev.health()
    assert h.ecc_volatile_uncorrected == 0 and h.remap_pending is False and h.retired_pages_sbe is None
    assert dev.errors == {}
    assert "retired_pages_sbe" in dev.unsupported  # Hopper retires no pages: unsupported, not an error


def test_fallbacks_to_deprecated_calls_and_unsupported_fields():
    fake = F.FakeNVML("unsupported_fields")
    dev = T.NvmlSession(fake).device_for(fake_target())
    ident = dev.identity()
    s = dev.sample(processes=True)
    # nvmlDeviceGetTemperatureV missing from the binding, ...EventReasons from the driver: the old calls answer
    assert s["gpu_temp_C"] == 44.0 and s["reasons"] == 0
    assert "nvmlDeviceGetTemperature" in fake.log and "nvmlDeviceGetCurrentClocksThrottleReasons" in fake.log
    # memory info v2 missing: v1 answers, and that is a fallback, not an unsupported field
    assert ident["memory_info_version"] == 1 and s["memory_used_bytes"] == 4194304
    assert not any(k.startswith("memory_info") for k in dev.unsupported)
    assert s["mem_temp_C"] is None and s["processes"] is None
    h = dev.health()
    assert h.ecc_enabled is None and h.ecc_volatile_uncorrected is None and h.remap_pending is None
    for field in ("mem_temp", "ecc_mode", "ecc_volatile_uncorrected", "remapped_rows", "power_default_limit"):
        assert field in dev.unsupported, field
    assert dev.unsupported["processes"] == "no permission"
    assert "pcie_gpu_max_gen" in dev.unsupported and ident["pcie_gpu_max_gen"] is None
    assert dev.errors == {}
    n = len(fake.log)
    dev.sample()
    asked = fake.log[n:]
    assert "nvmlDeviceGetTemperatureV" not in asked and "nvmlDeviceGetFieldValues" not in asked  # not asked again


def test_unexpected_nvml_error_is_recorded_not_raised():
    spec = F.load("healthy_h100_sxm")
    spec["calls"]["nvmlDeviceGetPowerUsage"] = {"$err": "GPU_IS_LOST"}
    dev = T.NvmlSession(F.FakeNVML(spec)).device_for(fake_target())
    s = dev.sample()
    assert s["power_W"] is None and s["sm_clock_Hz"] == 1.98e9
    assert "GPU" in dev.errors["power"] and "power" not in dev.unsupported  # asked again next time


def test_device_matching():
    spec = F.load("healthy_h100_sxm")
    sess = T.NvmlSession(F.FakeNVML(spec))
    assert sess.device_for(fake_target()).matched == "uuid"
    mig = dataclasses.replace(fake_target(), uuid="MIG-2f1e7a44-9c0b-5d6e-8f71-0a3b4c5d6e7f")
    assert sess.device_for(mig).matched == "the only GPU NVML sees"
    spec["calls"]["nvmlDeviceGetCount"] = 0
    with pytest.raises(T.Unavailable, match="no NVIDIA GPU"):
        T.NvmlSession(F.FakeNVML(spec)).device_for(mig)


def test_xid_watcher():
    spec = F.load("ecc_errors")
    w = T.XidWatcher(T.NvmlSession(F.FakeNVML(spec)).device_for(fake_target()))
    assert w.supported and w.poll() == [48] and w.poll() == [48]
    w.close()
    w2 = T.XidWatcher(device("unsupported_fields"))
    assert not w2.supported and "not supported" in w2.reason and w2.poll() == []


# ---- the sampler ------------------------------------------------------------------------------------------
def _threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "rooflab-telemetry")


def test_sampler_start_stop_and_summary():
    before = _threads()
    s = T.Sampler(device("thermal_throttle"), interval_s=0.002)
    with s:
        assert s.running
        time.sleep(0.05)
    assert not s.running and _threads() == before
    s.stop()  # idempotent
    summ = s.summary()
    assert summ.status == "ok" and summ.samples >= 3
    assert summ.duration_s is not None and summ.duration_s >= 0.04
    assert summ.clocks_event_share["sw_thermal_slowdown"] == 1.0 and summ.throttled
    assert summ.gpu_temp_C.max in (88.0, 89.0) and summ.mem_temp_C.max in (90.0, 93.0)
    assert summ.health is not None and summ.health.ecc_volatile_uncorrected == 0
    assert summ.sm_clock_max_Hz == 1.98e9 and summ.power_limit_W == 700.0
    assert s.summary() is summ  # computed once


def test_sampler_stops_when_the_block_raises():
    before = _threads()
    s = T.Sampler(device("healthy_h100_sxm"), interval_s=0.002)
    with pytest.raises(RuntimeError):
        with s:
            raise RuntimeError("kernel failed")
    assert not s.running and _threads() == before and s.summary().samples >= 1


def test_a_hung_nvml_call_is_abandoned_not_waited_on():
    """A GPU fallen off the bus can hang an NVML call: stop() returns after its join timeout and reads nothing
    more (health() would hang as well)."""
    dev = device("healthy_h100_sxm")
    release, hung, calls = threading.Event(), threading.Event(), []
    real = dev.sample

    def sample(processes=False):
        if calls:  # the second sample hangs until the test lets it go
            hung.set()
            release.wait(10)
        calls.append(1)
        return real(processes)

    dev.sample = sample
    dev.health = lambda: pytest.fail("health() read after a hung NVML call")
    s = T.Sampler(dev, interval_s=0.001).start()
    assert hung.wait(5)
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 5 and s.health is None
    summ = s.summary()
    assert summ.status == "ok" and summ.samples == 1 and "did not return" in summ.errors["sample"]
    release.set()


def test_pcie_link_reads_four_fields_only():
    fake = F.FakeNVML("degraded_pcie")
    dev = T.NvmlSession(fake).device_for(fake_target("degraded_pcie"))
    fake.log.clear()
    link = dev.pcie_link()
    assert link == {"pcie_max_gen": 5, "pcie_max_width": 16, "pcie_gen": 4, "pcie_width": 8}
    assert len(fake.log) == 4


def test_stamp_leaves_existing_telemetry():
    recs = [Measurement(benchmark="b", kernel="k", impl="torch", mode="cuda"),
            Measurement(benchmark="b", kernel="k", impl="triton", mode="cuda", telemetry={"status": "ok"})]
    with T.Sampler(device("healthy_h100_sxm"), interval_s=0.002) as s:
        time.sleep(0.01)
    s.stamp(recs)
    assert recs[0].telemetry["status"] == "ok" and recs[0].telemetry["samples"] >= 1
    assert recs[1].telemetry == {"status": "ok"}
    json.dumps(recs[0].model_dump(mode="json"))


def test_sampling_on_cpu_and_without_nvml(cpu_target, monkeypatch):
    s = T.sampling(cpu_target)
    with s:
        pass
    assert s.summary().status == "unavailable" and "CPU" in s.summary().reason
    # a GPU target on a machine where NVML cannot start: unavailable with the reason, remembered
    T.reset_session(F.FakeNVML("no_nvml"))
    s2 = T.sampling(fake_target())
    with s2:
        pass
    assert s2.summary().status == "unavailable" and "libnvidia-ml.so" in s2.summary().reason
    # nvidia-ml-py not installed at all
    T.reset_session()
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(T.Unavailable, match="nvidia-ml-py"):
        T.session()
    assert T.sampling(fake_target()).summary().reason.startswith("nvidia-ml-py is not importable")


# ---- runner and profile ------------------------------------------------------------------------------------
class _FakeBench:
    name = "fake"

    def __init__(self, sleep_s: float = 0.0):
        self.sleep_s = sleep_s

    def run_point(self, ctx, point):
        time.sleep(self.sleep_s)
        return [Measurement(benchmark="fake", kernel="copy", impl="torch", params=point, mode=ctx.target.backend)]


def test_runner_stamps_every_record(cpu_target):
    ctx = RunContext(target=cpu_target, quick=True)
    res = runner.run_one_point(ctx, _FakeBench(), "fake", {"n": 1})
    assert res.records[0].telemetry == {"status": "unavailable",
                                        "reason": "CPU target: there is no NVIDIA GPU to sample"}


def test_runner_samples_a_gpu_point(monkeypatch):
    T.reset_session(F.FakeNVML("power_capped"))
    monkeypatch.setattr(telemetry_sampler, "DEFAULT_INTERVAL_S", 0.002)
    ctx = RunContext(target=fake_target(), quick=True)
    res = runner.run_one_point(ctx, _FakeBench(0.03), "fake", {"n": 1})
    t = res.records[0].telemetry
    assert t["status"] == "ok" and t["samples"] >= 2 and t["throttled"] and t["throttle_reasons"] == ["sw_power_cap"]
    assert t["power_limit_W"] == 500.0 and t["power_default_limit_W"] == 700.0


def _rec(kernel, bw, telemetry, key, status="ok"):
    return Measurement(benchmark="hbm", kernel=kernel, impl="torch", params={"ws": key}, key=f"hbm:{key}",
                       mode="cuda", bandwidth_Bps=bw, status=status, telemetry=telemetry)


def test_run_summary_from_records():
    cool = T.summarize([{"sm_clock_Hz": 1.98e9, "power_W": 400.0, "gpu_temp_C": 50.0, "reasons": 0}] * 4,
                       {"name": "H100", "sm_clock_max_Hz": 1.98e9, "power_limit_W": 700.0},
                       T.Health(ecc_volatile_uncorrected=0))
    hot = T.summarize([{"sm_clock_Hz": 1.4e9, "power_W": 690.0, "gpu_temp_C": 88.0, "reasons": 0x20}] * 12,
                      {"name": "H100", "sm_clock_max_Hz": 1.98e9, "power_limit_W": 700.0},
                      T.Health(ecc_volatile_uncorrected=1))
    recs = [_rec("copy", 2.9e12, T.summary_dict(cool), 1), _rec("read", 3.1e12, T.summary_dict(cool), 1),
            _rec("copy", 2.5e12, T.summary_dict(hot), 2), _rec("read", 2.6e12, T.summary_dict(hot), 2)]
    r = T.run_summary(recs, {"memory_bandwidth_Bps": 3.1e12, "copy_bandwidth_Bps": 2.9e12,
                             "matmul_flops": {"bfloat16": 7e14}})
    assert r.status == "ok" and r.points == 2 and r.samples == 16  # each point's window counted once
    assert r.sm_clock_Hz.min == 1.4e9 and r.sm_clock_Hz.max == 1.98e9 and r.gpu_temp_C.max == 88.0
    assert r.clocks_event_share == {"sw_thermal_slowdown": pytest.approx(12 / 16)}
    assert r.throttled_points == ["hbm ws=2: sw_thermal_slowdown"]
    assert r.health_start.ecc_volatile_uncorrected == 0 and r.health_end.ecc_volatile_uncorrected == 1
    assert set(r.peak_conditions) == {"memory_bandwidth_Bps", "copy_bandwidth_Bps"}  # no record gave 7e14
    pc = r.peak_conditions["memory_bandwidth_Bps"]
    assert pc.measurement == "torch read hbm ws=1" and not pc.throttled and pc.gpu_temp_C.max == 50.0
    assert T.run_summary([_rec("copy", 1.0, None, 1)]) is None
    un = T.run_summary([_rec("copy", 1.0, {"status": "unavailable", "reason": "CPU target"}, 1)])
    assert un.status == "unavailable" and un.reason == "CPU target"


def test_profile_records_telemetry(tmp_path):
    summ = T.summarize([{"sm_clock_Hz": 1.98e9, "power_W": 650.0, "gpu_temp_C": 61.0, "reasons": 4}] * 3,
                       {"name": "NVIDIA H100 80GB HBM3", "sm_clock_max_Hz": 1.98e9, "power_limit_W": 700.0})
    recs = [Measurement(benchmark="hbm", kernel="copy", impl="torch", key="hbm:x", mode="cuda",
                        params={"op": "copy", "dtype": "float32", "working_set_bytes": 2**31, "array_bytes": 2**30},
                        bytes=2**31, bandwidth_Bps=3.0e12, telemetry=T.summary_dict(summ),
                        timing={"median_s": 2**31 / 3e12, "min_s": 7e-4, "max_s": 8e-4, "mean_s": 7.2e-4,
                                "p10_s": 7e-4, "p90_s": 7.3e-4, "n": 50, "total_s": 0.036, "clock": "cuda_events",
                                "spread": 1.04, "noisy": False})]
    dev = P.DeviceInfo(name="NVIDIA H100 80GB HBM3", backend="cuda", cache_bytes=50 * 2**20)
    prof = profile_build.from_measurements(recs, dev, P.RunInfo(mode="cuda", mode_reason="test", benchmarks=["hbm"]))
    assert isinstance(prof.telemetry, T.RunTelemetry) and prof.telemetry.status == "ok"
    assert prof.telemetry.peak_conditions["memory_bandwidth_Bps"].throttle_reasons == ["sw_power_cap"]
    P.save(prof, tmp_path / "p.json")
    again = P.load(tmp_path / "p.json")
    assert again.telemetry == prof.telemetry


# ---- on a real GPU (ROOFLAB_TEST_DEVICE=cuda) ----------------------------------------------------------------
@pytest.mark.gpu
def test_real_nvml_sampling_under_load(gpu_target):
    """The real pynvml on a real GPU: nothing raises, fields it lacks are recorded as unsupported, and a short
    matmul load is seen as load (busy samples, clocks) within a second."""
    import torch

    s = T.sampling(gpu_target, interval_s=0.02)
    assert s.device is not None, s.reason
    a = torch.randn(4096, 4096, device=gpu_target.torch_device, dtype=torch.bfloat16)
    with s:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.6:
            for _ in range(20):
                a @ a
            torch.cuda.synchronize()
    summ = s.summary()
    assert summ.status == "ok" and summ.samples >= 10 and not summ.errors, summ.errors
    ident = s.identity
    assert ident["name"] and ident["uuid"] and ident.get("pci_device_id")
    assert summ.sm_clock_Hz is not None or "sm_clock" in summ.unsupported
    assert summ.busy_samples >= 1 and (summ.sm_clock_busy_Hz is not None or "sm_clock" in summ.unsupported)
    assert summ.health is not None  # ECC / remap counters read (each may be unsupported, never an exception)
    link = T.session().device_for(gpu_target).pcie_link()
    assert set(link) == {"pcie_max_gen", "pcie_max_width", "pcie_gen", "pcie_width"}
    w = T.XidWatcher(T.session().device_for(gpu_target))
    try:
        assert w.poll() == [] or all(isinstance(x, int) for x in w.events)
    finally:
        w.close()


def test_a_sentinel_value_from_nvml_leaves_the_point_without_telemetry_not_failed():
    """NVML reports some unreadable fields as 0xFFFFFFFF: a clock of 4.3e15 Hz is no physical value, so the
    window's summary says telemetry is unavailable and why, instead of raising inside the measured point."""
    dev = device("healthy_h100_sxm")
    real = dev.sample
    dev.sample = lambda processes=False: {**real(processes), "sm_clock_Hz": 0xFFFFFFFF * 1e6}
    with T.Sampler(dev, interval_s=0.002) as s:
        time.sleep(0.01)
    summ = s.summary()
    assert summ.status == "unavailable" and "outside physical bounds" in summ.reason and "sm_clock_Hz" in summ.reason
