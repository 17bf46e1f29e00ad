"""The LLM-inference roofline model: what a decode step costs on a card, from its profile, a model and a deployment.

Pure functions over data: a :class:`~bench.profile.Profile` (spec sheet or measured), a
:class:`~bench.models.ModelSpec` and a :class:`Deployment`. Nothing here measures anything.

One decode step of a replica (the ``gpus`` GPUs holding one copy of the model) produces one token for each of
``batch`` sequences at ``context`` cached tokens. Work is spread evenly: the attention and dense layers are split
``tp`` ways (tensor parallel) and, when ``gpus > tp``, run data-parallel on ``gpus / tp`` groups of the batch;
the routed experts are split ``ep`` ways (expert parallel) and, when ``gpus > ep``, each expert ``gpus / ep`` ways.
Per GPU (the busiest, which balanced sharding makes any):

- **FLOPs** = (2 · active matmul params · batch + batch · attention FLOPs at ``context``) / gpus
  (``ModelSpec.matmul_params_per_token``, ``ModelSpec.attention_flops_per_token``);
- **bytes** = weights touched (the dense part / tp + the experts hit / gpus; for MoE the expected number of
  distinct experts a batch hits, E·(1 − (1 − k/E)^batch) per layer) + the KV cache of every sequence the GPU
  attends for (KV bytes/token = 2·layers·kv_heads·head_dim·bytes; MLA layers·(kv_lora + rope)·bytes; GQA KV is
  split over min(tp, kv_heads) GPUs, MLA's latent is not split);
- **compute time** = FLOPs / matmul FLOP/s; **memory time** = weight bytes / weight-streaming bandwidth + KV bytes /
  KV bandwidth;
- **communication**: TP all-reduce, 2 per layer of (tokens · hidden) activations, ring time
  2·(tp−1)/tp · bytes / link; EP all-to-all, dispatch + combine per MoE layer, bytes per rank
  (tokens/gpus · k · hidden · activation bytes), time = bytes · (ep−1)/ep / bus bandwidth (nccl-tests' busbw);
- **overhead** (issue 14) = kernels one GPU launches per step (``ModelSpec.decode_kernels``, counted from the
  structure, or ``Deployment.kernels_per_step`` when a real step's kernels were counted) × the profile's measured
  per-kernel launch cost (``overheads.launch_s``; ``graph_launch_s`` for a ``cuda_graphs`` deployment); 0 when the
  profile has no ``overheads``. With a measured all-reduce fit at the tp world size (``interconnect.all_reduce``),
  each TP all-reduce costs α + bytes/β instead of the ring formula;
- **step time** = max(compute, memory) + communication + overhead, memory = weight streaming + KV read; ``bound``
  names the larger of compute and memory, or "communication" / "overhead" when that is larger than both. With
  ``Deployment.phase_split`` the weight GEMMs and the attention count as separate kernels run one after the
  other, each under its own roofline: max(GEMM compute, weight streaming) + max(attention compute, KV read) (per
  operator, as LLM-Viewer-style models sum them); equal to the default whenever both phases are bound the same
  way, larger when compute-bound GEMMs (large batch) no longer hide the attention's KV read. ``rooflab
  validate`` reports both. Each GEMM's rate is looked up at its own (M, N, K)
  (``ModelSpec.matmuls``: QKV, O, gate+up, down, router, experts, LM head). ``load_time_s`` (per row, not part of the
  step) is the weights one GPU holds over its host link (measured pinned host->device fit, else the link's rate).

From a step: tokens/s = batch / step time (per GPU: ÷ gpus), per user = 1 / step time, $ per million tokens
= price per GPU-hour · gpus / 3600 / tokens/s · 1e6. Besides: the **maximum batch** whose KV cache fits beside the
weights in ``memory_utilization`` of each GPU's memory (the rest is left to activations and the runtime), the
**optimal batch** where matmul compute time equals weight-fetch time (dense bf16 on one GPU: FLOP/s ÷ B/s), the
**latency floor** (batch-1 weights / bandwidth) and the time to read all of HBM once, and the **prefill** time of
a prompt (2 · params · tokens + causal attention, weights read once, spread over the replica).

Rates. A spec profile gives peaks: bandwidth, FLOP/s per dtype, link bandwidth. A measured profile gives curves,
and the model uses them: the HBM read bandwidth at the bytes in play, the matmul efficiency at the step's
(M, N, K, dtype) (the measured FLOP/s as a fraction of that shape's own roofline, applied to the dtype's peak),
the bandwidth at which the matmul curve's GEMMs stream their weights at that (M, N, K) (issue 11: small-M GEMMs
stream slower than a read kernel; the read curve where no matmul curve exists), the decode-attention bandwidth at
(batch, context), and the all-to-all bus bandwidth at the message size; a curve that is empty (or a dtype not
measured) falls back to the peak, and ``notes`` says so. A measured GPU profile is merged with its card's spec
first (``bench.profile.with_spec``) for what was not measured (links, price, other dtypes).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import collectives, dtypes
from . import models as M
from . import profile as P
from .models import ModelSpec
from .profile import Profile

SERVER_GPUS = 8  # GPUs one server holds: past the scale-up domain but within a server, GPUs talk over PCIe
DEFAULT_MEMORY_UTILIZATION = 0.9  # share of GPU memory for weights + KV (vLLM's default gpu_memory_utilization)
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
DEFAULT_CONTEXT = 8192
_TORCH_NAME = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "fp8": "float8_e4m3fn"}


class RooflineError(ValueError):
    """The model cannot be evaluated (a number the profile lacks, a deployment that does not add up); one line."""


# ----------------------------------------------------------------------------------------------- deployment
@dataclass(frozen=True)
class Deployment:
    tp: int = 1
    ep: int = 1
    gpus: int | None = None  # GPUs per replica; default max(tp, ep)
    weight_dtype: str | None = None  # None: as the model is released (e.g. fp8 DeepSeek, mxfp4 gpt-oss experts)
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"  # activations sent over the links
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION
    cuda_graphs: bool = False  # decode steps replayed from CUDA graphs: the graph launch cost per kernel applies
    kernels_per_step: int | None = None  # kernels one GPU launches per step when known (counted); None: the census
    # the decode-attention kernel the step runs, "impl" or "impl/layout" of the profile's decode curve (e.g.
    # "triton/contiguous"): its measured bandwidth is used; None: the best kernel measured at each point
    attention_impl: str | None = None
    phase_split: bool = False  # step time by phases (GEMMs, then attention), each under its own roofline

    def resolved(self, model: ModelSpec) -> Deployment:
        """Checked and completed; RooflineError with one line if it does not add up."""
        for k in ("tp", "ep"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise RooflineError(f"{k} must be a whole number >= 1, got {v!r}")
        gpus = self.gpus if self.gpus is not None else max(self.tp, self.ep)
        if not isinstance(gpus, int) or gpus < 1 or gpus % self.tp or gpus % self.ep:
            raise RooflineError(f"gpus ({gpus}) must be a multiple of tp ({self.tp}) and of ep ({self.ep})")
        if self.ep > 1 and not model.is_moe:
            raise RooflineError(f"ep {self.ep}: {model.name} is dense (expert parallelism needs a MoE model)")
        if model.is_moe and self.ep > (model.routed_experts or 1):
            raise RooflineError(f"ep {self.ep} is more than {model.name}'s {model.routed_experts} experts")
        if self.kernels_per_step is not None and (not isinstance(self.kernels_per_step, int)
                                                  or isinstance(self.kernels_per_step, bool)
                                                  or self.kernels_per_step < 1):
            raise RooflineError(f"kernels_per_step must be a whole number >= 1, got {self.kernels_per_step!r}")
        if not (0 < self.memory_utilization <= 1):
            raise RooflineError(f"memory_utilization must be in (0, 1], got {self.memory_utilization}")
        if self.attention_impl is not None and (not isinstance(self.attention_impl, str)
                                                or not self.attention_impl.strip("/ ")):
            raise RooflineError(f"attention_impl must be 'impl' or 'impl/layout', got {self.attention_impl!r}")
        try:
            wd = M.norm_dtype(self.weight_dtype) if self.weight_dtype else None
            kv, act = M.norm_dtype(self.kv_dtype), M.norm_dtype(self.act_dtype)
        except M.ModelError as e:
            raise RooflineError(str(e)) from None
        return replace(self, gpus=gpus, weight_dtype=wd, kv_dtype=kv, act_dtype=act)


# ------------------------------------------------------------------------------------------- interpolation
def interp_log(points: Iterable[tuple[float, float]], x: float) -> float | None:
    """y at x, linear in log x between the neighbouring points, clamped to the end points; None if no points."""
    pts = sorted((float(a), float(b)) for a, b in points if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b))
    if not pts:
        return None
    x = max(float(x), 1e-300)
    if x <= pts[0][0]:
        return pts[0][1]
    if x >= pts[-1][0]:
        return pts[-1][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= x <= x1:
            if x1 == x0:
                return max(y0, y1)
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + t * (y1 - y0)
    return pts[-1][1]


def _best_by_x(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Several kernels at one x: keep the best (what the card can do at that size)."""
    best: dict[float, float] = {}
    for x, y in points:
        if y and y > 0:
            best[x] = max(best.get(x, 0.0), y)
    return sorted(best.items())


