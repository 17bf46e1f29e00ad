"""rooflab doctor: is this (rented) GPU the card that was paid for, and is it healthy?

``diagnose(target)`` identifies the card from NVML (name, PCI device ID, memory, SMs, power limit, VBIOS,
driver), maps it to a spec profile name (``h100-sxm``, ``h100-pcie``, ...), reads its idle state and memory
health, runs three short probes under the telemetry sampler (HBM copy/read, a bf16 matmul, pinned
host↔device copies), and turns what it saw into one :class:`Verdict` per check: PASS / WARN / FAIL (or SKIP
when the check cannot be made here) with the measured value, the expected band and the reason.

``evaluate(findings, expected)`` is the verdict logic alone, a pure function of what was read: the tests
drive it with fake NVML readings. Each threshold sits beside its check with its source (facts gathered in
``../shared/reference/anchors.md``, "GPU health"): DCGM diagnostics' per-SKU limits, Azure's HPC health
checks, gpud, SuperBench, gcm, nvbench. Bands for measured numbers are relative to what a healthy card of that
SKU measures: a committed measured profile (``profiles/measured/<sku>.json``) when there is one, else a
stated fraction of the spec; each has a WARN band just above its FAIL limit.

Exit status (see ``exit_code``): 0 when nothing FAILs, 1 when something does. On a machine with no NVIDIA GPU
the report's status is "unavailable" with the reason, and the exit status is 0: nothing was checked, nothing
failed (a script that needs a GPU reads ``status`` from ``--json``). A machine whose driver sees a GPU that
torch cannot use is a FAIL.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import telemetry as tel
from .measurement import utc_now
from .telemetry import Health, NvmlSession, Sampler, TelemetrySummary, Unavailable

CheckStatus = Literal["PASS", "WARN", "FAIL", "SKIP"]
PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


# ---- what each SKU is ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SkuSpec:
    """The few spec-sheet numbers the doctor needs (dense tensor rates; decimal units)."""

    name: str
    memory_GB: float  # as marketed; NVML's total is about this many GiB
    memory_bandwidth_Bps: float
    bf16_flops: float
    sm_count: int
    boost_clock_Hz: float | None
    tdp_W: float
    pcie_gen: int
    source: str = "../shared/reference/gpu_specs.csv (NVIDIA datasheets)"


def _spec(name, mem_GB, bw_TBps, bf16_TF, sms, boost_MHz, tdp_W, pcie, source=None) -> SkuSpec:
    kw = {"source": source} if source else {}
    return SkuSpec(name, mem_GB, bw_TBps * 1e12, bf16_TF * 1e12, sms, boost_MHz * 1e6 if boost_MHz else None,
                   tdp_W, pcie, **kw)


# Fallback when profiles/specs/<sku>.json is absent (numbers from gpu_specs.csv, which cites the datasheets).
SPECS: dict[str, SkuSpec] = {s.name: s for s in (
    _spec("h100-sxm", 80, 3.35, 989.4, 132, 1980, 700, 5),
    _spec("h100-pcie", 80, 2.0, 756, 114, 1755, 350, 5),
    _spec("h100-nvl", 94, 3.9, 835.5, 132, 1785, 400, 5),
    _spec("h800", 80, 3.35, 989.4, 132, 1980, 700, 5,
          "export H100 SXM: same memory and tensor rates as h100-sxm, NVLink cut (medium confidence)"),
    _spec("h200", 141, 4.8, 989.4, 132, 1980, 700, 5),
    _spec("h20", 96, 4.0, 148, 78, None, 400, 5),
    _spec("a100-40gb-sxm", 40, 1.555, 312, 108, 1410, 400, 4),
    _spec("a100-80gb-sxm", 80, 2.039, 312, 108, 1410, 400, 4),
    _spec("a100-80gb-pcie", 80, 1.935, 312, 108, 1410, 300, 4),
    _spec("b200", 180, 7.7, 2250, 148, None, 1000, 5),
    _spec("l40s", 48, 0.864, 362, 142, 2520, 350, 4),
    _spec("l4", 24, 0.3, 121, 58, 2040, 72, 4),
)}

# PCI device ID (pciInfo.pciDeviceId >> 16) -> profile name. Source: DCGM nvvs/diag-skus.yaml.in, which keys
# its per-SKU diagnostic limits by these IDs (2330 "H100 80GB HBM3", 2331 H100 PCIe, 2321/233a H100 NVL,
# 2324 H800, 2322 H800 PCIe, 2335 H200, 233b H200 NVL, 2328/2329 H20, 20b0/20b2 A100 SXM4 40/80GB, 20b5
# A100 80GB PCIe, 20f1 A100 PCIe 40GB, 2342 GH200, 2901 B200, 26b9 L40S, 27b8 L4).
DEVICE_IDS: dict[int, str] = {
    0x2330: "h100-sxm", 0x2331: "h100-pcie", 0x2321: "h100-nvl", 0x233A: "h100-nvl", 0x2324: "h800",
    0x2322: "h800-pcie", 0x2335: "h200", 0x233B: "h200-nvl", 0x2328: "h20", 0x2329: "h20",
    0x20B0: "a100-40gb-sxm", 0x20B2: "a100-80gb-sxm", 0x20B5: "a100-80gb-pcie", 0x20F1: "a100-40gb-pcie",
    0x2342: "gh200", 0x2901: "b200", 0x26B9: "l40s", 0x27B8: "l4",
}
# The marketing name NVML reports -> profile name (first match wins; the SXM H100 calls itself "H100 80GB HBM3").
NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"gh200", "gh200"), (r"h100 nvl", "h100-nvl"), (r"h100 pcie", "h100-pcie"),
    (r"h100 (80gb hbm3|sxm)", "h100-sxm"), (r"h800 pcie", "h800-pcie"), (r"h800", "h800"),
    (r"h200 nvl", "h200-nvl"), (r"h200", "h200"), (r"\bh20\b", "h20"),
    (r"a100[- ]sxm4?[- ]80gb", "a100-80gb-sxm"), (r"a100[- ]sxm4?[- ]40gb", "a100-40gb-sxm"),
    (r"a100 80gb pcie", "a100-80gb-pcie"), (r"a100[- ]pcie[- ]40gb", "a100-40gb-pcie"),
    (r"b200", "b200"), (r"l40s", "l40s"), (r"\bl4\b", "l4"),
)
KNOWN_SKUS: tuple[str, ...] = tuple(sorted(set(SPECS) | set(DEVICE_IDS.values())))


def sku_from_device_id(device_id: int | None) -> str | None:
    return DEVICE_IDS.get(device_id) if device_id is not None else None


def sku_from_name(name: str | None) -> str | None:
    s = (name or "").lower()
    return next((sku for pat, sku in NAME_PATTERNS if re.search(pat, s)), None)


# ---- thresholds (each with its source) --------------------------------------------------------------------
# A healthy card's measured number, as a fraction of spec, where no committed measured profile exists:
# * HBM copy (torch copy_, read + write counted): Hopper copies reach ~83–87% of spec in BabelStream-class
#   runs; the H100 and H200 lent to this project gave ≈ 90% (anchors.md, measured_here.md). 0.87.
# * bf16 8192³ matmul held for a second or two: the best shape reaches ~80% of spec (MAMF, ml-engineering),
#   and sustained GEMM on an H100 sits at its 700 W cap, ≈ 71% (anchors.md). 0.72.
HEALTHY_FRACTION_OF_SPEC = {"hbm_copy": 0.87, "matmul_bf16": 0.72}
MATMUL_N = 8192  # the matmul probe's M = N = K
# FAIL below 85% of healthy: stricter than DCGM's per-SKU limits (0.75 × a healthy measurement, diag-skus),
# which catch only broken memory; WARN up to 95% of healthy, SuperBench's rule (> 5% below its baseline is
# defective) at the top of the band.
PERF_FAIL_BELOW, PERF_WARN_BELOW = 0.85, 0.95
# Power limit: DCGM runs each SKU at its board power (700 W SXM, 350 W PCIe, 400 W NVL); a limit lowered
# below the default caps sustained GEMM (anchors.md: "a lowered power limit"). FAIL < 90%, WARN < 98%.
POWER_FAIL_BELOW, POWER_WARN_BELOW = 0.90, 0.98
# Clocks under a memory-bound load (which stays under the power cap), over the probe's samples taken under load
# (telemetry.under_load: the window's idle start and end park the clocks low): nvbench counts a GPU as throttled
# below 75% of its peak clock; WARN below 90%. HBM clocks do not boost: anything below max is a slower
# memory P-state: FAIL < 90%, WARN < 98%. A max SM clock under 95% of the SKU's boost clock is a capped card.
SM_CLOCK_FAIL_BELOW, SM_CLOCK_WARN_BELOW = 0.75, 0.90
MEM_CLOCK_FAIL_BELOW, MEM_CLOCK_WARN_BELOW = 0.90, 0.98
MAX_CLOCK_WARN_BELOW = 0.95
# Clocks-event reasons during the probes (share of samples). gpud: hardware slowdown events mean an
# unhealthy node; any HW slowdown / HW thermal / power brake is a WARN, in ≥ 5% of samples a FAIL. SW thermal
# slowdown: WARN when seen, FAIL in ≥ 20% of samples. SW power cap is expected under sustained GEMM at the
# default limit (anchors.md); during the memory-bound probe in ≥ 50% of samples it is a WARN.
HW_SLOWDOWN_FAIL_SHARE = 0.05
SW_THERMAL_FAIL_SHARE = 0.20
POWER_CAP_ON_MEMORY_WARN_SHARE = 0.50
HW_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")
LIMITING = tel.LIMITING_REASONS
REASON_TEXT = {"sw_power_cap": "SW power cap", "hw_slowdown": "HW slowdown", "sw_thermal_slowdown":
               "SW thermal slowdown", "hw_thermal_slowdown": "HW thermal slowdown", "hw_power_brake_slowdown":
               "HW power brake", "board_limit": "board limit", "reliability": "reliability limit"}
# Temperatures: SuperBench marks a GPU defective above 85 °C; WARN above 80 °C; FAIL at the card's own
# slowdown threshold when NVML reports one. HBM: FAIL at the card's memory max (NVML threshold, else 95 °C,
# the HBM3 operating limit), WARN within 10 °C of it.
GPU_TEMP_FAIL_ABOVE, GPU_TEMP_WARN_ABOVE = 85.0, 80.0
MEM_TEMP_MAX_DEFAULT, MEM_TEMP_WARN_MARGIN = 95.0, 10.0
# Memory errors: DCGM fails ≥ 63 retired pages, any pending remap or remap failure, ≥ 512 uncorrectable
# remaps; gpud: pending remap → reset, remap failure → RMA; SuperBench and Azure fail uncorrectable ECC.
RETIRED_PAGES_FAIL = 63
UNCORRECTABLE_REMAPS_FAIL = 512
# XIDs that mean hardware trouble (Azure HPC health checks fail on these); others are WARN (often a program's
# own fault, e.g. 13 or 31).
HARDWARE_XIDS = frozenset({48, 56, 57, 58, 62, 63, 64, 65, 68, 69, 73, 74, 79, 80, 81, 92, 119, 120})
# Idle: gcm allows ≤ 15 MiB used at idle; more than 1 GiB, or any other process, means someone else is on it.
IDLE_USED_WARN_BYTES, IDLE_USED_FAIL_BYTES = 15 * 2**20, 2**30
# Host↔device: Azure fails below 48 GB/s on a Gen5 x16 link (0.76 of its 63 GB/s per direction) and warns
# within 5% above; DCGM requires at least a Gen3 x16 link.
PCIE_FAIL_FRACTION, PCIE_WARN_MARGIN = 0.76, 1.05
PCIE_MIN_GEN = 3
# the per-direction line rate of a PCIe link: the one table lives in bench.telemetry (transfer uses it too)
PCIE_LANE_Bps = tel.PCIE_LANE_Bps
pcie_link_Bps = tel.pcie_rate_Bps


# ---- expected numbers for a SKU ------------------------------------------------------------------------
@dataclass
class Expected:
    sku: str | None
    spec: SkuSpec | None = None
    spec_source: str = ""
    hbm_healthy_Bps: float | None = None
    hbm_source: str = ""
    matmul_healthy_flops: float | None = None
    matmul_source: str = ""


def _read_json(path: Path) -> dict | None:
    try:
        if path.is_file() and path.stat().st_size < 16 * 2**20:
            d = json.loads(path.read_text(encoding="utf-8"))
            return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        pass
    return None


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0 else None


def _bf16(d: dict) -> float | None:
    mm = d.get("matmul_flops") if isinstance(d.get("matmul_flops"), dict) else {}
    return _num(mm.get("bfloat16", mm.get("bf16")))


def expected_for(sku: str | None, profiles_dir: Path | None = None) -> Expected:
    """Spec numbers (profiles/specs/<sku>.json over the built-in table) and the healthy reference numbers
    (profiles/measured/<sku>.json when committed, else a stated fraction of spec)."""
    exp = Expected(sku=sku)
    if not sku:
        return exp
    root = profiles_dir or PROFILES_DIR
    base = SPECS.get(sku)
    spec_file = _read_json(root / "specs" / f"{sku}.json")
    if spec_file is not None:  # read defensively: only the numbers needed, each falling back to the table
        sect = lambda k: spec_file.get(k) if isinstance(spec_file.get(k), dict) else {}  # noqa: E731
        peaks, dev, link = sect("peaks"), sect("device"), sect("host_link")
        bw, bf = _num(peaks.get("memory_bandwidth_Bps")), _bf16(peaks)
        sms, mem = _num(dev.get("compute_units")), _num(dev.get("memory_bytes"))
        power, boost = _num(dev.get("power_W")), _num(dev.get("boost_clock_Hz"))
        gen = _num(link.get("pcie_generation"))
        if base is not None or (bw and bf and sms and mem and power):
            b = base or SkuSpec(sku, 0, 0, 0, 0, None, 0, 5)
            base = SkuSpec(sku, mem / 1e9 if mem else b.memory_GB, bw or b.memory_bandwidth_Bps,
                           bf or b.bf16_flops, int(sms) if sms else b.sm_count, boost or b.boost_clock_Hz,
                           power or b.tdp_W, int(gen) if gen else b.pcie_gen,
                           f"profiles/specs/{sku}.json" + (f", else {b.source}" if b.name == sku and b.tdp_W else ""))
    exp.spec = base
    exp.spec_source = base.source if base else ""
    measured = _read_json(root / "measured" / f"{sku}.json")
    mpeaks = measured.get("peaks") if measured and isinstance(measured.get("peaks"), dict) else {}
    if _num(mpeaks.get("copy_bandwidth_Bps")):
        exp.hbm_healthy_Bps = _num(mpeaks["copy_bandwidth_Bps"])
        exp.hbm_source = f"copy measured on a healthy {sku} (profiles/measured/{sku}.json)"
    elif base is not None:
        f = HEALTHY_FRACTION_OF_SPEC["hbm_copy"]
        exp.hbm_healthy_Bps = f * base.memory_bandwidth_Bps
        exp.hbm_source = f"a healthy card copies at ≈ {f:.0%} of spec"
    # the same shape as the probe from a committed run's matmul curve (its peak is a best-shape search, which
    # a fixed 8192³ does not reach)
    curve = ((measured or {}).get("curves") or {}).get("matmul") if isinstance(measured, dict) else None
    same = [_num(p.get("flops")) for p in (curve if isinstance(curve, list) else []) if isinstance(p, dict)
            and p.get("M") == p.get("N") == p.get("K") == MATMUL_N and p.get("dtype") in ("bfloat16", "bf16")]
    same = [x for x in same if x]
    if same:
        exp.matmul_healthy_flops = max(same)
        exp.matmul_source = f"{MATMUL_N}³ bf16 measured on a healthy {sku} (profiles/measured/{sku}.json)"
    elif base is not None:
        f = HEALTHY_FRACTION_OF_SPEC["matmul_bf16"]
        exp.matmul_healthy_flops = f * base.bf16_flops
        exp.matmul_source = f"a healthy card sustains ≈ {f:.0%} of spec"
    return exp


# ---- records ------------------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Verdict(_Model):
    check: str
    status: CheckStatus
    measured: str = ""
    expected: str = ""
    reason: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class DoctorReport(_Model):
    status: Literal["pass", "warn", "fail", "unavailable"]
    exit_code: int
    reason: str | None = None  # why unavailable
    device: dict[str, Any] = Field(default_factory=dict)
    sku: str | None = None
    expect: str | None = None
    checks: list[Verdict] = Field(default_factory=list)
    probes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    telemetry: dict[str, dict[str, Any]] = Field(default_factory=dict)  # probe/"idle" -> summary
    quick: bool = False
    wall_time_s: float | None = None
    rooflab: str = ""
    created: str = Field(default_factory=utc_now)


@dataclass
class ProbeResult:
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    passed: bool | None = None  # the correctness check before timing
    detail: str = ""
    error: str | None = None  # the probe could not run
    telemetry: TelemetrySummary | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"values": self.values, "check_passed": self.passed, "detail": self.detail, "error": self.error}


@dataclass
class Findings:
    """Everything the verdicts are made from."""

    identity: dict[str, Any] = field(default_factory=dict)
    target_memory_bytes: int | None = None  # what torch sees (a MIG slice sees its own share)
    target_sms: int | None = None
    nvml_reason: str | None = None  # NVML unusable: why
    idle: dict[str, Any] | None = None  # one sample before any probe
    idle_processes: list[tuple[int, int | None]] | None = None
    own_pid: int = 0
    health_start: Health | None = None
    health_end: Health | None = None
    xids: list[int] | None = None
    xid_reason: str | None = None
    unsupported: dict[str, str] = field(default_factory=dict)
    probes: dict[str, ProbeResult] = field(default_factory=dict)


# ---- formatting -------------------------------------------------------------------------------------------
def _rate(x: float | None, unit: str) -> str:
    if x is None:
        return "–"
    for p, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g} {p}{unit}"
    return f"{x:.3g} {unit}"


def _ghz(hz: float | None) -> str:
    return f"{hz / 1e9:.2f} GHz" if hz else "–"


def _gib(b: float | None) -> str:
    return f"{b / 2**30:.1f} GiB" if b is not None else "–"


def _v(check: str, status: CheckStatus, measured: str = "", expected: str = "", reason: str = "",
       **data: Any) -> Verdict:
    return Verdict(check=check, status=status, measured=measured, expected=expected, reason=reason,
                   data={k: v for k, v in data.items() if v is not None})


_ORDER = {"PASS": 0, "SKIP": 0, "WARN": 1, "FAIL": 2}


def _worst(*statuses: CheckStatus) -> CheckStatus:
    return max(statuses, key=lambda s: _ORDER[s]) if statuses else "PASS"


def _band(value: float, reference: float, fail_below: float, warn_below: float) -> CheckStatus:
    r = value / reference
    return "FAIL" if r < fail_below else "WARN" if r < warn_below else "PASS"


# ---- the checks ---------------------------------------------------------------------------------------
def check_identity(f: Findings, exp: Expected, expect: str | None) -> Verdict:
    ident = f.identity
    did = ident.get("pci_device_id")
    by_id, by_name = sku_from_device_id(did), sku_from_name(ident.get("name"))
    did_s = f"0x{did:04x}" if isinstance(did, int) else "unknown"
    sku = by_id or by_name
    mem = ident.get("memory_total_bytes")
    measured = (f"{ident.get('name') or '?'}, PCI device {did_s}" + (f" ({sku})" if sku else "")
                + (f", {f.target_sms} SMs" if f.target_sms else "") + (f", {_gib(mem)}" if mem else ""))
    extra = ", ".join(x for x in (f"VBIOS {ident['vbios']}" if ident.get("vbios") else "",
                                  f"driver {ident['driver']}" if ident.get("driver") else "") if x)
    expected = expect or sku or "a known SKU"
    fails, warns = [], []
    if expect and by_id and by_id != expect:
        fails.append(f"PCI device {did_s} is an {by_id}, not the {expect} claimed")
    elif expect and not by_id and by_name and by_name != expect:
        fails.append(f"the card calls itself {ident.get('name')!r} ({by_name}), not the {expect} claimed")
    if by_id and by_name and by_id != by_name:
        fails.append(f"the name {ident.get('name')!r} says {by_name} but PCI device {did_s} is an {by_id}")
    if not by_id:
        warns.append(f"PCI device {did_s} is not in rooflab's SKU table: the card's identity is unconfirmed"
                     if did is not None else "NVML gave no PCI device ID: the card's identity is unconfirmed")
    spec = exp.spec
    mig = ident.get("mig_enabled")
    if spec and f.target_sms and not mig and f.target_sms != spec.sm_count:
        (fails if f.target_sms < spec.sm_count else warns).append(
            f"{f.target_sms} SMs visible; an {spec.name} has {spec.sm_count}")
    if spec and mem and not mig:
        # NVML's total is about the marketed size in GiB (HBM cards within 1%); GDDR cards with ECC on keep
        # ~6% back (an L40S shows 45 GiB of 48 GB)
        ratio = mem / 2**30 / spec.memory_GB
        if not 0.90 <= ratio <= 1.08:
            warns.append(f"{_gib(mem)} of memory; an {spec.name} has {spec.memory_GB:g} GB")
    status: CheckStatus = "FAIL" if fails else "WARN" if warns else "PASS"
    reason = "; ".join(fails + warns) or (f"PCI device {did_s} is an {sku}" + (" as claimed" if expect else "")
                                          + (f"; {extra}" if extra else ""))
    return _v("identity", status, measured, expected, reason, pci_device_id=did, sku_by_id=by_id,
              sku_by_name=by_name, expect=expect)


def check_mig(f: Findings) -> Verdict:
    ident = f.identity
    mig, pending = ident.get("mig_enabled"), ident.get("mig_pending")
    if mig:
        vis = f"{_gib(f.target_memory_bytes)}, {f.target_sms or '?'} SMs"
        return _v("mig", "FAIL", "MIG enabled", "MIG disabled (a whole card)",
                  f"MIG is enabled: torch sees one slice ({vis}) of a {_gib(ident.get('memory_total_bytes'))} "
                  "card; other slices may be someone else's", mig_enabled=True)
    if mig is None:
        return _v("mig", "SKIP", "unknown", "MIG disabled", "MIG mode could not be read"
                  + (f" ({f.unsupported.get('mig_mode')})" if f.unsupported.get("mig_mode") else ""))
    if pending:
        return _v("mig", "WARN", "MIG disabled, enabling pending", "MIG disabled",
                  "a MIG mode change is pending and applies at the next GPU reset")
    not_capable = f.unsupported.get("mig_mode") == "not supported on this GPU"
    return _v("mig", "PASS", "MIG disabled" if not not_capable else "not MIG-capable", "MIG disabled",
              "the whole card is visible")


def check_idle(f: Findings) -> Verdict:
    used = (f.idle or {}).get("memory_used_bytes")
    procs = f.idle_processes
    if used is None and procs is None:
        return _v("idle", "SKIP", "", "≤ 15 MiB used, no other process", "memory use and processes not readable")
    mine = [p for p in (procs or []) if p[0] == f.own_pid]
    others = [p for p in (procs or []) if p[0] != f.own_pid]
    if used is not None and mine:
        used = max(0.0, used - sum(b or 0 for _, b in mine))
    measured = f"{used / 2**20:.0f} MiB used" if used is not None else "memory use unknown"
    measured += f", {len(others)} other process{'es' if len(others) != 1 else ''}" if procs is not None else ""
    expected = f"≤ {IDLE_USED_WARN_BYTES // 2**20} MiB used, no other process"
    if others:
        pids = ", ".join(str(p) for p, _ in others[:5])
        their = sum(b or 0 for _, b in others)
        return _v("idle", "FAIL", measured, expected,
                  f"{len(others)} other process(es) on the GPU before rooflab started (PIDs {pids}; "
                  f"{_gib(their)}): another tenant or a leftover job. Inside a container NVML lists host PIDs, "
                  "so your own earlier processes count too", other_pids=[p for p, _ in others])
    v1 = f.identity.get("memory_info_version") == 1
    note = " (NVML memory info v1 counts driver-reserved memory as used)" if v1 else ""
    if used is not None and used > IDLE_USED_FAIL_BYTES:
        return _v("idle", "FAIL", measured, expected,
                  f"{_gib(used)} of memory in use with no process listed: something holds the GPU" + note)
    if used is not None and used > IDLE_USED_WARN_BYTES:
        return _v("idle", "WARN", measured, expected, f"{used / 2**20:.0f} MiB in use at idle (gcm allows "
                  f"{IDLE_USED_WARN_BYTES // 2**20} MiB)" + note)
    if procs is None:
        return _v("idle", "PASS", measured, expected, "memory free at idle; the process list is not readable")
    return _v("idle", "PASS", measured, expected, "no other process and memory free before the probes")


def check_power_limit(f: Findings, exp: Expected) -> Verdict:
    ident = f.identity
    lim, default = ident.get("power_limit_W"), ident.get("power_default_limit_W")
    tdp = exp.spec.tdp_W if exp.spec else None
    if lim is None:
        return _v("power_limit", "SKIP", "", "", "the enforced power limit is not readable")
    measured = f"{lim:.0f} W" + (f" (default {default:.0f} W)" if default else "")
    expected = f"≥ {POWER_WARN_BELOW:.0%} of the default" + (f"; an {exp.sku} is rated {tdp:.0f} W" if tdp else "")
    out: list[tuple[CheckStatus, str]] = []
    if default:
        st = _band(lim, default, POWER_FAIL_BELOW, POWER_WARN_BELOW)
        if st != "PASS":
            out.append((st, f"power limit {lim:.0f} W is {lim / default:.0%} of the card's default {default:.0f} W: "
                            "sustained GEMM will be capped"))
    board = default or lim
    if tdp:
        st = _band(board, tdp, POWER_FAIL_BELOW, POWER_WARN_BELOW)
        if st != "PASS":
            out.append((st, f"the board's {'default' if default else 'enforced'} limit {board:.0f} W is "
                            f"{board / tdp:.0%} of an {exp.sku}'s {tdp:.0f} W: a lower-power variant or a "
                            "capped board"))
    gemm = f.probes.get("matmul")
    peak = gemm.telemetry.power_W.max if gemm and gemm.telemetry and gemm.telemetry.power_W else None
    tail = f"; GEMM drew up to {peak:.0f} W" if peak else ""
    if out:
        return _v("power_limit", _worst(*(s for s, _ in out)), measured, expected,
                  "; ".join(r for _, r in out) + tail, power_limit_W=lim, power_default_limit_W=default)
    return _v("power_limit", "PASS", measured, expected, "the full default power limit is enforced" + tail,
              power_limit_W=lim, power_default_limit_W=default)


def _probe_t(f: Findings, name: str) -> TelemetrySummary | None:
    p = f.probes.get(name)  # a probe that crashed put no load on the card: its readings say nothing
    return p.telemetry if p and not p.error and p.telemetry and p.telemetry.status == "ok" else None


def _busy_clocks(t: TelemetrySummary) -> tuple[Any, Any]:
    """(SM, memory) clock stats over the samples taken under load. A probe's window opens and closes on an
    idle GPU, whose clocks are parked low: those samples say nothing about clocks under load. Summaries made
    before the busy stats existed fall back to every sample."""
    if t.busy_samples is None:
        return t.sm_clock_Hz, t.mem_clock_Hz
    return t.sm_clock_busy_Hz, t.mem_clock_busy_Hz


def check_clocks(f: Findings, exp: Expected) -> Verdict:
    t = _probe_t(f, "hbm")
    ident = f.identity
    sm_max, mem_max = ident.get("sm_clock_max_Hz"), ident.get("mem_clock_max_Hz")
    sm, mem = _busy_clocks(t) if t is not None else (None, None)
    if sm is None and mem is None:
        why = ("no sample of the HBM probe was taken under load" if t is not None and t.busy_samples == 0
               and (t.sm_clock_Hz or t.mem_clock_Hz) else "no clock readings under load")
        return _v("clocks", "SKIP", "", "", why)
    res: list[tuple[CheckStatus, str]] = []
    parts = []
    if sm and sm_max:
        r = sm.median / sm_max
        parts.append(f"SM {_ghz(sm.median)} ({r:.0%} of max)")
        st = _band(sm.median, sm_max, SM_CLOCK_FAIL_BELOW, SM_CLOCK_WARN_BELOW)
        if st != "PASS":
            res.append((st, f"SM clock {_ghz(sm.median)} under a memory-bound load is {r:.0%} of its "
                            f"max {_ghz(sm_max)}"))
    if mem and mem_max:
        r = mem.median / mem_max
        parts.append(f"memory {_ghz(mem.median)} ({r:.0%})")
        st = _band(mem.median, mem_max, MEM_CLOCK_FAIL_BELOW, MEM_CLOCK_WARN_BELOW)
        if st != "PASS":
            res.append((st, f"memory clock {_ghz(mem.median)} is {r:.0%} of its max {_ghz(mem_max)}: "
                            "HBM is in a slower state"))
    spec_boost = exp.spec.boost_clock_Hz if exp.spec else None
    if sm_max and spec_boost and sm_max < MAX_CLOCK_WARN_BELOW * spec_boost:
        res.append(("WARN", f"max SM clock {_ghz(sm_max)} is below an {exp.sku}'s {_ghz(spec_boost)} boost"))
    g = _probe_t(f, "matmul")
    g_sm = _busy_clocks(g)[0] if g is not None else None
    tail = ""
    if g_sm:
        tail = f"; under GEMM the SM clock ran at {_ghz(g_sm.median)}"
        if g.clocks_event_share.get("sw_power_cap") and sm_max and g_sm.median < 0.97 * sm_max:
            tail += " (held by the power limit, as sustained GEMM is)"
    expected = (f"SM ≥ {SM_CLOCK_WARN_BELOW:.0%} and memory ≥ {MEM_CLOCK_WARN_BELOW:.0%} of max under load")
    if res:
        return _v("clocks", _worst(*(s for s, _ in res)), ", ".join(parts), expected,
                  "; ".join(r for _, r in res) + tail)
    return _v("clocks", "PASS", ", ".join(parts), expected, "full clocks under a memory-bound load" + tail)


def check_throttling(f: Findings) -> Verdict:
    seen = {n: _probe_t(f, n) for n in f.probes}
    seen = {n: t for n, t in seen.items() if t is not None and t.clocks_event_share is not None}
    if not seen or all(t.samples == 0 for t in seen.values()):
        return _v("throttling", "SKIP", "", "", "no clocks-event readings under load")
    if all("clocks_event_reasons" in t.unsupported for t in seen.values()):
        return _v("throttling", "SKIP", "", "", "clocks-event reasons are not readable here")
    res: list[tuple[CheckStatus, str]] = []
    notes: list[str] = []
    peak: dict[str, float] = {}  # reason -> largest share in any probe
    for name, t in seen.items():
        for r in LIMITING:
            if t.clocks_event_share.get(r):
                peak[r] = max(peak.get(r, 0.0), t.clocks_event_share[r])
        sh = t.clocks_event_share
        for r in HW_REASONS:
            if sh.get(r, 0) > 0:
                res.append(("FAIL" if sh[r] >= HW_SLOWDOWN_FAIL_SHARE else "WARN",
                            f"{REASON_TEXT[r]} in {sh[r]:.0%} of samples during {name}"))
        if sh.get("sw_thermal_slowdown", 0) > 0:
            s = sh["sw_thermal_slowdown"]
            res.append(("FAIL" if s >= SW_THERMAL_FAIL_SHARE else "WARN",
                        f"SW thermal slowdown in {s:.0%} of samples during {name}"))
        for r in ("board_limit", "reliability"):
            if sh.get(r, 0) > 0:
                res.append(("WARN", f"{REASON_TEXT[r]} in {sh[r]:.0%} of samples during {name}"))
        cap = sh.get("sw_power_cap", 0)
        if cap and name == "hbm" and cap >= POWER_CAP_ON_MEMORY_WARN_SHARE:
            res.append(("WARN", f"SW power cap in {cap:.0%} of samples even during the memory-bound probe"))
        elif cap:
            notes.append(f"{name} {cap:.0%}")
    measured = ", ".join(f"{REASON_TEXT.get(r, r)} ≤ {v:.0%} of samples" for r, v in peak.items()) or "none"
    expected = "no thermal or hardware slowdown"
    if res:
        return _v("throttling", _worst(*(s for s, _ in res)), measured, expected, "; ".join(r for _, r in res))
    return _v("throttling", "PASS", measured, expected, "no thermal or hardware slowdown during the probes"
              + (f"; SW power cap in {', '.join(notes)} of samples (expected under sustained GEMM at the "
                 "default limit)" if notes else ""))


def check_temperature(f: Findings) -> Verdict:
    ts = [t for t in (_probe_t(f, n) for n in f.probes) if t is not None]
    gpu = max((t.gpu_temp_C.max for t in ts if t.gpu_temp_C), default=None)
    mem = max((t.mem_temp_C.max for t in ts if t.mem_temp_C), default=None)
    if gpu is None and mem is None:
        return _v("temperature", "SKIP", "", "", "no temperature readings")
    ident = f.identity
    slowdown = ident.get("temp_slowdown_C")
    gpu_fail = min(GPU_TEMP_FAIL_ABOVE, slowdown) if slowdown else GPU_TEMP_FAIL_ABOVE
    mem_max = ident.get("temp_mem_max_C") or MEM_TEMP_MAX_DEFAULT
    res: list[tuple[CheckStatus, str]] = []
    if gpu is not None:
        if gpu >= gpu_fail and (gpu > GPU_TEMP_FAIL_ABOVE or slowdown):
            res.append(("FAIL", f"GPU reached {gpu:.0f} °C (limit {gpu_fail:.0f} °C)"))
        elif gpu > GPU_TEMP_WARN_ABOVE:
            res.append(("WARN", f"GPU reached {gpu:.0f} °C: little cooling headroom"))
    if mem is not None:
        if mem >= mem_max:
            res.append(("FAIL", f"HBM reached {mem:.0f} °C (max {mem_max:.0f} °C)"))
        elif mem >= mem_max - MEM_TEMP_WARN_MARGIN:
            res.append(("WARN", f"HBM reached {mem:.0f} °C, within {MEM_TEMP_WARN_MARGIN:.0f} °C of its "
                                f"{mem_max:.0f} °C max"))
    measured = ", ".join(x for x in (f"GPU max {gpu:.0f} °C" if gpu is not None else "",
                                     f"HBM max {mem:.0f} °C" if mem is not None else "") if x)
    expected = f"GPU ≤ {GPU_TEMP_WARN_ABOVE:.0f} °C, HBM < {mem_max - MEM_TEMP_WARN_MARGIN:.0f} °C"
    if res:
        return _v("temperature", _worst(*(s for s, _ in res)), measured, expected, "; ".join(r for _, r in res))
    return _v("temperature", "PASS", measured, expected, "cool under load")


def check_ecc(f: Findings) -> Verdict:
    h = f.health_end or f.health_start
    if h is None or all(getattr(h, k) is None for k in ("ecc_volatile_uncorrected", "ecc_aggregate_uncorrected",
                                                        "ecc_volatile_corrected", "ecc_enabled")):
        return _v("ecc", "SKIP", "", "0 uncorrectable errors",
                  "ECC counters are not readable on this GPU" + _why(f, "ecc_volatile_uncorrected"))
    vu, au = h.ecc_volatile_uncorrected, h.ecc_aggregate_uncorrected
    vc = h.ecc_volatile_corrected
    measured = (f"{vu if vu is not None else '?'} uncorrectable, {vc if vc is not None else '?'} corrected since "
                f"the driver loaded; {au if au is not None else '?'} uncorrectable lifetime")
    expected = "0 uncorrectable"
    res: list[tuple[CheckStatus, str]] = []
    if h.ecc_enabled is False:
        res.append(("WARN", "ECC is disabled: memory errors go undetected"))
    start_vu = f.health_start.ecc_volatile_uncorrected if f.health_start else None
    if vu:
        new = f" ({vu - start_vu} during rooflab's probes)" if start_vu is not None and vu > start_vu else ""
        res.append(("FAIL", f"{vu} uncorrectable ECC error(s) since the driver loaded{new}"))
    if au and not vu:
        res.append(("WARN", f"{au} uncorrectable ECC error(s) in the card's lifetime"))
    if vc:
        res.append(("WARN", f"{vc} corrected ECC error(s) since the driver loaded: a count that grows points to "
                            "failing memory"))
    if res:
        return _v("ecc", _worst(*(s for s, _ in res)), measured, expected, "; ".join(r for _, r in res))
    return _v("ecc", "PASS", measured, expected, "no ECC errors")


def _why(f: Findings, key: str) -> str:
    w = f.unsupported.get(key)
    return f" ({w})" if w else ""


def check_row_remap(f: Findings) -> Verdict:
    h = f.health_end or f.health_start
    expected = "no pending or failed remap"
    if h is None:
        return _v("row_remap", "SKIP", "", expected, "memory health is not readable")
    res: list[tuple[CheckStatus, str]] = []
    parts = []
    if h.remap_pending is not None:
        corr, unc = h.remapped_rows_correctable or 0, h.remapped_rows_uncorrectable or 0
        parts.append(f"{corr + unc} rows remapped ({unc} for uncorrectable errors)"
                     + (", remap pending" if h.remap_pending else "") + (", remap FAILED" if h.remap_failure else ""))
        if h.remap_failure:
            res.append(("FAIL", "a row remap failed (no spare row left): the card needs replacing"))
        if h.remap_pending:
            res.append(("FAIL", f"a row remap is pending ({unc} uncorrectable rows remapped): the card needs a reset"))
        if unc >= UNCORRECTABLE_REMAPS_FAIL:
            res.append(("FAIL", f"{unc} rows remapped for uncorrectable errors "
                                f"(DCGM fails ≥ {UNCORRECTABLE_REMAPS_FAIL})"))
        elif unc > 0:
            res.append(("WARN", f"{unc} rows remapped for uncorrectable errors"))
    if h.retired_pages_sbe is not None or h.retired_pages_dbe is not None:
        n = (h.retired_pages_sbe or 0) + (h.retired_pages_dbe or 0)
        parts.append(f"{n} retired pages" + (", retirement pending" if h.retired_pages_pending else ""))
        if h.retired_pages_pending:
            res.append(("FAIL", "a page retirement is pending: the card needs a reset"))
        if n >= RETIRED_PAGES_FAIL:
            res.append(("FAIL", f"{n} retired pages (DCGM fails ≥ {RETIRED_PAGES_FAIL})"))
        elif n > 0:
            res.append(("WARN", f"{n} retired pages"))
    if not parts:
        return _v("row_remap", "SKIP", "", expected,
                  "row remapping and page retirement are not readable" + _why(f, "remapped_rows"))
    if res:
        return _v("row_remap", _worst(*(s for s, _ in res)), "; ".join(parts), expected, "; ".join(r for _, r in res))
    return _v("row_remap", "PASS", "; ".join(parts), expected, "no pending or failed memory repair")


def check_xid(f: Findings) -> Verdict:
    expected = "no XID events"
    if f.xids is None:
        return _v("xid", "SKIP", "", expected, (f.xid_reason or "XID events are not readable")
                  + "; earlier XIDs are only in the kernel log (dmesg)")
    hw = sorted({x for x in f.xids if x in HARDWARE_XIDS})
    other = sorted({x for x in f.xids if x not in HARDWARE_XIDS})
    measured = ", ".join(f"XID {x}" for x in sorted(set(f.xids))) or "none"
    if hw:
        return _v("xid", "FAIL", measured, expected, f"hardware XID(s) {', '.join(map(str, hw))} during the probes",
                  xids=f.xids)
    if other:
        return _v("xid", "WARN", measured, expected, f"XID(s) {', '.join(map(str, other))} during the probes "
                  "(often a program's own fault; see the kernel log)", xids=f.xids)
    return _v("xid", "PASS", measured, expected, "no XID event while rooflab ran (earlier ones are in dmesg)")


def _copied_Bps(f: Findings) -> float | None:
    """The slower direction of the host↔device probe's copies, when they ran and were correct."""
    p = f.probes.get("pcie")
    if p is None or p.error or not p.passed:
        return None
    rates = [x for x in (p.values.get("h2d_Bps"), p.values.get("d2h_Bps")) if isinstance(x, (int, float)) and x > 0]
    return min(rates) if rates else None


