"""What a report shows, pulled out of a profile and its measurements (and nothing else).

Every section of a report (tables and plots alike) reads the normalised series built here, so the
Markdown, the HTML and the PNGs always agree. The series are read from the profile's typed sections
(bench/profile/schema.py); a section that is absent or empty yields an empty series, which the report renders
as "not measured".

Roofline placement (stated once, here): a kernel's arithmetic intensity is its FLOPs / the bytes it must move
through memory, both as its benchmark counted them (``Measurement.flop_count`` / ``Measurement.bytes``).
Where a benchmark records no count, the report uses the minimal one:
- bandwidth kernels (hbm): triad a = b + s·c does 2 FLOPs per element over 3 elements moved; read (a sum)
  does 1 FLOP per element read; copy and fill do no arithmetic, so they have no intensity and appear as
  the measured memory roofs instead of dots;
- matmul: 2·M·N·K FLOPs over (M·K + K·N + M·N) elements of its input dtype (A and B read once, C written once).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import dtypes
from ..measurement import Measurement
from ..profile import AllReducePoint, AllToAllPoint, DecodePoint, MatmulPoint, Profile

# FLOPs per byte moved of the bandwidth kernels that do arithmetic, times the element size (see the docstring)
HBM_FLOPS_PER_ELEMENT_MOVED = {"triad": 2 / 3, "read": 1.0}


def itemsize(dtype: str | None) -> float | None:
    """Bytes per element of a dtype a benchmark records (bench.dtypes); None for none or an unknown name."""
    if not dtype:
        return None
    try:
        return dtypes.bytes_per_element(dtype)
    except dtypes.UnknownDtype:
        return None


def _num(x: Any) -> float | None:
    """A finite positive-or-zero float, or None (strings, bools, NaN and negatives are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) and x >= 0 else None


@dataclass
class HBMRow:
    op: str
    impl: str
    dtype: str
    working_set_bytes: float
    bandwidth_Bps: float
    beyond_cache: bool

    @property
    def kernel(self) -> str:
        return f"{self.impl} {self.op} {self.dtype}"


@dataclass
class MatmulRow:
    M: int
    N: int
    K: int
    dtype: str
    impl: str
    flops: float  # FLOP/s
    shape: str = ""  # the layer, e.g. "Llama-3-8B MLP down", when the benchmark names it
    efficiency: float | None = None
    family: str = ""  # "square", "llm", "mamf" (the peak search) as the benchmark files it

    @property
    def kind(self) -> str:
        """square (FLOP/s vs size), llm (FLOP/s vs M at a layer's N, K) or search (the peak search's shapes)."""
        if self.family in ("square", "llm"):
            return self.family
        if self.family:
            return "search"
        return "square" if self.M == self.N == self.K else "llm"


@dataclass
class DecodeRow:
    batch: int
    context: int
    bandwidth_Bps: float
    config: str  # head configuration, e.g. "llama-3.1-8b (32q/8kv ×128)"
    impl: str = ""
    dtype: str = ""
    fraction: float | None = None  # of the measured HBM bandwidth, as the benchmark recorded it
    layout: str = ""  # "contiguous" or "paged" KV cache

    @property
    def variant(self) -> str:
        return " ".join(x for x in (self.impl, self.layout if self.layout != "contiguous" else "") if x)


@dataclass
class A2ARow:
    message_bytes: float
    world_size: int
    busbw_Bps: float
    impl: str = ""


@dataclass
class RoofPoint:
    group: str  # "hbm", "matmul", "decode", ...
    label: str
    dtype: str
    intensity: float  # FLOP / byte
    flops: float  # FLOP/s achieved


@dataclass
class Comparison:
    quantity: str
    unit: str  # "B/s" or "FLOP/s"
    measured: float | None
    spec: float | None

    @property
    def ratio(self) -> float | None:
        return self.measured / self.spec if self.measured and self.spec else None


@dataclass
class ParetoCurve:
    card: str  # the card's name (colour key)
    label: str  # legend text, e.g. "h100-sxm (spec)"
    measured: bool
    points: list[dict] = field(default_factory=list)  # batch, tokens_per_s_per_user, tokens_per_s_per_gpu,
    # usd_per_mtok, bound, gpus: one decode step of the roofline model each


@dataclass
class Pareto:
    model: str
    context: int
    curves: list[ParetoCurve]
    prices: dict[str, float] = field(default_factory=dict)  # card -> USD per GPU-hour
    note: str = ""


