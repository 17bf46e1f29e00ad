"""Prove the model: predicted vs measured decode steps of a real transformer on this device.

A roofline model is only worth its error. ``validate`` builds a transformer with a preset's real layer shapes
(hidden size, heads, KV heads, head dim, MLP or experts, vocabulary) but only ``layers`` of its layers, random
weights (normal, scaled by 1/sqrt(fan-in) so activations stay O(1)) and a real KV cache of ``context`` random
tokens per sequence, and times real decode steps. It predicts the same steps with the roofline model
(``bench/roofline.py``) from (a) the card's spec profile and (b) the measured profile of this device, for the
*reduced* model (the preset with ``layers`` layers: weights, KV bytes, FLOPs and kernel count all scale with
it), so both sides describe the same work.

One decode step = what a serving engine runs per generated token, for ``batch`` sequences each attending to
``context`` tokens (``context`` − 1 cached, random, and the new one):

    per layer: RMSNorm → fused QKV GEMM → rotary (q, k) → KV-cache write of the new token →
               decode attention over the ``context`` tokens → O GEMM + residual →
               RMSNorm → gated MLP (gate+up GEMM, SiLU·mul, down GEMM + residual), or for a MoE layer:
               router GEMM → top-k → softmax over the k → sort by expert → grouped gate+up GEMM →
               SiLU·mul → grouped down GEMM → weighted combine (+ shared experts) + residual
    then: final RMSNorm → LM head GEMM → argmax (greedy sampling).

The input embedding lookup (batch rows of the table) is replaced by random hidden states; the model does not
count the input table's bytes either (``ModelSpec.dense_params``). Norms carry no weights (< 0.01% of bytes).

Kernels: PyTorch ops for the GEMMs, norms, rotary and routing (cuBLAS / CPU BLAS); MoE experts with
``torch._grouped_mm`` (one grouped GEMM over the experts the batch hits, graph-safe), else one GEMM per hit
expert; decode attention with the project's split-KV Triton kernel (``kernels/decode_attention.py``) on GPU and
PyTorch SDPA on CPU (the Triton kernel runs there only in the interpreter, which times nothing). On GPU the
whole step is captured in a CUDA graph and replayed, as serving engines run decode (vLLM, SGLang, TensorRT-LLM);
the prediction then uses the graph launch cost (``Deployment.cuda_graphs``). Dtypes: bf16 weights and KV cache on
GPU (fp16 before sm_80), fp32 on CPU (its BLAS is fastest there, and the CPU gemm sweep measures fp32 shapes).

Method (../shared/design/MEASURING.md): every point is checked before it is timed, against a float64
re-computation of the same step from the same weights, cache and input (its own float64 K/V for the new token,
its own rotary; for MoE, the step's expert choice must be a top-k of the float64 router logits up to a near-tie
margin, and the float64 gates are recomputed): every layer's attention output, new K/V in the cache and expert
output, the final hidden state and a random sample of the logits (all logits must be written and finite), each
by ‖out − ref‖ / ‖ref‖ within ``TOLERANCE``. The buffers our own kernel writes are poisoned first; a graph
replay is poisoned and checked again. A point that fails is a failed row, never a time. Timing goes through
``bench.timing`` (CUDA events around each replay, median of ≥ 5). The L2 cache is flushed before each GPU
repetition; the weights a step streams are many times any cache anyway. On GPU the kernels a step launches are
counted (PyTorch profiler) and the prediction's overhead term uses that count instead of the model's census; the
same pass records their device time by kind (GEMMs, attention, other), a diagnostic beside the prediction's own
terms (``matmul_compute_s``, ``weight_s``, ``attention_compute_s``, ``kv_s``), never an input to it. The prediction
reads the decode curve of the attention kernel the step runs (``ATTENTION_IMPL``). On CPU, which shares cores and
memory with whatever else runs, a memory-read probe after every point flags the points measured under changed
conditions (``drift``).

Run safety (a lent GPU has minutes): memory is checked before anything is allocated (weights and each point's KV
cache against MEMORY_FRACTION of the card and against what is free now), points run coarse to fine, ``budget_s``
stops starting points that would not end in time, the result is handed to ``checkpoint`` after every point (the
CLI rewrites validation.json), and an interrupt (the CLI turns SIGTERM into one) ends the run with what it has.

Errors: relative error = (predicted − measured) / measured, per point; the summary gives the median of
|error| for each prediction, and with an overhead term in the model (issue 14) also the error without it.
"""
from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import dtypes
from . import models as M
from . import profile as P
from . import roofline as R
from .models import ModelSpec
from .target import Target

DEFAULT_MODELS = ("llama-3.1-8b", "qwen3-30b-a3b")  # a dense and a MoE model
DEFAULT_LAYERS = {"cuda": 4, "cpu": 1}
# GPU: the batches and contexts the decode benchmark's quick sweep measures (bench/benchmarks/decode.py), so the
# prediction reads measured attention points rather than interpolating between them; batch 1 and 8 are bound by
# the weights, 256 at 512 tokens sits at the GEMMs' ridge (compute bound at the GEMM rates an H100 measures at
# M = 256), long contexts are bound by the KV cache. 24 points (2 skipped for memory on an 80 GB card, 1 on a
# 141 GB one), about a minute on an H100 (see the estimate in validate()). CPU: small, ~1 min on 2 cores.
DEFAULT_BATCHES = {"cuda": (1, 8, 64, 256), "cpu": (1, 4, 16)}
DEFAULT_CONTEXTS = {"cuda": (512, 4096, 32768), "cpu": (512, 2048)}
MEMORY_FRACTION = 0.7  # weights + KV cache + check temporaries of a point must fit in this share of memory
REFERENCE_SCRATCH_BYTES = {"cuda": 6 << 30, "cpu": 2 << 30}  # float64 copies of one weight / one cache chunk
# GPU: besides the weights, cache and reference scratch, what a point allocates that point_bytes does not count:
# the L2 flush buffer (2× L2), the CUDA graph's private pool (the step's activations, MoE sort scratch), the
# split-KV workspace, cuBLAS workspaces and the caching allocator's rounding. Checked against what the device
# has free right now (torch.cuda.mem_get_info), so a card another process shares is never pushed into OOM.
GPU_MARGIN_BYTES = 2 << 30
# The decode-attention kernel each device's step runs, as the profile's decode curve names it (impl/layout): the
# prediction reads that kernel's measured bandwidth, not the best of all kernels measured.
ATTENTION_IMPL = {"cuda": "triton/contiguous", "cpu": "torch_sdpa/contiguous"}
BUDGET_RESERVE_S = 3.0  # of --budget, kept for writing the result
# The benchmarks the measured-profile prediction needs: memory curve, matmul efficiency by shape, launch
# overhead per kernel, decode-attention bandwidth by (batch, context).
NEEDED_BENCHMARKS = ("hbm", "gemm", "overhead", "decode")
RMS_EPS = 1e-5
ROPE_THETA = 500_000.0

# Allowed ‖out − ref‖ / ‖ref‖ of each checked output of a step (see check_step) against float64. Every GEMM output,
# norm and residual add is rounded to the step's dtype (bf16: 2^-9 relative per rounding), a few dozen roundings
# per layer in a chain of layers: measured on random weights (CPU, 2 layers) the worst bf16 output is 0.3-0.9% off,
# fp32 ~5e-7. The limits keep ≥ 3× margin over that, while a wrong kernel (a missed expert, a wrong cache slot, a
# bad rotary) moves its output by far more (a wrong cache slot: O(1) in the new K/V, ~5% in the attention).
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2}
# MoE routing: the step's chosen experts must each have a float64 router logit within this margin (× the
# logits' standard deviation) of the float64 k-th largest: rounding can swap near-tied experts, an indexing bug
# picks experts far from the top.
ROUTE_MARGIN = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 2e-2}


