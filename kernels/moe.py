"""The single-GPU work of a mixture-of-experts layer around its all-to-all: route, permute, expert GEMMs, combine.

Data flow of one expert-parallel MoE layer (per rank):

    x [T, H] ──route──► top-k ids/weights [T, k]
            ──permute──► rows in expert order [T·k, H]      (gather: row i = x[src_rows[i]])
            ──(all-to-all dispatch, expert GEMMs, all-to-all combine)──► y [T·k, H], same order
            ──unpermute──► out[t] = Σ_j w[t, j] · y[pos[t, j]]   (gather + weighted sum, no atomics)

Each step has a Triton kernel (autotuned on CUDA tensors, one fixed small configuration under the
interpreter), a PyTorch equivalent and a float64 reference. The expert is a gated MLP (SwiGLU, as in
Mixtral and DeepSeek-V3): ``w13[e]`` [H, 2I] holds the gate and up projections side by side, ``w2[e]``
[I, H] the down projection: MLP(x) = (silu(x·Wg) ⊙ x·Wu)·W2. Pure functions: no timing, no I/O.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

# Row-copy blocks: wide enough for 16-byte accesses per thread over a 4096–7168-wide bf16 row.
_ROW_CONFIGS = [triton.Config({"BLOCK_H": b}, num_warps=w) for b, w in ((1024, 4), (2048, 8), (4096, 8))]
_INTERP_BLOCK_H = 64
# Grouped GEMM: one M tile size for the schedule (it is built on the host from the expert counts);
# N/K tiles, warps and stages autotuned per (N, K, rows per expert). 64 rows is about what an expert gets at
# decode batch sizes.
GROUPED_BLOCK_M = 64
_GEMM_CONFIGS = [
    triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bn, bk, w, s in ((128, 64, 4, 3), (128, 64, 8, 4), (256, 64, 8, 3), (64, 128, 4, 4), (128, 128, 8, 3))
]
_INTERP_GEMM = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}


# ---- routing (torch: tiny, and the same on every path) -------------------------------------------------

def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k experts per token and their weights (softmax over the chosen logits, as Mixtral does).

    Returns ``ids`` [T, k] int64 and ``weights`` [T, k] float32.
    """
    if logits.dim() != 2:
        raise ValueError("router logits must be [tokens, experts]")
    if not 1 <= top_k <= logits.shape[1]:
        raise ValueError(f"top_k must be in [1, {logits.shape[1]}], got {top_k}")
    vals, ids = torch.topk(logits.float(), top_k, dim=1)
    return ids, torch.softmax(vals, dim=1)


