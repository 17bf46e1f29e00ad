"""The profile's schema: the pydantic models of every section, and the JSON Schema they generate.

One model describes the three kinds of profile (``kind``, most real first): a measured one, built from a run's
records (bench/profile/build.py); a published one, other people's public measurements of a card, each number
with its :class:`Citation`; a spec one, hand-written from a data sheet with a source for every number.
Units are SI base units named in the field (``_Bps`` bytes/s, ``_flops`` FLOP/s, ``_s``, ``_bytes``); the
rules every number obeys are in bench/profile/rules.py. ``json_schema`` is what profiles/schema.json holds.
The format, section by section, is described in docs/profile.md.
"""
from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import Discriminator, Field, PositiveFloat, Tag, model_validator

from ..measurement import utc_now
from .rules import StrictModel, has_source, number_paths
from .telemetry import RunTelemetry

SCHEMA_VERSION = 1

# The kinds of profile, most real first: where two say something about one number, the first wins.
Kind = Literal["measured", "published", "spec"]
KINDS: tuple[str, ...] = get_args(Kind)

# GPU architectures, for the fixed costs a profile without measured or published ones is given
# (profiles/defaults.json, bench/profile/defaults.py).
Architecture = Literal["ampere", "ada", "hopper", "blackwell", "cdna3"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)

_URL = re.compile(r"^https?://\S+$")


class Citation(StrictModel):
    """Where a published number comes from, enough to find it and to check its conversion: ``source`` is a URL,
    or a repository and the path in it, which then needs the ``commit`` or the ``date`` it was read at."""

    source: str = Field(description="a URL, or a repository and the path in it (and the section)")
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,40}$", description="the repository's commit")
    date: str | None = Field(default=None, pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$",
                             description="YYYY[-MM[-DD]]: when the number was published")
    tool: str = Field(description="what measured it, e.g. BabelStream, nccl-tests all_reduce_perf, mamf-finder")
    as_published: str = Field(description="the figure as printed, with its unit")
    conditions: str = Field(default="", description="hardware, software versions, sizes and settings, where given")
    conversion: str = Field(description="how the published figure becomes rooflab's accounting and SI unit")
    note: str = Field(default="", description="why this value where there are several; caveats")

    @model_validator(mode="after")
    def _findable(self) -> Citation:
        for name in ("source", "tool", "as_published", "conversion"):
            if not getattr(self, name).strip():
                raise ValueError(f"a citation needs a non-blank {name}")
        if not _URL.match(self.source.strip()) and not (self.commit or self.date):
            raise ValueError("a citation whose source is not a URL needs the commit or the date it was read at")
        return self

    def short(self) -> str:
        """One line for a table: the source, where in its history, and the tool."""
        at = f" @{self.commit[:7]}" if self.commit else f" ({self.date})" if self.date else ""
        return f"{self.source}{at}; {self.tool}"


# a citation is a text (spec sheets) or a Citation record (published numbers); tagged so that a bad record's
# error names the record's own field
SourceEntry = Annotated[Annotated[Citation, Tag("record")] | Annotated[str, Tag("text")],
                        Discriminator(lambda v: "text" if isinstance(v, str) else "record")]


def citation_text(entry: Citation | str) -> str:
    return entry.short() if isinstance(entry, Citation) else entry


class DeviceInfo(StrictModel):
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
    architecture: Architecture | None = Field(
        default=None, description="GPU architecture: picks the fixed-cost defaults of profiles/defaults.json")


class Software(StrictModel):
    python: str
    torch: str | None = None
    triton: str | None = None
    rooflab: str
    platform: str | None = None


class Peaks(StrictModel):
    memory_bandwidth_Bps: float | None = Field(default=None, gt=0)
    memory_bandwidth_source: str | None = None
    copy_bandwidth_Bps: float | None = Field(default=None, gt=0)
    copy_bandwidth_source: str | None = None
    matmul_flops: dict[str, PositiveFloat] = Field(default_factory=dict, description="dense FLOP/s by dtype")
    matmul_source: dict[str, str] = Field(default_factory=dict,
                                          description="kernel and M, N, K that reached each matmul peak")