def check_pcie_link(f: Findings) -> Verdict:
    """The link in use against the best this card and host support. Read under load (the host↔device probe):
    an idle link trains down to Gen1 to save power, which is no fault. The copies themselves are evidence too:
    a link cannot carry more than its line rate, so copies faster than the reported link disprove the reading
    (a VM's virtual port can report one)."""
    ident = f.identity
    mg, gpu_mg, mw = ident.get("pcie_max_gen"), ident.get("pcie_gpu_max_gen"), ident.get("pcie_max_width")
    t = _probe_t(f, "pcie")
    if t and t.pcie_gen and t.pcie_width:
        gen, width, when = int(t.pcie_gen.max), int(t.pcie_width.max), "under load"
    elif f.idle and f.idle.get("pcie_gen") and f.idle.get("pcie_width"):
        gen, width, when = int(f.idle["pcie_gen"]), int(f.idle["pcie_width"]), "at idle"
    else:
        return _v("pcie_link", "SKIP", "", "", "the PCIe link is not readable")
    card = f"Gen{gpu_mg or mg or '?'} x{mw or '?'}"
    measured = f"PCIe Gen{gen} x{width} {when}"
    expected = f"Gen{mg or '?'} x{mw or '?'}"
    moved = _copied_Bps(f)
    shown, best = pcie_link_Bps(gen, width), pcie_link_Bps(mg, mw)
    healthy = PCIE_FAIL_FRACTION * PCIE_WARN_MARGIN * best if best else None
    slot: list[tuple[CheckStatus, str]] = []
    if mg and gpu_mg and mg < gpu_mg:
        slot.append(("WARN", f"the host's slot runs Gen{mg}; the card supports Gen{gpu_mg}"))
    degraded = bool((mw and width < mw) or (mg and gen < mg) or gen < PCIE_MIN_GEN or width < 16)
    if when == "under load" and degraded and moved and shown and moved > shown:
        note = (f"NVML reports PCIe Gen{gen} x{width} {when}, but the copies moved {_rate(moved, 'B/s')}, more than "
                f"such a link carries ({_rate(shown, 'B/s')}): the reading is not the link's (a VM's virtual port "
                "can report one); the copy rate itself is judged by host_device_bandwidth")
        res = slot + [("PASS", note)]
        return _v("pcie_link", _worst(*(s for s, _ in res)), measured, expected, "; ".join(r for _, r in res),
                  copied_Bps=moved)
    res: list[tuple[CheckStatus, str]] = []
    if when == "under load":
        if mw and width < mw:
            res.append(("FAIL", f"PCIe Gen{gen} x{width} under load, card supports {card}: lanes are missing"))
        if mg and gen < mg:
            res.append(("FAIL", f"PCIe Gen{gen} x{width} under load, card supports {card}"))
        if gen < PCIE_MIN_GEN or width < 16:
            res.append(("FAIL", f"below DCGM's minimum of Gen{PCIE_MIN_GEN} x16"))
    else:  # only an idle reading: a lower generation is power saving; fewer lanes, or slow copies, are not
        good = bool(moved and healthy and moved >= healthy)  # the copies ran at a healthy rate for the full link
        if (mw and width < mw) or width < 16:
            if good:
                res.append(("PASS", f"x{width} at idle, but the copies reached {_rate(moved, 'B/s')}, a healthy "
                                    f"{expected} rate"))
            else:
                res.append(("WARN", f"PCIe Gen{gen} x{width} at idle, card supports {card}: lanes may be missing "
                                    "(the link could not be read under load)"))
        if mg and gen < mg:
            if good:
                res.append(("PASS", f"Gen{gen} at idle is power saving: the copies reached {_rate(moved, 'B/s')}, "
                                    f"a healthy {expected} rate"))
            elif moved and healthy:
                res.append(("WARN", f"the link runs Gen{gen} at idle and the copies reached only "
                                    f"{_rate(moved, 'B/s')}; it could not be read under load"))
            else:
                res.append(("SKIP", f"the link runs Gen{gen} at idle (power saving) and could not be read under "
                                    "load or checked by copies"))
    res += slot
    if res:
        return _v("pcie_link", _worst(*(s for s, _ in res)), measured, expected,
                  "; ".join(dict.fromkeys(r for _, r in res)))
    return _v("pcie_link", "PASS", measured, expected, f"the full link {when}")