def _get(point: Any, *names: str) -> Any:
    for n in names:
        v = point.get(n) if isinstance(point, dict) else getattr(point, n, None)
        if v is not None:
            return v
    return None


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _matmul_family(pts: list[Any], m: float, n: float, k: float) -> list[Any]:
    """The measured matmul points of the (N, K) nearest to (n, k) in log distance, among the families measured
    down to M <= m when there are any (a family of large squares says nothing about a small-M GEMM: interpolating
    it would clamp to its smallest M)."""
    reach = [p for p in pts if p.M <= m * (1 + 1e-9)]
    fams = {(p.N, p.K) for p in reach} or {(p.N, p.K) for p in pts}
    near = min(fams, key=lambda nk: (math.log(nk[0] / n) ** 2 + math.log(nk[1] / k) ** 2, nk))
    return [p for p in pts if (p.N, p.K) == near]


# ---------------------------------------------------------------------------------------------- the hardware
class Hardware:
    """The numbers the model reads from one profile: peaks (spec) or curves with peaks as the fallback (measured).
    ``notes`` collects where each kind of number came from, for the output."""

    def __init__(self, profile: Profile, use_curves: bool | None = None, label: str | None = None):
        self.profile = profile
        self.use_curves = (profile.kind == "measured") if use_curves is None else use_curves
        self.label = label or profile.card or profile.name
        self.notes: list[str] = []
        if not _num(profile.peaks.memory_bandwidth_Bps):
            raise RooflineError(f"{self.label}: the profile has no peaks.memory_bandwidth_Bps")
        if not profile.peaks.matmul_flops:
            raise RooflineError(f"{self.label}: the profile has no peaks.matmul_flops (run the gemm benchmark, or "
                                "give a spec profile)")

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _origin(self, path: str) -> str:
        o = self.profile.provenance.get(path)
        if o:
            return o
        return "spec" if self.profile.kind == "spec" else "measured"

    # ---------------------------------------------------------------- memory
    @property
    def memory_bytes(self) -> int | None:
        return self.profile.device.memory_bytes

    @property
    def peak_bandwidth_Bps(self) -> float:
        return float(self.profile.peaks.memory_bandwidth_Bps)

    def memory_rate(self, nbytes: float) -> float:
        """Bandwidth streaming ``nbytes`` of weights: the measured read curve at that working set, else the peak."""
        if self.use_curves:
            hbm = list(self.profile.curves.hbm)
            reads = [c for c in hbm if c.op == "read"] or hbm
            bw = interp_log(_best_by_x((c.working_set_bytes, c.bandwidth_Bps) for c in reads), nbytes)
            if bw:
                self.note("memory bandwidth: the measured HBM curve ("
                          + ("read-only kernels" if any(c.op == "read" for c in hbm) else "best kernel")
                          + ") at the bytes in play")
                return bw
            self.note("memory bandwidth: no HBM curve, the peak")
        else:
            self.note(f"memory bandwidth: peak ({self._origin('peaks.memory_bandwidth_Bps')})")
        return self.peak_bandwidth_Bps

    def kv_rate(self, batch: float, context: float, model: ModelSpec, kv_dtype: str, total_kv_bytes: float,
                impl: str | None = None, kv_heads: float | None = None) -> float:
        """Bandwidth reading the KV cache: the measured decode-attention curve at (batch, context), else the memory
        curve at the KV bytes, else the peak.

        The curve's points are placed by the KV streams a call reads, batch × kv heads (what the split-KV kernel
        spreads over the SMs: one program per sequence, kv head and split), and the context; a point of any head
        configuration with the model's head_dim counts, and where several configurations measured the same
        (streams, context) the one with the model's GQA group wins. So a model whose own head configuration was
        measured at one point only (e.g. 32q/4kv) reads the full grid of another (32q/8kv) at its streams.
        ``impl`` ("triton" or "triton/contiguous"): only that kernel's points, when the curve has them (what a
        validation step runs); else the best kernel at each point. ``kv_heads``: KV heads one GPU reads (default
        the model's; MLA: one latent per sequence)."""
        pts = list(self.profile.curves.decode) if self.use_curves else []
        if pts:
            want_dt = _TORCH_NAME.get(kv_dtype, kv_dtype)
            same_dt = [p for p in pts if str(_get(p, "dtype") or "").lower() == want_dt] or pts
            if impl:
                want_impl, _, want_layout = impl.partition("/")
                mine = [p for p in same_dt if str(_get(p, "impl") or "") == want_impl
                        and (not want_layout or str(_get(p, "layout") or "") == want_layout)]
                if mine:
                    same_dt = mine
                    self.note(f"KV-cache bandwidth: the {impl} decode kernel's measured points")
                else:
                    self.note(f"KV-cache bandwidth: no {impl} points in the decode curve, the best kernel's")
            mla = model.attention != "gqa"
            group = float(model.heads) if mla else model.heads / model.kv_heads
            hd = (model.kv_lora_rank or 0) + (model.qk_rope_head_dim or 0) if mla else model.head_dim
            heads = kv_heads if kv_heads is not None else (1.0 if mla else float(model.kv_heads))
            streams = max(float(batch) * heads, 1e-9)

            def hd_dist(p: Any) -> float:
                return abs(math.log((_num(_get(p, "head_dim")) or hd) / hd))

            def group_dist(p: Any) -> float:
                return abs(math.log(((_num(_get(p, "q_heads")) or 1) / (_num(_get(p, "kv_heads")) or 1)) / group))

            best_hd = min(hd_dist(p) for p in same_dt)
            at: dict[tuple[float, float], tuple[float, float]] = {}  # (streams, context) -> (group distance, bw)
            for p in same_dt:
                if hd_dist(p) != best_hd:
                    continue
                b, c, kvh = _num(_get(p, "batch")), _num(_get(p, "context")), _num(_get(p, "kv_heads")) or 1.0
                bw = max(_num(_get(p, "bandwidth_Bps")) or 0, _num(_get(p, "graph_bandwidth_Bps")) or 0)
                if not (b and c and bw):
                    continue
                key, gd = (b * kvh, c), group_dist(p)
                old = at.get(key)
                if old is None or gd < old[0] - 1e-12 or (abs(gd - old[0]) <= 1e-12 and bw > old[1]):
                    at[key] = (gd, bw)
            by_ctx: dict[float, list[tuple[float, float]]] = {}
            for (x, c), (_, bw) in at.items():
                by_ctx.setdefault(c, []).append((x, bw))
            per_ctx = [(c, interp_log(v, streams)) for c, v in by_ctx.items()]
            bw = interp_log([(c, y) for c, y in per_ctx if y], context)
            if bw:
                self.note("KV-cache bandwidth: the measured decode-attention curve at (batch × kv heads, context)")
                return bw
        if self.use_curves:
            return self.memory_rate(total_kv_bytes)
        return self.peak_bandwidth_Bps

    # ---------------------------------------------------------------- compute
    def matmul_dtype(self, fmt: str) -> str:
        """The profile's matmul dtype a weight format computes in (the first this card has, see bench.dtypes)."""
        have = self.profile.peaks.matmul_flops
        for dt in dtypes.get(fmt).compute + ("bfloat16", "float16", "float32"):
            if _num(have.get(dt)):
                if dt not in dtypes.get(fmt).compute[:1]:
                    self.note(f"{fmt} weights compute as {dt} here (no {dtypes.get(fmt).compute[0]} peak)")
                return dt
        raise RooflineError(f"{self.label}: no matmul FLOP/s for {fmt} or bf16/fp16/fp32 in the profile")

    def peak_flops(self, dtype: str) -> float:
        return float(self.profile.peaks.matmul_flops[dtype])

    def matmul_rate(self, dtype: str, m: float, n: float, k: float) -> float:
        """FLOP/s of a (m × k) · (k × n) matmul in ``dtype``: the peak, times (measured profiles) the efficiency the
        matmul curve shows at the nearest measured (N, K) family, interpolated in M. Efficiency is measured FLOP/s ÷
        that shape's own roofline min(peak, intensity · bandwidth), so a memory-bound small-M point does not
        count its weight reads twice (the memory term has them)."""
        peak = self.peak_flops(dtype)
        origin = self._origin(f"peaks.matmul_flops.{dtype}")
        if not self.use_curves:
            self.note(f"matmul: {dtype} peak ({origin})")
            return peak
        pts = [p for p in self.profile.curves.matmul if str(p.dtype).lower() == dtype.lower()]
        if not pts:
            self.note(f"matmul: {dtype} peak ({origin}; no measured curve for it)")
            return peak
        m, n, k = max(m, 1.0), max(n, 1.0), max(k, 1.0)
        fam = _matmul_family(pts, m, n, k)
        bw = self.peak_bandwidth_Bps
        effs = []
        for p in fam:
            roof = peak if not p.bytes else min(peak, 2.0 * p.M * p.N * p.K / p.bytes * bw)
            effs.append((p.M, min(1.0, p.flops / roof)))
        eff = interp_log(_best_by_x(effs), m) or 1.0
        self.note(f"matmul: {dtype} efficiency from the measured curve by shape (peak {origin})")
        return peak * eff

    def weight_stream_rate(self, dtype: str, m: float, n: float, k: float, nbytes: float) -> float:
        """Bandwidth at which (m × k) · (k × n) matmuls in ``dtype`` stream ``nbytes`` of weights (issue 11:
        small-GEMM efficiency). With a measured matmul curve: the bytes per second (A + B + C bytes ÷ the time its
        FLOP/s imply) the nearest measured (N, K) family achieves, interpolated in M — small-M GEMMs (GEMV kernels,
        tile quantisation, a CPU BLAS's small-M path) stream weights slower than a read kernel, and at large M the
        time is the compute-bound GEMM's; else the memory curve at ``nbytes`` (spec profiles: the peak)."""
        pts = [p for p in self.profile.curves.matmul if str(p.dtype).lower() == dtype.lower() and p.bytes
               and p.flops] if self.use_curves else []
        if not pts:
            return self.memory_rate(nbytes)
        m, n, k = max(m, 1.0), max(n, 1.0), max(k, 1.0)
        fam = _matmul_family(pts, m, n, k)
        bw = interp_log(_best_by_x((p.M, p.bytes * p.flops / (2.0 * p.M * p.N * p.K)) for p in fam), m)
        if not bw:
            return self.memory_rate(nbytes)
        self.note(f"weights: streamed at the bandwidth the measured {dtype} matmul curve achieves at the step's "
                  "(M, N, K)")
        return bw

    # ---------------------------------------------------------------- links
    def link(self, group: int) -> tuple[float, str]:
        """Per-GPU one-direction bandwidth among ``group`` GPUs: scale-up inside its domain, PCIe inside a server,
        scale-out beyond."""
        links = self.profile.interconnect
        host = self.profile.host_link
        if links and links.scale_up_Bps and group <= (links.scale_up_domain or 1):
            return links.scale_up_Bps, "scale-up"
        if group <= SERVER_GPUS and host is not None and host.theoretical_Bps:
            return host.theoretical_Bps, f"{host.link or 'PCIe'} (peer to peer)"
        if links and links.scale_out_Bps:
            return links.scale_out_Bps, "scale-out"
        raise RooflineError(f"{self.label}: no link bandwidth for {group} GPUs in the profile "
                            "(interconnect.scale_up_Bps / scale_out_Bps, or host_link.theoretical_Bps)")

    def a2a_busbw(self, message_bytes: float, world: int) -> tuple[float, str]:
        """All-to-all bus bandwidth: the measured curve at the message size (nearest world size), else the link."""
        if self.use_curves:
            pts = list(self.profile.curves.all_to_all)
            rows = []
            for p in pts:
                w = _num(_get(p, "world_size", "world", "ranks"))
                size = _num(_get(p, "message_bytes", "bytes_per_rank", "size_bytes", "bytes"))
                bus = _num(_get(p, "busbw_Bps", "bus_bandwidth_Bps"))
                if w and size and bus:
                    rows.append((w, size, bus))
            if rows:
                wn = min({r[0] for r in rows}, key=lambda w: abs(math.log(w / world)))
                bw = interp_log(_best_by_x((s, b) for w, s, b in rows if w == wn), message_bytes)
                if bw:
                    self.note(f"all-to-all: the measured bus bandwidth curve (world size {wn:g}) at the message size")
                    return bw, f"measured all-to-all ({wn:g} GPUs)"
        bw, name = self.link(world)
        self.note(f"all-to-all: {name} link bandwidth ({self._origin('interconnect.scale_up_Bps')})")
        return bw, name

    # ---------------------------------------------------------------- fixed costs (issue 14)
    def all_reduce_time_s(self, message_bytes: float, world: int) -> float | None:
        """One all-reduce of ``message_bytes`` per rank from the measured α–β fit at this world size
        (time = α + bytes/β); None when the profile has no fit for it (the caller uses the link formula)."""
        inter = self.profile.interconnect
        ar = getattr(inter, "all_reduce", None) if self.use_curves else None
        fit = ar.fit(world) if ar is not None else None
        if fit is None:
            return None
        self.note(f"TP all-reduce: the measured latency-bandwidth fit for {world} ranks "
                  f"(alpha {fit.alpha_s * 1e6:.3g} us, beta {fit.beta_Bps / 1e9:.3g} GB/s) at the message size")
        return fit.time_s(message_bytes)

    def launch_cost_s(self, cuda_graphs: bool) -> float:
        """Per-kernel launch cost from the profile's ``overheads`` (graph replay cost with CUDA graphs); 0 when
        the profile has none, so the overhead term vanishes."""
        o = self.profile.overheads
        if o is None or not (o.launch_s or o.graph_launch_s):
            self.note("overheads: none in the profile, the overhead term is 0")
            return 0.0
        if cuda_graphs and o.graph_launch_s:
            self.note("overheads: measured CUDA-graph launch cost per kernel")
            return float(o.graph_launch_s)
        if cuda_graphs:
            self.note("overheads: no CUDA-graph launch cost measured, the eager launch cost is used")
        else:
            self.note("overheads: measured eager launch cost per kernel")
        return float(o.launch_s or o.graph_launch_s)

    def host_load_time_s(self, nbytes: float) -> float | None:
        """Time to copy ``nbytes`` host -> device over this GPU's host link: the measured pinned h2d fit, else the
        best measured pinned h2d rate, else the link's theoretical rate; None when the profile has no host link."""
        h = self.profile.host_link
        if h is None:
            return None
        fit = h.fit("h2d", "pinned")
        if fit is not None:
            return fit.time_s(nbytes)
        rate = h.peak_h2d_Bps or h.theoretical_Bps
        return nbytes / rate if rate else None

    @property
    def price_usd_per_hour(self) -> float | None:
        return self.profile.price.usd_per_hour if self.profile.price else None


