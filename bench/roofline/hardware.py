"""The hardware view of a profile: the rates the roofline model reads, with where each came from.

:class:`Hardware` wraps one profile. A spec profile gives peaks; a measured one gives curves, and the model
reads them at the point in play: the HBM read bandwidth at the bytes streamed, the matmul efficiency and the
weight-streaming bandwidth at a GEMM's (M, N, K, dtype), the decode-attention bandwidth at (batch × KV heads,
context), the all-to-all bus bandwidth at the message size, the all-reduce latency–bandwidth fit, the kernel
launch cost and the host link. A curve that is empty (or a dtype not measured) falls back to the peak, a fixed
cost nobody measured or published to its architecture's cited default, and ``notes`` says so. How each rate is
read is described in docs/model.md.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

from .. import collectives, dtypes
from ..models import ModelSpec
from ..profile import DecodePoint, MatmulPoint, Profile, default_cost

SERVER_GPUS = 8  # GPUs one server holds: past the scale-up domain but within a server, GPUs talk over PCIe


def _torch_name(fmt: str) -> str:
    """The profile's name of a storage format ("bf16" -> "bfloat16"); a name bench.dtypes does not know as given."""
    try:
        return dtypes.name(fmt)
    except dtypes.UnknownDtype:
        return fmt


class RooflineError(ValueError):
    """The model cannot be evaluated (a number the profile lacks, a deployment that does not add up); one line."""


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


