"""Dense matmul C = A @ B: a tiled Triton kernel, the PyTorch library paths, and an fp8 path.

* ``triton_matmul``: a tiled kernel with grouped tile order and fp32 accumulation. Given CUDA tensors it
  autotunes over a few block shapes / warps / stages that suit Hopper (wgmma) and Ampere (mma.sync); CPU
  tensors only run under the Triton interpreter, with one fixed small configuration.
* ``torch_matmul``: ``torch.matmul`` (cuBLAS on a GPU, the CPU BLAS on the CPU).
* ``scaled_mm_fp8``: fp8 (e4m3) through ``torch._scaled_mm`` (cuBLASLt) with per-tensor scales.

Layout: A is (M, K) row-major; B is (K, N) column-major, i.e. the transpose of an nn.Linear weight W (N, K),
which is how LLM inference multiplies activations by weights (and what ``_scaled_mm`` requires of B).

Pure functions: no timing, no I/O, no imports from ``bench``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import triton
import triton.language as tl

FP8_MAX = 448.0  # largest finite float8_e4m3fn value

# Configs good on Hopper and Ampere for 16-bit inputs: 128x256x64 with 8 warps and 3 stages is the usual best
# on H100 for large squares; 128x128 variants suit mid sizes; 64-row tiles waste less at small M (decode).
_CONFIGS_16 = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=s)
    for bm, bn, bk, w, s in (
        (128, 256, 64, 8, 3),
        (256, 128, 64, 8, 3),
        (128, 128, 64, 8, 4),
        (128, 128, 64, 4, 4),
        (64, 256, 32, 4, 4),
        (64, 128, 64, 4, 4),
    )
]
# fp32 operands take twice the shared memory per element: BLOCK_K 32 keeps 3–4 stages within 228 KB (H100)
# and 164 KB (A100).
_CONFIGS_32 = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=s)
    for bm, bn, bk, w, s in (
        (128, 256, 32, 8, 3),
        (128, 128, 32, 8, 4),
        (128, 128, 32, 4, 4),
        (64, 128, 32, 4, 4),
        (64, 64, 32, 4, 3),
    )
]
# Under the interpreter: one small tile (tl.dot needs every dimension >= 16), so odd shapes span several
# tiles in M, N and K and every edge mask is exercised.
INTERP_CONFIG = {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2}
_MAX_ELEMENTS = 2**31 - 1  # the kernel computes offsets in int32


@triton.jit
def _matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                   stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   GROUP_M: tl.constexpr, EVEN_K: tl.constexpr, PRECISION: tl.constexpr,
                   UPCAST: tl.constexpr = False):
    # Grouped order: GROUP_M row-blocks of C are computed back to back, so the column-blocks of B they
    # share are still in L2 when the next row-block needs them.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_pid_n
    first_m = (pid // per_group) * GROUP_M
    group_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + ((pid % per_group) % group_m)
    pid_n = (pid % per_group) // group_m

    # Rows/columns past the edge wrap onto valid ones, so the loads need no M/N mask (their results are
    # discarded by the masked store); only the K tail is masked, and only when K % BLOCK_K != 0.
    offs_am = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_bn = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_left = K - k * BLOCK_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        if UPCAST:  # interpreter only: its tl.dot mishandles bfloat16 (it multiplies the raw bits)
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    offs_cm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_cn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + offs_cm[:, None] * stride_cm + offs_cn[None, :] * stride_cn
    c_mask = (offs_cm[:, None] < M) & (offs_cn[None, :] < N)
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=c_mask)


_kernel = triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})(_matmul_kernel)
# One autotuner per operand family and fp32 precision: each keeps its own cache of best configs, so a tf32
# choice is never reused for an IEEE fp32 run of the same shape (the autotune key already holds the dtypes).
_TUNED = {
    "16bit": triton.autotune(_CONFIGS_16, key=["M", "N", "K"])(_kernel),
    "tf32": triton.autotune(_CONFIGS_32, key=["M", "N", "K"])(_kernel),
    "ieee": triton.autotune(_CONFIGS_32, key=["M", "N", "K"])(_kernel),
}
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _family(dtype: torch.dtype, tf32: bool) -> str:
    if dtype == torch.float32:
        return "tf32" if tf32 else "ieee"
    return "16bit"


def _precision(dtype: torch.dtype, tf32: bool) -> str:
    # fp32 operands: "ieee" is true fp32 (FMA), "tf32" the tensor cores; 16-bit operands ignore it.
    return "ieee" if dtype == torch.float32 and not tf32 else "tf32"


def _check_operands(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> tuple[int, int, int]:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"matmul needs 2-D operands, got {a.dim()}-D and {b.dim()}-D")
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        raise ValueError(f"inner dimensions differ: A is {M}x{K}, B is {K2}x{N}")
    if a.dtype != b.dtype or a.device != b.device:
        raise ValueError("A and B must share dtype and device")
    if out is not None:
        if tuple(out.shape) != (M, N) or out.device != a.device:
            raise ValueError(f"output must be {M}x{N} on {a.device}")
    return M, N, K


def triton_matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, *, tf32: bool = False,
                  config: dict | None = None) -> torch.Tensor:
    """C = A @ B with fp32 accumulation; C has A's dtype unless ``out`` says otherwise.

    fp32 operands use true fp32 arithmetic unless ``tf32``. On CUDA tensors the launch autotunes, unless a
    fixed ``config`` (BLOCK_M/N/K, GROUP_M, optional num_warps/num_stages) is given; CPU tensors (the
    interpreter) always use ``INTERP_CONFIG``.
    """
    if a.dtype not in TRITON_DTYPES:
        raise ValueError(f"triton_matmul supports {', '.join(map(str, TRITON_DTYPES))}, not {a.dtype}")
    M, N, K = _check_operands(a, b, out)
    if out is None:
        out = torch.empty((M, N), dtype=a.dtype, device=a.device)
    if max(a.numel(), b.numel(), out.numel()) > _MAX_ELEMENTS:
        raise ValueError("operands too large for the kernel's 32-bit offsets")
    if M == 0 or N == 0:
        return out
    if K == 0:
        return out.zero_()
    args = (a, b, out, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1))
    prec = _precision(a.dtype, tf32)
    if a.is_cuda and config is None:
        grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
        _TUNED[_family(a.dtype, tf32)][grid](*args, PRECISION=prec)
        return out
    cfg = dict(INTERP_CONFIG if not a.is_cuda else config)
    warps, stages = cfg.pop("num_warps", 4), cfg.pop("num_stages", 3)
    # CPU tensors run in the interpreter, whose tl.dot multiplies bfloat16 bit patterns as integers: there
    # the tiles are widened to fp32 first (exact for 16-bit inputs; same fp32 accumulation).
    upcast = not a.is_cuda and a.dtype == torch.bfloat16
    if upcast:
        prec = "ieee"
    grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
    _kernel[grid](*args, PRECISION=prec, UPCAST=upcast, num_warps=warps, num_stages=stages, **cfg)
    return out


def triton_best_config(dtype: torch.dtype, tf32: bool = False) -> str | None:
    """The config the autotuner chose in its latest tuned launch for this operand family (None if none)."""
    best = getattr(_TUNED[_family(dtype, tf32)], "best_config", None)
    if best is None:
        return None
    kw = best.kwargs
    return (f"BLOCK {kw.get('BLOCK_M')}x{kw.get('BLOCK_N')}x{kw.get('BLOCK_K')} GROUP_M {kw.get('GROUP_M')} "
            f"warps {best.num_warps} stages {best.num_stages}")


# ---- PyTorch library paths -----------------------------------------------------------------------------

def torch_matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.matmul``: cuBLAS on a GPU, the CPU BLAS (oneDNN/MKL/OpenBLAS) on the CPU."""
    return torch.matmul(a, b, out=out)


