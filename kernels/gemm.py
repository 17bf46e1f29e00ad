"""Dense matmul C = A @ B: a tiled Triton kernel, the PyTorch library paths, and an fp8 path.

* ``triton_matmul``: tiled, grouped tile order, fp32 accumulation. On sm_90+ the operand tiles come through
  TMA descriptors (``_matmul_tma_kernel``: TMA + wgmma, edge tiles zero-filled by the hardware); elsewhere, or
  when a shape breaks TMA's 16-byte stride rule, plain pointer loads (``_matmul_kernel``). Autotuned on CUDA
  tensors; CPU tensors (the Triton interpreter) use one fixed small configuration.
* ``triton_matmul_fp8``: the TMA kernel on fp8 e4m3 operands with per-tensor scales (sm_90+), bf16 out.
* ``torch_matmul``: ``torch.matmul`` (cuBLAS / the CPU BLAS); ``scaled_mm_fp8``: fp8 e4m3 through
  ``torch._scaled_mm`` (cuBLASLt) with per-tensor scales.

Layout: A (M, K) row-major, B (K, N) column-major (the transpose of an nn.Linear weight W (N, K), as LLM
inference multiplies activations by weights). Design notes: docs/method.md ("The Triton GEMM kernel").
Pure functions: no timing, no I/O, no imports from ``bench``.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

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
# True fp32 runs on the FMA units, its accumulator in registers: compiled for sm_90, 128x256 with 8 warps and
# 128x128 with 4 warps spill (255 registers + 120-176 B of stack); these do not.
_CONFIGS_IEEE = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=s)
    for bm, bn, bk, w, s in ((128, 128, 32, 8, 4), (64, 128, 32, 4, 4), (64, 64, 32, 4, 3))
]


def _set_tma_blocks(nargs: dict) -> None:
    # the descriptors' block shapes are part of the compiled kernel's signature: set them for the config tried
    nargs["a_desc"].block_shape = [nargs["BLOCK_M"], nargs["BLOCK_K"]]
    nargs["b_desc"].block_shape = [nargs["BLOCK_N"], nargs["BLOCK_K"]]


def _tma_configs(rows):
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=s,
                          pre_hook=_set_tma_blocks) for bm, bn, bk, w, s in rows]


# TMA variant (sm_90+). 16-bit: 128x256x64 / 256x128x64 with 8 warps (two consumer warpgroups) and 3–4 stages
# are the usual best for large H100 GEMMs (144 / 192 KB of shared memory); 128x128 and 64x128 for mid and
# small M. Compiled for sm_90 with triton 3.6 and 3.9: TMA loads (cp.async.bulk.tensor) feeding wgmma, no spills.
_TMA_CONFIGS_16 = _tma_configs(((128, 256, 64, 8, 3), (128, 256, 64, 8, 4), (256, 128, 64, 8, 3),
                                (128, 128, 64, 8, 4), (64, 128, 64, 4, 4)))
_TMA_CONFIGS_TF32 = _tma_configs(((128, 256, 32, 8, 3), (128, 128, 32, 8, 4), (64, 128, 32, 4, 4)))
# fp8: one byte per element, so BLOCK_K 128 keeps the same bytes per stage as 16-bit BLOCK_K 64
_TMA_CONFIGS_8 = _tma_configs(((128, 256, 128, 8, 3), (256, 128, 128, 8, 3), (128, 128, 128, 8, 4),
                               (64, 128, 128, 4, 4)))


def _tune_bench(kernel_call, quantiles):
    # Autotuning happens once per (M, N, K, dtype) on the device's time: 5 ms warm-up and 25 ms measured per
    # config (do_bench clears L2 between calls) instead of triton's default 25 + 100 ms.
    import triton.testing

    return triton.testing.do_bench(kernel_call, warmup=5, rep=25, quantiles=quantiles)
# Under the interpreter: one small tile (tl.dot needs every dimension >= 16), so odd shapes span several
# tiles in M, N and K and every edge mask is exercised.
INTERP_CONFIG = {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2}
_MAX_ELEMENTS = 2**31 - 1  # the kernel computes offsets in int32


@triton.jit
def _grouped_tile(pid, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    # Grouped order: GROUP_M row-blocks of C are computed back to back, so the column-blocks of B they
    # share are still in L2 when the next row-block needs them. Returns the (row, column) block of program pid.
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_pid_n
    first_m = (pid // per_group) * GROUP_M
    group_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    return first_m + ((pid % per_group) % group_m), (pid % per_group) // group_m


@triton.jit
def _matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                   stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   GROUP_M: tl.constexpr, EVEN_K: tl.constexpr, PRECISION: tl.constexpr,
                   UPCAST: tl.constexpr = False):
    pid_m, pid_n = _grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)

    # Rows/columns past the edge wrap onto valid ones, so the loads need no M/N mask (their results are
    # discarded by the masked store); only the K tail is masked, and only when K % BLOCK_K != 0.
    offs_am = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_bn = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(tl.cdiv(K, BLOCK_K)):
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


@triton.jit
def _matmul_tma_kernel(a_desc, b_desc, c_ptr, scale_a, scale_b, M, N, K, stride_cm, stride_cn,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       GROUP_M: tl.constexpr, PRECISION: tl.constexpr, SCALED: tl.constexpr,
                       UPCAST: tl.constexpr = False):
    # a_desc: A (M, K) row-major; b_desc: the weight W (N, K) row-major, i.e. B = Wᵀ column-major. Tiles past
    # an edge (M, N or the K tail) are zero-filled by the TMA unit, so the loop needs no masks.
    pid_m, pid_n = _grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(tl.cdiv(K, BLOCK_K)):
        a = a_desc.load([off_m, k * BLOCK_K])
        b = b_desc.load([off_n, k * BLOCK_K])
        if UPCAST:  # interpreter only (bf16 and fp8 dots there are wrong or missing): exact widening to fp32
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b.T, acc, input_precision=PRECISION)
    if SCALED:  # per-tensor fp8 scales: C = (A_q · s_a)(B_q · s_b) = s_a · s_b · (A_q B_q)
        acc = acc * (tl.load(scale_a) * tl.load(scale_b))

    offs_cm = off_m + tl.arange(0, BLOCK_M)
    offs_cn = off_n + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + offs_cm[:, None] * stride_cm + offs_cn[None, :] * stride_cn
    c_mask = (offs_cm[:, None] < M) & (offs_cn[None, :] < N)
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=c_mask)


_kernel = triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})(_matmul_kernel)
# One autotuner per variant, operand family and fp32 precision: each keeps its own cache of best configs, so a
# tf32 choice is never reused for an IEEE fp32 run of the same shape (the autotune key already holds the
# output dtype, which tells bf16 from fp16).
_TUNED = {
    "16bit": triton.autotune(_CONFIGS_16, key=["M", "N", "K"], do_bench=_tune_bench)(_kernel),
    "tf32": triton.autotune(_CONFIGS_32, key=["M", "N", "K"], do_bench=_tune_bench)(_kernel),
    "ieee": triton.autotune(_CONFIGS_IEEE, key=["M", "N", "K"], do_bench=_tune_bench)(_kernel),
}
_TUNED_TMA = {
    "16bit": triton.autotune(_TMA_CONFIGS_16, key=["M", "N", "K"], do_bench=_tune_bench)(_matmul_tma_kernel),
    "tf32": triton.autotune(_TMA_CONFIGS_TF32, key=["M", "N", "K"], do_bench=_tune_bench)(_matmul_tma_kernel),
    "fp8": triton.autotune(_TMA_CONFIGS_8, key=["M", "N", "K"], do_bench=_tune_bench)(_matmul_tma_kernel),
}
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
KERNELS = ("auto", "tma", "pointer")


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


def tma_capable(device: torch.device) -> bool:
    """The device has a Tensor Memory Accelerator (compute capability 9.0 or newer)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (9, 0)


