"""`rooflab doctor`: the verdicts on fake NVML readings (tests/fixtures/nvml), and the command on this CPU
machine (no NVIDIA GPU: it says so and exits cleanly)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import doctor as D
from bench import profile as P
from bench import telemetry as T
from bench.doctor.performance import _perf_check
from bench.target import Target

_spec = importlib.util.spec_from_file_location("fake_pynvml", Path(__file__).parent / "fixtures/nvml/fake_pynvml.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)


def target_of(fx: dict) -> Target:
    t = fx["target"]
    return Target(backend="cuda", reason="fake GPU for tests", name=t["name"], torch_device="cuda:0",
                  memory_bytes=t["memory_bytes"], compute_units=t["compute_units"], cache_bytes=t["cache_bytes"],
                  capability=(9, 0), uuid=t["uuid"])


def fake_probes(values: dict, passed: bool = True, raises: dict | None = None) -> dict:
    """Probes that 'run' for 20 ms (so the sampler sees the fake card under them) and report given numbers."""
    def make(name):
        def probe(target, quick):
            time.sleep(0.02)
            if raises and name in raises:
                raise raises[name]
            return {"passed": passed, "detail": "" if passed else "max error 3.2 > tolerance", **values[name]}
        return probe
    return {name: make(name) for name in values}


def spec_profiles_only(tmp_path: Path) -> Path:
    """A profiles dir with the committed spec profiles and no measured one: the verdicts hold the probes against a
    stated fraction of spec, whatever the measured library holds."""
    (tmp_path / "specs").symlink_to(P.profiles_dir() / "specs", target_is_directory=True)
    return tmp_path


def diagnose(fixture: str | dict, tmp_path: Path, **kw) -> D.DoctorReport:
    fx = F.load(fixture) if isinstance(fixture, str) else fixture
    nv = F.FakeNVML(fx)
    kw.setdefault("probes", fake_probes(fx["probes"]))
    kw.setdefault("expect", fx.get("expect"))
    root = tmp_path / "profiles"
    if not root.exists():
        root.mkdir()
        spec_profiles_only(root)
    return D.diagnose(target_of(fx), open_nvml=lambda: T.NvmlSession(nv), interval_s=0.002,
                      profiles_dir=root, **kw)


def by_check(report: D.DoctorReport) -> dict[str, D.CardCheck]:
    return {v.check: v for v in report.checks}


def test_healthy_h100_sxm_passes(tmp_path):
    r = diagnose("healthy_h100_sxm", tmp_path)
    bad = {v.check: (v.status, v.reason) for v in r.checks if v.status != "PASS"}
    assert not bad
    assert r.status == "pass" and r.exit_code == 0 and r.sku == "h100-sxm"
    c = by_check(r)
    assert len(c) == 14
    assert "0x2330 is an h100-sxm" in c["identity"].reason and "VBIOS 96.00.99.00.01" in c["identity"].reason
    assert "2.98 TB/s is 89% of h100-sxm's 3.35 TB/s spec" in c["hbm_bandwidth"].reason
    assert c["pcie_link"].measured == "PCIe Gen5 x16 under load"
    assert r.device["pci_device_id"] == 0x2330 and r.device["sms"] == 132
    assert set(r.telemetry) == {"idle", "hbm", "matmul", "pcie"}
    assert r.telemetry["matmul"]["status"] == "ok" and r.telemetry["matmul"]["samples"] >= 2
    json.loads(r.model_dump_json())  # one JSON object


# (fixture, check, status, words the reason must contain)
SCENARIOS = [
    ("h100_pcie_claimed_sxm", "identity", "FAIL", "PCI device 0x2331 is an h100-pcie, not the h100-sxm claimed"),
    ("h100_pcie_claimed_sxm", "hbm_bandwidth", "PASS", "of h100-pcie's 2 TB/s spec"),  # judged as what it is
    ("power_capped", "power_limit", "FAIL", "power limit 500 W is 71% of the card's default 700 W"),
    ("power_capped", "matmul", "FAIL", "57% of h100-sxm's 989 TFLOP/s spec"),
    ("power_capped", "throttling", "WARN", "SW power cap in 100% of samples even during the memory-bound probe"),
    ("thermal_throttle", "throttling", "FAIL", "SW thermal slowdown in 100% of samples during matmul"),
    ("thermal_throttle", "temperature", "FAIL", "GPU reached 89 °C"),
    ("pending_remap", "row_remap", "FAIL",
     "a row remap is pending (3 uncorrectable rows remapped): the card needs a reset"),
    ("pending_remap", "ecc", "WARN", "3 uncorrectable ECC error(s) in the card's lifetime"),
    ("ecc_errors", "ecc", "FAIL", "2 uncorrectable ECC error(s) since the driver loaded"),
    ("ecc_errors", "xid", "FAIL", "hardware XID(s) 48"),
    ("degraded_pcie", "pcie_link", "FAIL", "PCIe Gen4 x8 under load, card supports Gen5 x16"),
    ("degraded_pcie", "host_device_bandwidth", "FAIL", "21% of the 63 GB/s a Gen5 x16 link carries"),
    ("mig_slice", "mig", "FAIL", "MIG is enabled: torch sees one slice (9.8 GiB, 16 SMs)"),
    ("mig_slice", "identity", "PASS", "0x2330 is an h100-sxm"),  # 16 SMs is the slice, not a fake card
    ("mig_slice", "hbm_bandwidth", "SKIP", "a MIG slice is not comparable"),
    ("mig_slice", "matmul", "SKIP", "a MIG slice is not comparable"),
    ("mig_slice", "row_remap", "SKIP", "not readable"),
    ("other_tenant", "idle", "FAIL", "1 other process(es) on the GPU before rooflab started (PIDs 4242; 20.0 GiB)"),
    ("unsupported_fields", "ecc", "SKIP", "not readable"),
    ("unsupported_fields", "xid", "SKIP", "XID events are not supported here"),
    ("unsupported_fields", "throttling", "PASS", "no thermal or hardware slowdown"),  # via the deprecated call
    ("unsupported_fields", "power_limit", "PASS", "the full default power limit"),
    ("unsupported_fields", "idle", "PASS", "the process list is not readable"),
    ("no_nvml", "nvml", "WARN", "NVML (libnvidia-ml.so) not found"),
    ("no_nvml", "hbm_bandwidth", "PASS", "of h100-sxm's 3.35 TB/s spec"),  # probes still judged, by the name
]


@pytest.mark.parametrize("fixture,check,status,words", SCENARIOS)
def test_verdicts_on_fake_readings(fixture, check, status, words, tmp_path):
    v = by_check(diagnose(fixture, tmp_path))[check]
    assert (v.status, words in v.reason) == (status, True), v.reason


@pytest.mark.parametrize("fixture,exit_code", [("healthy_h100_sxm", 0), ("h100_pcie_claimed_sxm", 1),
                                               ("power_capped", 1), ("thermal_throttle", 1), ("pending_remap", 1),
                                               ("ecc_errors", 1), ("degraded_pcie", 1), ("mig_slice", 1),
                                               ("other_tenant", 1), ("unsupported_fields", 0), ("no_nvml", 0)])
def test_exit_code_is_1_exactly_when_something_fails(fixture, exit_code, tmp_path):
    r = diagnose(fixture, tmp_path)
    assert r.exit_code == exit_code and (r.status == "fail") == (exit_code == 1)
    assert r.exit_code == D.exit_code(r.checks)


def test_unsupported_fields_are_recorded_not_errors(tmp_path):
    r = diagnose("unsupported_fields", tmp_path)
    t = r.telemetry["hbm"]
    assert t["status"] == "ok" and "mem_temp" in t["unsupported"] and not t.get("errors")
    assert "mem_temp_C" not in t and t["gpu_temp_C"]["max"] in (44.0, 61.0)  # the deprecated call's reading
    assert by_check(r)["temperature"].status == "PASS" and "HBM" not in by_check(r)["temperature"].measured


def test_name_and_device_id_disagree(tmp_path):
    fx = F.load("h100_pcie_claimed_sxm")
    fx["calls"]["nvmlDeviceGetName"] = "NVIDIA H100 80GB HBM3"  # says SXM, but the device ID is a PCIe card's
    v = by_check(diagnose(fx, tmp_path, expect=None))["identity"]
    assert v.status == "FAIL" and "says h100-sxm but PCI device 0x2331 is an h100-pcie" in v.reason


def test_sxm_id_with_fewer_sms_fails(tmp_path):
    fx = F.load("healthy_h100_sxm")
    fx["target"]["compute_units"] = 114
    v = by_check(diagnose(fx, tmp_path))["identity"]
    assert v.status == "FAIL" and "114 SMs visible; an h100-sxm has 132" in v.reason


def test_unknown_card(tmp_path):
    fx = F.load("healthy_h100_sxm")
    fx["calls"]["nvmlDeviceGetName"] = "NVIDIA Mystery GPU"
    fx["calls"]["nvmlDeviceGetPciInfo"] = {"pciDeviceId": "0x999910DE", "busId": "00000000:01:00.0"}
    fx["target"]["name"] = "NVIDIA Mystery GPU"
    r = diagnose(fx, tmp_path)
    c = by_check(r)
    assert r.sku is None and c["identity"].status == "WARN"
    assert "0x9999 is not in rooflab's SKU table" in c["identity"].reason
    assert c["hbm_bandwidth"].status == "SKIP" and c["hbm_bandwidth"].measured == "2.98 TB/s"
    assert c["matmul"].status == "SKIP" and r.exit_code == 0


def test_identified_card_without_spec_profile_gets_identity_only(tmp_path):
    """An H800 is in the identity tables but has no spec profile: its identity is checked, and no number is
    invented for what needs one."""
    fx = F.load("healthy_h100_sxm")
    fx["calls"]["nvmlDeviceGetName"] = "NVIDIA H800"
    fx["calls"]["nvmlDeviceGetPciInfo"] = {"pciDeviceId": "0x232410DE", "busId": "00000000:01:00.0"}
    fx["target"]["name"] = "NVIDIA H800"
    r = diagnose(fx, tmp_path)
    c = by_check(r)
    assert r.sku == "h800" and D.expected_for("h800").spec is None
    assert c["identity"].status == "PASS" and "0x2324 is an h800" in c["identity"].reason
    assert "no spec profile for h800" in c["identity"].reason
    for name in ("hbm_bandwidth", "matmul"):
        assert c[name].status == "SKIP" and "no spec profile for h800" in c[name].reason and not c[name].expected
    assert "rated" not in c["power_limit"].expected and r.exit_code == 0


def test_wrong_probe_result_fails_and_a_crashed_probe_warns(tmp_path):
    fx = F.load("healthy_h100_sxm")
    c = by_check(diagnose(fx, tmp_path, probes=fake_probes(fx["probes"], passed=False)))
    assert c["matmul"].status == "FAIL" and "computed wrong results: max error 3.2" in c["matmul"].reason
    before = sum(1 for t in threading.enumerate() if t.name == "rooflab-telemetry")
    r = diagnose(fx, tmp_path, probes=fake_probes(fx["probes"], raises={"hbm": RuntimeError("CUDA out of memory")}))
    c = by_check(r)
    assert c["hbm_bandwidth"].status == "WARN"
    assert "could not run: RuntimeError: CUDA out of memory" in c["hbm_bandwidth"].reason
    assert c["clocks"].status == "SKIP"  # its readings come from the HBM probe
    assert r.telemetry["hbm"]["status"] == "ok"  # the sampler still stopped and summarised
    assert sum(1 for t in threading.enumerate() if t.name == "rooflab-telemetry") == before


def test_perf_bands(tmp_path):
    exp = D.expected_for("h100-sxm", spec_profiles_only(tmp_path))
    healthy = exp.hbm.value
    assert healthy == pytest.approx(0.87 * 3.35e12) and "87% of spec" in exp.hbm.source

    def status(value):
        return _perf_check("hbm_bandwidth", "HBM copy", value, "B/s", exp, 3.35e12, exp.hbm, mig=False).status
    assert [status(f * healthy) for f in (0.84, 0.86, 0.94, 0.96, 1.1)] == ["FAIL", "WARN", "WARN", "PASS", "PASS"]


def _profile_file(path: Path, kind: str, device: dict, peaks: dict, **rest) -> None:
    """A valid profile of ``kind`` ("spec": every number cited in ``sources``) written to ``path``."""
    sources = {"device": "test sheet", "peaks": "test sheet", "host_link": "test sheet"} if kind == "spec" else {}
    path.write_text(json.dumps({"schema_version": P.SCHEMA_VERSION, "kind": kind, "name": path.stem,
                                "device": {"name": "test GPU", "backend": "cuda", **device}, "peaks": peaks,
                                "sources": sources, **rest}))


def _mm_point(n: int, flops: float) -> dict:
    t = 2 * n ** 3 / flops
    return {"family": "square", "M": n, "N": n, "K": n, "dtype": "bfloat16", "impl": "torch", "library": "cuBLAS",
            "flops": flops, "median_s": t, "p10_s": t, "p90_s": t, "bytes": 6 * n * n, "efficiency": 0.8}


def test_expected_reads_spec_and_measured_profiles(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "measured").mkdir()
    _profile_file(tmp_path / "specs" / "h100-sxm.json", "spec",
                  {"compute_units": 132, "memory_bytes": 80_000_000_000, "power_W": 700.0, "boost_clock_Hz": 1.98e9},
                  {"memory_bandwidth_Bps": 3.35e12, "matmul_flops": {"bfloat16": 9.894e14}},
                  host_link={"pcie_generation": 5})
    _profile_file(tmp_path / "measured" / "h100-sxm.json", "measured", {},
                  {"copy_bandwidth_Bps": 3.0e12, "matmul_flops": {"bfloat16": 7.98e14}},
                  curves={"matmul": [_mm_point(8192, 7.9e14), _mm_point(4096, 6.5e14)]})
    exp = D.expected_for("h100-sxm", tmp_path)
    assert exp.spec.source.startswith("profiles/specs/h100-sxm.json") and exp.spec.bf16_flops == 9.894e14
    assert exp.hbm.value == 3.0e12 and "profiles/measured/h100-sxm.json" in exp.hbm.source
    assert exp.matmul.value == 7.9e14  # the probe's own shape, not the best-shape peak
    # a card only the spec file knows
    _profile_file(tmp_path / "specs" / "h200-nvl.json", "spec",
                  {"compute_units": 132, "memory_bytes": 141_000_000_000, "power_W": 600.0},
                  {"memory_bandwidth_Bps": 4.8e12, "matmul_flops": {"bfloat16": 8.355e14}})
    e2 = D.expected_for("h200-nvl", tmp_path)
    assert e2.spec.tdp_W == 600.0 and e2.matmul.value == pytest.approx(0.72 * 8.355e14)
    assert D.expected_for("h200-nvl", tmp_path / "nowhere").spec is None


@pytest.mark.parametrize("name,sku", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H100 NVL", "h100-nvl"),
    ("NVIDIA H800", "h800"), ("NVIDIA H200", "h200"), ("NVIDIA H200 NVL", "h200-nvl"), ("NVIDIA H20", "h20"),
    ("NVIDIA GH200 480GB", "gh200"), ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"),
    ("NVIDIA A100 80GB PCIe", "a100-80gb-pcie"), ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"),
    ("NVIDIA GeForce RTX 4090", None)])
def test_sku_from_name(name, sku):
    assert D.sku_from_name(name) == sku


def test_clocks_are_judged_on_samples_under_load(tmp_path):
    """A probe's window opens on an idle GPU with parked clocks (0x1 idle): those samples are not the clock
    under load. A real slowdown under load still fails."""
    fx = F.load("healthy_h100_sxm")
    fx["calls"]["nvmlDeviceGetClockInfo"] = {"$by": {"1": {"$seq": [345, 345, 345, 345, 345, 1980, 1980, 1980]},
                                                     "2": 2619}}
    calls = fx["calls"]
    calls["nvmlDeviceGetCurrentClocksEventReasons"] = {"$seq": [1, 1, 1, 1, 1, 0, 0, 0]}
    calls["nvmlDeviceGetCurrentClocksThrottleReasons"] = calls["nvmlDeviceGetCurrentClocksEventReasons"]
    r = diagnose(fx, tmp_path)
    v = by_check(r)["clocks"]
    assert v.status == "PASS" and "SM 1.98 GHz (100% of max)" in v.measured, v.reason
    assert r.telemetry["hbm"]["sm_clock_Hz"]["median"] < 1e9  # every sample: mostly idle
    # the same idle start, but the clock under load is held at 1.2 GHz: that is a fault
    fx["calls"]["nvmlDeviceGetClockInfo"]["$by"]["1"]["$seq"] = [345] * 5 + [1200] * 3
    assert by_check(diagnose(fx, tmp_path))["clocks"].status == "FAIL"
    # only idle samples: nothing to judge
    calls["nvmlDeviceGetCurrentClocksEventReasons"] = calls["nvmlDeviceGetCurrentClocksThrottleReasons"] = 1
    v = by_check(diagnose(fx, tmp_path))["clocks"]
    assert v.status == "SKIP" and "under load" in v.reason


def _link_findings(reading: tuple[int, int], when: str, copied: float | None) -> D.Findings:
    """An H100 SXM on a Gen5 x16 slot whose link NVML reports as ``reading`` (gen, width) under load or at idle,
    and whose host↔device probe moved ``copied`` B/s (None: the probe did not run)."""
    gen, width = reading
    f = D.Findings(identity={"pcie_max_gen": 5, "pcie_gpu_max_gen": 5, "pcie_max_width": 16},
                   idle={"pcie_gen": gen, "pcie_width": width})
    t = T.summarize([{"pcie_gen": gen, "pcie_width": width}] if when == "under load" else [{}])
    if copied is not None:
        f.probes["pcie"] = D.ProbeResult("pcie", values={"h2d_Bps": copied, "d2h_Bps": copied * 1.04},
                                         passed=True, telemetry=t)
    return f


@pytest.mark.parametrize("reading,when,copied,status,words", [
    ((5, 16), "under load", 5.3e10, "PASS", "the full link under load"),
    ((4, 8), "under load", 1.35e10, "FAIL", "lanes are missing"),  # copies fit the degraded link: believed
    ((1, 16), "under load", 5.3e10, "PASS", "the reading is not the link's"),  # 53 GB/s cannot cross Gen1 x16
    ((4, 8), "under load", 5.3e10, "PASS", "more than such a link carries"),
    ((1, 16), "at idle", 5.3e10, "PASS", "Gen1 at idle is power saving"),
    ((1, 16), "at idle", 2.0e10, "WARN", "the copies reached only 20 GB/s"),
    ((1, 16), "at idle", None, "SKIP", "power saving"),
    ((5, 8), "at idle", 5.3e10, "PASS", "x8 at idle, but the copies reached 53 GB/s"),
    ((5, 8), "at idle", 2.6e10, "WARN", "lanes may be missing"),
])
def test_pcie_link_under_load_at_idle_and_against_the_copies(reading, when, copied, status, words):
    v = D.check_pcie_link(_link_findings(reading, when, copied))
    assert (v.status, words in v.reason) == (status, True), (v.status, v.reason)
    assert "DCGM" not in v.reason or when == "under load"  # Gen1 at idle is not below DCGM's minimum


def test_host_device_without_rates_is_skipped_not_a_crash():
    f = D.Findings(identity={"pcie_max_gen": 5, "pcie_max_width": 16})
    f.probes["pcie"] = D.ProbeResult("pcie", values={}, passed=True)
    assert D.check_host_device(f, D.expected_for("h100-sxm")).status == "SKIP"


def test_pcie_link_rate():
    assert D.pcie_link_Bps(5, 16) == pytest.approx(63.0e9, rel=1e-3)
    assert D.pcie_link_Bps(4, 8) == pytest.approx(15.75e9, rel=1e-3)
    assert D.pcie_link_Bps(None, 16) is None and D.pcie_link_Bps(9, 16) is None


def test_no_gpu_on_a_cpu_target(cpu_target):
    r = D.diagnose(cpu_target, open_nvml=lambda: T.NvmlSession(F.FakeNVML("no_nvml")))
    assert r.status == "unavailable" and r.exit_code == 0 and r.checks == []
    assert r.reason.startswith("no NVIDIA GPU: NVML (libnvidia-ml.so) not found")
    # the driver sees a GPU that torch cannot use: that is a failure, not "no GPU"
    r2 = D.diagnose(cpu_target, open_nvml=lambda: T.NvmlSession(F.FakeNVML("healthy_h100_sxm")))
    assert r2.status == "fail" and r2.exit_code == 1
    assert r2.checks[0].check == "cuda" and "NVIDIA H100 80GB HBM3 but torch has no CUDA device" in r2.checks[0].reason


def test_unknown_expect_is_refused(cpu_target):
    with pytest.raises(ValueError, match="unknown SKU"):
        D.diagnose(cpu_target, expect="h100-sxmm")


def rooflab(*args):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300)


def test_cli_doctor_on_this_cpu_machine():
    r = rooflab("doctor")
    assert r.returncode == 0, r.stderr
    assert "no NVIDIA GPU" in r.stdout and "Traceback" not in r.stdout + r.stderr
    j = rooflab("doctor", "--json", "--quick")
    assert j.returncode == 0, j.stderr
    obj = json.loads(j.stdout)  # exactly one JSON object on stdout
    assert isinstance(obj, dict) and obj["status"] == "unavailable" and obj["exit_code"] == 0
    assert "no NVIDIA GPU" in obj["reason"] and obj["checks"] == [] and obj["quick"] is True


def test_cli_doctor_bad_usage():
    r = rooflab("doctor", "--expect", "h100-sxmm")
    assert r.returncode == 2 and "unknown SKU" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.gpu
def test_doctor_on_a_real_gpu(gpu_target):
    """`rooflab doctor --quick --json` on the real card: every probe runs and checks its result, NVML fields the
    card or VM lacks degrade to SKIP, it finishes well inside a minute, and a healthy card does not FAIL
    (a FAIL here is a false alarm to chase, or a card to report). The report renders as the table."""
    import io

    from rich.console import Console

    from bench.cli import doctor as cli_doctor

    t0 = time.monotonic()
    r = rooflab("doctor", "--quick", "--json")
    took = time.monotonic() - t0
    report = D.DoctorReport.model_validate_json(r.stdout)
    table = "\n".join(f"{v.check}: {v.status} | {v.measured} | {v.reason}" for v in report.checks)
    assert report.status != "unavailable" and len(report.checks) == 14, r.stderr[-2000:]
    for name, p in report.probes.items():
        assert p["error"] is None and p["check_passed"] is True, (name, p)
    assert report.sku is not None and by_check(report)["identity"].status != "FAIL", table
    assert r.returncode == report.exit_code == 0, table
    assert took < 90 and report.wall_time_s < 60, (took, report.wall_time_s)
    buf = io.StringIO()
    cli_doctor.render(Console(file=buf, width=200), report)
    assert "hbm_bandwidth" in buf.getvalue() and report.status.upper() in buf.getvalue()