# ------------------------------------------------------------------------------------------------- one step
@dataclass
class StepEstimate:
    """One decode step of a replica at (batch, context). Times are per GPU (they all take the same), bytes and
    FLOPs are the replica's totals per step. ``step_time_s`` is the one place the terms add up."""

    batch: int
    context: int
    gpus: int
    compute_time_s: float
    memory_time_s: float
    weight_time_s: float
    kv_time_s: float
    comm_time_s: float
    tp_comm_time_s: float
    ep_comm_time_s: float
    weight_bytes: float
    kv_bytes: float
    flops: float
    experts_touched: float  # expected distinct experts per MoE layer (0: dense)
    fits: bool | None  # KV + weights fit in memory (None: the profile has no memory size)
    price_usd_per_hour: float | None = None
    # fixed costs (issue 14): kernels per step × per-kernel launch cost (0 when the profile has no overheads)
    overhead_time_s: float = 0.0
    kernels_per_step: int = 0
    load_time_s: float | None = None  # the weights one GPU holds, host -> device over its host link (not per step)
    # the two phases of compute_time_s: the weight GEMMs and the attention (None: one roofline for the whole step)
    matmul_compute_time_s: float | None = None
    attention_compute_time_s: float | None = None
    # the step time by phases (Deployment.phase_split) instead of one roofline for the whole step
    phases: bool = False
    step_time_s: float = 0.0
    bound: str = ""

    @property
    def phased_roof_s(self) -> float | None:
        """The weight GEMMs and the attention as separate kernels run one after the other, each under its own
        roofline: max(GEMM compute, weight streaming) + max(attention compute, KV read). Equal to the step's
        max(compute, memory) whenever both phases are bound the same way; larger when the GEMMs are compute bound
        (large batch) while the attention still reads its KV cache. None without the phase split."""
        if self.matmul_compute_time_s is None or self.attention_compute_time_s is None:
            return None
        return (max(self.matmul_compute_time_s, self.weight_time_s)
                + max(self.attention_compute_time_s, self.kv_time_s))

    def __post_init__(self) -> None:
        if self.phases and self.phased_roof_s is not None:
            roof = self.phased_roof_s
            gemm_c, attn_c = self.matmul_compute_time_s, self.attention_compute_time_s
            gemm, attn = max(gemm_c, self.weight_time_s), max(attn_c, self.kv_time_s)
            compute_part = (gemm if gemm_c >= self.weight_time_s else 0.0) + (attn if attn_c >= self.kv_time_s else 0.0)
            compute_bound = compute_part >= roof - compute_part
        else:
            roof = max(self.compute_time_s, self.memory_time_s)
            compute_bound = self.compute_time_s >= self.memory_time_s
        self.step_time_s = roof + self.comm_time_s + self.overhead_time_s
        if self.overhead_time_s > max(roof, self.comm_time_s):
            self.bound = "overhead"
        elif self.comm_time_s > roof:
            self.bound = "communication"
        else:
            self.bound = "compute" if compute_bound else "memory"

    @property
    def tokens_per_s(self) -> float:
        return self.batch / self.step_time_s

    @property
    def tokens_per_s_per_gpu(self) -> float:
        return self.tokens_per_s / self.gpus

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1.0 / self.step_time_s

    @property
    def usd_per_mtok(self) -> float | None:
        if not self.price_usd_per_hour:
            return None
        return self.price_usd_per_hour * self.gpus / 3600.0 / self.tokens_per_s * 1e6

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("price_usd_per_hour")
        d.update(tokens_per_s=self.tokens_per_s, tokens_per_s_per_gpu=self.tokens_per_s_per_gpu,
                 tokens_per_s_per_user=self.tokens_per_s_per_user, usd_per_mtok=self.usd_per_mtok)
        return d


