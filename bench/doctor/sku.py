"""Which SKU a card is, and what a healthy card of that SKU measures.

The identity tables (PCI device ID and marketing name -> SKU) are the doctor's own; every spec number comes from
the SKU's spec profile (profiles/specs/<sku>.json, read through bench.profile). A SKU the doctor can identify but
that has no spec profile gets its identity checked and no numbers: nothing is invented.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import profile, thresholds
from ..profile import Profile, ProfileError
from ..thresholds import Band
from .probes import MATMUL_N

# PCI device ID (pciInfo.pciDeviceId >> 16) -> SKU, named as its spec profile is. Source: DCGM's diag-skus table
# (nvvs/diag-skus.yaml.in in NVIDIA/DCGM), which keys its per-SKU diagnostic limits by these IDs (2330 "H100 80GB
# HBM3", 2331 H100 PCIe, 2321/233a H100 NVL, 2324 H800, 2322 H800 PCIe, 2335 H200, 233b H200 NVL, 2328/2329 H20,
# 20b0/20b2 A100 SXM4 40/80GB, 20b5 A100 80GB PCIe, 20f1 A100 PCIe 40GB, 2342 GH200, 2901 B200, 26b9 L40S, 27b8 L4).
DEVICE_IDS: dict[int, str] = {
    0x2330: "h100-sxm", 0x2331: "h100-pcie", 0x2321: "h100-nvl", 0x233A: "h100-nvl", 0x2324: "h800",
    0x2322: "h800-pcie", 0x2335: "h200", 0x233B: "h200-nvl", 0x2328: "h20", 0x2329: "h20",
    0x20B0: "a100-40gb-sxm", 0x20B2: "a100-80gb-sxm", 0x20B5: "a100-80gb-pcie", 0x20F1: "a100-40gb-pcie",
    0x2342: "gh200", 0x2901: "b200", 0x26B9: "l40s", 0x27B8: "l4",
}
# The marketing name NVML reports -> SKU (first match wins; the SXM H100 calls itself "H100 80GB HBM3").
NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"gh200", "gh200"), (r"h100 nvl", "h100-nvl"), (r"h100 pcie", "h100-pcie"),
    (r"h100 (80gb hbm3|sxm)", "h100-sxm"), (r"h800 pcie", "h800-pcie"), (r"h800", "h800"),
    (r"h200 nvl", "h200-nvl"), (r"h200", "h200"), (r"\bh20\b", "h20"),
    (r"a100[- ]sxm4?[- ]80gb", "a100-80gb-sxm"), (r"a100[- ]sxm4?[- ]40gb", "a100-40gb-sxm"),
    (r"a100 80gb pcie", "a100-80gb-pcie"), (r"a100[- ]pcie[- ]40gb", "a100-40gb-pcie"),
    (r"b200", "b200"), (r"l40s", "l40s"), (r"\bl4\b", "l4"),
)
# the SKUs the doctor can identify (--expect takes these); not all of them have a spec profile
KNOWN_SKUS: tuple[str, ...] = tuple(sorted(set(DEVICE_IDS.values()) | {sku for _, sku in NAME_PATTERNS}))


def sku_from_device_id(device_id: int | None) -> str | None:
    return DEVICE_IDS.get(device_id) if device_id is not None else None


def sku_from_name(name: str | None) -> str | None:
    s = (name or "").lower()
    return next((sku for pat, sku in NAME_PATTERNS if re.search(pat, s)), None)


@dataclass(frozen=True)
class SkuSpec:
    """The spec-sheet numbers the doctor reads from a SKU's spec profile (dense tensor rates; decimal units).
    A number the profile lacks is None, and what would be checked against it is not."""

    name: str
    memory_GB: float  # as marketed; NVML's total is about this many GiB
    memory_bandwidth_Bps: float
    bf16_flops: float | None
    sm_count: int | None
    boost_clock_Hz: float | None
    tdp_W: float | None
    pcie_gen: int | None
    source: str

    @classmethod
    def from_profile(cls, sku: str, spec: Profile) -> SkuSpec:
        dev, link = spec.device, spec.host_link
        return cls(name=sku, memory_GB=(dev.memory_bytes or 0) / 1e9,
                   memory_bandwidth_Bps=spec.peaks.memory_bandwidth_Bps or 0.0,
                   bf16_flops=spec.peaks.matmul_flops.get("bfloat16"), sm_count=dev.compute_units,
                   boost_clock_Hz=dev.boost_clock_Hz, tdp_W=dev.power_W,
                   pcie_gen=link.pcie_generation if link is not None else None,
                   source=f"profiles/specs/{sku}.json")


@dataclass(frozen=True)
class Healthy:
    """What a healthy card of the SKU measures on one probe, and how a measurement is graded against it: ``band``
    grades ``measured / reference``, where ``reference`` is the spec figure (the healthy number is a stated
    fraction of it) or the healthy measurement itself (a committed measured profile)."""

    value: float
    source: str
    band: Band
    reference: float


@dataclass
class Expected:
    sku: str | None
    spec: SkuSpec | None = None
    no_spec: str = ""  # why there are no spec numbers: "no spec profile for X", or the profile's error
    hbm: Healthy | None = None
    matmul: Healthy | None = None


def _committed(kind: str, sku: str, profiles_dir: Path | None) -> tuple[Profile | None, str]:
    """The committed ``kind`` ("spec" or "measured") profile of ``sku``, or (None, why there is none)."""
    path: Path | None
    if profiles_dir is not None:
        path = profiles_dir / ("specs" if kind == "spec" else "measured") / f"{sku}.json"
        path = path if path.is_file() else None
    else:
        try:
            path = profile.resolve_path(f"{kind}:{sku}")
        except ProfileError:
            path = None
    if path is None:
        return None, f"no {kind} profile for {sku}"
    try:
        return profile.load(path), ""
    except ProfileError as e:
        return None, f"the {kind} profile of {sku} is unusable: {e}"


def _probe_point_flops(measured: Profile) -> float | None:
    """The best bf16 matmul of the probe's own shape in a committed run (its peak is a best-shape search, which
    a fixed 8192^3 does not reach)."""
    same = [p.flops for p in measured.curves.matmul
            if p.M == p.N == p.K == MATMUL_N and p.dtype in ("bfloat16", "bf16")]
    return max(same, default=None)


def expected_for(sku: str | None, profiles_dir: Path | None = None) -> Expected:
    """Spec numbers (the SKU's spec profile) and the healthy reference numbers (the SKU's committed measured
    profile where there is one, else a stated fraction of spec). ``profiles_dir`` replaces the repository's
    profiles/ (its specs/ and measured/)."""
    exp = Expected(sku=sku)
    if not sku:
        return exp
    spec_profile, why = _committed("spec", sku, profiles_dir)
    if spec_profile is None:
        exp.no_spec = why
        return exp
    spec = exp.spec = SkuSpec.from_profile(sku, spec_profile)
    measured, _ = _committed("measured", sku, profiles_dir)
    where = f"profiles/measured/{sku}.json"
    copy = measured.peaks.copy_bandwidth_Bps if measured is not None else None
    if copy:
        exp.hbm = Healthy(copy, f"copy measured on a healthy {sku} ({where})", thresholds.OF_HEALTHY, copy)
    elif spec.memory_bandwidth_Bps:
        f = thresholds.HEALTHY_COPY_OF_SPEC
        exp.hbm = Healthy(f * spec.memory_bandwidth_Bps, f"a healthy card copies at ≈ {f:.0%} of spec",
                          thresholds.COPY_OF_SPEC, spec.memory_bandwidth_Bps)
    same = _probe_point_flops(measured) if measured is not None else None
    if same:
        exp.matmul = Healthy(same, f"{MATMUL_N}³ bf16 measured on a healthy {sku} ({where})", thresholds.OF_HEALTHY,
                             same)
    elif spec.bf16_flops:
        f = thresholds.HEALTHY_MATMUL_8192_OF_SPEC
        exp.matmul = Healthy(f * spec.bf16_flops, f"a healthy card sustains ≈ {f:.0%} of spec",
                             thresholds.MATMUL_8192_OF_SPEC, spec.bf16_flops)
    return exp