class HBMPoint(StrictModel):
    op: str
    impl: str
    dtype: str
    working_set_bytes: int = Field(ge=0)
    bandwidth_Bps: float = Field(gt=0)
    median_s: float = Field(gt=0)
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)
    beyond_cache: bool


class MatmulPoint(StrictModel):
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


class MatmulShape(StrictModel):
    """A weight shape the gemm benchmark swept over M (family "llm"): the GEMMs of real models that have it."""

    N: int = Field(ge=1)
    K: int = Field(ge=1)
    layers: list[str] = Field(default_factory=list, description='e.g. ["llama-3.1-8b qkv"]')


class DecodePoint(StrictModel):
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


class AllToAllPoint(StrictModel):
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


class Curves(StrictModel):
    # each benchmark owns one list of its own typed points
    hbm: list[HBMPoint] = Field(default_factory=list)  # hbm benchmark
    matmul: list[MatmulPoint] = Field(default_factory=list)  # gemm benchmark
    matmul_shapes: list[MatmulShape] = Field(default_factory=list)  # gemm: the model weight shapes swept over M
    decode: list[DecodePoint] = Field(default_factory=list)  # decode attention benchmark
    all_to_all: list[AllToAllPoint] = Field(default_factory=list)  # MoE all-to-all benchmark (a2a)


class MoEAllToAllPoint(StrictModel):
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


class AllToAllPeak(StrictModel):
    world_size: int = Field(ge=2)
    backend: str
    busbw_Bps: float = Field(gt=0)
    algbw_Bps: float = Field(gt=0)
    message_bytes: int = Field(gt=0, description="message size that reached it")


class LinkFit(StrictModel):
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


class AllReducePoint(StrictModel):
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


class AllReduce(StrictModel):
    """All-reduce by message size per world size, with a latency–bandwidth fit per world size (measured), or the
    large-message bus bandwidth and the small-message time someone published."""

    curve: list[AllReducePoint] = Field(default_factory=list)
    fits: list[AllReduceFit] = Field(default_factory=list)
    peak_busbw_Bps: float | None = Field(default=None, gt=0)
    peak_busbw_source: str | None = None
    latency_s: float | None = Field(default=None, gt=0, description="one small-message all-reduce within a server: "
                                    "the fixed time of time = latency + bytes x 2(n-1)/n / busbw")

    def fit(self, world_size: int) -> AllReduceFit | None:
        return next((f for f in self.fits if f.world_size == world_size), None)


class Interconnect(StrictModel):
    """Collectives between GPUs (all-to-all, all-reduce). A spec profile carries only the link rates; a measured
    one the backend, the peaks and the MoE points (the curve is curves.all_to_all)."""

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
    all_reduce: AllReduce | None = None  # allreduce benchmark


class LocalMoEPoint(StrictModel):
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


class LocalMoE(StrictModel):
    """Best single-GPU MoE numbers: permute / un-permute bandwidth, grouped expert GEMM FLOP/s."""

    permute_bandwidth_Bps: float | None = Field(default=None, gt=0)
    permute_source: str | None = None
    unpermute_bandwidth_Bps: float | None = Field(default=None, gt=0)
    unpermute_source: str | None = None
    grouped_mlp_flops: float | None = Field(default=None, gt=0)
    grouped_mlp_source: str | None = None
    points: list[LocalMoEPoint] = Field(default_factory=list)


class OverheadCost(StrictModel):
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


class Overheads(StrictModel):
    """Fixed costs a decode step pays besides its roofline time. Medians; spreads in ``costs``."""

    launch_s: float | None = Field(default=None, gt=0, description="eager PyTorch op: device time per kernel "
                                   "of N back-to-back launches (CPU mode: per-op dispatch time)")
    host_launch_s: float | None = Field(default=None, gt=0, description="host time to issue one launch")
    graph_launch_s: float | None = Field(default=None, gt=0, description="per kernel, replayed from a CUDA graph")
    triton_launch_s: float | None = Field(default=None, gt=0, description="eager Triton no-op, per kernel")
    sync_s: float | None = Field(default=None, gt=0, description="tiny kernel + device synchronise round trip")
    costs: list[OverheadCost] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # e.g. "CUDA graphs are GPU-only"