class ValidateError(ValueError):
    """Validation cannot run as asked (unknown model, unsupported architecture, bad grid); one line."""


# ------------------------------------------------------------------------------------------ the reduced model
def reduced_model(model: ModelSpec, layers: int) -> ModelSpec:
    """The preset with ``layers`` of its layers: every per-layer shape is kept (so weights, KV bytes, FLOPs and
    the kernel count of a step scale with the layers), the vocabulary and LM head too. A MoE model keeps its
    leading dense layers up to ``layers`` − 1, so at least one layer is MoE."""
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= model.layers:
        raise ValidateError(f"--layers must be in [1, {model.layers}] for {model.name}, got {layers}")
    dense_first = min(model.dense_layers_first, layers - 1) if model.is_moe else 0
    data = model.model_dump()
    data.update(name=f"{model.name} ({layers} of {model.layers} layers)", layers=layers,
                dense_layers_first=dense_first, total_params=None, active_params=None,
                sliding_window_layers=min(model.sliding_window_layers, layers))
    return ModelSpec.model_validate(data)


def supported(model: ModelSpec) -> str | None:
    """Why this transformer builder cannot run ``model`` (None when it can): it builds GQA attention with full
    context in every layer."""
    if model.attention != "gqa":
        return f"{model.name} uses {model.attention.upper()} attention; validate builds GQA transformers only"
    if model.sliding_window_layers:
        return f"{model.name} has sliding-window layers; validate builds full-attention layers only"
    hd = model.head_dim
    if hd < 16 or hd > 256 or hd & (hd - 1):
        return f"{model.name} has head_dim {hd}; the decode kernel needs a power of two in [16, 256]"
    return None


def step_dtype(target: Target) -> str:
    """The profile dtype name the step computes in: bf16 on GPU (fp16 before sm_80), fp32 on CPU."""
    if not target.is_cuda:
        return "float32"
    return "bfloat16" if (target.capability or (0, 0)) >= (8, 0) else "float16"


def deployment(dtype: str, cuda_graphs: bool, kernels: int | None = None,
               attention_impl: str | None = None) -> R.Deployment:
    """One GPU, weights and KV cache in the step's dtype (the model's own release format is not used: the step
    runs what it says); ``kernels``: the kernels the real step launches, when counted (else the model's census);
    ``attention_impl``: the decode-attention kernel the step runs (ATTENTION_IMPL)."""
    md = dtypes.short(dtype)
    return R.Deployment(weight_dtype=md, kv_dtype=md, act_dtype=md, cuda_graphs=cuda_graphs, kernels_per_step=kernels,
                        attention_impl=attention_impl)


# ----------------------------------------------------------------------------------------------- the table
@dataclass
class Row:
    """One (model, batch, context) point: the measured step and the two predictions of it."""

    model: str
    layers: int
    batch: int
    context: int
    status: str  # "ok", "failed" (check failed or the step raised), "skipped" (does not fit)
    reason: str = ""
    measured_s: float | None = None
    measured_p10_s: float | None = None
    measured_p90_s: float | None = None
    reps: int | None = None
    graphs: bool = False  # the step was replayed from a CUDA graph
    moe_path: str | None = None  # "grouped_mm" or "per-expert loop"
    check_rel_err: float | None = None
    check_tol: float | None = None
    # prediction from the measured profile (curves), with the overhead term when the profile has one
    predicted_s: float | None = None
    overhead_s: float | None = None
    predicted_no_overhead_s: float | None = None
    bound: str | None = None
    error: float | None = None
    error_no_overhead: float | None = None
    # the same prediction with the step split in phases (Deployment.phase_split: GEMMs, then attention, each
    # under its own roofline), beside the design's single roofline
    predicted_phases_s: float | None = None
    error_phases: float | None = None
    # prediction from the spec sheet (peaks)
    spec_predicted_s: float | None = None
    spec_bound: str | None = None
    spec_error: float | None = None
    # what the step moves and computes (the model's accounting, from the measured-profile prediction)
    weight_bytes: float | None = None
    kv_bytes: float | None = None
    flops: float | None = None
    kernels_per_step: int | None = None  # what the overhead term multiplies: counted on GPU, else the census
    kernels_census: int | None = None  # the model's census of kernels per step (ModelSpec.decode_kernels)
    # CPU: the memory bandwidth a probe sees after the point, relative to the one at the start of the validation
    # (other processes share the CPU and its memory: a step measured under other load is flagged, not corrected)
    drift: float | None = None
    # the model's parts of its prediction (measured profile): weight GEMMs' compute and weight streaming, attention
    # compute and KV read, so a point's error can be traced to the term that made it
    matmul_compute_s: float | None = None
    weight_s: float | None = None
    attention_compute_s: float | None = None
    kv_s: float | None = None
    # GPU, diagnostics (never used by the prediction): device time of one eager step's kernels by kind, from the
    # same profiler pass that counts them (no L2 flush there); measured − their sum is the time between kernels
    profiled_kernels_s: float | None = None
    profiled_matmul_s: float | None = None
    profiled_attention_s: float | None = None
    profiled_other_s: float | None = None
    wall_s: float | None = None  # wall time of the whole point: cache, warm-up (JIT, autotune), check, capture, timing

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rel_error(predicted: float | None, measured: float | None) -> float | None:
    """(predicted − measured) / measured: negative when the model is optimistic (predicts a faster step)."""
    if predicted is None or measured is None or not (measured > 0) or not math.isfinite(predicted):
        return None
    return (predicted - measured) / measured


def make_row(model: str, layers: int, batch: int, context: int, *, measured: Any = None,
             pred: R.StepEstimate | None = None, spec: R.StepEstimate | None = None, status: str = "ok",
             reason: str = "", **extra: Any) -> Row:
    """A table row from a measured timing (a ``Timing``, or None when the point failed or was skipped) and the
    two predictions (``StepEstimate`` of the reduced model; None when there is none, e.g. no spec for a CPU)."""
    row = Row(model=model, layers=layers, batch=batch, context=context, status=status, reason=reason, **extra)
    if measured is not None and status == "ok":
        row.measured_s, row.measured_p10_s, row.measured_p90_s = measured.median_s, measured.p10_s, measured.p90_s
        row.reps = measured.n
    if pred is not None:
        row.predicted_s = pred.step_time_s
        row.overhead_s = pred.overhead_time_s
        row.predicted_no_overhead_s = pred.step_time_s - pred.overhead_time_s
        row.bound = pred.bound
        row.weight_bytes, row.kv_bytes, row.flops = pred.weight_bytes, pred.kv_bytes, pred.flops
        row.kernels_per_step = pred.kernels_per_step
        row.matmul_compute_s, row.weight_s = pred.matmul_compute_time_s, pred.weight_time_s
        row.attention_compute_s, row.kv_s = pred.attention_compute_time_s, pred.kv_time_s
        row.error = rel_error(row.predicted_s, row.measured_s)
        row.error_no_overhead = rel_error(row.predicted_no_overhead_s, row.measured_s)
        if pred.phased_roof_s is not None:
            row.predicted_phases_s = pred.phased_roof_s + pred.comm_time_s + pred.overhead_time_s
            row.error_phases = rel_error(row.predicted_phases_s, row.measured_s)
    if spec is not None:
        row.spec_predicted_s, row.spec_bound = spec.step_time_s, spec.bound
        row.spec_error = rel_error(spec.step_time_s, row.measured_s)
    return row


