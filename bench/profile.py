"""The profile: one pydantic schema for measured and spec hardware profiles (``kind``).

Units are SI base units named in the field (``_Bps`` bytes/s, ``_flops`` FLOP/s, ``_s``, ``_bytes``).
``from_measurements`` builds a measured profile from Measurement records alone (each benchmark's
``summarize`` contributes its peaks and curves), so a profile can always be rebuilt from
``measurements.jsonl``. A spec profile (``profiles/specs/<card>.json``) fills the same sections from a data
sheet, every number with a citation (``sources``, or a ``<name>_source`` field beside it). ``merge`` completes a
measured profile with its card's spec and marks each number's ``provenance``; ``resolve`` finds a profile by
name or path; ``json_schema`` is what ``profiles/schema.json`` holds.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationInfo, field_validator, model_validator

from .jsonio import read_json
from .measurement import Measurement, utc_now
from .telemetry import RunTelemetry

SCHEMA_VERSION = 1


# Largest magnitude a number with this unit suffix may have: far beyond any device (1 EB/s, 1e21 FLOP/s,
# 1 EB, ~30 years), so only absurd or corrupted values are refused.
_UNIT_LIMITS = (("_Bps", 1e18), ("_flops", 1e21), ("_bytes", 1e18), ("_s", 1e9))


def _has_bool(annotation: Any) -> bool:
    import typing

    if annotation is bool or annotation is Any:
        return True
    return any(_has_bool(a) for a in typing.get_args(annotation))


def _has_model(annotation: Any) -> bool:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_has_model(a) for a in typing.get_args(annotation))


def _contains_bool(v: Any, annotation: Any) -> bool:
    """A bool in the value itself, or among the items of a container of plain numbers/text (nested models
    check their own fields)."""
    if isinstance(v, bool):
        return True
    if _has_model(annotation):
        return False
    items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else ()
    return any(isinstance(x, bool) for x in items)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        """JSON `true` is not a number: pydantic's lax mode would read it as 1."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and not _has_bool(field.annotation) and _contains_bool(v, field.annotation):
            raise ValueError("a boolean where a number or text is expected")
        return v

    @model_validator(mode="after")
    def _plausible_magnitudes(self):
        for name in type(self).model_fields:
            v = getattr(self, name)
            for suffix, limit in _UNIT_LIMITS:
                if not name.endswith(suffix):
                    continue
                vals = v.values() if isinstance(v, dict) else [v]
                for x in vals:
                    if isinstance(x, (int, float)) and abs(x) > limit:
                        raise ValueError(f"{name} = {x:g} is not a plausible value (limit {limit:g})")
        return self


class DeviceInfo(_Model):
    name: str
    backend: Literal["cuda", "cpu"]
    memory_bytes: int | None = Field(default=None, ge=0)
    compute_units: int | None = Field(default=None, ge=0, description="SMs (GPU) or CPU threads")
    cache_bytes: int | None = Field(default=None, ge=0, description="L2 (GPU) or last-level cache (CPU)")
    capability: str | None = None
    driver: str | None = None
    cuda_version: str | None = None
    uuid: str | None = None
    # Spec-sheet facts (spec profiles; a measured profile gets them by merging with its card's spec).
    vendor: str | None = None
    memory_type: str | None = None  # e.g. "HBM3", "GDDR6X"
    boost_clock_Hz: float | None = Field(default=None, gt=0, description="rated boost SM clock")
    power_W: float | None = Field(default=None, gt=0, description="rated board power (TDP)")


class Software(_Model):
    python: str
    torch: str | None = None
    triton: str | None = None
    rooflab: str
    platform: str | None = None


class Peaks(_Model):
    memory_bandwidth_Bps: float | None = Field(default=None, gt=0)
    memory_bandwidth_source: str | None = None
    copy_bandwidth_Bps: float | None = Field(default=None, gt=0)
    copy_bandwidth_source: str | None = None
    matmul_flops: dict[str, PositiveFloat] = Field(default_factory=dict, description="dense FLOP/s by dtype")
    matmul_source: dict[str, str] = Field(default_factory=dict,
                                          description="kernel and M, N, K that reached each matmul peak")