def best_by_x(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Several kernels at one x: keep the best (what the card can do at that size)."""
    best: dict[float, float] = {}
    for x, y in points:
        if y and y > 0:
            best[x] = max(best.get(x, 0.0), y)
    return sorted(best.items())


def bracket(xs: Iterable[float], x: float) -> list[float]:
    """The measured x that ``interp_log`` reads at ``x``: x itself when measured, else its two neighbours, or the end
    point it is clamped to."""
    pts = sorted({float(v) for v in xs if v > 0})
    if not pts:
        return []
    near = [v for v in pts if abs(v - x) <= 1e-9 * max(1.0, abs(x))]
    if near:
        return near[:1]
    if x <= pts[0]:
        return pts[:1]
    if x >= pts[-1]:
        return pts[-1:]
    return [max(v for v in pts if v < x), min(v for v in pts if v > x)]


def matmul_family(pts: list[MatmulPoint], m: float, n: float, k: float) -> list[MatmulPoint]:
    """The measured matmul points of the shape (n, k) itself when it was measured down to M <= m (the gemm
    benchmark measures every weight GEMM of the models asked for over M); else of the (N, K) nearest to (n, k) in
    log distance, among the families measured down to M <= m when there are any (a family of large squares says
    nothing about a small-M GEMM: interpolating it would clamp to its smallest M)."""
    reach = [p for p in pts if p.M <= m * (1 + 1e-9)]
    if any(abs(p.N - n) < 0.5 and abs(p.K - k) < 0.5 for p in reach):
        return [p for p in pts if abs(p.N - n) < 0.5 and abs(p.K - k) < 0.5]
    fams = {(p.N, p.K) for p in reach} or {(p.N, p.K) for p in pts}
    near = min(fams, key=lambda nk: (math.log(nk[0] / n) ** 2 + math.log(nk[1] / k) ** 2, nk))
    return [p for p in pts if (p.N, p.K) == near]


CurvePoint = MatmulPoint | DecodePoint


# ---------------------------------------------------------------------------------------------- the hardware
class Hardware:
    """The numbers the model reads from one profile: peaks (spec) or curves with peaks as the fallback (measured).
    ``notes`` collects where each kind of number came from, for the output."""

    def __init__(self, profile: Profile, use_curves: bool | None = None, label: str | None = None):
        self.profile = profile
        self.use_curves = (profile.kind == "measured") if use_curves is None else use_curves
        self.label = label or profile.card or profile.name
        self.notes: list[str] = []
        # the measured curve points the lookups read, when a caller asks (``trace``): rooflab validate re-measures
        # exactly these beside each step (bench/validate/rates.py)
        self.trace: dict[tuple, CurvePoint] | None = None
        self._matmul_cache: dict[tuple, tuple[float, list[MatmulPoint]]] = {}
        peak_bandwidth = profile.peaks.memory_bandwidth_Bps
        if not peak_bandwidth:
            raise RooflineError(f"{self.label}: the profile has no peaks.memory_bandwidth_Bps")
        self.peak_bandwidth_Bps = float(peak_bandwidth)
        if not profile.peaks.matmul_flops:
            raise RooflineError(f"{self.label}: the profile has no peaks.matmul_flops (run the gemm benchmark, or "
                                "give a spec profile)")

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _origin(self, path: str) -> str:
        """Where the profile's number at ``path`` came from: "measured", "published" or "spec"."""
        return self.profile.provenance.get(path) or self.profile.kind

    # ---------------------------------------------------------------- memory
    @property
    def memory_bytes(self) -> int | None:
        return self.profile.device.memory_bytes

    def memory_rate(self, nbytes: float) -> float:
        """Bandwidth streaming ``nbytes`` of weights: the measured read curve at that working set, else the peak."""
        if self.use_curves:
            hbm = list(self.profile.curves.hbm)
            reads = [c for c in hbm if c.op == "read"] or hbm
            bw = interp_log(best_by_x((c.working_set_bytes, c.bandwidth_Bps) for c in reads), nbytes)
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
            want_dt = _torch_name(kv_dtype)
            same_dt = [p for p in pts if p.dtype.lower() == want_dt] or pts
            if impl:
                want_impl, _, want_layout = impl.partition("/")
                mine = [p for p in same_dt if p.impl == want_impl and (not want_layout or p.layout == want_layout)]
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

            def hd_dist(p: DecodePoint) -> float:
                return abs(math.log(p.head_dim / hd))

            def group_dist(p: DecodePoint) -> float:
                return abs(math.log(p.q_heads / p.kv_heads / group))

            best_hd = min(hd_dist(p) for p in same_dt)
            # (streams, context) -> (group distance, bw, the point)
            at: dict[tuple[float, float], tuple[float, float, DecodePoint]] = {}
            for p in same_dt:
                if hd_dist(p) != best_hd:
                    continue
                bw = max(p.bandwidth_Bps, p.graph_bandwidth_Bps or 0.0)
                key, gd = (float(p.batch * p.kv_heads), float(p.context)), group_dist(p)
                old = at.get(key)
                if old is None or gd < old[0] - 1e-12 or (abs(gd - old[0]) <= 1e-12 and bw > old[1]):
                    at[key] = (gd, bw, p)
            by_ctx: dict[float, list[tuple[float, float]]] = {}
            for (x, c), (_, bw, _) in at.items():
                by_ctx.setdefault(c, []).append((x, bw))
            per_ctx = [(c, interp_log(v, streams)) for c, v in by_ctx.items()]
            kv_bw = interp_log([(c, y) for c, y in per_ctx if y], context)
            if kv_bw:
                self.note("KV-cache bandwidth: the measured decode-attention curve at (batch × kv heads, context)")
                read = [at[(x, c)][2] for c in bracket(by_ctx, context)
                        for x in bracket((x for x, _ in by_ctx[c]), streams)]
                if len(read) > 1 or read[0].context != context or read[0].batch * read[0].kv_heads != streams:
                    self.note("KV-cache bandwidth: interpolated between measured decode points (the step's "
                              "(batch × kv heads, context) was not measured)")
                if self.trace is not None:
                    for p in read:
                        self.trace[("decode", p.impl, p.layout, p.dtype, p.batch, p.context, p.q_heads, p.kv_heads,
                                    p.head_dim)] = p
                return kv_bw
        if self.use_curves:
            return self.memory_rate(total_kv_bytes)
        return self.peak_bandwidth_Bps

    # ---------------------------------------------------------------- compute
    def matmul_dtype(self, fmt: str) -> str:
        """The profile's matmul dtype a weight format computes in (the first this card has, see bench.dtypes)."""
        have = self.profile.peaks.matmul_flops
        compute = dtypes.get(fmt).compute
        for dt in compute + ("bfloat16", "float16", "float32"):
            if have.get(dt):
                if dt not in compute[:1]:
                    self.note(f"{fmt} weights compute as {dt} here (no {compute[0]} peak)")
                return dt
        raise RooflineError(f"{self.label}: no matmul FLOP/s for {fmt} or bf16/fp16/fp32 in the profile")

    def peak_flops(self, dtype: str) -> float:
        return float(self.profile.peaks.matmul_flops[dtype])

    def _matmul_read(self, kind: str, dtype: str, m: float, n: float, k: float) -> float | None:
        """The measured matmul curve read at (m, n, k) in ``dtype``: ``kind`` "efficiency" (FLOP/s ÷ the shape's own
        roofline) or "stream" (A + B + C bytes per second), interpolated in M on the family ``matmul_family`` picks;
        None without a curve for the dtype. Notes say when the shape, or the M, was not measured; the points read go
        to ``trace``."""
        key = (kind, dtype.lower(), m, n, k)
        hit = self._matmul_cache.get(key)
        if hit is None:
            pts = [p for p in self.profile.curves.matmul if str(p.dtype).lower() == dtype.lower() and p.flops
                   and (kind == "efficiency" or p.bytes)]
            if not pts:
                return None
            fam = matmul_family(pts, m, n, k)
            peak, bw = self.peak_flops(dtype) if kind == "efficiency" else 0.0, self.peak_bandwidth_Bps
            best: dict[float, MatmulPoint] = {}  # the fastest point at each M (several kernels may have run it)
            for p in fam:
                if p.M not in best or p.flops > best[p.M].flops:
                    best[p.M] = p
            ys = []
            for x, p in best.items():
                if kind == "efficiency":
                    roof = peak if not p.bytes else min(peak, 2.0 * p.M * p.N * p.K / p.bytes * bw)
                    ys.append((x, min(1.0, p.flops / roof)))
                else:
                    ys.append((x, p.bytes * p.flops / (2.0 * p.M * p.N * p.K)))
            val = interp_log(ys, m)
            if val is None:
                return None
            hit = (val, [best[x] for x in bracket(best, m)])
            self._matmul_cache[key] = hit
            nk = (fam[0].N, fam[0].K)
            if abs(nk[0] - n) >= 0.5 or abs(nk[1] - k) >= 0.5:
                self.note(f"matmul: {dtype} shape N={n:g} K={k:g} not measured; the nearest measured shape "
                          f"(N={nk[0]}, K={nk[1]}) stands in")
            elif not min(best) <= m <= max(best):
                self.note(f"matmul: {dtype} N={nk[0]} K={nk[1]} measured at M {min(best):g}-{max(best):g}: other M "
                          "read the nearest end")
        if self.trace is not None:
            for p in hit[1]:
                self.trace[("matmul", p.dtype, p.impl, p.M, p.N, p.K)] = p
        return hit[0]

    def matmul_rate(self, dtype: str, m: float, n: float, k: float) -> float:
        """FLOP/s of a (m × k) · (k × n) matmul in ``dtype``: the peak, times (measured profiles) the efficiency the
        matmul curve shows at that (N, K) when it was measured (else the nearest measured family), interpolated in
        M between the measured M around m. Efficiency is measured FLOP/s ÷ that shape's own roofline
        min(peak, intensity · bandwidth), so a memory-bound small-M point does not count its weight reads twice
        (the memory term has them)."""
        peak = self.peak_flops(dtype)
        origin = self._origin(f"peaks.matmul_flops.{dtype}")
        if not self.use_curves:
            self.note(f"matmul: {dtype} peak ({origin})")
            return peak
        eff = self._matmul_read("efficiency", dtype, max(m, 1.0), max(n, 1.0), max(k, 1.0))
        if eff is None:
            self.note(f"matmul: {dtype} peak ({origin}; no measured curve for it)")
            return peak
        self.note(f"matmul: {dtype} efficiency from the measured curve by shape (peak {origin})")
        return peak * (eff or 1.0)

    def weight_stream_rate(self, dtype: str, m: float, n: float, k: float, nbytes: float) -> float:
        """Bandwidth at which (m × k) · (k × n) matmuls in ``dtype`` stream ``nbytes`` of weights. With a measured
        matmul curve: the bytes per second (A + B + C bytes ÷ the time its FLOP/s imply) measured at that (N, K)
        (else the nearest measured family), interpolated in M — small-M GEMMs (GEMV kernels, tile quantisation, a
        CPU BLAS's small-M path) stream weights slower than a read kernel, and at large M the time is the
        compute-bound GEMM's; else the memory curve at ``nbytes`` (spec profiles: the peak)."""
        bw = self._matmul_read("stream", dtype, max(m, 1.0), max(n, 1.0), max(k, 1.0)) if self.use_curves else None
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
            rows = [(float(p.world_size), float(p.message_bytes), p.busbw_Bps) for p in self.profile.curves.all_to_all]
            if rows:
                wn = min({r[0] for r in rows}, key=lambda w: abs(math.log(w / world)))
                bw = interp_log(best_by_x((s, b) for w, s, b in rows if w == wn), message_bytes)
                if bw:
                    self.note(f"all-to-all: the measured bus bandwidth curve (world size {wn:g}) at the message size")
                    return bw, f"measured all-to-all ({wn:g} GPUs)"
        bw, name = self.link(world)
        self.note(f"all-to-all: {name} link bandwidth ({self._origin('interconnect.scale_up_Bps')})")
        return bw, name

    # ---------------------------------------------------------------- fixed costs
    def all_reduce_time_s(self, message_bytes: float, world: int) -> float | None:
        """One all-reduce of ``message_bytes`` per rank among ``world`` GPUs. With a measured α–β fit at this world
        size: α + bytes/β. Otherwise latency + bytes × 2(n−1)/n / bus bandwidth: the profile's all-reduce bus
        bandwidth (published or measured; within a server) else the link's, and the profile's small-message
        latency else the architecture's default for that link (profiles/defaults.json). RooflineError when the
        profile has no link for ``world`` GPUs."""
        inter = self.profile.interconnect
        ar = inter.all_reduce if inter is not None else None
        fit = ar.fit(world) if ar is not None and self.use_curves else None
        if fit is not None:
            self.note(f"TP all-reduce: the measured latency-bandwidth fit for {world} ranks "
                      f"(alpha {fit.alpha_s * 1e6:.3g} us, beta {fit.beta_Bps / 1e9:.3g} GB/s) at the message size")
            return fit.time_s(message_bytes)
        link_bw, link = self.link(world)
        in_server = link != "scale-out"
        if ar is not None and ar.peak_busbw_Bps and in_server:
            busbw, bw_from = float(ar.peak_busbw_Bps), f"{self._origin('interconnect.all_reduce.peak_busbw_Bps')} " \
                f"all-reduce bus bandwidth {ar.peak_busbw_Bps / 1e9:.4g} GB/s"
        else:
            busbw, bw_from = link_bw, f"{link} link bandwidth"
        latency = self._all_reduce_latency_s(link, ar.latency_s if ar is not None and in_server else None)
        self.note(f"TP all-reduce: {latency[1]} + bytes x 2(n-1)/n at the {bw_from}")
        return latency[0] + collectives.time_s("all_reduce", message_bytes, busbw, world)

    def _all_reduce_latency_s(self, link: str, own: float | None) -> tuple[float, str]:
        """(small-message all-reduce time, where it came from): the profile's, else the architecture's default over
        this link (scale-up or PCIe), else 0 (scale-out, or nothing public), said so."""
        if own:
            return float(own), f"{self._origin('interconnect.all_reduce.latency_s')} latency {own * 1e6:.3g} us"
        name = "all_reduce_latency_scale_up_s" if link == "scale-up" else \
            None if link == "scale-out" else "all_reduce_latency_pcie_s"
        d = default_cost(self.architecture, name) if name else None
        if d is None:
            return 0.0, f"latency 0 (no measured, published or default small-message time over {link})"
        return d.value_s, f"default latency {d.value_s * 1e6:.3g} us ({d.architecture}, {link}: {d.source})"

    @property
    def architecture(self) -> str | None:
        return self.profile.device.architecture

    def launch_cost_s(self, cuda_graphs: bool) -> float:
        """Per-kernel launch cost: the profile's own ``overheads`` (measured or published; the CUDA-graph replay cost
        with ``cuda_graphs``), else the default of the card's architecture (profiles/defaults.json). A fixed cost
        is never free where one is known: 0 only when the profile has none and its architecture no default."""
        o = self.profile.overheads
        own = {k: getattr(o, k) for k in ("launch_s", "graph_launch_s")} if o is not None else {}
        order = ("graph_launch_s", "launch_s") if cuda_graphs else ("launch_s", "graph_launch_s")
        what = {"launch_s": "eager launch cost", "graph_launch_s": "CUDA-graph launch cost"}
        first = order[0]
        if own.get(first):
            self.note(f"overheads: {self._origin('overheads.' + first)} {what[first]} per kernel")
            return float(own[first])
        d = default_cost(self.architecture, first)
        if d is not None:
            self.note(f"overheads: default {what[first]} {d.value_s * 1e6:.3g} us per kernel ({d.architecture}: "
                      f"{d.source}{'; ' + d.note if d.note else ''}); neither measured nor published")
            return d.value_s
        second = order[1]
        if own.get(second):
            self.note(f"overheads: no {what[first]} and no default for it, the {self._origin('overheads.' + second)} "
                      f"{what[second]} is used")
            return float(own[second])
        self.note("overheads: none in the profile and no default for its architecture "
                  f"({self.architecture or 'unknown'}): the overhead term is 0")
        return 0.0

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