def check_host_device(f: Findings, exp: Expected) -> Verdict:
    p = f.probes.get("pcie")
    v = _probe_verdict_common("host_device_bandwidth", p, "host↔device copies")
    if v is not None:
        return v
    h2d, d2h = p.values.get("h2d_Bps"), p.values.get("d2h_Bps")
    worst = _copied_Bps(f)
    if worst is None:
        return _v("host_device_bandwidth", "SKIP", "", "", "the host↔device probe gave no rate")
    ident = f.identity
    gen, width = ident.get("pcie_max_gen"), ident.get("pcie_max_width")
    link = pcie_link_Bps(gen, width)
    src = f"Gen{gen} x{width}"
    if link is None and exp.spec:
        gen, width = exp.spec.pcie_gen, 16
        link, src = pcie_link_Bps(gen, width), f"Gen{gen} x16 (assumed: the {exp.sku}'s)"
    measured = f"host→device {_rate(h2d, 'B/s')}, device→host {_rate(d2h, 'B/s')} (pinned)"
    if link is None:
        return _v("host_device_bandwidth", "SKIP", measured, "", "the link's rate is unknown", h2d_Bps=h2d, d2h_Bps=d2h)
    floor = PCIE_FAIL_FRACTION * link
    frac = PCIE_FAIL_FRACTION * PCIE_WARN_MARGIN
    expected = f"≥ {_rate(floor * PCIE_WARN_MARGIN, 'B/s')} ({frac:.0%} of {_rate(link, 'B/s')} over {src})"
    st: CheckStatus = "FAIL" if worst < floor else "WARN" if worst < floor * PCIE_WARN_MARGIN else "PASS"
    reason = (f"the slower direction moves {_rate(worst, 'B/s')}: {worst / link:.0%} of the {_rate(link, 'B/s')} a "
              f"{src} link carries per direction; a healthy link gives ≥ {frac:.0%}, FAIL below "
              f"{PCIE_FAIL_FRACTION:.0%}")
    return _v("host_device_bandwidth", st, measured, expected, reason, h2d_Bps=h2d, d2h_Bps=d2h, link_Bps=link)