class HBMPoint(_Model):
    op: str
    impl: str
    dtype: str
    working_set_bytes: int = Field(ge=0)
    bandwidth_Bps: float = Field(gt=0)
    median_s: float = Field(gt=0)
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)
    beyond_cache: bool


class MatmulPoint(_Model):
    """One timed matmul (gemm benchmark): FLOP/s and efficiency at (M, N, K, dtype), for interpolation."""

    family: str  # "square", "llm" (batch tokens x a real layer's N, K) or "mamf" (the peak search)
    shape: str = ""  # readable name, e.g. "M=8 tokens x Llama-3-8B MLP down"
    M: int = Field(ge=1)
    N: int = Field(ge=1)
    K: int = Field(ge=1)
    dtype: str  # "float32" (no TF32), "tf32", "bfloat16", "float16", "float8_e4m3fn"
    impl: str  # "torch" or "triton"
    library: str  # the path that ran it, e.g. "cuBLAS (torch.matmul)"
    flops: float = Field(gt=0, description="FLOP/s: 2*M*N*K / median_s")
    median_s: float = Field(gt=0)
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)
    bytes: int = Field(ge=0, description="A and B read once, C written once")
    efficiency: float = Field(gt=0, description="flops / peaks.matmul_flops[dtype]")


class DecodePoint(_Model):
    """One timed decode-attention step (decode benchmark): achieved bandwidth by head config × batch × context."""

    model: str  # head config label, e.g. "llama-3.1-8b"
    impl: str  # "triton" (split-KV kernel) or "torch_sdpa"
    layout: Literal["contiguous", "paged"]
    page_size: int | None = Field(default=None, ge=1, description="tokens per page (paged layout)")
    dtype: str  # KV-cache dtype ("bfloat16", "float16", "float8_e4m3fn" with bf16 queries)
    batch: int = Field(ge=1)
    context: int = Field(ge=1, description="cached tokens per sequence")
    q_heads: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    num_splits: int | None = Field(default=None, ge=1, description="split-KV programs per (sequence, kv head)")
    bytes: int = Field(ge=0, description="K and V read once + q + out (+ block table used)")
    bandwidth_Bps: float = Field(gt=0, description="bytes / median_s")
    flops: float = Field(ge=0, description="FLOP/s: 4*batch*q_heads*context*head_dim / median_s")
    median_s: float = Field(gt=0, description="one decode step's attention (one layer)")
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)
    time_per_token_s: float = Field(gt=0, description="median_s / batch: a step yields one token per sequence")
    fraction_of_measured_hbm: float | None = Field(default=None, ge=0,
                                                   description="bandwidth_Bps / peaks.copy_bandwidth_Bps")
    fraction_of_memory_bandwidth: float | None = Field(default=None, ge=0,
                                                       description="bandwidth_Bps / peaks.memory_bandwidth_Bps")
    graph_median_s: float | None = Field(default=None, gt=0,
                                         description="GPU: the same call replayed from a CUDA graph (no launch cost)")
    graph_bandwidth_Bps: float | None = Field(default=None, gt=0, description="bytes / graph_median_s")


class AllToAllPoint(_Model):
    """One timed all-to-all with equal splits (a2a benchmark): the bus-bandwidth curve by message size and
    world size. Accounting as nccl-tests: algbw = message_bytes / time, busbw = algbw × (n−1)/n."""

    world_size: int = Field(ge=2)
    backend: str  # "nccl" or "gloo"
    nodes: int = Field(default=1, ge=1)
    message_bytes: int = Field(gt=0, description="bytes each rank sends, its chunk to itself included")
    algbw_Bps: float = Field(gt=0, description="message_bytes / median_s")
    busbw_Bps: float = Field(gt=0, description="algbw_Bps * (world_size - 1) / world_size")
    median_s: float = Field(gt=0, description="slowest rank's median")
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)


class Curves(_Model):
    hbm: list[HBMPoint] = Field(default_factory=list)
    # Each benchmark owns one list here; replace `list[dict]` by its own typed point model.
    matmul: list[MatmulPoint] = Field(default_factory=list)  # gemm benchmark (issue 3)
    decode: list[DecodePoint] = Field(default_factory=list)  # decode attention benchmark (issue 4)
    all_to_all: list[AllToAllPoint] = Field(default_factory=list)  # MoE all-to-all benchmark (issue 5)