class Roofline:
    """A model on a card with a deployment: ``step(batch, context)`` and the quantities around it."""

    def __init__(self, hw: Hardware, model: ModelSpec, deployment: Deployment | None = None,
                 price_usd_per_hour: float | None = None):
        self.hw, self.model = hw, model
        self.dep = (deployment or Deployment()).resolved(model)
        if price_usd_per_hour is not None and not (0 < price_usd_per_hour < 1e6):
            raise RooflineError(f"price must be a positive USD per GPU-hour, got {price_usd_per_hour}")
        self.price = price_usd_per_hour if price_usd_per_hour is not None else hw.price_usd_per_hour
        d, m = self.dep, model
        self.wd, self.ed = m.weight_dtypes(d.weight_dtype)
        self.wb, self.eb = dtypes.bytes_per_element(self.wd), dtypes.bytes_per_element(self.ed)
        self.attn_groups = d.gpus // d.tp  # data-parallel attention groups
        self.kv_shards = 1 if m.attention == "mla" else min(d.tp, m.kv_heads)
        self.dense_dtype, self.expert_dtype = hw.matmul_dtype(self.wd), hw.matmul_dtype(self.ed)
        self.attn_dtype = hw.matmul_dtype("bf16")  # attention kernels compute in bf16 (fp8 KV is upcast)
        # the step's weight GEMMs (ModelSpec.matmuls) with the (N, K) one GPU runs: tensor parallelism cuts dense
        # weights tp ways, an expert gpus/ep ways (by columns or rows as the layer is split); each GEMM's measured
        # rate is looked up at its own shape
        self.gemms: list[tuple[M.Matmul, float, float]] = []
        for mm in m.matmuls():
            ways = d.tp if mm.part == "dense" else d.gpus // d.ep
            n_, k_ = float(mm.n), float(mm.k)
            if mm.split == "col":
                n_ = max(1.0, n_ / ways)
            elif mm.split == "row":
                k_ = max(1.0, k_ / ways)
            self.gemms.append((mm, n_, k_))

    # ------------------------------------------------------------------ parts of a step
    def resident_bytes_per_gpu(self) -> float:
        """Weights held by one GPU: the non-expert part / tp, the experts / gpus."""
        m = self.model
        return ((m.params - m.routed_expert_params) * self.wb / self.dep.tp
                + m.routed_expert_params * self.eb / self.dep.gpus)

    def weight_bytes_per_gpu(self, tokens: float) -> float:
        m = self.model
        experts = m.moe_layers * m.experts_touched(tokens) * m.expert_params * self.eb
        return m.dense_params * self.wb / self.dep.tp + experts / self.dep.gpus

    def _per_expert_tokens(self, tokens: float) -> float:
        """Rows each hit expert multiplies: the batch's tokens × top-k over the experts they hit."""
        hit = self.model.experts_touched(tokens)
        return tokens * (self.model.experts_per_token or 1) / hit if hit else 1.0

    def matmul_time_s(self, tokens: float, per_group_tokens: float) -> float:
        """Per-GPU compute time of the weight matmuls for ``tokens`` tokens in the replica: each GEMM's FLOPs
        (2·M·N·K) at the FLOP/s the measured curve gives its own (M, N, K) (``Hardware.matmul_rate``); the dense
        GEMMs at M = the group's tokens, the experts at M = tokens per hit expert."""
        m, d = self.model, self.dep
        t = 0.0
        per_expert = self._per_expert_tokens(tokens) if m.is_moe else 1.0
        for mm, n_, k_ in self.gemms:
            if mm.part == "dense":
                flops = 2.0 * tokens * mm.n * mm.k * mm.count / d.gpus
                t += flops / self.hw.matmul_rate(self.dense_dtype, per_group_tokens, n_, k_)
            else:
                flops = 2.0 * tokens * (m.experts_per_token or 0) * mm.n * mm.k * mm.count / d.gpus
                t += flops / self.hw.matmul_rate(self.expert_dtype, per_expert, n_, k_)
        return t

    def weight_time_s(self, tokens: float, per_group_tokens: float) -> float:
        """Per-GPU time streaming the weights ``tokens`` tokens touch, GEMM by GEMM: each weight's bytes at the rate
        its GEMM reaches at its own (M, N, K) (``Hardware.weight_stream_rate``; issue 11: a small GEMM streams
        slower than a big one, and both slower than a read kernel) — dense weights at M = the group's tokens, the
        experts hit at M = tokens per expert; without a measured matmul curve every weight streams at the memory
        rate at the bytes in play."""
        m, d, hw = self.model, self.dep, self.hw
        total = self.weight_bytes_per_gpu(tokens)
        hit = m.experts_touched(tokens)
        per_expert = self._per_expert_tokens(tokens) if m.is_moe else 1.0
        t = 0.0
        for mm, n_, k_ in self.gemms:
            if mm.part == "dense":
                nbytes = mm.n * mm.k * mm.count * self.wb / d.tp
                t += nbytes / hw.weight_stream_rate(self.dense_dtype, per_group_tokens, n_, k_, total)
            elif hit:
                nbytes = mm.n * mm.k * mm.count * hit * self.eb / d.gpus
                t += nbytes / hw.weight_stream_rate(self.expert_dtype, per_expert, n_, k_, total)
        return t

    def comm_times_s(self, tokens: float) -> tuple[float, float]:
        """(TP all-reduce, EP all-to-all) per-GPU time for ``tokens`` tokens in the replica."""
        m, d = self.model, self.dep
        act = dtypes.bytes_per_element(d.act_dtype)
        tp_t = ep_t = 0.0
        if d.tp > 1:
            msg = tokens / self.attn_groups * m.hidden * act
            one = self.hw.all_reduce_time_s(msg, d.tp)  # measured α + msg/β at this world size, if any
            if one is None:
                bw, _ = self.hw.link(d.tp)
                one = collectives.time_s("all_reduce", msg, bw, d.tp)
            tp_t = m.layers * 2 * one
        if d.ep > 1 and m.is_moe:
            per_rank = tokens / d.gpus * m.experts_per_token * m.hidden * act
            bw, _ = self.hw.a2a_busbw(per_rank, d.ep)
            ep_t = m.moe_layers * 2 * collectives.time_s("all_to_all", per_rank, bw, d.ep)
        return tp_t, ep_t

    def step(self, batch: int, context: int) -> StepEstimate:
        if batch < 1 or context < 0:
            raise RooflineError(f"batch must be >= 1 and context >= 0, got {batch}, {context}")
        m, d, hw = self.model, self.dep, self.hw
        b = float(batch)
        per_group = b / self.attn_groups
        w_gpu = self.weight_bytes_per_gpu(b)
        kv_gpu = per_group * m.kv_bytes(context, d.kv_dtype) / self.kv_shards
        attn_flops_gpu = b * m.attention_flops_per_token(context) / d.gpus
        mm_compute = self.matmul_time_s(b, per_group)
        attn_compute = attn_flops_gpu / hw.peak_flops(self.attn_dtype)
        compute = mm_compute + attn_compute
        weight_t = self.weight_time_s(b, per_group)
        kv_heads = 1.0 if m.attention == "mla" else m.kv_heads / self.kv_shards
        kv_t = kv_gpu / hw.kv_rate(per_group, context, m, d.kv_dtype, kv_gpu, impl=d.attention_impl,
                                   kv_heads=kv_heads) if kv_gpu else 0.0
        tp_t, ep_t = self.comm_times_s(b)
        mb = self.max_batch(context)
        kernels = self.kernels_per_step()
        return StepEstimate(
            batch=batch, context=context, gpus=d.gpus, compute_time_s=compute, memory_time_s=weight_t + kv_t,
            weight_time_s=weight_t, kv_time_s=kv_t, comm_time_s=tp_t + ep_t, tp_comm_time_s=tp_t, ep_comm_time_s=ep_t,
            weight_bytes=w_gpu * d.gpus, kv_bytes=kv_gpu * d.gpus,
            flops=2.0 * b * m.matmul_params_per_token + b * m.attention_flops_per_token(context),
            experts_touched=m.experts_touched(b), fits=None if mb is None else batch <= mb,
            price_usd_per_hour=self.price, overhead_time_s=self.overhead_time_s(), kernels_per_step=kernels,
            load_time_s=self.load_time_s(), matmul_compute_time_s=mm_compute, attention_compute_time_s=attn_compute,
            phases=bool(d.phase_split))

    def overhead_time_s(self) -> float:
        """Fixed cost of a decode step (issue 14): kernels one GPU launches per step (ModelSpec.decode_kernels)
        × the profile's per-kernel launch cost (CUDA-graph replay cost with ``cuda_graphs``); 0 without one."""
        return self.kernels_per_step() * self.hw.launch_cost_s(self.dep.cuda_graphs)

    def kernels_per_step(self) -> int:
        """The deployment's counted kernels per step if it gives them (issue 11: a profiler's count of a real step),
        else the model's census (ModelSpec.decode_kernels)."""
        return self.dep.kernels_per_step or self.model.decode_kernels(self.dep.tp, self.dep.ep)

    def load_time_s(self) -> float | None:
        """Loading the weights one GPU holds from host memory over its own host link (each GPU in parallel):
        the measured pinned host->device fit, else the link's rate; None when the profile has no host link."""
        return self.hw.host_load_time_s(self.resident_bytes_per_gpu())

    # ------------------------------------------------------------------ around the step
    def max_batch(self, context: int) -> int | None:
        """Largest batch whose KV cache at ``context`` fits beside the weights in memory_utilization of memory
        (0: the weights alone do not fit); None when the profile has no memory size."""
        mem = self.hw.memory_bytes
        if not mem:
            return None
        free = mem * self.dep.memory_utilization - self.resident_bytes_per_gpu()
        if free <= 0:
            return 0
        per_seq = self.model.kv_bytes(max(context, 1), self.dep.kv_dtype) / self.kv_shards
        return int(free // per_seq) * self.attn_groups

    def latency_floor_s(self) -> float:
        """Batch 1: the weights one token touches / bandwidth (per GPU) — no step can be faster."""
        w = self.weight_bytes_per_gpu(1.0)
        return w / self.hw.memory_rate(w)

    def hbm_read_time_s(self) -> float | None:
        """Capacity / peak bandwidth: the time to read all of one GPU's memory once."""
        mem = self.hw.memory_bytes
        return mem / self.hw.peak_bandwidth_Bps if mem else None

    def optimal_batch(self) -> float:
        """The batch where matmul compute time equals weight-fetch time (KV and attention left out): below it a step
        is weight-bandwidth bound, above it compute bound. Dense bf16 on one GPU: FLOP/s ÷ B/s; MoE:
        ≈ (FLOP/s ÷ B/s) · total/active once every expert is hit. Solved by bisection (the measured curves make it
        no closed form)."""

        def f(b: float) -> float:
            w = self.weight_bytes_per_gpu(b)
            return self.matmul_time_s(b, b / self.attn_groups) - w / self.hw.memory_rate(w)

        lo, hi = 1e-6, 1.0
        while f(hi) < 0:
            lo, hi = hi, hi * 2
            if hi > 1e12:
                raise RooflineError("no batch makes this step compute bound")
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            if f(mid) < 0:
                lo = mid
            else:
                hi = mid
            if hi / lo < 1 + 1e-12:
                break
        return hi

    def prefill(self, prompt_tokens: int) -> dict[str, Any]:
        """One prompt of ``prompt_tokens``: 2·params·tokens + causal attention (each token against half the prompt
        on average), weights read once (the experts the prompt hits), spread evenly over the replica's GPUs."""
        if prompt_tokens < 1:
            raise RooflineError(f"prompt must be >= 1 token, got {prompt_tokens}")
        m, d = self.model, self.dep
        t = float(prompt_tokens)
        attn = t * m.attention_flops_per_token(t / 2.0) / d.gpus
        compute = self.matmul_time_s(t, t / self.attn_groups) + attn / self.hw.peak_flops(self.attn_dtype)
        w = self.weight_bytes_per_gpu(t)
        memory = w / self.hw.memory_rate(w)
        tp_t, ep_t = self.comm_times_s(t)
        time_s = max(compute, memory) + tp_t + ep_t
        bound = ("communication" if tp_t + ep_t > max(compute, memory) else
                 "compute" if compute >= memory else "memory")
        return {"prompt_tokens": prompt_tokens, "time_s": time_s, "compute_time_s": compute, "memory_time_s": memory,
                "comm_time_s": tp_t + ep_t, "bound": bound, "tokens_per_s": t / time_s}


# ----------------------------------------------------------------------------------------------- estimates
@dataclass
class Estimate:
    gpu: str
    gpu_kind: str  # "spec" or "measured"
    model: str
    deployment: dict[str, Any]
    context: int
    price_usd_per_hour: float | None
    optimal_batch: float
    latency_floor_s: float
    hbm_read_time_s: float | None
    max_batch: int | None
    weights_bytes_per_gpu: float
    kv_bytes_per_token: float
    rows: list[StepEstimate]
    prefill: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    spec: Estimate | None = None  # the same on the card's spec sheet, beside a measured estimate

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("rows", "spec")}
        d["rows"] = [r.as_dict() for r in self.rows]
        if self.spec is not None:
            d["spec"] = self.spec.as_dict()
        return d