def _probe_verdict_common(check: str, p: ProbeResult | None, what: str) -> Verdict | None:
    if p is None:
        return _v(check, "SKIP", "", "", f"the {what} probe did not run")
    if p.error:
        return _v(check, "WARN", "", "", f"the {what} probe could not run: {p.error}")
    if p.passed is False:
        return _v(check, "FAIL", "wrong results", "correct results",
                  f"the {what} probe computed wrong results: {p.detail}")
    return None


def _perf_check(check: str, what: str, value: float | None, unit: str, exp: Expected, spec_value: float | None,
                healthy: float | None, healthy_source: str, mig: bool) -> Verdict:
    measured = _rate(value, unit)
    if value is None:
        return _v(check, "SKIP", "", "", f"no {what} number")
    if mig:
        return _v(check, "SKIP", measured, "", "a MIG slice is not comparable with a whole card's numbers",
                  value=value)
    if healthy is None or spec_value is None:
        return _v(check, "SKIP", measured, "", f"no spec numbers for {exp.sku or 'this card'}", value=value)
    fail, warn = PERF_FAIL_BELOW * healthy, PERF_WARN_BELOW * healthy
    st: CheckStatus = "FAIL" if value < fail else "WARN" if value < warn else "PASS"
    expected = f"≥ {_rate(warn, unit)} ({warn / spec_value:.0%} of spec)"
    reason = (f"{what} {measured} is {value / spec_value:.0%} of {exp.sku}'s {_rate(spec_value, unit)} spec; "
              f"{healthy_source} ({_rate(healthy, unit)}): FAIL below {fail / spec_value:.0%}, "
              f"WARN below {warn / spec_value:.0%}")
    return _v(check, st, measured, expected, reason, value=value, healthy=healthy, spec=spec_value)