class MoEAllToAllPoint(_Model):
    """MoE-shaped all-to-all (a2a benchmark): top-k routed tokens, uneven splits. bytes = the busiest rank's
    max(sent, received); time = the slowest rank's; busbw = bytes / time × (n−1)/n."""

    phase: Literal["dispatch", "combine"]
    traffic: Literal["uniform", "skewed"]  # router distribution
    model: str  # shape preset, e.g. "deepseek-v3"
    world_size: int = Field(ge=2)
    backend: str
    nodes: int = Field(default=1, ge=1)
    tokens: int = Field(ge=1, description="tokens per rank")
    hidden: int = Field(ge=1)
    top_k: int = Field(ge=1)
    experts: int = Field(ge=1)
    dtype: str
    bytes: int = Field(gt=0, description="busiest rank's max(bytes sent, bytes received)")
    imbalance: float = Field(ge=1, description="bytes / the mean rank's bytes sent (tokens*top_k*hidden*size)")
    algbw_Bps: float = Field(gt=0)
    busbw_Bps: float = Field(gt=0)
    median_s: float = Field(gt=0)
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)


class AllToAllPeak(_Model):
    world_size: int = Field(ge=2)
    backend: str
    busbw_Bps: float = Field(gt=0)
    algbw_Bps: float = Field(gt=0)
    message_bytes: int = Field(gt=0, description="message size that reached it")


class LinkFit(_Model):
    """time = alpha_s + bytes / beta_Bps, fitted on measured points (bench/fit.py) with its error stated."""

    alpha_s: float = Field(ge=0, description="fixed latency per transfer")
    beta_Bps: float = Field(gt=0, description="asymptotic bandwidth")
    n_points: int = Field(ge=2)
    min_bytes: int = Field(ge=0)
    max_bytes: int = Field(ge=0)
    median_rel_err: float = Field(ge=0, description="median |fit - measured| / measured")
    max_rel_err: float = Field(ge=0, description="largest |fit - measured| / measured")

    def time_s(self, nbytes: float) -> float:
        return self.alpha_s + max(0.0, float(nbytes)) / self.beta_Bps


class AllReducePoint(_Model):
    """One timed all-reduce (allreduce benchmark). nccl-tests accounting: algbw = size_bytes / time,
    busbw = algbw × 2(n−1)/n."""

    world_size: int = Field(ge=2)
    backend: str  # "nccl" or "gloo"
    dtype: str
    size_bytes: int = Field(gt=0, description="message bytes per rank")
    median_s: float = Field(gt=0, description="slowest rank's median")
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)
    algbw_Bps: float = Field(gt=0)
    busbw_Bps: float = Field(gt=0)


class AllReduceFit(LinkFit):
    world_size: int = Field(ge=2)
    backend: str


class AllReduce(_Model):
    """All-reduce by message size per world size (issue 14), with a latency–bandwidth fit per world size."""

    curve: list[AllReducePoint] = Field(default_factory=list)
    fits: list[AllReduceFit] = Field(default_factory=list)
    peak_busbw_Bps: float | None = Field(default=None, gt=0)
    peak_busbw_source: str | None = None

    def fit(self, world_size: int) -> AllReduceFit | None:
        return next((f for f in self.fits if f.world_size == world_size), None)


class Interconnect(_Model):
    """Collectives between GPUs (issue 5: all-to-all; issue 14: all-reduce). A spec profile carries only the
    link rates; a measured one the backend, the peaks and the MoE points (the curve is curves.all_to_all)."""

    scale_up_Bps: float | None = Field(default=None, gt=0,
                                       description="scale-up link (NVLink) per GPU, one direction")
    scale_up_domain: int | None = Field(default=None, ge=1, description="GPUs in one scale-up domain")
    scale_up_source: str | None = None
    scale_out_Bps: float | None = Field(default=None, gt=0,
                                        description="scale-out (InfiniBand / RoCE NICs) per GPU, one direction")
    scale_out_source: str | None = None
    backend: str | None = None  # "nccl" or "gloo"
    launcher: str | None = None  # "spawn" (rooflab started one process per GPU) or "torchrun"
    nodes: int | None = Field(default=None, ge=1)
    world_sizes: list[int] = Field(default_factory=list)
    peak_busbw: list[AllToAllPeak] = Field(default_factory=list, description="best equal-split busbw per world size")
    moe: list[MoEAllToAllPoint] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # e.g. "world size 1: all-to-all needs >= 2 ranks"
    all_reduce: AllReduce | None = None  # allreduce benchmark (issue 14)