def estimate(profile: Profile, model: ModelSpec, deployment: Deployment | None = None, *,
             batches: Iterable[int] = DEFAULT_BATCHES, context: int = DEFAULT_CONTEXT,
             price_usd_per_hour: float | None = None, prompt_tokens: int | None = None,
             use_curves: bool | None = None, side_by_side: bool = True, label: str | None = None) -> Estimate:
    """The model on one profile. A measured GPU profile is merged with its card's spec (unmeasured numbers) and,
    with ``side_by_side``, the spec's own estimate is attached as ``spec``."""
    merged, spec = P.with_spec(profile)
    hw = Hardware(merged, use_curves=use_curves, label=label)
    rl = Roofline(hw, model, deployment, price_usd_per_hour)
    rows = [rl.step(int(b), int(context)) for b in batches]
    est = Estimate(
        gpu=hw.label, gpu_kind=profile.kind, model=model.name, deployment=asdict(rl.dep), context=int(context),
        price_usd_per_hour=rl.price, optimal_batch=rl.optimal_batch(), latency_floor_s=rl.latency_floor_s(),
        hbm_read_time_s=rl.hbm_read_time_s(), max_batch=rl.max_batch(int(context)),
        weights_bytes_per_gpu=rl.resident_bytes_per_gpu(), kv_bytes_per_token=model.kv_bytes_per_token(rl.dep.kv_dtype),
        rows=rows, prefill=rl.prefill(prompt_tokens) if prompt_tokens else None, notes=hw.notes)
    if spec is not None:
        est.notes.append(f"unmeasured numbers from the {spec.card} spec sheet (profile provenance)")
        if side_by_side:
            est.spec = estimate(spec, model, deployment, batches=batches, context=context,
                                price_usd_per_hour=price_usd_per_hour, prompt_tokens=prompt_tokens,
                                side_by_side=False, label=f"{spec.card} (spec)")
    return est