def check_hbm(f: Findings, exp: Expected) -> Verdict:
    p = f.probes.get("hbm")
    v = _probe_verdict_common("hbm_bandwidth", p, "HBM")
    if v is not None:
        return v
    out = _perf_check("hbm_bandwidth", "HBM copy", p.values.get("copy_Bps"), "B/s", exp,
                      exp.spec.memory_bandwidth_Bps if exp.spec else None, exp.hbm_healthy_Bps, exp.hbm_source,
                      bool(f.identity.get("mig_enabled")))
    rd = p.values.get("read_Bps")
    if rd:
        out.reason += f" (read-only: {_rate(rd, 'B/s')})"
        out.data["read_Bps"] = rd
    return out


def check_matmul(f: Findings, exp: Expected) -> Verdict:
    p = f.probes.get("matmul")
    v = _probe_verdict_common("matmul", p, "matmul")
    if v is not None:
        return v
    shape = p.values.get("shape", "")
    return _perf_check("matmul", f"bf16 matmul {shape}".strip(), p.values.get("flops"), "FLOP/s", exp,
                       exp.spec.bf16_flops if exp.spec else None, exp.matmul_healthy_flops, exp.matmul_source,
                       bool(f.identity.get("mig_enabled")))


def evaluate(f: Findings, exp: Expected, expect: str | None = None) -> list[Verdict]:
    """Every verdict, from what was read (pure: no NVML, no GPU)."""
    if f.nvml_reason:  # the probes still ran; everything NVML reads is unchecked, and the user should know
        nv = _v("nvml", "WARN", "unavailable", "NVML readable",
                f"NVML is not usable ({f.nvml_reason}): identity, MIG, idle tenants, power limit, clocks, "
                "throttling, temperatures, memory errors, XIDs and the PCIe link were not checked")
        return [nv, check_host_device(f, exp), check_hbm(f, exp), check_matmul(f, exp)]
    return [check_identity(f, exp, expect), check_mig(f), check_idle(f), check_power_limit(f, exp),
            check_clocks(f, exp), check_throttling(f), check_temperature(f), check_ecc(f), check_row_remap(f),
            check_xid(f), check_pcie_link(f), check_host_device(f, exp), check_hbm(f, exp), check_matmul(f, exp)]