class LocalMoEPoint(_Model):
    """One timed single-GPU MoE step around the all-to-all (a2a benchmark, kernels/moe.py)."""

    op: Literal["permute", "unpermute", "grouped_mlp"]
    impl: str  # "triton" or "torch"
    model: str
    dtype: str
    tokens: int = Field(ge=1)
    hidden: int = Field(ge=1)
    top_k: int = Field(ge=1)
    experts: int = Field(ge=1, description="experts on this GPU (grouped_mlp) or in the layer (permute)")
    intermediate: int | None = Field(default=None, ge=1)
    rows: int = Field(ge=1, description="tokens * top_k routed rows")
    bytes: int = Field(ge=0, description="the benchmark's stated fewest bytes")
    bandwidth_Bps: float = Field(gt=0)
    flops: float | None = Field(default=None, gt=0, description="FLOP/s (grouped_mlp: 6*rows*hidden*intermediate)")
    median_s: float = Field(gt=0)
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)
    fraction_of_copy_bandwidth: float | None = Field(default=None, ge=0)


class LocalMoE(_Model):
    """Best single-GPU MoE numbers (issue 5): permute / un-permute bandwidth, grouped expert GEMM FLOP/s."""

    permute_bandwidth_Bps: float | None = Field(default=None, gt=0)
    permute_source: str | None = None
    unpermute_bandwidth_Bps: float | None = Field(default=None, gt=0)
    unpermute_source: str | None = None
    grouped_mlp_flops: float | None = Field(default=None, gt=0)
    grouped_mlp_source: str | None = None
    points: list[LocalMoEPoint] = Field(default_factory=list)


class OverheadCost(_Model):
    """One measured fixed cost (bench/benchmarks/overhead.py): per kernel, or per round trip for sync."""

    name: Literal["launch", "host_launch", "graph_launch", "sync"]
    impl: str  # "torch" (a tiny PyTorch op) or "triton" (the no-op kernel)
    mode: Literal["cuda", "cpu"]
    median_s: float = Field(gt=0)
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)
    n: int = Field(ge=1, description="timed samples")
    launches: int | None = Field(default=None, ge=1, description="kernels per timed sample (N)")
    how: str = ""


class Overheads(_Model):
    """Fixed costs a decode step pays besides its roofline time (issue 14). Medians; spreads in ``costs``."""

    launch_s: float | None = Field(default=None, gt=0, description="eager PyTorch op: device time per kernel "
                                   "of N back-to-back launches (CPU mode: per-op dispatch time)")
    host_launch_s: float | None = Field(default=None, gt=0, description="host time to issue one launch")
    graph_launch_s: float | None = Field(default=None, gt=0, description="per kernel, replayed from a CUDA graph")
    triton_launch_s: float | None = Field(default=None, gt=0, description="eager Triton no-op, per kernel")
    sync_s: float | None = Field(default=None, gt=0, description="tiny kernel + device synchronise round trip")
    costs: list[OverheadCost] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # e.g. "CUDA graphs are GPU-only"


class LinkPoint(_Model):
    direction: Literal["h2d", "d2h", "bidir", "d2d"]  # bidir = h2d and d2h at once on two streams
    memory: Literal["pinned", "pageable", "peer"]  # host memory kind; peer = GPU to GPU
    size_bytes: int = Field(gt=0, description="bytes of one buffer")
    bytes: int = Field(gt=0, description="bytes moved (bidir: both directions)")
    bandwidth_Bps: float = Field(gt=0)
    median_s: float = Field(gt=0)
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)


class HostLinkFit(LinkFit):
    direction: Literal["h2d", "d2h", "bidir", "d2d"]
    memory: Literal["pinned", "pageable", "peer"]