def tma_eligible(a: torch.Tensor, b: torch.Tensor) -> bool:
    """A (M, K) row-major and B (K, N) column-major with 16-byte aligned bases and rows: what a TMA descriptor
    of A and of Bᵀ (the weight) needs."""
    esize = a.element_size()
    return (a.stride(1) == 1 and b.stride(0) == 1 and (a.stride(0) * esize) % 16 == 0
            and (b.stride(1) * esize) % 16 == 0 and a.data_ptr() % 16 == 0 and b.data_ptr() % 16 == 0
            and a.shape[0] > 0 and b.shape[1] > 0 and a.shape[1] > 0)


def variant(a: torch.Tensor, b: torch.Tensor, tf32: bool = False) -> str:
    """Which kernel ``triton_matmul(a, b, tf32=tf32)`` runs: "tma" or "pointer"."""
    return "tma" if _use_tma("auto", a, b, _family(a.dtype, tf32)) else "pointer"


def _use_tma(kernel: str, a: torch.Tensor, b: torch.Tensor, family: str) -> bool:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {kernel!r}")
    if kernel == "pointer" or family == "ieee":
        return False
    if kernel == "tma":
        if not tma_eligible(a, b):
            raise ValueError("the TMA kernel needs A row-major, B column-major, 16-byte aligned rows")
        return True
    return a.is_cuda and tma_capable(a.device) and tma_eligible(a, b)


