"""Decode attention: one new query token per sequence attending to its KV cache (flash-decoding).

A Triton split-KV kernel, a float64 reference with an explicit softmax, and PyTorch's
``scaled_dot_product_attention`` as the library baseline. Stage 1 runs one program per (split, kv head,
sequence) that reads each K/V tile once for all the query heads of its group (``tl.dot``, online softmax in
fp32) and writes a partial output and log-sum-exp; stage 2 merges the splits (skipped with one split).
Contiguous or paged caches, ragged batches, fp16/bf16 KV or fp8 with per-tensor scales: the shapes are in
:func:`decode_attention`'s docstring, the design in docs/method.md ("decode"). Pure functions: no timing,
no I/O; the bytes and FLOPs of a step are counted by the benchmark (bench/benchmarks/decode.py).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

FP8_DTYPES = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))
Q_DTYPES = (torch.float16, torch.bfloat16)
LOG2E = 1.4426950408889634

# Split heuristic (GPU): aim for PROGRAMS_PER_SM stage-1 programs per SM so a small batch still keeps
# every SM streaming, but never fewer than MIN_SPLIT_TOKENS per split (below that the partial outputs
# and the merge cost more than the parallelism gains); split lengths are multiples of SPLIT_GRANULE so
# every autotuned BLOCK_N tiles a split without a ragged tile. FlashInfer/FlashAttention choose similarly.
PROGRAMS_PER_SM = 8
MIN_SPLIT_TOKENS = 256
SPLIT_GRANULE = 128
MAX_SPLITS = 128
# The interpreter (CPU tensors) uses one small fixed tile: autotuning there would time nothing real.
_INTERP_BLOCK_N = 16
_INTERP_MIN_SPLIT_TOKENS = 16

# BLOCK_N (tokens per tile), warps, pipeline stages. K+V tiles of 64 tokens × 128 dims × 2 B = 32 KB per
# stage; with 2–3 stages (cp.async) and 3–5 programs resident per SM that is 100–200 KB in flight per SM, far
# above the ~25 KB an H100 SM needs to cover HBM latency. Four configs, not more: every config is a compile
# per (head_dim, layout, KV dtype) and a benchmark per tuning key, all of it device time (compiled for sm_90:
# 37–74 KB of shared memory, 64–170 registers, no spills).
CONFIGS = (
    {"BLOCK_N": 32, "num_warps": 4, "num_stages": 3},
    {"BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
    {"BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
    {"BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
)
_CONFIGS = [triton.Config({"BLOCK_N": c["BLOCK_N"]}, num_warps=c["num_warps"], num_stages=c["num_stages"])
            for c in CONFIGS]


def _tune_bench(kernel_call, quantiles):
    # a short benchmark per config (5 ms warm-up, 25 ms measured; do_bench clears L2 between calls) instead of
    # triton's default 25 + 100 ms: tuning runs once per size class in every sweep, on the device's time
    import triton.testing

    return triton.testing.do_bench(kernel_call, warmup=5, rep=25, quantiles=quantiles)


# Values that vary between calls but change nothing in the code are not specialised on (a value of 1 or a
# multiple of 16 would otherwise compile a kernel of its own): each specialisation is a compile on the device.
@triton.jit(do_not_specialize=["group", "single", "split_len", "tune_bucket", "stride_btb"])
def _decode_stage1(
    q, k, v, seq_lens, block_table, out, part_o, part_lse,
    qk_scale, v_scale, split_len, tune_bucket, group, single,
    stride_qb, stride_qh,
    stride_kp, stride_kt, stride_kh,
    stride_vp, stride_vt, stride_vh,
    stride_btb,
    stride_ob, stride_oh,
    stride_pb, stride_ph, stride_ps,
    stride_lb, stride_lh,
    GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
    PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr, DOT_F32: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # group (q heads per kv head) and single (one split: write the output directly) are runtime values: one
    # compiled kernel serves every GQA ratio up to GROUP_PAD and both split plans
    split = tl.program_id(0)
    kvh = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    seq_len = tl.load(seq_lens + b).to(tl.int32)
    lo = split * split_len
    hi = tl.minimum(lo + split_len, seq_len)  # hi <= lo: this split has no tokens of this sequence

    g = tl.arange(0, GROUP_PAD)
    d = tl.arange(0, HEAD_DIM)
    gmask = g < group
    hq = kvh * group + g
    qt = tl.load(q + b * stride_qb + hq[:, None] * stride_qh + d[None, :], mask=gmask[:, None], other=0.0)
    if DOT_F32:
        qt = qt.to(tl.float32)

    m_i = tl.zeros([GROUP_PAD], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([GROUP_PAD], dtype=tl.float32)
    acc = tl.zeros([GROUP_PAD, HEAD_DIM], dtype=tl.float32)
    for start in range(lo, hi, BLOCK_N):
        t = start + tl.arange(0, BLOCK_N)
        tmask = t < hi
        if PAGED:
            page = tl.load(block_table + b * stride_btb + t // PAGE_SIZE, mask=tmask, other=0).to(tl.int64)
            row = t % PAGE_SIZE
            k_rows = page * stride_kp + row * stride_kt
            v_rows = page * stride_vp + row * stride_vt
        else:
            t64 = t.to(tl.int64)
            k_rows = b * stride_kp + t64 * stride_kt
            v_rows = b * stride_vp + t64 * stride_vt
        kt = tl.load(k + k_rows[:, None] + kvh * stride_kh + d[None, :], mask=tmask[:, None], other=0.0)
        kt = kt.to(qt.dtype)  # fp8 KV: widen to q's dtype (its scale is folded into qk_scale)
        s = tl.dot(qt, tl.trans(kt)) * qk_scale  # [GROUP_PAD, BLOCK_N], log2 units
        s = tl.where(tmask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        vt = tl.load(v + v_rows[:, None] + kvh * stride_vh + d[None, :], mask=tmask[:, None], other=0.0)
        vt = vt.to(qt.dtype)
        if DOT_F32:  # round p as the MMA path does, then multiply in fp32
            pt = p.to(q.dtype.element_ty).to(tl.float32)
        else:
            pt = p.to(qt.dtype)
        acc = acc * alpha[:, None] + tl.dot(pt, vt)
        m_i = m_new

    has = l_i > 0  # false only for a split without tokens (or a sequence of length 0)
    l_safe = tl.where(has, l_i, 1.0)
    o = tl.where(has[:, None], acc / l_safe[:, None], 0.0)
    if single != 0:
        o = o * v_scale
        tl.store(out + b * stride_ob + hq[:, None] * stride_oh + d[None, :],
                 o.to(out.dtype.element_ty), mask=gmask[:, None])
    else:
        keep = gmask & ((g * 0 + lo) < seq_len)  # rows of this group, if the split holds any tokens
        tl.store(part_o + b * stride_pb + hq[:, None] * stride_ph + split * stride_ps + d[None, :], o,
                 mask=keep[:, None])
        tl.store(part_lse + b * stride_lb + hq * stride_lh + split, m_i + tl.log2(l_safe), mask=keep)


@triton.jit
def _decode_stage2(
    part_o, part_lse, seq_lens, out, v_scale, split_len,
    stride_pb, stride_ph, stride_ps,
    stride_lb, stride_lh,
    stride_ob, stride_oh,
    HEAD_DIM: tl.constexpr, SPLIT_PAD: tl.constexpr,
):
    hq = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    seq_len = tl.load(seq_lens + b).to(tl.int32)
    n = (seq_len + split_len - 1) // split_len  # splits holding tokens of this sequence
    d = tl.arange(0, HEAD_DIM)
    sidx = tl.arange(0, SPLIT_PAD)
    lse_base = part_lse + b * stride_lb + hq * stride_lh
    lse = tl.load(lse_base + sidx, mask=sidx < n, other=float("-inf"))
    m = tl.where(n > 0, tl.max(lse, 0), 0.0)
    w = tl.where(sidx < n, tl.exp2(lse - m), 0.0)
    den = tl.where(n > 0, tl.sum(w, 0), 1.0)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    o_base = part_o + b * stride_pb + hq * stride_ph
    for s in range(n):
        ws = tl.exp2(tl.load(lse_base + s) - m)
        acc += ws * tl.load(o_base + s * stride_ps + d)
    res = tl.where(n > 0, acc / den, 0.0) * v_scale
    tl.store(out + b * stride_ob + hq * stride_oh + d, res.to(out.dtype.element_ty))


# tune_bucket (unused by the kernel) keys the tuning on the problem's size class, so a config tuned on a tiny
# call is not reused for a large one, while a growing context re-tunes only when it crosses a power of two.
_stage1_tuned = triton.autotune(
    _CONFIGS, key=["HEAD_DIM", "GROUP_PAD", "PAGED", "PAGE_SIZE", "single", "tune_bucket"],
    do_bench=_tune_bench)(_decode_stage1)


def _tune_bucket(split_tokens: int, programs: int) -> int:
    """Size class of a call: log2 of tokens per split and of stage-1 programs, both rounded up."""
    return 64 * max(0, split_tokens - 1).bit_length() + max(0, programs - 1).bit_length()


# ---- planning and workspace -------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodePlan:
    """How the context is split across stage-1 programs."""

    num_splits: int
    split_tokens: int  # tokens per split (the last split of a sequence may hold fewer)


def plan_splits(batch: int, kv_heads: int, max_seq_len: int, num_sms: int, *, on_gpu: bool = True,
                split_tokens: int | None = None, num_splits: int | None = None) -> DecodePlan:
    """Choose the split count. Explicit ``split_tokens`` or ``num_splits`` win (tests use odd ones).

    Otherwise: enough splits that batch × kv_heads × splits reaches PROGRAMS_PER_SM × SMs, at least
    MIN_SPLIT_TOKENS per split, at most MAX_SPLITS; split lengths rounded up to SPLIT_GRANULE on GPU.
    """
    max_seq_len = max(1, int(max_seq_len))
    if split_tokens is not None:
        if split_tokens < 1:
            raise ValueError("split_tokens must be >= 1")
        return DecodePlan(triton.cdiv(max_seq_len, split_tokens), int(split_tokens))
    if num_splits is None:
        min_tokens = MIN_SPLIT_TOKENS if on_gpu else _INTERP_MIN_SPLIT_TOKENS
        want = triton.cdiv(PROGRAMS_PER_SM * max(1, num_sms), max(1, batch * kv_heads))
        num_splits = max(1, min(want, max_seq_len // min_tokens, MAX_SPLITS))
    if num_splits < 1:
        raise ValueError("num_splits must be >= 1")
    granule = SPLIT_GRANULE if on_gpu else 1
    tokens = triton.cdiv(triton.cdiv(max_seq_len, num_splits), granule) * granule
    return DecodePlan(triton.cdiv(max_seq_len, tokens), tokens)


@dataclass
class DecodeWorkspace:
    """fp32 partial outputs and log-sum-exps of stage 1; preallocate one to reuse it across calls."""

    partial_out: torch.Tensor  # [batch, q_heads, max_splits, head_dim]
    partial_lse: torch.Tensor  # [batch, q_heads, max_splits]

    @classmethod
    def allocate(cls, batch: int, q_heads: int, head_dim: int, max_splits: int,
                 device: torch.device | str) -> DecodeWorkspace:
        return cls(torch.empty(batch, q_heads, max_splits, head_dim, dtype=torch.float32, device=device),
                   torch.empty(batch, q_heads, max_splits, dtype=torch.float32, device=device))

    def fits(self, batch: int, q_heads: int, head_dim: int, num_splits: int) -> bool:
        po, pl = self.partial_out, self.partial_lse
        return (po.shape[0] >= batch and po.shape[1] >= q_heads and po.shape[2] >= num_splits
                and po.shape[3] == head_dim and tuple(pl.shape) == tuple(po.shape[:3])
                and po.dtype == pl.dtype == torch.float32 and po.stride(-1) == 1)


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


# ---- the launcher -------------------------------------------------------------------------------------

def _validate(q, k_cache, v_cache, seq_lens, block_table):
    if q.dim() != 3:
        raise ValueError(f"q must be [batch, q_heads, head_dim], got shape {tuple(q.shape)}")
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError("k_cache and v_cache must have the same 4-d shape")
    B, Hq, D = q.shape
    Hkv = k_cache.shape[2]
    if k_cache.shape[3] != D:
        raise ValueError(f"head_dim of the cache ({k_cache.shape[3]}) differs from q's ({D})")
    if D < 16 or D > 256 or D & (D - 1):
        raise ValueError(f"head_dim must be a power of two in [16, 256], got {D}")
    if Hkv < 1 or Hq % Hkv:
        raise ValueError(f"q_heads ({Hq}) must be a multiple of kv_heads ({Hkv})")
    if q.dtype not in Q_DTYPES:
        raise ValueError(f"q must be float16 or bfloat16, got {q.dtype}")
    if k_cache.dtype != v_cache.dtype or (k_cache.dtype != q.dtype and k_cache.dtype not in FP8_DTYPES):
        raise ValueError(f"KV cache must be {q.dtype} or fp8 (both K and V), got {k_cache.dtype}/{v_cache.dtype}")
    if any(t.stride(-1) != 1 for t in (q, k_cache, v_cache)):
        raise ValueError("q and the caches must be contiguous in head_dim")
    if seq_lens.dim() != 1 or seq_lens.shape[0] != B or seq_lens.dtype not in (torch.int32, torch.int64):
        raise ValueError("seq_lens must be an int32 tensor of shape [batch]")
    devs = {q.device, k_cache.device, v_cache.device, seq_lens.device}
    if block_table is not None:
        devs.add(block_table.device)
        if block_table.dim() != 2 or block_table.shape[0] != B or block_table.dtype != torch.int32:
            raise ValueError("block_table must be an int32 tensor of shape [batch, max_pages]")
        if block_table.stride(-1) != 1:
            raise ValueError("block_table must be contiguous in its last dimension")
    elif k_cache.shape[0] != B:
        raise ValueError(f"contiguous cache has {k_cache.shape[0]} sequences, q has {B}")
    if len(devs) != 1:
        raise ValueError("q, caches, seq_lens and block_table must be on one device")


def capacity(k_cache: torch.Tensor, block_table: torch.Tensor | None = None) -> int:
    """Longest sequence the cache can hold (tokens)."""
    if block_table is None:
        return int(k_cache.shape[1])
    return int(block_table.shape[1]) * int(k_cache.shape[1])


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    block_table: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    out: torch.Tensor | None = None,
    workspace: DecodeWorkspace | None = None,
    max_seq_len: int | None = None,
    num_splits: int | None = None,
    split_tokens: int | None = None,
    num_sms: int | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    config: dict | None = None,
) -> torch.Tensor:
    """softmax(q·Kᵀ·scale)·V per sequence over its first ``seq_lens[b]`` cached tokens → [B, Hq, D].

    Shapes (B sequences, Hq query heads, Hkv KV heads, D head dim, Hq a multiple of Hkv):

    * ``q``: [B, Hq, D] fp16/bf16; the output: [B, Hq, D] in q's dtype;
    * contiguous cache: ``k_cache``/``v_cache`` [B, max_ctx, Hkv, D];
    * paged cache: ``k_cache``/``v_cache`` [num_pages, page_size, Hkv, D] (a pool of pages) and
      ``block_table`` [B, max_pages] int32: token t of sequence b lives in page ``block_table[b, t // page_size]``
      at row ``t % page_size``;
    * ``seq_lens``: [B] int32 on the cache's device, one length per sequence (a ragged batch); a sequence of
      length 0 gets an all-zero output.

    KV may be q's dtype or fp8 (e4m3fn / e5m2) with per-tensor scales ``k_scale``/``v_scale``.
    ``block_table`` given: paged cache; else contiguous. ``max_seq_len`` (an upper bound of
    ``seq_lens``, known on the host, like FlashAttention's ``max_seqlen_k``) sizes the splits without a
    device sync; it defaults to the cache's capacity. ``out`` and ``workspace`` may be preallocated
    (``DecodeWorkspace.allocate``). ``scale`` defaults to 1/sqrt(head_dim); ``k_scale``/``v_scale``
    dequantise an fp8 cache. CUDA tensors use the autotuned kernel, or one fixed ``config`` (an entry of
    :data:`CONFIGS`: BLOCK_N, num_warps, num_stages) when given; CPU tensors (the Triton interpreter) one fixed
    small tile.
    """
    _validate(q, k_cache, v_cache, seq_lens, block_table)
    B, Hq, D = q.shape
    Hkv = k_cache.shape[2]
    group = Hq // Hkv
    cap = capacity(k_cache, block_table)
    max_seq_len = cap if max_seq_len is None else int(max_seq_len)
    if not 0 <= max_seq_len <= cap:
        raise ValueError(f"max_seq_len {max_seq_len} outside the cache's capacity [0, {cap}]")
    on_gpu = q.is_cuda
    if num_sms is None:
        num_sms = _sm_count(q.device.index if q.device.index is not None else torch.cuda.current_device()) \
            if on_gpu else 1
    plan = plan_splits(B, Hkv, max_seq_len, num_sms, on_gpu=on_gpu, split_tokens=split_tokens,
                       num_splits=num_splits)
    if out is None:
        out = torch.empty_like(q)
    elif out.shape != q.shape or out.dtype != q.dtype or out.device != q.device or out.stride(-1) != 1:
        raise ValueError("out must match q's shape, dtype and device, contiguous in head_dim")
    single = plan.num_splits == 1
    if single:
        # never touched with one split; fp32 like the real workspace, so both plans share one compiled kernel
        po = pl = torch.empty(1, dtype=torch.float32, device=q.device)
    else:
        if workspace is None:
            workspace = DecodeWorkspace.allocate(B, Hq, D, plan.num_splits, q.device)
        elif not workspace.fits(B, Hq, D, plan.num_splits):
            raise ValueError(f"workspace too small for batch {B}, {Hq} q heads, head_dim {D}, "
                             f"{plan.num_splits} splits")
        po, pl = workspace.partial_out, workspace.partial_lse
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    paged = block_table is not None
    bt = block_table if block_table is not None else seq_lens  # any int tensor: never read when not PAGED
    args = (
        q, k_cache, v_cache, seq_lens, bt, out, po, pl,
        scale * float(k_scale) * LOG2E, float(v_scale), plan.split_tokens,
        _tune_bucket(plan.split_tokens, plan.num_splits * Hkv * B), group, int(single),
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        bt.stride(0) if paged else 0,
        out.stride(0), out.stride(1),
        *((po.stride(0), po.stride(1), po.stride(2), pl.stride(0), pl.stride(1)) if not single else (0,) * 5),
    )
    meta = dict(GROUP_PAD=max(16, triton.next_power_of_2(group)), HEAD_DIM=D, PAGED=paged,
                PAGE_SIZE=int(k_cache.shape[1]) if paged else 1)
    grid = (plan.num_splits, Hkv, B)
    if on_gpu and config is None:
        _stage1_tuned[grid](*args, **meta, DOT_F32=False)
    elif on_gpu and config is not None:
        cfg = dict(config)
        _decode_stage1[grid](*args, **meta, DOT_F32=False, BLOCK_N=cfg["BLOCK_N"],
                             num_warps=cfg.get("num_warps", 4), num_stages=cfg.get("num_stages", 2))
    else:
        # Triton 3.9's interpreter computes tl.dot on bf16 operands wrongly; fp32 operands holding the same
        # bf16 values give what a bf16 MMA with fp32 accumulation gives.
        _decode_stage1[grid](*args, **meta, DOT_F32=q.dtype == torch.bfloat16, BLOCK_N=_INTERP_BLOCK_N,
                             num_warps=4)
    if not single:
        _decode_stage2[(Hq, B)](
            po, pl, seq_lens, out, float(v_scale), plan.split_tokens,
            po.stride(0), po.stride(1), po.stride(2), pl.stride(0), pl.stride(1),
            out.stride(0), out.stride(1),
            HEAD_DIM=D, SPLIT_PAD=max(2, triton.next_power_of_2(plan.num_splits)), num_warps=4,
        )
    return out


# ---- the PyTorch side: reference and library baseline -------------------------------------------------

REFERENCE_CHUNK_ELEMENTS = 1 << 27  # reference K/V temporaries per chunk of kv heads: 1 GiB each in float64


def reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seq_lens: torch.Tensor,
              block_table: torch.Tensor | None = None, scale: float | None = None, *,
              k_scale: float = 1.0, v_scale: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Attention with an explicit softmax in ``dtype`` (float64 by default), one sequence (and, for long
    contexts, one chunk of kv heads) at a time so its temporaries stay bounded."""
    B, Hq, D = q.shape
    Hkv = k_cache.shape[2]
    G = Hq // Hkv
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    out = torch.zeros(B, Hq, D, dtype=dtype, device=q.device)
    for b, L in enumerate(seq_lens.tolist()):
        if L <= 0:
            continue
        pages = None
        if block_table is not None:
            pages = block_table[b, : triton.cdiv(L, k_cache.shape[1])].long()
        step = max(1, REFERENCE_CHUNK_ELEMENTS // (L * D))
        for h0 in range(0, Hkv, step):
            h1 = min(Hkv, h0 + step)
            if pages is None:
                kb, vb = k_cache[b, :L, h0:h1], v_cache[b, :L, h0:h1]
            else:
                kb = k_cache[pages, :, h0:h1].reshape(-1, h1 - h0, D)[:L]
                vb = v_cache[pages, :, h0:h1].reshape(-1, h1 - h0, D)[:L]
            kb = kb.to(dtype) * k_scale
            vb = vb.to(dtype) * v_scale
            qb = q[b, h0 * G:h1 * G].to(dtype).view(h1 - h0, G, D)
            s = torch.einsum("hgd,thd->hgt", qb, kb) * scale
            e = torch.exp(s - s.amax(dim=-1, keepdim=True))
            p = e / e.sum(dim=-1, keepdim=True)
            out[b, h0 * G:h1 * G] = torch.einsum("hgt,thd->hgd", p, vb).reshape(-1, D)
    return out


def _torch_version() -> tuple[int, int]:
    parts = torch.__version__.split("+")[0].split(".")
    return int(parts[0]), int(parts[1])


SDPA_HAS_GQA = _torch_version() >= (2, 5)  # scaled_dot_product_attention(enable_gqa=...) since torch 2.5


def sdpa_inputs(k_cache: torch.Tensor, v_cache: torch.Tensor, q_heads: int, context: int | None = None,
                allow_gqa: bool = True) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """K/V of a contiguous cache as SDPA wants them, [B, H, L, D] (views, no copy).

    With ``enable_gqa`` (torch ≥ 2.5) SDPA reads the Hkv heads; otherwise K/V are expanded to Hq heads
    here, by ``repeat_interleave`` (call this outside any timed region). Returns (k, v, enable_gqa).
    """
    L = k_cache.shape[1] if context is None else context
    k = k_cache[:, :L].transpose(1, 2)
    v = v_cache[:, :L].transpose(1, 2)
    group = q_heads // k_cache.shape[2]
    if group == 1:
        return k, v, False
    if SDPA_HAS_GQA and allow_gqa:
        return k, v, True
    return k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), False


SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")


def sdpa_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                enable_gqa: bool = False, exclude: tuple[str, ...] = ()) -> torch.Tensor:
    """torch SDPA over a batch of equal-length sequences: q [B, Hq, D], k/v from :func:`sdpa_inputs`.
    ``exclude``: SDPA backends (names of ``torch.nn.attention.SDPBackend``) torch may not choose."""
    if exclude:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        allowed = [getattr(SDPBackend, n) for n in SDPA_BACKENDS if n not in exclude and hasattr(SDPBackend, n)]
        with sdpa_kernel(allowed):
            o = torch.nn.functional.scaled_dot_product_attention(q.unsqueeze(2), k, v, scale=scale,
                                                                 enable_gqa=enable_gqa)
    else:
        o = torch.nn.functional.scaled_dot_product_attention(q.unsqueeze(2), k, v, scale=scale, enable_gqa=enable_gqa)
    return o.squeeze(2)