class HostLink(_Model):
    """Host↔device copies (issue 14). A spec profile carries only the link and its theoretical rate."""

    link: str | None = None  # e.g. "PCIe Gen5 x16"
    pcie_generation: int | None = Field(default=None, ge=1, description="max link generation (NVML)")
    pcie_width: int | None = Field(default=None, ge=1, description="max link width in lanes (NVML)")
    pcie_current_generation: int | None = Field(default=None, ge=1, description="sampled right after a copy")
    pcie_current_width: int | None = Field(default=None, ge=1)
    theoretical_Bps: float | None = Field(default=None, gt=0, description="per direction, after line encoding")
    theoretical_source: str | None = None
    peak_h2d_Bps: float | None = Field(default=None, gt=0, description="best measured pinned host->device")
    peak_d2h_Bps: float | None = Field(default=None, gt=0, description="best measured pinned device->host")
    curves: list[LinkPoint] = Field(default_factory=list)
    fits: list[HostLinkFit] = Field(default_factory=list)

    def fit(self, direction: str, memory: str = "pinned") -> HostLinkFit | None:
        return next((f for f in self.fits if f.direction == direction and f.memory == memory), None)


class Price(_Model):
    """A typical rental price per GPU-hour at a date (prices move: always say when)."""

    usd_per_hour: float = Field(gt=0, description="typical (the middle of the range seen)")
    low_usd_per_hour: float | None = Field(default=None, gt=0)
    high_usd_per_hour: float | None = Field(default=None, gt=0)
    as_of: str  # e.g. "2026"


class RunInfo(_Model):
    mode: Literal["cuda", "cpu"]
    mode_reason: str
    benchmarks: list[str] = Field(default_factory=list)
    quick: bool = True
    points_ok: int = 0
    points_failed: int = 0
    points_skipped: int = 0
    failures: list[str] = Field(default_factory=list)
    wall_time_s: float | None = None


class Profile(_Model):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["measured", "spec"] = "measured"
    name: str
    created: str = Field(default_factory=utc_now)
    device: DeviceInfo
    software: Software | None = None
    run: RunInfo | None = None
    peaks: Peaks = Field(default_factory=Peaks)
    curves: Curves = Field(default_factory=Curves)
    # Sections owned by later benchmarks/features; each replaces its loose type with a typed model.
    interconnect: Interconnect | None = None  # all-to-all / all-reduce (issues 5, 14)
    overheads: Overheads | None = None  # launch / graph / sync costs (issue 14)
    host_link: HostLink | None = None  # host<->device copies (issue 14)
    local: LocalMoE | None = None  # single-GPU MoE permute / grouped GEMM numbers (issue 5)
    # run-level NVML summary: clock/power/temperature ranges, throttled points, ECC counters, and the conditions
    # each peak was measured under (bench/telemetry.py, issue 9)
    telemetry: RunTelemetry | None = None
    # Spec library and merging (issue 6).
    card: str | None = Field(default=None, description="the spec profile (profiles/specs/<card>.json) of this card")
    device_names: list[str] = Field(
        default_factory=list, description="names torch reports for this card (spec: finds a measured card's spec)")
    price: Price | None = None
    sources: dict[str, str] = Field(default_factory=dict, description="field path (or a section) -> citation")
    provenance: dict[str, Literal["measured", "spec"]] = Field(
        default_factory=dict, description="merged profiles: where each number came from")

    @model_validator(mode="after")
    def _spec_numbers_have_sources(self) -> Profile:
        if self.kind != "spec":
            return self
        if not (self.device.memory_bytes and self.peaks.memory_bandwidth_Bps and self.peaks.matmul_flops):
            raise ValueError("a spec profile needs device.memory_bytes, peaks.memory_bandwidth_Bps and "
                             "peaks.matmul_flops")
        dump = self.model_dump(exclude_none=True)
        missing = [path for path in number_paths(self) if not has_source(self.sources, path, dump)]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ValueError(f"spec number {missing[0]} has no source in `sources`{more}")
        return self


# The sections a spec sheet fills (and a merge combines); curves and run data are measured only.
# (Link rates between GPUs live in ``interconnect``: scale_up_Bps, scale_up_domain, scale_out_Bps.)
SPEC_SECTIONS = ("device", "peaks", "interconnect", "price", "host_link")


