"""Streaming memory kernels (STREAM-style): copy, read-only (reduction), write-only (fill), triad.

Each op has a Triton kernel with its launcher and a PyTorch equivalent. Pure functions: no timing, no I/O.
Launchers autotune over block size / warps when given CUDA tensors; on CPU tensors (which only the Triton
interpreter can run) they use one fixed small configuration, since autotuning there would time nothing real.
The bytes each op moves are counted by the benchmark (bench/benchmarks/hbm.py), not here.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# Block sizes and warps that stream well on Hopper/Ampere: large blocks give each thread several 16-byte
# vector accesses in flight, which HBM3 needs to hide its latency.
_CONFIGS = [
    triton.Config({"BLOCK": b}, num_warps=w)
    for b, w in ((2048, 4), (4096, 8), (8192, 8), (8192, 16), (16384, 16))
]
_INTERP_BLOCK = 256
# programs of the persistent reduction: enough to fill every SM several times on the largest GPU
_MAX_READ_PROGRAMS = 2048


@triton.jit
def _copy_kernel(src, dst, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(dst + offs, tl.load(src + offs, mask=m), mask=m)


@triton.jit
def _fill_kernel(dst, value, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    # fill in fp32, then cast: the Triton 3.6 interpreter cannot build a non-zero bf16 constant (no get_bf16)
    v = tl.full((BLOCK,), value, dtype=tl.float32).to(dst.dtype.element_ty)
    tl.store(dst + offs, v, mask=m)


@triton.jit
def _triad_kernel(a, b, c, scalar, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(b + offs, mask=m).to(tl.float32)
    y = tl.load(c + offs, mask=m).to(tl.float32)
    tl.store(a + offs, (x + scalar * y).to(a.dtype.element_ty), mask=m)


@triton.jit
def _read_kernel(src, partial, n, BLOCK: tl.constexpr):
    # grid-stride loop: each program streams many blocks and writes one fp32 partial sum
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    start = pid.to(tl.int64) * BLOCK
    step = nprog.to(tl.int64) * BLOCK
    for base in range(start, n, step):
        offs = base + tl.arange(0, BLOCK)
        acc += tl.load(src + offs, mask=offs < n, other=0.0).to(tl.float32)
    tl.store(partial + pid, tl.sum(acc, axis=0))


def _tune_bench(kernel_call, quantiles):
    # Autotuning runs once per array length (the key) in every sweep: a short benchmark per config (5 ms warm-up,
    # 20 ms measured, L2 cleared by do_bench) instead of triton's default 25 + 100 ms keeps it to ~0.15 s a size.
    import triton.testing

    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


_copy_tuned = triton.autotune(_CONFIGS, key=["n"], do_bench=_tune_bench)(_copy_kernel)
_fill_tuned = triton.autotune(_CONFIGS, key=["n"], do_bench=_tune_bench)(_fill_kernel)
_triad_tuned = triton.autotune(_CONFIGS, key=["n"], do_bench=_tune_bench)(_triad_kernel)


def _launch(tuned, plain, n: int, on_gpu: bool, *args):
    if on_gpu:
        tuned[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](*args, n)
    else:
        plain[(triton.cdiv(n, _INTERP_BLOCK),)](*args, n, BLOCK=_INTERP_BLOCK)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        raise ValueError("arrays must share shape, dtype and device")
    if not (a.is_contiguous() and b.is_contiguous()):
        raise ValueError("arrays must be contiguous")


def triton_copy(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    _check_pair(src, dst)
    _launch(_copy_tuned, _copy_kernel, src.numel(), src.is_cuda, src, dst)
    return dst


def triton_write(dst: torch.Tensor, value: float) -> torch.Tensor:
    if not dst.is_contiguous():
        raise ValueError("array must be contiguous")
    _launch(_fill_tuned, _fill_kernel, dst.numel(), dst.is_cuda, dst, float(value))
    return dst


def triton_triad(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, scalar: float) -> torch.Tensor:
    _check_pair(a, b)
    _check_pair(b, c)
    _launch(_triad_tuned, _triad_kernel, a.numel(), a.is_cuda, a, b, c, float(scalar))
    return a


def read_programs(n: int, on_gpu: bool) -> tuple[int, int]:
    """(programs, BLOCK) for the reduction; the partial buffer needs `programs` fp32 slots."""
    block = 4096 if on_gpu else _INTERP_BLOCK
    return max(1, min(_MAX_READ_PROGRAMS if on_gpu else 64, triton.cdiv(n, block))), block


def triton_read(src: torch.Tensor, partial: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of all elements (fp32 accumulation): every byte of ``src`` is read once."""
    if not src.is_contiguous():
        raise ValueError("array must be contiguous")
    n = src.numel()
    progs, block = read_programs(n, src.is_cuda)
    if partial is None or partial.numel() < progs:
        partial = torch.empty(progs, dtype=torch.float32, device=src.device)
    _read_kernel[(progs,)](src, partial, n, BLOCK=block, num_warps=8 if src.is_cuda else 4)
    return partial[:progs].sum()


# ---- PyTorch equivalents (cudaMemcpy-class copy, cub reduction, memset-class fill, elementwise triad)

def torch_copy(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    return dst.copy_(src)


def torch_read(src: torch.Tensor) -> torch.Tensor:
    return torch.sum(src, dtype=torch.float32)


def torch_write(dst: torch.Tensor, value: float) -> torch.Tensor:
    return dst.fill_(value)


def torch_triad(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, scalar: float) -> torch.Tensor:
    return torch.add(b, c, alpha=scalar, out=a)


def reference(op: str, b: torch.Tensor, c: torch.Tensor | None = None, scalar: float = 0.0) -> torch.Tensor:
    """float64 reference result of ``op`` on input(s) ``b`` (and ``c`` for triad)."""
    if op == "copy":
        return b.double()
    if op == "read":
        return b.double().sum()
    if op == "write":
        return torch.full_like(b, scalar, dtype=torch.float64)
    if op == "triad":
        assert c is not None
        return b.double() + scalar * c.double()
    raise ValueError(f"unknown op {op!r}")