def sort_by_expert(ids: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Order the (token, slot) pairs by expert (stable: by token within an expert).

    Returns ``src_rows`` [T·k] (the token each permuted row comes from), ``pos`` [T, k] (where pair (t, j)
    lands in the permuted order: the inverse permutation) and ``counts`` [E] (rows per expert).
    """
    T, k = ids.shape
    flat = ids.reshape(-1)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= num_experts):
        raise ValueError(f"expert ids must be in [0, {num_experts})")
    order = torch.sort(flat, stable=True).indices
    pos = torch.empty_like(order)
    pos[order] = torch.arange(order.numel(), device=ids.device)
    counts = torch.bincount(flat, minlength=num_experts)
    return order // k, pos.view(T, k), counts


# ---- permute: gather token rows into expert order -----------------------------------------------------

@triton.jit
def _permute_kernel(x, src_rows, out, H, stride_x, stride_o, BLOCK_H: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    m = cols < H
    src = tl.load(src_rows + row).to(tl.int64)
    v = tl.load(x + src * stride_x + cols, mask=m)
    tl.store(out + row.to(tl.int64) * stride_o + cols, v, mask=m)


_permute_tuned = triton.autotune(_ROW_CONFIGS, key=["H"])(_permute_kernel)


def _rows_ok(x: torch.Tensor, name: str) -> None:
    if x.dim() != 2 or x.stride(1) != 1:
        raise ValueError(f"{name} must be a 2-D tensor with contiguous rows")


def _out_rows(out: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """``out`` (or a new one): n rows of ``like``'s width, dtype and device, rows contiguous."""
    H = like.shape[1]
    if out is None:
        out = torch.empty((n, H), dtype=like.dtype, device=like.device)
    _rows_ok(out, "out")
    if out.shape != (n, H) or out.dtype != like.dtype:
        raise ValueError(f"out must be [{n}, {H}] of {like.dtype}")
    return out


def triton_permute(x: torch.Tensor, src_rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """out[i] = x[src_rows[i]] (rows of ``x`` gathered into expert order)."""
    _rows_ok(x, "x")
    if src_rows.dim() != 1 or src_rows.device != x.device:
        raise ValueError("src_rows must be a 1-D index tensor on x's device")
    n, H = src_rows.numel(), x.shape[1]
    out = _out_rows(out, n, x)
    if n == 0:
        return out
    if x.is_cuda:
        _permute_tuned[lambda meta: (n, triton.cdiv(H, meta["BLOCK_H"]))](x, src_rows, out, H, x.stride(0),
                                                                          out.stride(0))
    else:
        _permute_kernel[(n, triton.cdiv(H, _INTERP_BLOCK_H))](x, src_rows, out, H, x.stride(0), out.stride(0),
                                                               BLOCK_H=_INTERP_BLOCK_H)
    return out


def torch_permute(x: torch.Tensor, src_rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    return torch.index_select(x, 0, src_rows, out=out) if out is not None else torch.index_select(x, 0, src_rows)


# ---- unpermute + combine: out[t] = Σ_j w[t, j] · y[pos[t, j]] ---------------------------------------------

@triton.jit
def _unpermute_kernel(y, pos, w, out, H, stride_y, stride_o, TOP_K: tl.constexpr, BLOCK_H: tl.constexpr):
    t = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    m = cols < H
    acc = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for j in tl.static_range(TOP_K):
        p = tl.load(pos + t * TOP_K + j).to(tl.int64)
        wt = tl.load(w + t * TOP_K + j).to(tl.float32)
        acc += wt * tl.load(y + p * stride_y + cols, mask=m, other=0.0).to(tl.float32)
    tl.store(out + t.to(tl.int64) * stride_o + cols, acc.to(out.dtype.element_ty), mask=m)


_unpermute_tuned = triton.autotune(_ROW_CONFIGS, key=["H", "TOP_K"])(_unpermute_kernel)


def triton_unpermute(y: torch.Tensor, pos: torch.Tensor, weights: torch.Tensor,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """Combine: out[t] = Σ_j weights[t, j] · y[pos[t, j]], accumulated in fp32, stored in y's dtype."""
    _rows_ok(y, "y")
    if pos.dim() != 2 or weights.shape != pos.shape:
        raise ValueError("pos and weights must both be [tokens, top_k]")
    if not (pos.is_contiguous() and weights.is_contiguous()):
        raise ValueError("pos and weights must be contiguous")
    T, k = pos.shape
    H = y.shape[1]
    out = _out_rows(out, T, y)
    if T == 0:
        return out
    if y.is_cuda:
        _unpermute_tuned[lambda meta: (T, triton.cdiv(H, meta["BLOCK_H"]))](
            y, pos, weights, out, H, y.stride(0), out.stride(0), TOP_K=k)
    else:
        _unpermute_kernel[(T, triton.cdiv(H, _INTERP_BLOCK_H))](
            y, pos, weights, out, H, y.stride(0), out.stride(0), TOP_K=k, BLOCK_H=_INTERP_BLOCK_H)
    return out


def torch_unpermute(y: torch.Tensor, pos: torch.Tensor, weights: torch.Tensor,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    r = torch.einsum("tkh,tk->th", y[pos].float(), weights.float()).to(y.dtype)
    return out.copy_(r) if out is not None else r


# ---- grouped GEMM: rows of expert e (contiguous) times w[e] ---------------------------------------------

def grouped_schedule(counts: Sequence[int], block_m: int, device) -> tuple[torch.Tensor, torch.Tensor,
                                                                           torch.Tensor]:
    """Per M tile: its expert, first row and end row (rows of expert e are contiguous, in expert order)."""
    experts, starts, ends = [], [], []
    row = 0
    for e, c in enumerate(int(c) for c in counts):
        for s in range(row, row + c, block_m):
            experts.append(e)
            starts.append(s)
            ends.append(row + c)
        row += c
    mk = lambda v: torch.tensor(v, dtype=torch.int32, device=device)  # noqa: E731
    return mk(experts), mk(starts), mk(ends)


@triton.jit(do_not_specialize=["ROWS_PER_EXPERT"])
def _grouped_mm_kernel(a, b, c, tile_expert, tile_start, tile_end, N, K,
                       stride_am, stride_be, stride_bk, stride_cm, ROWS_PER_EXPERT,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       IEEE: tl.constexpr):
    # ROWS_PER_EXPERT is unused in the body: it only keys the autotuner (see _rows_bucket)
    tile = tl.program_id(0)
    pid_n = tl.program_id(1)
    e = tl.load(tile_expert + tile).to(tl.int64)
    start = tl.load(tile_start + tile)
    end = tl.load(tile_end + tile)
    rows = start + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    rm = rows < end
    cm = cols < N
    a_ptr = a + rows.to(tl.int64)[:, None] * stride_am + ks[None, :]
    b_ptr = b + e * stride_be + ks[:, None] * stride_bk + cols[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        km = (k0 + ks) < K
        av = tl.load(a_ptr, mask=rm[:, None] & km[None, :], other=0.0)
        bv = tl.load(b_ptr, mask=km[:, None] & cm[None, :], other=0.0)
        if IEEE:  # fp32 inputs: exact products, no TF32 (the reference is float64)
            acc = tl.dot(av, bv, acc, input_precision="ieee")
        else:
            acc = tl.dot(av, bv, acc)
        a_ptr += BLOCK_K
        b_ptr += BLOCK_K * stride_bk
    c_ptr = c + rows.to(tl.int64)[:, None] * stride_cm + cols[None, :]
    tl.store(c_ptr, acc.to(c.dtype.element_ty), mask=rm[:, None] & cm[None, :])


_grouped_mm_tuned = triton.autotune(_GEMM_CONFIGS, key=["N", "K", "ROWS_PER_EXPERT"])(_grouped_mm_kernel)


def _rows_bucket(counts: Sequence[int]) -> int:
    """Rows per active expert, as a power of two (≤ 4096): the best N/K tiles for 8 rows per expert (decode) are
    not those for 1024 (prefill), so the autotuner keys on this bucket as well as on N and K. Not specialised
    by the compiler (do_not_specialize): a new bucket re-times the configs but compiles nothing new."""
    active = [int(c) for c in counts if int(c) > 0]
    mean = sum(active) / len(active) if active else 1
    return min(4096, 1 << max(0, math.ceil(math.log2(max(1.0, mean)))))


def triton_grouped_mm(a: torch.Tensor, w: torch.Tensor, counts: Sequence[int],
                      schedule: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """out[rows of e] = a[rows of e] @ w[e] for every expert e, in one launch (fp32 accumulation).

    ``a`` [R, K] holds the rows of expert 0, then expert 1, ... (``counts`` rows each, on the host);
    ``w`` [E, K, N]. ``schedule`` (from :func:`grouped_schedule` with the launcher's block size) may be
    passed to keep its host→device copy out of a timed loop. fp32 inputs use exact (IEEE) dots, no TF32.
    """
    _rows_ok(a, "a")
    if w.dim() != 3 or not w.is_contiguous() or w.shape[1] != a.shape[1] or w.dtype != a.dtype:
        raise ValueError("w must be a contiguous [experts, K, N] tensor matching a's K and dtype")
    if len(counts) != w.shape[0] or sum(int(c) for c in counts) != a.shape[0]:
        raise ValueError("counts must give one row count per expert, summing to a's rows")
    R, K = a.shape
    N = w.shape[2]
    if out is None:
        out = torch.empty((R, N), dtype=a.dtype, device=a.device)
    if out.shape != (R, N) or out.dtype != a.dtype or out.stride(1) != 1:
        raise ValueError(f"out must be [{R}, {N}] of {a.dtype} with contiguous rows")
    block_m = grouped_block_m(a)
    te, ts, tend = schedule if schedule is not None else grouped_schedule(counts, block_m, a.device)
    tiles = te.numel()
    if tiles == 0:
        return out
    args = (a, w, out, te, ts, tend, N, K, a.stride(0), w.stride(0), w.stride(1), out.stride(0), _rows_bucket(counts))
    ieee = a.dtype == torch.float32
    if a.is_cuda:
        _grouped_mm_tuned[lambda meta: (tiles, triton.cdiv(N, meta["BLOCK_N"]))](*args, BLOCK_M=block_m,
                                                                                 IEEE=ieee)
    else:
        _grouped_mm_kernel[(tiles, triton.cdiv(N, _INTERP_GEMM["BLOCK_N"]))](*args, **_INTERP_GEMM, IEEE=ieee)
    return out


def torch_grouped_mm(a: torch.Tensor, w: torch.Tensor, counts: Sequence[int],
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """The same as :func:`triton_grouped_mm` by a loop of ``torch.matmul`` over the experts with rows."""
    if out is None:
        out = torch.empty((a.shape[0], w.shape[2]), dtype=a.dtype, device=a.device)
    row = 0
    for e, c in enumerate(int(c) for c in counts):
        if c:
            torch.matmul(a[row:row + c], w[e], out=out[row:row + c])
        row += c
    return out


def swiglu(h: torch.Tensor) -> torch.Tensor:
    """silu(gate) ⊙ up, with gate and up the two halves of the last dimension; computed in fp32."""
    g, u = h.float().chunk(2, dim=-1)
    return (torch.nn.functional.silu(g) * u).to(h.dtype)


def grouped_block_m(a: torch.Tensor) -> int:
    """The M tile :func:`triton_grouped_mm` schedules with for tensors like ``a``."""
    return GROUPED_BLOCK_M if a.is_cuda else _INTERP_GEMM["BLOCK_M"]


def grouped_mlp(x: torch.Tensor, counts: Sequence[int], w13: torch.Tensor, w2: torch.Tensor,
                impl: str = "torch", schedule=None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Expert MLPs over expert-ordered rows: (silu(x·Wg) ⊙ x·Wu)·W2 per expert. impl: "torch" or "triton"."""
    if impl == "triton":
        h = triton_grouped_mm(x, w13, counts, schedule)
        return triton_grouped_mm(swiglu(h), w2, counts, schedule, out=out)
    if impl == "torch":
        return torch_grouped_mm(swiglu(torch_grouped_mm(x, w13, counts)), w2, counts, out=out)
    raise ValueError(f"unknown impl {impl!r}: torch or triton")


# ---- float64 references -------------------------------------------------------------------------------

def reference_permute(x: torch.Tensor, src_rows: torch.Tensor) -> torch.Tensor:
    return x.double()[src_rows.long()]


def reference_unpermute(y: torch.Tensor, pos: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (y.double()[pos.long()] * weights.double()[..., None]).sum(1)


def reference_mlp(x: torch.Tensor, w13_e: torch.Tensor, w2_e: torch.Tensor) -> torch.Tensor:
    """One expert's MLP in float64 on (already rounded) inputs."""
    g, u = (x.double() @ w13_e.double()).chunk(2, dim=-1)
    return (torch.nn.functional.silu(g) * u) @ w2_e.double()


def reference_grouped_mlp(x: torch.Tensor, counts: Sequence[int], w13: torch.Tensor,
                          w2: torch.Tensor) -> torch.Tensor:
    out = torch.empty((x.shape[0], w2.shape[2]), dtype=torch.float64, device=x.device)
    row = 0
    for e, c in enumerate(int(c) for c in counts):
        if c:
            out[row:row + c] = reference_mlp(x[row:row + c], w13[e], w2[e])
        row += c
    return out


def reference_moe(x: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, w13, w2) -> torch.Tensor:
    """A whole MoE layer in one process, float64: out[t] = Σ_j weights[t, j] · MLP_{ids[t, j]}(x[t]).

    ``w13[e]`` / ``w2[e]`` index an expert's weights: [E, ...] tensors, or dicts holding the experts used.
    """
    out = torch.zeros(x.shape, dtype=torch.float64, device=x.device)  # an MoE layer maps hidden to hidden
    for e in torch.unique(ids).tolist():
        t, j = (ids == e).nonzero(as_tuple=True)
        out.index_add_(0, t, weights.double()[t, j, None] * reference_mlp(x[t], w13[e], w2[e]))
    return out