@dataclass
class ReportData:
    profile: Profile
    records: list[Measurement]
    card: str  # colour key of the measured card (its spec name when known, else the device name)
    spec: Profile | None = None
    spec_name: str | None = None
    spec_note: str = ""
    hbm: list[HBMRow] = field(default_factory=list)
    matmul: list[MatmulRow] = field(default_factory=list)
    decode: list[DecodeRow] = field(default_factory=list)
    a2a: list[A2ARow] = field(default_factory=list)
    roof_points: list[RoofPoint] = field(default_factory=list)
    measured_memory_Bps: float | None = None  # the profile's peaks, unless a merge took them from the spec
    measured_copy_Bps: float | None = None
    memory_roofs: dict[str, float] = field(default_factory=dict)  # label -> B/s
    compute_roofs: dict[str, float] = field(default_factory=dict)  # dtype -> FLOP/s
    spec_memory_Bps: float | None = None
    spec_compute: dict[str, float] = field(default_factory=dict)
    spec_link_Bps: float | None = None  # scale-up link bandwidth per GPU, unidirectional, if the spec has it
    comparisons: list[Comparison] = field(default_factory=list)
    telemetry: dict[str, Any] | None = None
    health: list[dict[str, Any]] = field(default_factory=list)
    throttled: list[str] = field(default_factory=list)  # records flagged as taken while throttled
    pareto: Pareto | None = None
    pareto_note: str = ""
    # bench.verdict.Verdict: the card vs its spec, the kernels vs the library
    verdict: list = field(default_factory=list)

    @property
    def cache_bytes(self) -> int | None:
        return self.profile.device.cache_bytes

    @property
    def device_label(self) -> str:
        return f"{self.profile.device.name} ({self.profile.device.backend})"


# ----------------------------------------------------------------------------------------------- extractors


def _hbm(p: Profile) -> list[HBMRow]:
    return [HBMRow(c.op, c.impl, c.dtype, c.working_set_bytes, c.bandwidth_Bps, c.beyond_cache)
            for c in p.curves.hbm]


def _matmul(curve: list[MatmulPoint]) -> list[MatmulRow]:
    out = []
    for p in curve:
        shape = p.shape
        if re.match(r"M=\d+ tokens x ", shape):  # "M=8 tokens x Llama-3-8B MLP down": the layer is the name
            shape = shape.split(" x ", 1)[1]
        out.append(MatmulRow(p.M, p.N, p.K, p.dtype or "?", p.impl, float(p.flops),
                             "" if shape == p.family else shape, float(p.efficiency), p.family))
    return out


def _decode_config(p: DecodePoint) -> str:
    """The head configuration: "llama-3.1-8b (32q/8kv ×128)"."""
    return f"{p.model} ({p.q_heads}q/{p.kv_heads}kv ×{p.head_dim})"


def _decode(curve: list[DecodePoint]) -> list[DecodeRow]:
    return [DecodeRow(p.batch, p.context, float(p.bandwidth_Bps), _decode_config(p), p.impl, p.dtype,
                      _num(p.fraction_of_measured_hbm), p.layout) for p in curve]


def _a2a(curve: list[AllToAllPoint]) -> list[A2ARow]:
    return [A2ARow(float(p.message_bytes), p.world_size, float(p.busbw_Bps), p.backend) for p in curve]


def _all_reduce(curve: list[AllReducePoint]) -> list[A2ARow]:
    return [A2ARow(float(p.size_bytes), p.world_size, float(p.busbw_Bps), f"all-reduce {p.backend}".strip())
            for p in curve]


def _roof_points(rd: ReportData) -> list[RoofPoint]:
    pts: list[RoofPoint] = []
    for h in rd.hbm:
        per_el = HBM_FLOPS_PER_ELEMENT_MOVED.get(h.op)
        es = itemsize(h.dtype)
        if per_el and es and h.beyond_cache:
            ai = per_el / es
            pts.append(RoofPoint("hbm", f"{h.impl} {h.op}", h.dtype, ai, h.bandwidth_Bps * ai))
    for m in rd.records:
        if not m.timed or m.benchmark == "hbm":
            continue
        fl = _num(m.flops)
        if not fl:
            continue
        nbytes = _num(m.bytes)
        dtype = str(m.params.get("dtype") or m.extra.get("dtype") or "")
        if not nbytes:
            M, N, K = (_num(m.params.get(a, m.params.get(a.lower()))) for a in ("M", "N", "K"))
            es = itemsize(dtype)
            if M and N and K and es:
                nbytes = (M * K + K * N + M * N) * es
        if not nbytes or not m.flop_count:
            continue
        group = "matmul" if m.benchmark in ("gemm", "matmul") else m.benchmark
        pts.append(RoofPoint(group, f"{m.impl} {m.kernel}", dtype, m.flop_count / nbytes, fl))
    return pts