def _launch_tma(family: str, a, b, out, M, N, K, prec, scales, config) -> None:
    """The TMA kernel: autotuned on CUDA tensors without ``config``; else one fixed config (the interpreter:
    INTERP_CONFIG, with tiles widened to fp32 since its dots on bf16/fp8 are not exact)."""
    w = b.t()  # (N, K) row-major: the descriptor's view of B
    sa, sb = scales if scales is not None else (out, out)  # unused unless SCALED
    a_desc = TensorDescriptor.from_tensor(a, [16, 16])  # block shapes are set per config below / by the hook
    b_desc = TensorDescriptor.from_tensor(w, [16, 16])
    args = (a_desc, b_desc, out, sa, sb, M, N, K, out.stride(0), out.stride(1))
    scaled = scales is not None
    if a.is_cuda and config is None:
        grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
        _TUNED_TMA[family][grid](*args, PRECISION=prec, SCALED=scaled)
        return
    cfg = dict(config if a.is_cuda and config is not None else INTERP_CONFIG)
    warps, stages = cfg.pop("num_warps", 4), cfg.pop("num_stages", 3)
    upcast = not a.is_cuda and a.dtype != torch.float16 and family != "tf32"
    if not a.is_cuda and family == "tf32":
        prec = "ieee"  # the interpreter has no TF32: exact fp32 products
    a_desc.block_shape = [cfg["BLOCK_M"], cfg["BLOCK_K"]]
    b_desc.block_shape = [cfg["BLOCK_N"], cfg["BLOCK_K"]]
    tiles = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
    _matmul_tma_kernel[tiles](*args, PRECISION="ieee" if upcast else prec, SCALED=scaled, UPCAST=upcast,
                             num_warps=warps, num_stages=stages, **cfg)