# ------------------------------------------------------------------------------------------------- compare
@dataclass
class CompareRow:
    gpu: str
    kind: str
    gpus: int
    tp: int
    ep: int
    max_batch: int | None
    batch: int | None  # the batch chosen: best throughput per GPU meeting the per-user target
    tokens_per_s_per_gpu: float | None
    tokens_per_s_per_user: float | None
    usd_per_mtok: float | None
    price_usd_per_hour: float | None
    bound: str | None
    step_time_s: float | None
    meets_target: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _deployment_for(model: ModelSpec, n: int, base: Deployment) -> Deployment:
    if model.is_moe:
        return replace(base, tp=1, ep=n, gpus=n)  # experts spread, attention data-parallel
    return replace(base, tp=n, ep=1, gpus=n)


def auto_deployment(model: ModelSpec, hw: Hardware, context: int, max_gpus: int = 64,
                    base: Deployment | None = None) -> Deployment:
    """The fewest GPUs (powers of two) that hold the weights and one sequence at ``context``: tensor parallel for
    a dense model, expert parallel (attention data-parallel) for a MoE model."""
    return candidate_deployments(model, hw, context, max_gpus, base)[0]


def candidate_deployments(model: ModelSpec, hw: Hardware, context: int, max_gpus: int = 64,
                          base: Deployment | None = None) -> list[Deployment]:
    """Powers of two from the fewest GPUs that fit (see auto_deployment) up to the scale-up domain (at least a
    server of SERVER_GPUS, at least that fewest): more GPUs per replica buy KV room and speed per user."""
    base = base or Deployment()
    limit = min(max_gpus, model.routed_experts or max_gpus) if model.is_moe else max_gpus
    n = 1
    while n <= limit:
        dep = _deployment_for(model, n, base)
        mb = Roofline(hw, model, dep).max_batch(context)
        if mb is None or mb >= 1:
            break
        n *= 2
    else:
        raise RooflineError(f"{model.name} at context {context} does not fit on {hw.label} with up to {limit} GPUs")
    links = hw.profile.interconnect
    top = min(limit, max(n, SERVER_GPUS, (links.scale_up_domain or 1) if links else 1))
    out = []
    while n <= top:
        out.append(_deployment_for(model, n, base))
        n *= 2
    return out