def _comparisons(rd: ReportData) -> list[Comparison]:
    out = [Comparison("memory bandwidth (best kernel)", "B/s", rd.measured_memory_Bps, rd.spec_memory_Bps)]
    if rd.measured_copy_Bps:
        out.append(Comparison("memory bandwidth (copy)", "B/s", rd.measured_copy_Bps, rd.spec_memory_Bps))
    for dt in sorted(set(rd.compute_roofs) | set(rd.spec_compute)):
        if dt in rd.compute_roofs or rd.spec is not None:
            out.append(Comparison(f"matmul {dt}", "FLOP/s", rd.compute_roofs.get(dt), rd.spec_compute.get(dt)))
    if rd.a2a and rd.spec_link_Bps:
        best = max(a.busbw_Bps for a in rd.a2a)
        out.append(Comparison("all-to-all bus bandwidth vs link", "B/s", best, rd.spec_link_Bps))
    return [c for c in out if c.measured or c.spec]


def norm_dtype(dt: str) -> str:
    """torch's name of a matmul dtype ("bf16" -> "bfloat16"); a name bench.dtypes does not know is kept as given."""
    try:
        return dtypes.name(dt)
    except dtypes.UnknownDtype:
        return str(dt).lower()


def _spec_numbers(spec: Profile) -> tuple[float | None, dict[str, float], float | None]:
    peaks = spec.peaks
    comp = {norm_dtype(k): v for k, v in peaks.matmul_flops.items() if norm_dtype(k) in dtypes.MATMUL}
    link = spec.interconnect.scale_up_Bps if spec.interconnect is not None else None
    return peaks.memory_bandwidth_Bps, comp, link


def _throttled(records: Iterable[Measurement], profile: Profile) -> list[str]:
    """The points measured while the GPU throttled: the run summary's list, else each record's own flag (its
    telemetry summary, bench/telemetry.py)."""
    if profile.telemetry is not None and profile.telemetry.throttled_points:
        return list(profile.telemetry.throttled_points)
    return [f"{m.benchmark} {m.impl} {m.kernel} {m.params}" for m in records
            if isinstance(m.telemetry, dict) and m.telemetry.get("throttled")]


def build(profile: Profile, records: list[Measurement], *, spec: Profile | None = None,
          spec_name: str | None = None, spec_note: str = "") -> ReportData:
    """Normalise a profile + its records into the series every report section draws from."""
    rd = ReportData(profile=profile, records=records, card=spec_name or profile.device.name, spec=spec,
                    spec_name=spec_name, spec_note=spec_note)
    rd.hbm = _hbm(profile)
    rd.matmul = _matmul(profile.curves.matmul)
    rd.decode = _decode(profile.curves.decode)
    rd.a2a = _a2a(profile.curves.all_to_all)
    inter = profile.interconnect
    if inter is not None and inter.all_reduce is not None:
        rd.a2a += _all_reduce(inter.all_reduce.curve)
    pk = profile.peaks
    # a measured profile merged with its card's published and spec profiles marks their numbers: not measured roofs
    from_spec = {k for k, v in profile.provenance.items() if v != "measured"}
    if "peaks.memory_bandwidth_Bps" not in from_spec:
        rd.measured_memory_Bps = pk.memory_bandwidth_Bps
    if "peaks.copy_bandwidth_Bps" not in from_spec:
        rd.measured_copy_Bps = pk.copy_bandwidth_Bps
    if rd.measured_memory_Bps:
        rd.memory_roofs["measured best"] = rd.measured_memory_Bps
    if rd.measured_copy_Bps and rd.measured_copy_Bps != rd.measured_memory_Bps:
        rd.memory_roofs["measured copy"] = rd.measured_copy_Bps
    rd.compute_roofs = {norm_dtype(k): v for k, v in pk.matmul_flops.items()
                        if _num(v) and f"peaks.matmul_flops.{k}" not in from_spec}
    if spec is not None:
        rd.spec_memory_Bps, rd.spec_compute, rd.spec_link_Bps = _spec_numbers(spec)
    rd.roof_points = _roof_points(rd)
    rd.comparisons = _comparisons(rd)
    from ..verdict import evaluate

    rd.verdict = evaluate(profile, spec)
    rd.telemetry = profile.telemetry.model_dump(mode="json") if profile.telemetry is not None else None
    rd.throttled = _throttled(records, profile)
    return rd