def median_abs(values: Iterable[float | None]) -> float | None:
    xs = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return statistics.median(xs) if xs else None


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """Median |relative error| of each prediction over the measured points (overall and per model), the
    largest, how many points are optimistic (predicted faster than measured), and how many points are bound by
    memory / compute / overhead in the measured-profile model."""

    def block(rs: Sequence[Row]) -> dict[str, Any]:
        ok = [r for r in rs if r.status == "ok" and r.measured_s is not None]
        errs = [r.error for r in ok if r.error is not None]
        has_overhead = any((r.overhead_s or 0) > 0 for r in ok)
        out = {
            "points": len(rs), "measured": len(ok),
            "failed": sum(r.status == "failed" for r in rs), "skipped": sum(r.status == "skipped" for r in rs),
            "median_abs_error": median_abs(errs),
            "max_abs_error": max((abs(e) for e in errs), default=None),
            "optimistic": sum(e < 0 for e in errs),
            "median_abs_error_no_overhead": median_abs(r.error_no_overhead for r in ok) if has_overhead else None,
            "median_abs_error_phases": median_abs(r.error_phases for r in ok),
            "median_abs_spec_error": median_abs(r.spec_error for r in ok),
            "max_abs_spec_error": max((abs(r.spec_error) for r in ok if r.spec_error is not None), default=None),
            "bounds": {b: sum(r.bound == b for r in ok) for b in sorted({r.bound for r in ok if r.bound})},
        }
        if any(r.drift is not None for r in ok):  # CPU: points measured while the machine's load changed
            steady = [r for r in ok if r.drift is not None and abs(r.drift) <= DRIFT_LIMIT]
            out["unsteady"] = len(ok) - len(steady)
            out["median_abs_error_steady"] = median_abs(r.error for r in steady)
        return out

    models = list(dict.fromkeys(r.model for r in rows))
    return {**block(rows), "by_model": {m: block([r for r in rows if r.model == m]) for m in models}}


def predict(hw: R.Hardware, model: ModelSpec, dep: R.Deployment, batch: int, context: int) -> R.StepEstimate:
    """The roofline model's decode step for the reduced model: ``batch`` sequences each attending to ``context``
    tokens (the new one included, as the measured step does)."""
    return R.Roofline(hw, model, dep).step(int(batch), int(context))


# ---------------------------------------------------------------------------------------------- profiles
NO_CPU_SPEC = ("no spec sheet exists for a CPU (profiles/specs holds GPU data sheets): only the measured-profile "
               "prediction is shown")


def spec_profile_for(target: Target, ref: str | None) -> tuple[P.Profile | None, str]:
    """The spec profile to predict from (``ref``, else the card torch reports) and a note saying which."""
    if ref:
        try:
            spec = P.resolve(ref)
        except P.ProfileError as e:
            raise ValidateError(str(e)) from None
        if spec.kind != "spec":
            raise ValidateError(f"--spec {ref} is a {spec.kind} profile; give a spec sheet (profiles/specs)")
        return spec, f"spec sheet: {spec.card or spec.name} (--spec)"
    if not target.is_cuda:
        return None, NO_CPU_SPEC
    card = P.card_for_device(target.name)
    if card is None:
        return None, f"no spec sheet lists {target.name!r} (give one with --spec NAME)"
    return P.resolve(f"spec:{card}"), f"spec sheet: {card} (matched by device name)"


def load_measured(ref: str, target: Target) -> tuple[P.Profile, list[str]]:
    """A measured profile given by the user, with warnings when it was not measured on this device."""
    try:
        prof = P.resolve(ref)
    except P.ProfileError as e:
        raise ValidateError(str(e)) from None
    if prof.kind != "measured":
        raise ValidateError(f"--profile {ref} is a spec sheet; give a measured profile (rooflab run writes one), "
                            "or leave it out to measure this device first")
    notes = []
    if prof.device.backend != target.backend or prof.device.name != target.name:
        notes.append(f"the measured profile is of {prof.device.name} ({prof.device.backend}), the steps run on "
                     f"{target.name} ({target.backend}): errors compare two devices")
    return prof, notes


def measure_profile(target: Target, out_dir: Path, *, quick: bool = True, force: bool = False,
                    log: Callable[[str], None] | None = None, on_progress: Any = None,
                    budget_s: float | None = None) -> P.Profile:
    """Run the benchmarks the model needs on this device (``rooflab run --only hbm,gemm,overhead,decode``) into
    ``out_dir`` and return the measured profile (``budget_s``: the runner's --budget)."""
    from . import runner

    try:
        res = runner.run(list(NEEDED_BENCHMARKS), target, out_dir, quick=quick, force=force, log=log,
                         on_progress=on_progress, budget_s=budget_s)
    except runner.RunError as e:
        raise ValidateError(str(e)) from None
    if res.interrupted:
        raise ValidateError(f"interrupted while measuring the profile ({res.signal}); what was measured is in "
                            f"{out_dir}: give it back with --profile {out_dir / runner.PROFILE}")
    return res.profile


# ------------------------------------------------------------------------------------------ conditions (CPU)
DRIFT_LIMIT = 0.2  # |drift| of the probe beyond which a point's conditions are called changed
PROBE_BYTES = 1 << 30  # 1 GiB read by the probe: past the last-level cache of any CPU rooflab runs on


class ConditionsProbe:
    """A memory-read probe (``torch.sum`` over 1 GiB, the hbm benchmark's read kernel) timed at the start and after
    every point: a CPU shares its cores and memory with whatever else runs, and a step measured under other load
    says nothing about the model. Used to flag (never to correct) points."""

    def __init__(self, ctx):
        import torch

        from . import checks

        self.ctx = ctx
        n = PROBE_BYTES // 4
        self.buf = checks.random_tensor(n, torch.float32, ctx.target.torch_device,
                                        checks.generator(ctx.target.torch_device, 1234), scale=0.5).add_(1.0)
        self.start_Bps = self.measure()

    def measure(self) -> float:
        import torch

        t = self.ctx.time(lambda: torch.sum(self.buf, dtype=torch.float32), min_time_s=0.05, min_reps=3, warmup=1)
        return PROBE_BYTES / t.median_s

    def drift(self) -> float:
        return self.measure() / self.start_Bps - 1.0

    def compare_with(self, profile: P.Profile) -> str:
        reads = [(c.working_set_bytes, c.bandwidth_Bps) for c in profile.curves.hbm if c.op == "read"]
        then = R.interp_log(reads, PROBE_BYTES)
        now = f"memory read probe at the start: {self.start_Bps / 1e9:.1f} GB/s"
        if not then:
            return now
        return now + (f"; the profile's read curve says {then / 1e9:.1f} GB/s at 1 GiB"
                      + (" (the profile was measured under other conditions)"
                         if abs(self.start_Bps / then - 1) > DRIFT_LIMIT else ""))


# ------------------------------------------------------------------------------------------- the transformer
def _randn(shape, dtype, device, gen, std: float):
    """Random normal values with standard deviation ``std`` (never zeros or constants), drawn in place in the
    tensor's own dtype: no float32 copy of a many-GB weight."""
    import torch

    return torch.empty(shape, dtype=dtype, device=device).normal_(0.0, std, generator=gen)


def grouped_mm_available() -> bool:
    import torch

    return hasattr(torch, "_grouped_mm")