class LinkPoint(StrictModel):
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


class HostLink(StrictModel):
    """Host↔device copies. A spec profile carries only the link and its theoretical rate."""

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


class Price(StrictModel):
    """A typical rental price per GPU-hour at a date (prices move: always say when)."""

    usd_per_hour: float = Field(gt=0, description="typical (the middle of the range seen)")
    low_usd_per_hour: float | None = Field(default=None, gt=0)
    high_usd_per_hour: float | None = Field(default=None, gt=0)
    as_of: str  # e.g. "2026"


class RunInfo(StrictModel):
    mode: Literal["cuda", "cpu"]
    mode_reason: str
    benchmarks: list[str] = Field(default_factory=list)
    quick: bool = True
    points_ok: int = 0
    points_failed: int = 0
    points_skipped: int = 0
    failures: list[str] = Field(default_factory=list)
    wall_time_s: float | None = None


class Profile(StrictModel):
    schema_version: int = SCHEMA_VERSION
    kind: Kind = "measured"
    name: str
    created: str = Field(default_factory=utc_now)
    device: DeviceInfo
    software: Software | None = None
    run: RunInfo | None = None
    peaks: Peaks = Field(default_factory=Peaks)
    curves: Curves = Field(default_factory=Curves)
    interconnect: Interconnect | None = None  # all-to-all / all-reduce
    overheads: Overheads | None = None  # launch / graph / sync costs
    host_link: HostLink | None = None  # host<->device copies
    local: LocalMoE | None = None  # single-GPU MoE permute / grouped GEMM numbers
    # run-level NVML summary: clock/power/temperature ranges, throttled points, ECC counters, and the conditions
    # each peak was measured under (bench/telemetry.py)
    telemetry: RunTelemetry | None = None
    # the spec library and merging (bench/profile/catalog.py, bench/profile/provenance.py)
    card: str | None = Field(default=None, description="the spec profile (profiles/specs/<card>.json) of this card")
    device_names: list[str] = Field(
        default_factory=list, description="names torch reports for this card (spec: finds a measured card's spec)")
    price: Price | None = None
    sources: dict[str, SourceEntry] = Field(
        default_factory=dict, description="field path (or a section) -> citation: a text (spec sheets) or a "
        "Citation record (published numbers, one per number's own path)")
    provenance: dict[str, Kind] = Field(default_factory=dict, description="merged profiles: where each number "
                                        "came from (measured, published or spec)")
    notes: list[str] = Field(default_factory=list, description="e.g. what a published profile leaves out, and why")

    @model_validator(mode="after")
    def _numbers_are_cited(self) -> Profile:
        """Every number that is not measured is cited: a spec number by a source (its path, a section holding it
        or a sibling ``<name>_source``), a published one by a Citation record at its own path."""
        if self.kind == "spec" and not (self.device.memory_bytes and self.peaks.memory_bandwidth_Bps
                                        and self.peaks.matmul_flops):
            raise ValueError("a spec profile needs device.memory_bytes, peaks.memory_bandwidth_Bps and "
                             "peaks.matmul_flops")
        if self.kind == "published" and not self.card:
            raise ValueError("a published profile names its card (the spec profile it completes)")
        if self.kind == "measured" and not self.provenance:
            return self
        paths = number_paths(self)
        if self.kind == "published" and not self.provenance and not paths:
            raise ValueError("a published profile has no numbers")
        dump = self.model_dump(exclude_none=True)
        for origin, how in (("spec", "no source in `sources`"),
                            ("published", "no citation record in `sources` at its own path")):
            missing = [p for p in paths if self.provenance.get(p, self.kind) == origin
                       and not has_source(self.sources, p, dump, record=origin == "published")]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise ValueError(f"{origin} number {missing[0]} has {how}{more}")
        return self


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