def batch_grid(max_batch: int, steps_per_octave: int = 4) -> list[int]:
    """1 … max_batch on a geometric grid (and max_batch itself)."""
    out, x = set(), 1.0
    while x <= max_batch:
        out.add(round(x))
        x *= 2 ** (1 / steps_per_octave)
    out.add(max_batch)
    return sorted(b for b in out if b >= 1)


def compare(profiles: list[tuple[str, Profile]], model: ModelSpec, *, context: int = DEFAULT_CONTEXT,
            target_tokens_per_user: float | None = None, deployment: Deployment | None = None,
            prices: dict[str, float] | None = None, max_batch_cap: int = 1 << 16) -> list[CompareRow]:
    """Cards side by side for one model: at the best batch that still gives each user ``target_tokens_per_user``
    (none: the batch with the best throughput), tokens/s per GPU, $ per million tokens, max batch and the bound.
    ``deployment``: fixed tp/ep for every card; None tries each card from the fewest GPUs that fit up to its
    scale-up domain (``candidate_deployments``) and keeps the best throughput per GPU."""
    rows = []
    for label, prof in profiles:
        merged, _ = P.with_spec(prof)
        hw = Hardware(merged, label=label)
        try:
            deps = [deployment] if deployment is not None else candidate_deployments(model, hw, context)
        except RooflineError as e:  # this card cannot run the model: say why in its row, keep the others
            rows.append(_no_row(label, prof.kind, (prices or {}).get(label) or hw.price_usd_per_hour, str(e)))
            continue
        found = []
        for dep in deps:
            try:
                found.append(_best_on(Roofline(hw, model, dep, (prices or {}).get(label)), label, prof.kind,
                                      context, target_tokens_per_user, max_batch_cap))
            except RooflineError as e:
                found.append(_no_row(label, prof.kind, (prices or {}).get(label) or hw.price_usd_per_hour, str(e),
                                     dep.resolved(model)))
        rows.append(max(found, key=lambda r: (r.batch is not None, r.meets_target, r.tokens_per_s_per_gpu or 0.0,
                                              r.tokens_per_s_per_user or 0.0)))
    return rows