def number_paths(p: Profile, sections: tuple[str, ...] = SPEC_SECTIONS) -> list[str]:
    """Dotted paths of every number set in ``sections`` (lists, e.g. measured curves, are not walked)."""
    out: list[str] = []

    def walk(v: Any, path: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(path)

    d = p.model_dump(exclude_none=True)
    for sect in sections:
        if d.get(sect) is not None:
            walk(d[sect], sect)
    return out


def has_source(sources: dict[str, str], path: str, data: dict | None = None) -> bool:
    """A citation in ``sources`` for the path itself or for a section containing it ("peaks.matmul_flops"), or
    (given the profile as ``data``) a sibling ``<name>_source`` field, e.g. interconnect.scale_up_source for
    interconnect.scale_up_Bps."""
    parts = path.split(".")
    if any(str(sources.get(".".join(parts[:i]), "")).strip() for i in range(len(parts), 0, -1)):
        return True
    if data is None:
        return False
    sect: Any = data
    for k in parts[:-1]:
        sect = sect.get(k) if isinstance(sect, dict) else None
    stem = parts[-1].rsplit("_", 1)[0] if "_" in parts[-1] else parts[-1]
    return isinstance(sect, dict) and bool(str(sect.get(f"{stem}_source") or "").strip())


class ProfileError(ValueError):
    """A profile that cannot be used; the message is one line, fit for the CLI."""


def software_info() -> Software:
    from . import __version__

    def ver(mod: str) -> str | None:
        try:
            return __import__(mod).__version__
        except Exception:  # not installed (e.g. triton on macOS): recorded as absent
            return None

    return Software(python=platform.python_version(), torch=ver("torch"), triton=ver("triton"),
                    rooflab=__version__, platform=platform.platform())


def device_info(target) -> DeviceInfo:
    return DeviceInfo(
        name=target.name,
        backend=target.backend,
        memory_bytes=target.memory_bytes or None,
        compute_units=target.compute_units,
        cache_bytes=target.cache_bytes,
        capability=f"{target.capability[0]}.{target.capability[1]}" if target.capability else None,
        driver=target.driver,
        cuda_version=target.cuda_version,
        uuid=target.uuid,
    )


def _deep_merge(into: dict, new: dict) -> dict:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        elif isinstance(v, list) and isinstance(into.get(k), list):
            into[k].extend(v)
        else:
            into[k] = v
    return into


def from_measurements(measurements: list[Measurement], device: DeviceInfo, run: RunInfo,
                      name: str | None = None, software: Software | None = None,
                      created: str | None = None) -> Profile:
    """Build the measured profile: every selected benchmark summarises its own records."""
    from . import registry

    data: dict[str, Any] = {}
    for bname in run.benchmarks:
        mine = [m for m in measurements if m.benchmark == bname]
        # `device` also carries the peaks summarised so far (benchmarks run in registry order, hbm first),
        # so e.g. decode attention can state its bandwidth as a fraction of the measured HBM peak.
        dev = {**device.model_dump(), "peaks": dict(data.get("peaks", {}))}
        _deep_merge(data, registry.get(bname).summarize(mine, dev))
    counts = {s: sum(1 for m in measurements if m.status == s) for s in ("ok", "failed", "skipped")}
    run = run.model_copy(update={
        "points_ok": counts["ok"], "points_failed": counts["failed"], "points_skipped": counts["skipped"],
        "failures": [f"{m.benchmark}/{m.impl} {m.kernel} {m.params}: {m.reason}"
                     for m in measurements if m.status == "failed"][:50],
    })
    return Profile(
        name=name or f"{device.name} (measured)",
        created=created or utc_now(),
        device=device,
        software=software or software_info(),
        run=run,
        card=_card_or_none(device),
        telemetry=_telemetry_summary(measurements, data.get("peaks")),
        **data,
    )


def _telemetry_summary(measurements: list[Measurement], peaks: dict | None) -> RunTelemetry | None:
    """The run's telemetry from its records (issue 9); a record with odd telemetry never fails a profile."""
    from . import telemetry

    try:
        return telemetry.run_summary(measurements, peaks)
    except Exception:
        return None


def _card_or_none(device: DeviceInfo) -> str | None:
    """The spec card of a measured GPU, recorded so the profile names its spec sheet; never fails a run."""
    if device.backend != "cuda":
        return None
    try:
        return card_for_device(device.name)
    except Exception:  # a broken spec library costs the link to the spec, not the run's profile
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target: a reader (or a killed
    run) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files: give outputs the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save(profile: Profile, path: str | Path) -> None:
    atomic_write_text(path, profile.model_dump_json(indent=2, exclude_none=True) + "\n")


MAX_PROFILE_BYTES = 16 * 1024 * 1024


def load(path: str | Path) -> Profile:
    """Load and validate a profile JSON file; any problem raises ProfileError with a one-line reason."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ProfileError(f"cannot read profile {path}: {e.strerror or e}") from None
    if size > MAX_PROFILE_BYTES:
        raise ProfileError(f"profile {path} is {size} bytes, over the {MAX_PROFILE_BYTES}-byte limit")
    return validate(read_json(path, MAX_PROFILE_BYTES, "profile", ProfileError), str(path))


def validate(data: Any, where: str = "profile") -> Profile:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile must be a JSON object")
    ver = data.get("schema_version")
    if type(ver) is not int or ver != SCHEMA_VERSION:  # 1.0 and true are not the integer 1
        raise ProfileError(f"{where}: schema_version {ver!r} is not supported (this rooflab reads {SCHEMA_VERSION})")
    try:
        return Profile.model_validate(data)
    except ValueError as e:
        errs = getattr(e, "errors", list)()
        if errs:
            first = errs[0]
            # keys come from the file: repr() keeps a key with a newline or control character on one line
            loc = ".".join(x if isinstance(x, str) and x.isprintable() else repr(x)
                           for x in (str(k) for k in first.get("loc", ())))
            more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
            msg = " ".join(str(first.get("msg")).split())
            raise ProfileError(f"{where}: {loc or '(root)'}: {msg}{more}") from None
        raise ProfileError(f"{where}: {str(e).splitlines()[0]}") from None


# ------------------------------------------------------------------ the profile library: names, merge, schema
#
# Profiles are referred to by name everywhere: the file stem of profiles/specs/<name>.json (spec sheets,
# hand-written with a source for every number) or profiles/measured/<name>.json (reference runs, generated),
# or by path. "spec:NAME" / "measured:NAME" pick one library when a name is in both (a plain name then means
# the spec).

LIBRARIES = ("specs", "measured")


def profiles_dir() -> Path:
    """The repository's profiles/ (next to the package in an editable install or a checkout)."""
    return Path(__file__).resolve().parents[1] / "profiles"


def schema_path() -> Path:
    return profiles_dir() / "schema.json"


def library(kind: str | None = None) -> dict[str, Path]:
    """{name: path} of the committed profiles; ``kind`` "spec" or "measured" restricts to one library."""
    out: dict[str, Path] = {}
    for lib in LIBRARIES:
        if kind is not None and lib != ("specs" if kind == "spec" else "measured"):
            continue
        d = profiles_dir() / lib
        for f in sorted(d.glob("*.json")) if d.is_dir() else []:
            out.setdefault(f.stem, f)  # a spec wins a name clash (see above)
    return out


def resolve_path(ref: str | Path) -> Path:
    """The file a profile reference names: a path, NAME, spec:NAME or measured:NAME."""
    ref_s = str(ref).strip()
    kind, sep, rest = ref_s.partition(":")
    if sep and kind in ("spec", "measured") and rest:
        found = library(kind).get(rest)
        if found is None:
            raise ProfileError(f"no {kind} profile named {rest!r} (known: {', '.join(library(kind)) or 'none'})")
        return found
    path = Path(ref_s)
    if path.exists() or path.suffix == ".json" or "/" in ref_s or os.sep in ref_s:
        return path
    found = library().get(ref_s)
    if found is None:
        raise ProfileError(f"unknown profile {ref_s!r}: give a path to a profile JSON or one of: "
                           f"{', '.join(library()) or '(the library is empty)'}")
    return found


def resolve(ref: str | Path) -> Profile:
    """Load a profile by name (spec or committed measured) or by path; ProfileError with one line if not."""
    return load(resolve_path(ref))


def _norm_name(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").split())


def card_for_device(name: str) -> str | None:
    """The spec card whose ``device_names`` list the name torch reports (exact, case- and space-insensitive).
    No guessing from substrings: an "H100 NVL" must never borrow the "H100 SXM" sheet."""
    want = _norm_name(name)
    for card, path in library("spec").items():
        try:
            spec = load(path)
        except ProfileError:
            continue
        if want in {_norm_name(n) for n in spec.device_names} or want == _norm_name(spec.device.name):
            return card
    return None


def spec_for(p: Profile) -> Profile | None:
    """The spec profile of a measured profile's card (by ``card``, else by the device name), or None."""
    if p.kind == "spec" or p.device.backend != "cuda":
        return None
    card = p.card or card_for_device(p.device.name)
    if not card:
        return None
    path = library("spec").get(card)
    return load(path) if path is not None else None


def _overlay(spec: Any, meas: Any, path: str, prov: dict[str, str]) -> Any:
    """Measured wins wherever it says something; the spec fills the rest. Numbers are marked in ``prov``."""
    if isinstance(spec, dict) and isinstance(meas, dict):
        out = {}
        for k in list(meas) + [k for k in spec if k not in meas]:
            v = _overlay(spec.get(k), meas.get(k), f"{path}.{k}", prov)
            if v is not None:
                out[k] = v
        return out
    empty = meas is None or (isinstance(meas, (dict, list)) and not meas)
    chosen, origin = (spec, "spec") if empty else (meas, "measured")
    _mark(chosen, path, origin, prov)
    return chosen


def _mark(v: Any, path: str, origin: str, prov: dict[str, str]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _mark(x, f"{path}.{k}", origin, prov)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        prov[path] = origin


def merge(measured: Profile, spec: Profile) -> Profile:
    """The measured profile completed by its card's spec: measured numbers override, the spec fills what was not
    measured (link bandwidths, price, FLOP/s of dtypes not run, ...). ``provenance`` marks every number of the
    spec sections "measured" or "spec"; ``sources`` keeps the citations of the numbers taken from the spec."""
    if measured.kind != "measured" or spec.kind != "spec":
        raise ProfileError(f"merge wants a measured and a spec profile, got {measured.kind} and {spec.kind}")
    m = measured.model_dump(mode="json", exclude_none=True)
    s = spec.model_dump(mode="json", exclude_none=True)
    prov: dict[str, str] = {}
    for sect in SPEC_SECTIONS:
        v = _overlay(s.get(sect), m.get(sect), sect, prov)
        if v is not None:
            m[sect] = v
    m["card"] = spec.card or measured.card
    m["provenance"] = dict(sorted(prov.items()))
    m["sources"] = {k: v for k, v in s.get("sources", {}).items()
                    if any(o == "spec" and (q == k or q.startswith(k + ".")) for q, o in prov.items())}
    return validate(m, f"{measured.name} merged with {spec.card or spec.name}")


def with_spec(p: Profile) -> tuple[Profile, Profile | None]:
    """(profile to model with, the spec used): a measured GPU profile merged with its card's spec when known."""
    if p.kind != "measured" or p.provenance:
        return p, None
    spec = spec_for(p)
    return (merge(p, spec), spec) if spec is not None else (p, None)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a profile, generated from the pydantic model. Nothing in it names the generator's version,
    so a new pydantic release does not make the committed file stale; releases may still render a description or
    an ordering differently, which is why the sync test compares exactly only under constraints.txt's pydantic and
    compares the definitions, fields and required fields (``schema_shape``) under any."""
    schema = Profile.model_json_schema()
    schema["$comment"] = (f"Generated from bench.profile.Profile (schema_version {SCHEMA_VERSION}) by "
                          "`rooflab profile schema --write`; do not edit by hand.")
    return schema


def schema_shape(schema: dict[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
    """{definition: (fields, required fields)} of a JSON Schema: what must agree whatever pydantic wrote it."""
    out = {}
    for name, d in [("(root)", schema)] + sorted((schema.get("$defs") or {}).items()):
        if isinstance(d, dict) and "properties" in d:
            out[name] = (sorted(d["properties"]), sorted(d.get("required", [])))
    return out


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def write_schema(path: str | Path | None = None) -> Path:
    """Regenerate profiles/schema.json from the pydantic model (a test keeps the committed file in sync)."""
    path = Path(path) if path is not None else schema_path()
    atomic_write_text(path, schema_text())
    return path