@contextmanager
def cuda_tf32(enabled: bool) -> Iterator[None]:
    """Let cuBLAS use TF32 for fp32 matmuls (or forbid it) inside the block; the previous flag is restored."""
    m = torch.backends.cuda.matmul
    prev = m.allow_tf32
    m.allow_tf32 = enabled
    try:
        yield
    finally:
        m.allow_tf32 = prev


def fp8_available() -> tuple[bool, str]:
    """Whether this torch has the fp8 pieces the fp8 path needs (the device is a separate question)."""
    if not hasattr(torch, "float8_e4m3fn"):
        return False, f"torch {torch.__version__} has no float8_e4m3fn dtype"
    if not hasattr(torch, "_scaled_mm"):
        return False, f"torch {torch.__version__} has no torch._scaled_mm"
    return True, ""


def quantize_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor scaled e4m3: returns (x_q, scale) with x ≈ x_q.float() * scale, scale a 0-dim fp32 tensor
    on x's device, chosen so the largest |x| maps onto the largest finite e4m3 value."""
    amax = x.detach().abs().amax().float().clamp_min(torch.finfo(torch.float32).tiny)
    scale = (amax / FP8_MAX).reshape(())
    x_q = (x.float() / scale).clamp_(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return x_q, scale


def scaled_mm_fp8(a_q: torch.Tensor, b_q: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                  out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """(a_q · scale_a) @ (b_q · scale_b) in ``out_dtype`` through ``torch._scaled_mm``.

    A must be row-major, B column-major; K and N multiples of 16. Older torch (≤ 2.3) returns
    (out, amax), newer returns the tensor; keywords are used because the positional order changed.
    """
    r = torch._scaled_mm(a_q, b_q, scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype)
    return r[0] if isinstance(r, tuple) else r


def reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """float64 reference of A @ B (on A's device)."""
    return torch.matmul(a.double(), b.double())