def _no_row(label: str, kind: str, price: float | None, note: str, dep: Deployment | None = None) -> CompareRow:
    return CompareRow(gpu=label, kind=kind, gpus=dep.gpus if dep else 0, tp=dep.tp if dep else 0,
                      ep=dep.ep if dep else 0, max_batch=None, batch=None, tokens_per_s_per_gpu=None,
                      tokens_per_s_per_user=None, usd_per_mtok=None, price_usd_per_hour=price, bound=None,
                      step_time_s=None, meets_target=False, note=note)


def _best_on(rl: Roofline, label: str, kind: str, context: int, target: float | None, cap_limit: int) -> CompareRow:
    """The batch with the best throughput per GPU among those giving each user at least ``target`` tokens/s."""
    mb = rl.max_batch(context)
    cap = min(mb if mb is not None else cap_limit, cap_limit)
    base = dict(gpu=label, kind=kind, gpus=rl.dep.gpus, tp=rl.dep.tp, ep=rl.dep.ep, max_batch=mb,
                price_usd_per_hour=rl.price)
    if cap < 1:
        return CompareRow(**base, batch=None, tokens_per_s_per_gpu=None, tokens_per_s_per_user=None,
                          usd_per_mtok=None, bound=None, step_time_s=None, meets_target=False,
                          note="does not fit")
    steps = [rl.step(b, context) for b in batch_grid(cap)]
    ok = [s for s in steps if target is None or s.tokens_per_s_per_user >= target]
    best = max(ok or steps[:1], key=lambda s: s.tokens_per_s_per_gpu)
    return CompareRow(**base, batch=best.batch, tokens_per_s_per_gpu=best.tokens_per_s_per_gpu,
                      tokens_per_s_per_user=best.tokens_per_s_per_user, usd_per_mtok=best.usd_per_mtok,
                      bound=best.bound, step_time_s=best.step_time_s, meets_target=bool(ok),
                      note="" if ok else "below the target even at batch 1")