def triton_matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, *, tf32: bool = False,
                  config: dict | None = None, kernel: str = "auto") -> torch.Tensor:
    """C = A @ B with fp32 accumulation; C has A's dtype unless ``out`` says otherwise.

    fp32 operands use true fp32 arithmetic unless ``tf32``. On CUDA tensors the launch autotunes, unless a
    fixed ``config`` (BLOCK_M/N/K, GROUP_M, optional num_warps/num_stages) is given; CPU tensors (the
    interpreter) always use ``INTERP_CONFIG``. ``kernel``: "auto" takes the TMA variant on sm_90+ when the
    operands allow it (not for true fp32), "tma" / "pointer" force one (tests; "tma" runs in the interpreter
    too with triton >= 3.7).
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
    prec = _precision(a.dtype, tf32)
    family = _family(a.dtype, tf32)
    if _use_tma(kernel, a, b, family):
        _launch_tma(family, a, b, out, M, N, K, prec, None, config)
        return out
    args = (a, b, out, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1))
    if a.is_cuda and config is None:
        grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
        _TUNED[family][grid](*args, PRECISION=prec)
        return out
    cfg = dict(config if a.is_cuda and config is not None else INTERP_CONFIG)
    warps, stages = cfg.pop("num_warps", 4), cfg.pop("num_stages", 3)
    # CPU tensors run in the interpreter, whose tl.dot multiplies bfloat16 bit patterns as integers: there
    # the tiles are widened to fp32 first (exact for 16-bit inputs; same fp32 accumulation).
    upcast = not a.is_cuda and a.dtype == torch.bfloat16
    if upcast:
        prec = "ieee"
    tiles = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
    _kernel[tiles](*args, PRECISION=prec, UPCAST=upcast, num_warps=warps, num_stages=stages, **cfg)
    return out


def triton_matmul_fp8(a_q: torch.Tensor, b_q: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                      out: torch.Tensor | None = None, *, config: dict | None = None) -> torch.Tensor:
    """(a_q · scale_a) @ (b_q · scale_b) in bf16 (or ``out``'s dtype) by the TMA kernel: fp8 e4m3 operands, A
    row-major, B column-major (a weight's transpose), K a multiple of 16, per-tensor fp32 scales (0-dim or
    1-element tensors on the operands' device). CUDA: sm_90+ (TMA, fp8 wgmma); CPU tensors run in the
    interpreter (triton >= 3.7) with the tiles widened to fp32."""
    fp8 = getattr(torch, "float8_e4m3fn", None)
    if fp8 is None or a_q.dtype != fp8 or b_q.dtype != fp8:
        raise ValueError("triton_matmul_fp8 needs float8_e4m3fn operands")
    M, N, K = _check_operands(a_q, b_q, out)
    if out is None:
        out = torch.empty((M, N), dtype=torch.bfloat16, device=a_q.device)
    if scale_a.numel() != 1 or scale_b.numel() != 1 or scale_a.dtype != torch.float32 \
            or scale_b.dtype != torch.float32:
        raise ValueError("scales must be single float32 values (per-tensor scaling)")
    if not tma_eligible(a_q, b_q):
        raise ValueError("fp8 operands must be A row-major and B column-major with K a multiple of 16")
    if max(a_q.numel(), b_q.numel(), out.numel()) > _MAX_ELEMENTS:
        raise ValueError("operands too large for the kernel's 32-bit offsets")
    if a_q.is_cuda and not tma_capable(a_q.device):
        raise ValueError("the Triton fp8 kernel needs compute capability >= 9.0 (TMA, fp8 wgmma)")
    if M == 0 or N == 0:
        return out
    _launch_tma("fp8", a_q, b_q, out, M, N, K, "tf32", (scale_a.reshape(1), scale_b.reshape(1)), config)
    return out


def triton_best_config(dtype: torch.dtype, tf32: bool = False, tma: bool = False) -> str | None:
    """The config the autotuner chose in its latest tuned launch for this operand family and variant (None if
    none). ``dtype`` float8_e4m3fn: the fp8 TMA kernel."""
    fam = "fp8" if str(dtype).endswith("float8_e4m3fn") else _family(dtype, tf32)
    tuner = _TUNED_TMA.get(fam) if tma or fam == "fp8" else _TUNED[fam]
    best = getattr(tuner, "best_config", None)
    if best is None:
        return None
    kw = best.kwargs
    return (("TMA " if tma or fam == "fp8" else "") +
            f"BLOCK {kw.get('BLOCK_M')}x{kw.get('BLOCK_N')}x{kw.get('BLOCK_K')} GROUP_M {kw.get('GROUP_M')} "
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