class Transformer:
    """The reduced model's weights and its decode step. Weight layouts follow nn.Linear (``[out, in]``) for the
    dense projections; experts are stacked ``w13 [E, hidden, 2·inter]`` (gate | up) and ``w2 [E, inter, hidden]``
    (the row-major ``[groups, K, N]`` operands a grouped GEMM takes)."""

    def __init__(self, spec: ModelSpec, dtype: str, device: str, gen, *, use_grouped_mm: bool | None = None):
        import torch

        self.spec, self.dtype_name, self.device = spec, dtype, device
        self.dtype = getattr(torch, dtype)
        s, dt = spec, self.dtype
        self.H, self.Hq, self.Hkv, self.D = s.hidden, s.heads, s.kv_heads, s.head_dim
        H, D = self.H, self.D
        qkv_out = (self.Hq + 2 * self.Hkv) * D
        self.grouped = grouped_mm_available() if use_grouped_mm is None else use_grouped_mm
        self.layers: list[dict[str, Any]] = []
        for i in range(s.layers):
            lw: dict[str, Any] = {
                "wqkv": _randn((qkv_out, H), dt, device, gen, H ** -0.5),
                "wo": _randn((H, self.Hq * D), dt, device, gen, (self.Hq * D) ** -0.5),
            }
            moe = s.is_moe and i >= s.dense_layers_first
            lw["moe"] = moe
            if moe:
                E, inter = s.routed_experts, s.moe_intermediate
                lw["w_router"] = _randn((E, H), dt, device, gen, H ** -0.5)
                lw["w13"] = _randn((E, H, 2 * inter), dt, device, gen, H ** -0.5)
                lw["w2"] = _randn((E, inter, H), dt, device, gen, inter ** -0.5)
                if s.shared_experts:
                    si = s.shared_experts * inter
                    lw["w_gate_up"] = _randn((2 * si, H), dt, device, gen, H ** -0.5)
                    lw["w_down"] = _randn((H, si), dt, device, gen, si ** -0.5)
            else:
                F_ = s.ffn_intermediate
                lw["w_gate_up"] = _randn((2 * F_, H), dt, device, gen, H ** -0.5)
                lw["w_down"] = _randn((H, F_), dt, device, gen, F_ ** -0.5)
            self.layers.append(lw)
        self.lm_head = _randn((s.vocab, H), dt, device, gen, H ** -0.5)
        self.routes: list[Any] = [None] * s.layers  # each MoE layer's expert ids of the last step [B, k]

    @property
    def weight_bytes(self) -> int:
        n = self.lm_head.numel() + sum(t.numel() for lw in self.layers for t in lw.values() if hasattr(t, "numel"))
        return n * self.lm_head.element_size()

    # ---------------------------------------------------------------------------------------------- state
    def new_state(self, batch: int, context: int, gen) -> dict[str, Any]:
        """A point's inputs: hidden states of the new tokens, a KV cache per layer of ``context`` tokens per
        sequence (the first ``context`` − 1 random, the last the new token's slot), the rotary phases of the new
        token's position ``context`` − 1, attention buffers."""
        import torch

        B, L = batch, context
        st: dict[str, Any] = {"batch": B, "context": context, "pos": context - 1}
        st["x"] = _randn((B, self.H), self.dtype, self.device, gen, 1.0)
        st["k"] = [_randn((B, L, self.Hkv, self.D), self.dtype, self.device, gen, 1.0) for _ in self.layers]
        st["v"] = [_randn((B, L, self.Hkv, self.D), self.dtype, self.device, gen, 1.0) for _ in self.layers]
        st["seq_lens"] = torch.full((B,), L, dtype=torch.int32, device=self.device)
        st["rope64"] = rope_phases(self.D, context - 1, self.device)  # complex128 [D/2]
        st["rope"] = st["rope64"].to(torch.complex64)
        st["attn_out"] = torch.empty(B, self.Hq, self.D, dtype=self.dtype, device=self.device)
        st["plan"] = None
        st["workspace"] = None
        return st

    def attention_setup(self, st: dict[str, Any], num_sms: int) -> None:
        """GPU: the split plan and the split-KV workspace, fixed before capture (no allocation in the step)."""
        from kernels import decode_attention as K

        B, L = st["batch"], st["context"]
        plan = K.plan_splits(B, self.Hkv, L, num_sms, on_gpu=True)
        st["plan"] = plan
        if plan.num_splits > 1:
            st["workspace"] = K.DecodeWorkspace.allocate(B, self.Hq, self.D, plan.num_splits, self.device)

    def poison_buffers(self, st: dict[str, Any]) -> None:
        """Poison what persists between steps and the step must write: the new token's slot of every KV cache, and
        what our Triton kernel writes (attention output, split partials)."""
        from . import checks

        for kc, vc in zip(st["k"], st["v"]):
            checks.poison(kc[:, st["pos"]])
            checks.poison(vc[:, st["pos"]])
        checks.poison(st["attn_out"])
        if st["workspace"] is not None:
            checks.poison(st["workspace"].partial_out)
            checks.poison(st["workspace"].partial_lse)

    # ----------------------------------------------------------------------------------------------- step
    def step(self, st: dict[str, Any], on_gpu: bool):
        """One decode step: logits [B, vocab] of the new tokens (the argmax is taken, as greedy sampling)."""
        import torch
        import torch.nn.functional as F

        x = st["x"]
        pos = st["pos"]
        st["parts"] = {}  # what the check compares layer by layer: attention and expert outputs (no copies)
        for i, lw in enumerate(self.layers):
            xn = F.rms_norm(x, (self.H,), eps=RMS_EPS)
            a = self._attention(F.linear(xn, lw["wqkv"]), st, i, pos, on_gpu)
            st["parts"][f"layer {i} attention"] = a
            st["parts"][f"layer {i} new K in the cache"] = st["k"][i][:, pos]
            st["parts"][f"layer {i} new V in the cache"] = st["v"][i][:, pos]
            x = torch.addmm(x, a, lw["wo"].t())  # O projection + residual in one GEMM
            xn = F.rms_norm(x, (self.H,), eps=RMS_EPS)
            x = self._moe(xn, x, lw, i, st) if lw["moe"] else self._mlp(xn, x, lw)
        logits = F.linear(F.rms_norm(x, (self.H,), eps=RMS_EPS), self.lm_head)
        st["tokens"] = torch.argmax(logits, dim=-1)
        st["hidden"], st["logits"] = x, logits
        return logits

    def _attention(self, qkv, st: dict[str, Any], i: int, pos: int, on_gpu: bool):
        import torch

        B, Hq, Hkv, D = st["batch"], self.Hq, self.Hkv, self.D
        qk = qkv[:, : (Hq + Hkv) * D].float().reshape(B, Hq + Hkv, D // 2, 2)
        qk = torch.view_as_real(torch.view_as_complex(qk) * st["rope"]).reshape(B, Hq + Hkv, D).to(self.dtype)
        q, k_new = qk[:, :Hq], qk[:, Hq:]
        v_new = qkv[:, (Hq + Hkv) * D:].view(B, Hkv, D)
        kc, vc = st["k"][i], st["v"][i]
        kc[:, pos].copy_(k_new)  # the KV-cache write: the new token's slot of every sequence
        vc[:, pos].copy_(v_new)
        from kernels import decode_attention as K

        if on_gpu:
            plan = st["plan"]
            o = K.decode_attention(q, kc, vc, st["seq_lens"], out=st["attn_out"], workspace=st["workspace"],
                                   max_seq_len=pos + 1, num_splits=plan.num_splits)
        else:
            k, v, gqa = K.sdpa_inputs(kc, vc, Hq, context=pos + 1)
            o = K.sdpa_decode(q, k, v, enable_gqa=gqa)
        return o.reshape(B, Hq * D)

    def _mlp(self, xn, x, lw: dict[str, Any]):
        import torch
        import torch.nn.functional as F

        gu = F.linear(xn, lw["w_gate_up"])
        f = gu.shape[-1] // 2
        return torch.addmm(x, F.silu(gu[:, :f]) * gu[:, f:], lw["w_down"].t())

    def _moe(self, xn, x, lw: dict[str, Any], i: int, st: dict[str, Any]):
        import torch
        import torch.nn.functional as F

        s = self.spec
        E, k = s.routed_experts, s.experts_per_token
        B = xn.shape[0]
        vals, ids = torch.topk(F.linear(xn, lw["w_router"]).float(), k, dim=-1)
        gates = torch.softmax(vals, dim=-1)
        self.routes[i] = ids
        flat = ids.reshape(-1)
        order = torch.sort(flat, stable=True).indices  # slots in expert order
        rows = xn.index_select(0, order // k)
        inter = s.moe_intermediate
        if self.grouped:
            counts = torch.zeros(E, dtype=torch.int32, device=xn.device).scatter_add_(
                0, flat, torch.ones_like(flat, dtype=torch.int32))  # rows per expert, on the device (graph-safe)
            offs = torch.cumsum(counts, 0, dtype=torch.int32)
            h = torch._grouped_mm(rows, lw["w13"], offs=offs)
            y = torch._grouped_mm(F.silu(h[:, :inter]) * h[:, inter:], lw["w2"], offs=offs)
        else:  # one GEMM per expert the batch hits (needs the counts on the host: eager only)
            counts = torch.bincount(flat, minlength=E).tolist()
            parts, lo = [], 0
            for e, c in enumerate(counts):
                if c:
                    h = rows[lo:lo + c] @ lw["w13"][e]
                    parts.append((F.silu(h[:, :inter]) * h[:, inter:]) @ lw["w2"][e])
                    lo += c
            y = torch.cat(parts)
        y = torch.empty_like(y).index_copy_(0, order, y).view(B, k, self.H)  # back to (token, slot) order
        out = torch.bmm(gates.to(y.dtype).unsqueeze(1), y).squeeze(1)
        st["parts"][f"layer {i} experts"] = out
        if "w_gate_up" in lw:  # shared experts: a dense gated MLP every token passes through
            return self._mlp(xn, x + out, lw)
        return x + out


def rope_phases(head_dim: int, position: int, device: str):
    """Rotary phases e^{i·position·θ_j}, θ_j = ROPE_THETA^(−2j/head_dim), in complex128 (Llama-3's base)."""
    import torch

    j = torch.arange(head_dim // 2, dtype=torch.float64, device=device)
    ang = position * ROPE_THETA ** (-2.0 * j / head_dim)
    return torch.polar(torch.ones_like(ang), ang)


# ------------------------------------------------------------------------------------------ the reference
def _rms64(x):
    return x / (x.pow(2).mean(dim=-1, keepdim=True) + RMS_EPS).sqrt()


def _lin64(x64, w, chunk_rows: int = 1 << 14):
    """x64 @ wᵀ in float64, converting ``w`` [out, in] in row chunks (a float64 copy of a whole LM head is GBs)."""
    import torch

    outs = [x64 @ w[lo:lo + chunk_rows].double().t() for lo in range(0, w.shape[0], chunk_rows)]
    return torch.cat(outs, dim=-1)


@dataclass
class Reference:
    hidden: Any  # float64 [B, hidden]: the residual stream after the last layer
    parts: dict[str, Any]  # float64 per-layer attention (and expert) outputs, keyed as the step's st["parts"]
    vocab_rows: Any  # int64 [S]: the vocabulary rows whose logits are checked
    logits: Any  # float64 [B, S]
    problem: str = ""  # why the step's MoE routing is not a float64 top-k ("" when it is)


def reference(net: Transformer, st: dict[str, Any], routes: list[Any], vocab_rows,
              scratch_bytes: int = 1 << 30) -> Reference:
    """The same decode step in float64 from the same weights, cache (positions < context − 1) and input: its own
    K/V for the new token and its own rotary. MoE: the step's expert ids ``routes`` are accepted only if each
    chosen expert's float64 router logit is within ROUTE_MARGIN of the float64 k-th largest (near-ties may swap);
    the gates are recomputed in float64. The LM head is recomputed for ``vocab_rows`` only (the whole head in
    float64 costs seconds on a CPU; every logit is still checked to be written and finite)."""
    import torch

    s, B, pos = net.spec, st["batch"], st["pos"]
    Hq, Hkv, D = net.Hq, net.Hkv, net.D
    G = Hq // Hkv
    margin = ROUTE_MARGIN[net.dtype_name]
    x = st["x"].double()
    problem = ""
    parts: dict[str, Any] = {}
    for i, lw in enumerate(net.layers):
        qkv = _lin64(_rms64(x), lw["wqkv"])
        qk = torch.view_as_complex(qkv[:, : (Hq + Hkv) * D].reshape(B, Hq + Hkv, D // 2, 2).contiguous())
        qk = torch.view_as_real(qk * st["rope64"]).reshape(B, Hq + Hkv, D)
        q, k_new = qk[:, :Hq], qk[:, Hq:]
        v_new = qkv[:, (Hq + Hkv) * D:].reshape(B, Hkv, D)
        attn = torch.empty(B, Hq, D, dtype=torch.float64, device=x.device)
        per_seq = max(1, scratch_bytes // max(1, (pos + 1) * Hkv * D * 8 * 4))
        for b0 in range(0, B, per_seq):
            b1 = min(B, b0 + per_seq)
            kk = torch.cat([st["k"][i][b0:b1, :pos].double(), k_new[b0:b1, None]], dim=1)  # [b, L, Hkv, D]
            vv = torch.cat([st["v"][i][b0:b1, :pos].double(), v_new[b0:b1, None]], dim=1)
            qq = q[b0:b1].reshape(b1 - b0, Hkv, G, D)
            sc = torch.einsum("bhgd,blhd->bhgl", qq, kk) / math.sqrt(D)
            p = torch.softmax(sc, dim=-1)
            attn[b0:b1] = torch.einsum("bhgl,blhd->bhgd", p, vv).reshape(b1 - b0, Hq, D)
            del kk, vv, sc, p
        parts[f"layer {i} attention"] = attn.reshape(B, Hq * D)
        parts[f"layer {i} new K in the cache"], parts[f"layer {i} new V in the cache"] = k_new, v_new
        x = x + _lin64(attn.reshape(B, Hq * D), lw["wo"])
        xn = _rms64(x)
        if lw["moe"]:
            k = s.experts_per_token
            logits = _lin64(xn, lw["w_router"])
            ids = routes[i].long()
            kth = torch.topk(logits, k, dim=-1).values[:, -1:]
            chosen = logits.gather(1, ids)
            tol = margin * float(logits.std())
            distinct = bool((torch.sort(ids, dim=-1).values.diff(dim=-1) > 0).all()) if k > 1 else True
            if not distinct or bool((chosen < kth - tol).any()):
                problem = problem or (f"layer {i}: the step's experts are not a top-{k} of the float64 router "
                                      "logits")
            gates = torch.softmax(chosen, dim=-1)
            out = torch.zeros_like(x)
            for e in torch.unique(ids).tolist():
                tok, slot = (ids == e).nonzero(as_tuple=True)
                w13 = lw["w13"][e].double()
                h = xn[tok] @ w13
                inter = h.shape[-1] // 2
                y = (torch.nn.functional.silu(h[:, :inter]) * h[:, inter:]) @ lw["w2"][e].double()
                out.index_add_(0, tok, gates[tok, slot].unsqueeze(-1) * y)
            parts[f"layer {i} experts"] = out
            x = x + out
            if "w_gate_up" in lw:
                x = x + _mlp64(xn, lw)
        else:
            x = x + _mlp64(xn, lw)
    logits = _rms64(x) @ net.lm_head[vocab_rows].double().t()
    return Reference(hidden=x, parts=parts, vocab_rows=vocab_rows, logits=logits, problem=problem)


def _mlp64(xn, lw):
    import torch.nn.functional as F

    gu = _lin64(xn, lw["w_gate_up"])
    f = gu.shape[-1] // 2
    return _lin64(F.silu(gu[:, :f]) * gu[:, f:], lw["w_down"])


# ------------------------------------------------------------------------------------------ one point
@dataclass
class PointResult:
    status: str
    reason: str = ""
    timing: Any = None  # bench.timing.Timing
    graphs: bool = False
    check_rel_err: float | None = None
    check_tol: float | None = None
    kernels: int | None = None  # GPU: kernels (and copies) one step launches, counted by the profiler
    kernel_times: dict[str, float] | None = None  # GPU: device time of those kernels by kind (KernelProfile)
    notes: list[str] = field(default_factory=list)


def point_bytes(spec: ModelSpec, batch: int, context: int, dtype: str) -> int:
    """Device bytes a point allocates beside the weights: the KV cache of every layer (``context`` tokens per
    sequence, the new one included) and the logits (float64 in the reference)."""
    esize = int(dtypes.bytes_per_element(dtype))
    kv = 2 * spec.layers * batch * context * spec.kv_heads * spec.head_dim * esize
    return kv + batch * spec.vocab * (esize + 8)


REFERENCE_VOCAB_ROWS = 4096  # logits checked per point (random rows of the LM head); the hidden state in full


def check_step(st: dict[str, Any], ref: Reference, tol: float, what: str = ""):
    """One Check of a step against float64: every layer's attention output (and MoE expert output), the final
    hidden state and the sampled logits, each by ‖out − ref‖ / ‖ref‖ ≤ ``tol``, every logit written and finite.
    Layer by layer, because at long contexts attention over random keys adds little to the residual stream: a
    bug in it (a wrong cache slot) would hide in the final state but not in the attention output."""
    import torch

    from . import checks
    from .measurement import Check

    logits = st["logits"]
    ref_name = "float64 re-computation of the step" + (f" ({what})" if what else "")
    bad = int((~torch.isfinite(logits)).sum())
    if bad:
        return Check(passed=False, tol=tol, reference=ref_name,
                     detail=f"{bad} of {logits.numel()} logits not finite (unwritten or overflow)")
    pairs = [(name, st["parts"].get(name), r) for name, r in ref.parts.items()]
    pairs += [("hidden state", st["hidden"], ref.hidden),
              ("logits", logits.index_select(1, ref.vocab_rows), ref.logits)]
    worst, failed = 0.0, []
    for name, out, r in pairs:
        if out is None:
            failed.append(f"{name}: missing from the step")
            continue
        c = checks.compare(out, r, tol, ref_name)
        worst = max(worst, c.rel_err if c.rel_err is not None else math.inf)
        if not c.passed:
            failed.append(f"{name}: {c.detail}")
    return Check(passed=not failed, rel_err=worst, tol=tol, reference=ref_name + " (per layer, hidden, logits)",
                 detail="; ".join(failed[:3]))


def measure_point(ctx, net: Transformer, batch: int, context: int, seed: int) -> PointResult:
    """Build the point's cache, check the step against float64, then time it (a CUDA graph replay on GPU)."""
    import torch

    from . import checks
    from .timing import L2Flusher

    t = ctx.target
    on_gpu = t.is_cuda
    gen = checks.generator(t.torch_device, seed)
    st = net.new_state(batch, context, gen)
    if on_gpu:
        net.attention_setup(st, t.compute_units)
    tol = TOLERANCE[net.dtype_name]
    net.step(st, on_gpu)  # warm-up: JIT, autotune, allocator, BLAS handles
    net.poison_buffers(st)  # the buffers our own kernel writes: an element it skips cannot pass
    net.step(st, on_gpu)
    rows = torch.randperm(net.spec.vocab, generator=gen, device=t.torch_device)[:REFERENCE_VOCAB_ROWS]
    ref = reference(net, st, list(net.routes), rows, REFERENCE_SCRATCH_BYTES[t.backend])
    chk = check_step(st, ref, tol)
    if ref.problem:
        return PointResult("failed", reason=ref.problem, check_rel_err=chk.rel_err, check_tol=tol)
    if not chk.passed:
        return PointResult("failed", reason=f"check failed: {chk.detail}", check_rel_err=chk.rel_err, check_tol=tol)
    res = PointResult("ok", check_rel_err=chk.rel_err, check_tol=tol)
    fn: Callable[[], object] = lambda: net.step(st, on_gpu)  # noqa: E731
    if on_gpu:
        kp = profile_kernels(t, fn)
        if kp is None:
            res.notes.append("the profiler could not count the step's kernels: the overhead term uses the census")
        else:
            res.kernels, res.kernel_times = kp.count, kp.times()
        graph = _capture(net, st, ref, tol)
        if isinstance(graph, str):
            res.notes.append(f"CUDA graph not used ({graph}): eager steps timed")
        else:
            fn, res.graphs = graph.replay, True
    del ref
    flush = L2Flusher(t) if on_gpu else None
    res.timing = ctx.time(fn, before_each=flush, warmup=1)  # warmed up above (check, capture)
    return res


@dataclass
class KernelProfile:
    """What one call launched on the device, from the PyTorch profiler (CUPTI): how many activities (kernels,
    copies, memsets; a captured graph replays the same ones) and their device time by kind."""

    count: int
    busy_s: float
    matmul_s: float
    attention_s: float

    def times(self) -> dict[str, float]:
        return {"kernels": self.busy_s, "matmul": self.matmul_s, "attention": self.attention_s,
                "other": max(0.0, self.busy_s - self.matmul_s - self.attention_s)}


# Kernel names by kind: cuBLAS / cuBLASLt (gemv*, *gemm*, sm90_xmma*, nvjet*, splitKreduce), CUTLASS (grouped GEMM),
# and this project's decode-attention kernels (kernels/decode_attention.py). Everything else (norms, rotary,
# cache writes, routing, sampling, copies) is "other".
_MATMUL_NAMES = ("gemm", "gemv", "xmma", "nvjet", "cutlass", "splitk", "matmul", "cublas")
_ATTENTION_NAMES = ("_decode_stage",)


def profile_kernels(target: Target, fn: Callable[[], object]) -> KernelProfile | None:
    """GPU: one call of ``fn`` under the PyTorch profiler. None when the profiler is unavailable (or on a CPU)."""
    import os

    import torch

    if not target.is_cuda:
        return None
    # Kineto tears CUPTI down after each session and sets it up again for the next; with CUDA graphs captured in
    # between, that re-initialisation has crashed processes (torch/profiler/profiler.py keeps CUPTI up when it
    # profiles graphs for the same reason). One set-up for the whole validation: also cheaper per point.
    os.environ.setdefault("TEARDOWN_CUPTI", "0")
    try:
        from torch.profiler import ProfilerActivity, profile

        target.synchronize()
        with warnings.catch_warnings():  # the profiler's notices are not the user's business here
            warnings.simplefilter("ignore")
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                fn()
                target.synchronize()
        events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    except Exception:  # no CUPTI, a profiler already running, ...: the census stands in
        return None
    if not events:
        return None
    busy = mm = attn = 0.0
    for e in events:
        try:
            dt = max(0.0, float(e.time_range.elapsed_us())) * 1e-6
        except Exception:  # an event without a time range: counted, not timed
            dt = 0.0
        name = str(getattr(e, "name", "")).lower()
        busy += dt
        if any(k in name for k in _ATTENTION_NAMES):
            attn += dt
        elif any(k in name for k in _MATMUL_NAMES):
            mm += dt
    return KernelProfile(count=len(events), busy_s=busy, matmul_s=mm, attention_s=attn)


def count_kernels(target: Target, fn: Callable[[], object]) -> int | None:
    """GPU: device activities (kernels, copies, memsets) one call of ``fn`` launches; None without a profiler."""
    kp = profile_kernels(target, fn)
    return kp.count if kp is not None else None


def _capture(net: Transformer, st: dict[str, Any], ref: Reference, tol: float):
    """Capture the step in a CUDA graph (warm-up on a side stream first, as torch requires) and check one replay
    against the reference. Returns the graph, or why not."""
    import torch

    from . import checks

    if not net.grouped and any(lw["moe"] for lw in net.layers):
        return "the per-expert MoE loop reads the expert counts on the host"
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            net.step(st, True)
            net.step(st, True)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            net.step(st, True)
        # the graph's outputs are the tensors allocated during capture: st now holds them
        net.poison_buffers(st)
        for tensor in [st["logits"], st["hidden"], *st["parts"].values()]:
            checks.poison(tensor)
        graph.replay()
        chk = check_step(st, ref, tol, "graph replay")
        if not chk.passed:
            return f"the replay failed its check: {chk.detail}"
    except Exception as e:  # a capture problem must not lose the eager number
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return graph


# ----------------------------------------------------------------------------------------------- the run
@dataclass
class Result:
    device: str
    mode: str
    dtype: str
    profile: str  # where the measured profile came from
    spec: str | None
    rows: list[Row]
    notes: list[str]
    prediction_notes: list[str]
    summary: dict[str, Any] = field(default_factory=dict)
    complete: bool = True  # False in the checkpoints written while it runs, and when it was stopped
    stopped: str | None = None  # why it stopped early ("interrupted (SIGTERM)", ...), None when it ran through
    elapsed_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = [r.as_dict() for r in self.rows]
        return d


def parse_models(text: str | None) -> list[ModelSpec]:
    names = [s.strip() for s in (text or ",".join(DEFAULT_MODELS)).split(",") if s.strip()]
    if not names:
        raise ValidateError("--model needs at least one model")
    out = []
    for n in names:
        try:
            m = M.resolve(n)
        except M.ModelError as e:
            raise ValidateError(str(e)) from None
        why = supported(m)
        if why:
            raise ValidateError(why)
        out.append(m)
    return out


def point_order(batches: Sequence[int], contexts: Sequence[int]) -> list[tuple[int, int]]:
    """The grid, coarse to fine: the corners first (the largest point, where memory runs out, then the extremes of
    each axis), then the midpoints; so a run stopped early (budget, signal) still spans the grid. The table is
    printed in grid order whatever the order of measurement."""

    def ranks(xs: Sequence[int]) -> dict[int, int]:
        from .runner import bisection_order

        xs = sorted(set(xs))
        return {xs[i]: r for r, i in enumerate(bisection_order(len(xs)))}

    rb, rc = ranks(batches), ranks(contexts)
    grid = [(b, c) for b in sorted(set(batches)) for c in sorted(set(contexts))]
    return sorted(grid, key=lambda bc: (max(rb[bc[0]], rc[bc[1]]), rb[bc[0]] + rc[bc[1]], rb[bc[0]]))


def weights_bytes(model: ModelSpec, dtype: str) -> int:
    """Device bytes of the reduced model's weights as Transformer builds them (every weight but the input table)."""
    return int(model.params - model.input_embedding_params) * int(dtypes.bytes_per_element(dtype))


def device_room_bytes(target: Target) -> float:
    """GPU: bytes this process can still allocate — free on the device plus what the caching allocator holds
    unused; CPU: unbounded (the static MEMORY_FRACTION budget applies)."""
    if not target.is_cuda:
        return math.inf
    import torch

    try:
        free, _ = torch.cuda.mem_get_info()
        return float(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())
    except Exception:  # no way to ask: the static budget stands
        return math.inf


def validate(target: Target, models: Sequence[ModelSpec], *, measured: P.Profile, profile_label: str,
             spec: P.Profile | None = None, spec_note: str = "", layers: int | None = None,
             batches: Sequence[int] | None = None, contexts: Sequence[int] | None = None,
             min_time_s: float | None = None, seed: int = 0, notes: Sequence[str] = (),
             on_point: Callable[[Row], None] | None = None, budget_s: float | None = None,
             checkpoint: Callable[[Result], None] | None = None,
             clock: Callable[[], float] | None = None) -> Result:
    """Measure and predict every (model, batch, context) point; see the module docstring.

    Points run coarse to fine (``point_order``). Before anything is allocated, a model whose weights, or a point
    whose KV cache, would not fit in MEMORY_FRACTION of the device's memory (GPU: nor in what is free right now,
    less the reference scratch and GPU_MARGIN_BYTES) is recorded as skipped with its prediction. ``budget_s``: a
    point that would end past the budget is not started (each model gets an even share of what is left; a point is
    guessed to take the median of that model's points so far) and is recorded as skipped "budget". ``checkpoint``
    gets the result so far after every point (``complete`` False), for a caller that writes it as it goes. A
    KeyboardInterrupt (Ctrl-C, or SIGTERM made one by the CLI) ends the run: the points not measured are recorded
    as skipped and the result says why (``stopped``).

    Time on an H100 with --profile given (default grid, 24 points, 2 skipped for memory; the decode kernel
    compiled already by the run's decode benchmark, in Triton's disk cache): per point ~0.3–1 s for the cache and
    the float64 checks (more at 32k tokens), ~0.2 s of decode-kernel autotuning at each new split plan (9 plans
    per model), ~0.1–0.3 s of profiler pass and capture, ≥ 0.05 s of timing: 30–60 s, plus ~10 s to start and a
    few seconds for CUPTI's first set-up. ``wall_s`` of each row records what it really took.
    """
    import gc
    import time

    import torch

    from .registry import RunContext

    clock = clock or time.monotonic
    t_start = clock()
    backend = target.backend
    dtype = step_dtype(target)
    batches = list(batches or DEFAULT_BATCHES[backend])
    contexts = list(contexts or DEFAULT_CONTEXTS[backend])
    n_layers = layers if layers is not None else DEFAULT_LAYERS[backend]
    ctx = RunContext(target=target, quick=True, min_time_s=min_time_s, seed=seed)
    merged, _ = P.with_spec(measured)
    try:
        hw = R.Hardware(merged, use_curves=True, label=profile_label)
        hw_spec = R.Hardware(spec, use_curves=False) if spec is not None else None
    except R.RooflineError as e:
        raise ValidateError(str(e)) from None
    if spec is None and not spec_note:
        spec_note = NO_CPU_SPEC if not target.is_cuda else "no spec sheet given: only the measured-profile prediction"
    all_notes = list(notes) + ([spec_note] if spec_note else [])
    probe = ConditionsProbe(ctx) if not target.is_cuda else None
    if probe is not None:
        all_notes.append(probe.compare_with(merged))
    rows: list[Row] = []
    order = point_order(batches, contexts)
    budget = MEMORY_FRACTION * target.memory_bytes if target.memory_bytes else math.inf
    scratch = REFERENCE_SCRATCH_BYTES[backend]
    margin = GPU_MARGIN_BYTES if target.is_cuda else 0
    deadline = t_start + budget_s - BUDGET_RESERVE_S if budget_s is not None else None
    reduced = [reduced_model(base, min(n_layers, base.layers)) for base in models]
    done: set[tuple[str, int, int]] = set()
    stopped: str | None = None

    def result(complete: bool) -> Result:
        grid = {(m.name, b, c): i for i, (m, (b, c)) in
                enumerate((m, bc) for m in reduced for bc in sorted(order))}
        ordered = sorted(rows, key=lambda r: grid.get((r.model, r.batch, r.context), len(grid)))
        pred_notes = list(hw.notes) + ([f"spec: {n}" for n in hw_spec.notes] if hw_spec is not None else [])
        res = Result(device=target.name, mode=backend, dtype=dtype, profile=profile_label,
                     spec=(spec.card or spec.name) if spec is not None else None, rows=ordered,
                     notes=list(dict.fromkeys(all_notes)), prediction_notes=pred_notes, complete=complete,
                     stopped=stopped, elapsed_s=clock() - t_start)
        res.summary = summarize(ordered)
        return res

    def add(row: Row, counts: bool = True) -> None:
        rows.append(row)
        done.add((row.model, row.batch, row.context))
        if on_point is not None and counts:
            on_point(row)
        if checkpoint is not None:
            checkpoint(result(False))

    def skip_rest(model: ModelSpec, why: str, status: str = "skipped") -> None:
        for b, c in order:
            if (model.name, b, c) not in done:
                pred, spec_pred = _predictions(hw, hw_spec, model, dtype, target.is_cuda, target.is_cuda, None, b, c)
                add(make_row(model.name, model.layers, b, c, pred=pred, spec=spec_pred, status=status, reason=why,
                             kernels_census=model.decode_kernels()), counts=False)

    try:
        for i, model in enumerate(reduced):
            wb = weights_bytes(model, dtype)
            room = min(budget, device_room_bytes(target) - margin)
            if wb + scratch > room:
                skip_rest(model, f"weights do not fit: {wb / 1e9:.1f} GB + {scratch / 1e9:.1f} GB of check scratch, "
                                 f"over the {room / 1e9:.1f} GB usable")
                continue
            model_deadline = None
            if deadline is not None:
                now = clock()
                model_deadline = now + (deadline - now) / (len(reduced) - i)
                if now >= model_deadline:
                    skip_rest(model, "budget: not measured within --budget")
                    continue
            net, build_error = None, None
            try:
                gen = torch.Generator(device=target.torch_device)
                gen.manual_seed(ctx.seed_for({"model": models[i].name, "layers": model.layers}))
                net = Transformer(model, dtype, target.torch_device, gen)
            except (RuntimeError, MemoryError) as e:  # could not be built after all (e.g. memory taken meanwhile)
                oom = isinstance(e, MemoryError) or "out of memory" in str(e).lower()
                build_error = ("skipped" if oom else "failed",
                               ("weights do not fit: " if oom else f"building the model failed: {type(e).__name__}: ")
                               + (str(e).splitlines()[0][:160] if str(e) else ""))
            if build_error is not None:  # outside the except block: its traceback no longer holds the weights
                gc.collect()
                if target.is_cuda:
                    torch.cuda.empty_cache()
                skip_rest(model, build_error[1], build_error[0])
                continue
            if model.is_moe:
                all_notes.append(f"{model.name}: experts " + ("through torch._grouped_mm (one grouped GEMM per "
                                                              "projection)" if net.grouped else
                                                              "one GEMM per hit expert (no torch._grouped_mm)"))
            static_free = budget - net.weight_bytes - scratch
            took: list[float] = []
            for b, c in order:
                if model_deadline is not None:
                    guess = statistics.median(took) if took else 0.0
                    if clock() + guess > model_deadline:
                        skip_rest(model, "budget: not measured within --budget")
                        break
                t0 = clock()
                free = min(static_free, device_room_bytes(target) - scratch - margin)
                row = _one_point(ctx, net, model, hw, hw_spec, dtype, b, c, free, all_notes)
                row.wall_s = clock() - t0
                if row.status == "ok":
                    took.append(row.wall_s)
                if probe is not None and row.status == "ok":
                    row.drift = probe.drift()
                    if abs(row.drift) > DRIFT_LIMIT:
                        all_notes.append(f"memory bandwidth moved {row.drift:+.0%} while measuring some points "
                                         "(other load on this machine?): their errors say more about the load than "
                                         "the model")
                add(row)
                gc.collect()
            del net
            gc.collect()
            if target.is_cuda:
                torch.cuda.empty_cache()
    except KeyboardInterrupt as e:
        stopped = str(e) or "interrupted"
        for model in reduced:
            skip_rest(model, f"{stopped}: not measured")
    return result(complete=stopped is None)


def _predictions(hw: R.Hardware, hw_spec: R.Hardware | None, model: ModelSpec, dtype: str, on_gpu: bool,
                 graphs: bool, kernels: int | None, batch: int, context: int):
    """The measured-profile and spec-sheet predictions of one point (the spec one None without a sheet)."""
    try:
        dep = deployment(dtype, graphs, kernels, attention_impl=ATTENTION_IMPL["cuda" if on_gpu else "cpu"])
        return (predict(hw, model, dep, batch, context),
                predict(hw_spec, model, dep, batch, context) if hw_spec is not None else None)
    except R.RooflineError as e:
        raise ValidateError(str(e)) from None


def _one_point(ctx, net: Transformer, model: ModelSpec, hw: R.Hardware, hw_spec: R.Hardware | None, dtype: str,
               batch: int, context: int, free_bytes: float, notes: list[str]) -> Row:
    import torch

    on_gpu = ctx.target.is_cuda

    def predictions(graphs: bool, kernels: int | None):
        return _predictions(hw, hw_spec, model, dtype, on_gpu, graphs, kernels, batch, context)

    common = dict(kernels_census=model.decode_kernels())
    need = point_bytes(model, batch, context, dtype)
    if need > free_bytes:
        pred, spec_pred = predictions(on_gpu, None)
        return make_row(model.name, model.layers, batch, context, pred=pred, spec=spec_pred, status="skipped",
                        reason=f"needs ~{need / 1e9:.1f} GB beside the weights, over the "
                               f"{max(0.0, free_bytes) / 1e9:.1f}"
                               f" GB usable ({MEMORY_FRACTION:.0%} of memory, less the check scratch)", **common)
    oom_error = getattr(torch.cuda, "OutOfMemoryError", MemoryError)
    failure = None
    try:
        pr = measure_point(ctx, net, batch, context, ctx.seed_for({"model": model.name, "batch": batch,
                                                                  "context": context}))
    except Exception as e:  # one bad point must not lose the table (e.g. out of memory at a large cache)
        oom = isinstance(e, (MemoryError, oom_error)) or "out of memory" in str(e).lower()
        failure = ("skipped" if oom else "failed",
                   f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    if failure is not None:  # outside the except block: its traceback no longer holds the point's tensors
        if on_gpu:
            import gc

            gc.collect()
            torch.cuda.empty_cache()
        pred, spec_pred = predictions(on_gpu, None)
        return make_row(model.name, model.layers, batch, context, pred=pred, spec=spec_pred, status=failure[0],
                        reason=failure[1], **common)
    notes.extend(pr.notes)
    pred, spec_pred = predictions(pr.graphs, pr.kernels)
    kt = pr.kernel_times or {}
    return make_row(model.name, model.layers, batch, context, measured=pr.timing, pred=pred, spec=spec_pred,
                    status=pr.status, reason=pr.reason, graphs=pr.graphs,
                    moe_path=("grouped_mm" if net.grouped else "per-expert loop") if model.is_moe else None,
                    check_rel_err=pr.check_rel_err, check_tol=pr.check_tol, profiled_kernels_s=kt.get("kernels"),
                    profiled_matmul_s=kt.get("matmul"), profiled_attention_s=kt.get("attention"),
                    profiled_other_s=kt.get("other"), **common)