def exit_code(checks: list[Verdict]) -> int:
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def overall(checks: list[Verdict]) -> str:
    s = {c.status for c in checks}
    return "fail" if "FAIL" in s else "warn" if "WARN" in s else "pass"


# ---- the probes (GPU only; each checks its result before timing it) -------------------------------------
ProbeFn = Callable[[Any, bool], dict[str, Any]]


def probe_hbm(target: Any, quick: bool) -> dict[str, Any]:
    """torch copy_ and sum over a working set ≥ 16× L2 (≥ 1 GiB): bytes = read + written (copy 2N, read N)."""
    import torch

    from kernels import hbm as K

    from . import checks
    from .benchmarks.hbm import bytes_moved
    from .timing import time_fn

    ws = max(1 << 30, 16 * int(target.cache_bytes or 0))
    if not quick:
        ws = max(ws, 2 << 30)
    if target.memory_bytes:
        ws = min(ws, int(target.memory_bytes) // 4)
    n = ws // 4 // 2  # fp32 elements of each copy array; the whole buffer is read
    dev = target.torch_device
    gen = checks.generator(dev, 9)
    buf = checks.random_tensor(2 * n, torch.float32, dev, gen, scale=0.5).add_(1.0)
    src, dst = buf[:n], buf[n:]
    # correct before fast: copy into a poisoned output, compare exactly; the sum against float64 chunk sums
    checks.poison(dst)
    K.torch_copy(src, dst)
    if not torch.equal(dst, src):
        return {"passed": False, "detail": "copy_ output differs from its input"}
    got = float(K.torch_read(buf))
    ref = l1 = 0.0
    for lo in range(0, buf.numel(), 1 << 24):
        c = buf[lo:lo + (1 << 24)].double()
        ref += c.sum().item()
        l1 += c.abs().sum().item()
    if not (math.isfinite(got) and abs(got - ref) <= 1e-5 * l1):
        return {"passed": False, "detail": f"sum {got} vs float64 {ref}"}
    min_t = 0.2 if quick else 0.6
    t_copy = time_fn(lambda: K.torch_copy(src, dst), target, min_time_s=min_t)
    t_read = time_fn(lambda: K.torch_read(buf), target, min_time_s=min_t)
    return {"passed": True, "copy_Bps": bytes_moved("copy", n, 4) / t_copy.median_s,
            "read_Bps": bytes_moved("read", 2 * n, 4) / t_read.median_s, "working_set_bytes": 2 * n * 4,
            "copy_spread": t_copy.spread, "read_spread": t_read.spread}


def probe_matmul(target: Any, quick: bool) -> dict[str, Any]:
    """torch.mm bf16 8192³ on random normal data, long enough to reach the power limit: FLOPs = 2·M·N·K.
    A and B (128 MiB each) are larger than any L2, so nothing is flushed."""
    import torch

    from . import checks
    from .timing import time_fn

    n = MATMUL_N
    dev = target.torch_device
    gen = checks.generator(dev, 11)
    a = checks.random_tensor((n, n), torch.bfloat16, dev, gen)
    b = checks.random_tensor((n, n), torch.bfloat16, dev, gen)
    c = checks.poison(torch.empty((n, n), dtype=torch.bfloat16, device=dev))
    torch.mm(a, b, out=c)
    rows = torch.randperm(n, generator=checks.generator("cpu", 12))[:32].to(dev)
    ref = a[rows].double() @ b.double()  # 32 rows in float64: every output column checked, cheaply
    chk = checks.compare(c[rows], ref, checks.tolerance("bfloat16"), "float64 rows of A @ B")
    del ref
    if not chk.passed:
        return {"passed": False, "detail": chk.detail}
    t = time_fn(lambda: torch.mm(a, b, out=c), target, min_time_s=0.4 if quick else 1.5)
    return {"passed": True, "flops": 2 * n ** 3 / t.median_s, "shape": f"{n}³", "spread": t.spread,
            "rel_err": chk.rel_err}


def probe_pcie(target: Any, quick: bool) -> dict[str, Any]:
    """Pinned host↔device copies of 256 MiB (128 in --quick), each direction alone: bytes = the buffer's
    size, counted once (what crosses the link, nvbandwidth's convention)."""
    import torch

    from . import checks
    from .timing import time_fn

    nbytes = (128 if quick else 256) * 2**20
    n = nbytes // 4
    host = checks.random_tensor(n, torch.float32, "cpu", checks.generator("cpu", 13)).pin_memory()
    back = torch.empty(n, dtype=torch.float32).pin_memory()
    devbuf = checks.poison(torch.empty(n, dtype=torch.float32, device=target.torch_device))
    devbuf.copy_(host, non_blocking=True)
    checks.poison(back)
    back.copy_(devbuf, non_blocking=True)
    target.synchronize()
    if not torch.equal(back, host):
        return {"passed": False, "detail": "data came back from the GPU changed"}
    min_t = 0.2 if quick else 0.5
    t_h2d = time_fn(lambda: devbuf.copy_(host, non_blocking=True), target, min_time_s=min_t)
    t_d2h = time_fn(lambda: back.copy_(devbuf, non_blocking=True), target, min_time_s=min_t)
    return {"passed": True, "h2d_Bps": nbytes / t_h2d.median_s, "d2h_Bps": nbytes / t_d2h.median_s,
            "size_bytes": nbytes}


PROBES: dict[str, ProbeFn] = {"hbm": probe_hbm, "matmul": probe_matmul, "pcie": probe_pcie}


# ---- running it ------------------------------------------------------------------------------------------
def _run_probe(name: str, fn: ProbeFn, target: Any, quick: bool, dev: tel.NvmlDevice | None,
               nvml_reason: str | None, interval_s: float) -> ProbeResult:
    res = ProbeResult(name=name)
    sampler = Sampler(dev, interval_s=interval_s, reason=nvml_reason)
    try:
        with sampler:
            out = fn(target, quick)
    except Exception as e:
        msg = " ".join(str(e).split())
        res.error = f"{type(e).__name__}: {msg[:200]}"
        out = {}
    res.telemetry = sampler.summary()
    res.passed = out.pop("passed", None) if out else None
    res.detail = str(out.pop("detail", "")) if out else ""
    res.values = out
    return res


def _prime(target: Any) -> None:
    """Start what the probes need before the first is sampled: the CUDA context, cuBLAS, the Triton import
    behind kernels/. Otherwise a second or more of the HBM probe's window is start-up on an idle GPU."""
    try:
        import torch

        import kernels.hbm  # noqa: F401 - imports triton

        a = torch.ones((256, 256), dtype=torch.bfloat16, device=target.torch_device)
        torch.mm(a, a)
        target.synchronize()
    except Exception:
        pass


def _empty_cuda_cache() -> None:
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:
        pass


def unavailable_report(reason: str, quick: bool = False) -> DoctorReport:
    from . import __version__

    return DoctorReport(status="unavailable", exit_code=0, reason=reason, quick=quick, rooflab=__version__)


def diagnose(target: Any, *, quick: bool = False, expect: str | None = None,
             open_nvml: Callable[[], NvmlSession] = tel.session, probes: dict[str, ProbeFn] | None = None,
             interval_s: float = tel.DEFAULT_INTERVAL_S, profiles_dir: Path | None = None) -> DoctorReport:
    """Identify the card, read its state, run the probes under telemetry, and judge."""
    from . import __version__

    t0 = time.perf_counter()
    if expect is not None and expect not in KNOWN_SKUS:
        raise ValueError(f"unknown SKU {expect!r}: choose one of {', '.join(KNOWN_SKUS)}")
    if not target.is_cuda:
        return _no_cuda(target, open_nvml, quick, t0)
    f = Findings(target_memory_bytes=target.memory_bytes, target_sms=target.compute_units, own_pid=os.getpid())
    dev = None
    try:
        dev = open_nvml().device_for(target)
    except Unavailable as e:
        f.nvml_reason = str(e)
    xw = None
    idle_t = None
    if dev is not None:
        # the idle state first, before any probe allocates memory or starts a context of its own
        f.identity = dev.identity()
        f.idle = dev.sample(processes=False)
        f.idle_processes = dev.processes()
        f.health_start = dev.health()
        xw = tel.XidWatcher(dev)
        idle_t = tel.summarize([f.idle], f.identity, f.health_start, unsupported=dict(dev.unsupported))
    else:
        f.identity = {"name": target.name}
    if probes is None:
        _prime(target)
    for name, fn in (probes if probes is not None else PROBES).items():
        f.probes[name] = _run_probe(name, fn, target, quick, dev, f.nvml_reason, interval_s)
        if probes is None:
            _empty_cuda_cache()
    if dev is not None:
        f.health_end = dev.health()
        if xw is not None:
            events = xw.poll()
            f.xids = list(events) if xw.supported else None
            f.xid_reason = xw.reason
            xw.close()
        f.unsupported = dict(dev.unsupported)
    sku = sku_from_device_id(f.identity.get("pci_device_id")) or sku_from_name(f.identity.get("name"))
    exp = expected_for(sku, profiles_dir)
    checks = evaluate(f, exp, expect)
    device = {k: v for k, v in f.identity.items() if v is not None}
    device.update(torch_name=target.name, sms=target.compute_units, memory_visible_bytes=target.memory_bytes,
                  capability=".".join(map(str, target.capability)) if target.capability else None,
                  cuda_version=target.cuda_version)
    telem = {n: tel.summary_dict(p.telemetry) for n, p in f.probes.items() if p.telemetry is not None}
    if idle_t is not None:
        telem = {"idle": tel.summary_dict(idle_t), **telem}
    return DoctorReport(
        status=overall(checks), exit_code=exit_code(checks), device={k: v for k, v in device.items() if v is not None},
        sku=sku, expect=expect, checks=checks, probes={n: p.as_dict() for n, p in f.probes.items()},
        telemetry=telem, quick=quick, wall_time_s=time.perf_counter() - t0, rooflab=__version__,
    )


def _first_clause(reason: str) -> str:
    return (reason or "").split(";")[0].strip()


def _no_cuda(target: Any, open_nvml: Callable[[], NvmlSession], quick: bool, t0: float) -> DoctorReport:
    """No CUDA device for torch: with no NVIDIA GPU at all that is "unavailable"; a GPU the driver sees but
    torch cannot use is a FAIL."""
    try:
        s = open_nvml()
        count, names = s.count, s.names()
    except Unavailable as e:
        r = unavailable_report(f"no NVIDIA GPU: {e}; torch: {_first_clause(target.reason)}", quick)
        r.wall_time_s = time.perf_counter() - t0
        return r
    if count < 1:
        r = unavailable_report(f"no NVIDIA GPU: NVML sees none; torch: {_first_clause(target.reason)}", quick)
        r.wall_time_s = time.perf_counter() - t0
        return r
    v = _v("cuda", "FAIL", f"NVML sees {count} GPU(s): {', '.join(names)}", "torch can use the GPU",
           f"the driver sees {', '.join(names)} but torch has no CUDA device ({_first_clause(target.reason)}): "
           "a CPU-only torch build, CUDA_VISIBLE_DEVICES, or a driver/CUDA mismatch")
    from . import __version__

    return DoctorReport(status="fail", exit_code=1, device={"nvml_gpus": names}, checks=[v], quick=quick,
                        wall_time_s=time.perf_counter() - t0, rooflab=__version__)
