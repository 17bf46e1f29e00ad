"""One decode step of a model on a card, and the quantities around it.

:class:`Roofline` puts a model (bench/models.py) on a card's :class:`~bench.roofline.hardware.Hardware` with a
:class:`~bench.roofline.deployment.Deployment`. ``step(batch, context)`` is one decode step of the replica,
a :class:`StepEstimate`: step time = max(compute, weight streaming + KV read) + communication + overhead, per
GPU. Around it: the KV capacity (``max_batch``), the latency floor, the time to read all of HBM once, the
optimal batch (compute time = weight-fetch time) and the prefill of a prompt. The formulas, term by term, are
in docs/model.md.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .. import collectives, dtypes
from ..models import Matmul, ModelSpec
from .deployment import Deployment
from .hardware import Hardware, RooflineError

EXPERT_ROW_TERMS = 64  # the most row counts per expert GEMM the step sums (Roofline.expert_rows)


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
    # fixed costs: kernels per step × per-kernel launch cost (0 when the profile has no overheads)
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
        gemm_c, attn_c = self.matmul_compute_time_s, self.attention_compute_time_s
        if self.phases and gemm_c is not None and attn_c is not None:
            gemm, attn = max(gemm_c, self.weight_time_s), max(attn_c, self.kv_time_s)
            roof = gemm + attn  # phased_roof_s
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
        self.dep = dep = (deployment or Deployment()).resolved(model)
        self.gpus = dep.replica_gpus  # GPUs of the replica
        if price_usd_per_hour is not None and not (0 < price_usd_per_hour < 1e6):
            raise RooflineError(f"price must be a positive USD per GPU-hour, got {price_usd_per_hour}")
        self.price = price_usd_per_hour if price_usd_per_hour is not None else hw.price_usd_per_hour
        # storage formats of the dense weights and of the routed experts ("bf16", "fp8", "mxfp4", ...)
        self.weight_format, self.expert_format = model.weight_dtypes(dep.weight_dtype)
        self.weight_bytes_per_param = dtypes.bytes_per_element(self.weight_format)
        self.expert_bytes_per_param = dtypes.bytes_per_element(self.expert_format)
        self.attention_groups = self.gpus // dep.tp  # data-parallel attention groups
        self.kv_shards = 1 if model.attention == "mla" else min(dep.tp, model.kv_heads)
        # the profile's matmul dtypes the dense weights, the experts and the attention compute in
        self.dense_dtype = hw.matmul_dtype(self.weight_format)
        self.expert_dtype = hw.matmul_dtype(self.expert_format)
        self.attention_dtype = hw.matmul_dtype("bf16")  # attention kernels compute in bf16 (fp8 KV is upcast)
        # the step's weight GEMMs (ModelSpec.matmuls) with the (N, K) one GPU runs: tensor parallelism cuts dense
        # weights tp ways, an expert gpus/ep ways (by columns or rows as the layer is split); each GEMM's measured
        # rate is looked up at its own shape
        self.gemms: list[tuple[Matmul, float, float]] = []
        for mm in model.matmuls():
            ways = dep.tp if mm.part == "dense" else self.gpus // dep.ep
            n_local, k_local = float(mm.n), float(mm.k)
            if mm.split == "col":
                n_local = max(1.0, n_local / ways)
            elif mm.split == "row":
                k_local = max(1.0, k_local / ways)
            self.gemms.append((mm, n_local, k_local))

    # ------------------------------------------------------------------ parts of a step
    def resident_bytes_per_gpu(self) -> float:
        """Weights held by one GPU: the non-expert part / tp, the experts / gpus."""
        model = self.model
        return ((model.params - model.routed_expert_params) * self.weight_bytes_per_param / self.dep.tp
                + model.routed_expert_params * self.expert_bytes_per_param / self.gpus)

    def weight_bytes_per_gpu(self, tokens: float) -> float:
        """Weights one GPU reads for ``tokens`` tokens: its dense part and its share of the experts they hit."""
        model = self.model
        experts = model.moe_layers * model.experts_touched(tokens) * model.expert_params * self.expert_bytes_per_param
        return model.dense_params * self.weight_bytes_per_param / self.dep.tp + experts / self.gpus

    def expert_rows(self, tokens: float) -> list[tuple[float, float]]:
        """(rows j, expected experts that multiply exactly j rows) for ``tokens`` tokens routed top-k of E.

        A token picks a given expert with probability k/E, independently of the other tokens (the uniform router
        ``ModelSpec.experts_touched`` assumes), so an expert's rows are Binomial(tokens, k/E); the weights of j >= 1
        sum to the experts hit and Σ j·w = tokens·k. The expert GEMMs are timed per row count, not at the mean: a
        GEMM's time is not linear in M (a CPU BLAS's GEMV at M = 1 streams its weight 2-4x faster than its GEMM at
        M = 2, docs/model.md), and at batch 16 of 128 experts a third of the hit experts get 2 or more rows while
        the mean is 1.5. When the row counts spread over more than EXPERT_ROW_TERMS values (large batches, where the
        measured curve is smooth at that scale), the mean rows per hit expert stands for all of them."""
        model = self.model
        hit = model.experts_touched(tokens)
        k, e = float(model.experts_per_token or 1), float(model.routed_experts or 1)
        if not hit:
            return []
        p = min(1.0, k / e)
        mean, sd = tokens * p, math.sqrt(tokens * p * (1.0 - p))
        if p >= 1.0 or tokens != int(tokens) or mean + 8.0 * sd > EXPERT_ROW_TERMS:
            return [(tokens * k / hit, hit)]
        out, pj = [], (1.0 - p) ** tokens  # P(0 rows)
        for j in range(1, int(tokens) + 1):
            pj *= (tokens - j + 1) / j * p / (1.0 - p)
            if pj * e > 1e-12:
                out.append((float(j), e * pj))
            elif j > mean:
                break
        return out

    def matmul_time_s(self, tokens: float, per_group_tokens: float) -> float:
        """Per-GPU compute time of the weight matmuls for ``tokens`` tokens in the replica: each GEMM's FLOPs
        (2·M·N·K) at the FLOP/s the measured curve gives its own (M, N, K) (``Hardware.matmul_rate``); the dense
        GEMMs at M = the group's tokens, the experts at each row count an expert gets (``expert_rows``)."""
        model = self.model
        t = 0.0
        rows = self.expert_rows(tokens) if model.is_moe else []
        for mm, n_local, k_local in self.gemms:
            if mm.part == "dense":
                flops = 2.0 * tokens * mm.n * mm.k * mm.count / self.gpus
                t += flops / self.hw.matmul_rate(self.dense_dtype, per_group_tokens, n_local, k_local)
            else:
                for j, experts in rows:
                    flops = 2.0 * j * experts * mm.n * mm.k * mm.count / self.gpus
                    t += flops / self.hw.matmul_rate(self.expert_dtype, j, n_local, k_local)
        return t

    def weight_time_s(self, tokens: float, per_group_tokens: float) -> float:
        """Per-GPU time streaming the weights ``tokens`` tokens touch, GEMM by GEMM: each weight's bytes at the rate
        its GEMM reaches at its own (M, N, K) (``Hardware.weight_stream_rate``: a small GEMM streams slower than a
        big one, and both slower than a read kernel) — dense weights at M = the group's tokens, the experts hit at
        each row count an expert gets (``expert_rows``); without a measured matmul curve every weight streams at
        the memory rate at the bytes in play."""
        model, hw = self.model, self.hw
        total = self.weight_bytes_per_gpu(tokens)
        rows = self.expert_rows(tokens) if model.is_moe else []
        t = 0.0
        for mm, n_local, k_local in self.gemms:
            if mm.part == "dense":
                nbytes = mm.n * mm.k * mm.count * self.weight_bytes_per_param / self.dep.tp
                t += nbytes / hw.weight_stream_rate(self.dense_dtype, per_group_tokens, n_local, k_local, total)
            else:
                for j, experts in rows:
                    nbytes = mm.n * mm.k * mm.count * experts * self.expert_bytes_per_param / self.gpus
                    t += nbytes / hw.weight_stream_rate(self.expert_dtype, j, n_local, k_local, total)
        return t

    def comm_times_s(self, tokens: float) -> tuple[float, float]:
        """(TP all-reduce, EP all-to-all) per-GPU time for ``tokens`` tokens in the replica."""
        model, dep = self.model, self.dep
        act = dtypes.bytes_per_element(dep.act_dtype)
        tp_t = ep_t = 0.0
        if dep.tp > 1:
            msg = tokens / self.attention_groups * model.hidden * act
            one = self.hw.all_reduce_time_s(msg, dep.tp)  # measured α + msg/β at this world size, if any
            if one is None:
                bw, _ = self.hw.link(dep.tp)
                one = collectives.time_s("all_reduce", msg, bw, dep.tp)
            tp_t = model.layers * 2 * one
        if dep.ep > 1 and model.is_moe:
            per_rank = tokens / self.gpus * (model.experts_per_token or 0) * model.hidden * act
            bw, _ = self.hw.a2a_busbw(per_rank, dep.ep)
            ep_t = model.moe_layers * 2 * collectives.time_s("all_to_all", per_rank, bw, dep.ep)
        return tp_t, ep_t

    def step(self, batch: int, context: int) -> StepEstimate:
        if batch < 1 or context < 0:
            raise RooflineError(f"batch must be >= 1 and context >= 0, got {batch}, {context}")
        model, dep, hw = self.model, self.dep, self.hw
        b = float(batch)
        per_group = b / self.attention_groups
        w_gpu = self.weight_bytes_per_gpu(b)
        kv_gpu = per_group * model.kv_bytes(context, dep.kv_dtype) / self.kv_shards
        attn_flops_gpu = b * model.attention_flops_per_token(context) / self.gpus
        mm_compute = self.matmul_time_s(b, per_group)
        attn_compute = attn_flops_gpu / hw.peak_flops(self.attention_dtype)
        compute = mm_compute + attn_compute
        weight_t = self.weight_time_s(b, per_group)
        kv_heads = 1.0 if model.attention == "mla" else model.kv_heads / self.kv_shards
        kv_t = kv_gpu / hw.kv_rate(per_group, context, model, dep.kv_dtype, kv_gpu, impl=dep.attention_impl,
                                   kv_heads=kv_heads) if kv_gpu else 0.0
        tp_t, ep_t = self.comm_times_s(b)
        mb = self.max_batch(context)
        kernels = self.kernels_per_step()
        return StepEstimate(
            batch=batch, context=context, gpus=self.gpus, compute_time_s=compute, memory_time_s=weight_t + kv_t,
            weight_time_s=weight_t, kv_time_s=kv_t, comm_time_s=tp_t + ep_t, tp_comm_time_s=tp_t, ep_comm_time_s=ep_t,
            weight_bytes=w_gpu * self.gpus, kv_bytes=kv_gpu * self.gpus,
            flops=2.0 * b * model.matmul_params_per_token + b * model.attention_flops_per_token(context),
            experts_touched=model.experts_touched(b), fits=None if mb is None else batch <= mb,
            price_usd_per_hour=self.price, overhead_time_s=self.overhead_time_s(), kernels_per_step=kernels,
            load_time_s=self.load_time_s(), matmul_compute_time_s=mm_compute, attention_compute_time_s=attn_compute,
            phases=bool(dep.phase_split))

    def overhead_time_s(self) -> float:
        """Fixed cost of a decode step: kernels one GPU launches per step × the profile's per-kernel launch cost
        (CUDA-graph replay cost with ``cuda_graphs``); 0 without one."""
        return self.kernels_per_step() * self.hw.launch_cost_s(self.dep.cuda_graphs)

    def kernels_per_step(self) -> int:
        """The deployment's counted kernels per step if it gives them (a profiler's count of a real step), else the
        model's census (ModelSpec.decode_kernels)."""
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
        return int(free // per_seq) * self.attention_groups

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
            return self.matmul_time_s(b, b / self.attention_groups) - w / self.hw.memory_rate(w)

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
        model = self.model
        t = float(prompt_tokens)
        attn = t * model.attention_flops_per_token(t / 2.0) / self.gpus
        compute = self.matmul_time_s(t, t / self.attention_groups) + attn / self.hw.peak_flops(self.attention_dtype)
        w = self.weight_bytes_per_gpu(t)
        memory = w / self.hw.memory_rate(w)
        tp_t, ep_t = self.comm_times_s(t)
        time_s = max(compute, memory) + tp_t + ep_t
        bound = ("communication" if tp_t + ep_t > max(compute, memory) else
                 "compute" if compute >= memory else "memory")
        return {"prompt_tokens": prompt_tokens, "time_s": time_s, "compute_time_s": compute, "memory_time_s": memory,
                "comm_time_s": tp_t + ep_t, "bound": bound, "tokens_per_s": t / time_s}
