"""Correctness checks every benchmark runs before it times anything (docs/method.md).

Poison the output, run once, compare with a higher-precision reference by ‖out − ref‖ / ‖ref‖, and verify
every element was written (no poison left). One tolerance table, per dtype.
"""
from __future__ import annotations

import math

import torch

from . import dtypes
from .measurement import Check

# relative Frobenius error allowed, by the dtype the kernel computes/stores in
TOLERANCE: dict[str, float] = {
    "float64": 1e-12,
    "float32": 1e-6,
    "tf32": 2e-3,
    "float16": 1e-2,
    "bfloat16": 1.6e-2,
    "float8_e4m3fn": 8e-2,
    "float8_e5m2": 1.6e-1,
}



def tolerance(dtype: str | torch.dtype) -> float:
    name = dtypes.name(dtype)
    if name not in TOLERANCE:
        raise KeyError(f"no tolerance defined for dtype {name!r}")
    return TOLERANCE[name]


def poison(t: torch.Tensor) -> torch.Tensor:
    """Fill an output with NaN (floats) or a sentinel so an unwritten element cannot pass a check."""
    if t.is_floating_point():
        return t.fill_(float("nan"))
    return t.fill_(-0x5A5A)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖₂ / ‖ref‖₂ in float64 (absolute error if the reference is all zeros)."""
    o = out.detach().to("cpu", torch.float64)
    r = ref.detach().to("cpu", torch.float64)
    if o.shape != r.shape:
        raise ValueError(f"shape mismatch: output {tuple(o.shape)} vs reference {tuple(r.shape)}")
    denom = torch.linalg.vector_norm(r).item()
    num = torch.linalg.vector_norm(o - r).item()
    return num / denom if denom > 0 else num


def compare(out: torch.Tensor, ref: torch.Tensor, tol: float, reference: str) -> Check:
    """Check ``out`` against ``ref``: all elements finite (none left poisoned) and rel_err ≤ tol."""
    o = out.detach()
    if o.is_floating_point():
        bad = (~torch.isfinite(o)).sum().item()
        if bad:
            return Check(passed=False, rel_err=None, tol=tol, reference=reference,
                         detail=f"{bad} of {o.numel()} elements not finite (unwritten or overflow)")
    try:
        err = rel_err(o, ref)
    except ValueError as e:
        return Check(passed=False, tol=tol, reference=reference, detail=str(e))
    ok = math.isfinite(err) and err <= tol
    return Check(passed=ok, rel_err=err, tol=tol, reference=reference,
                 detail="" if ok else f"relative error {err:.3g} > tolerance {tol:.3g}")


def compare_chunked(out: torch.Tensor, ref_chunk, tol: float, reference: str,
                    chunk: int = 1 << 24) -> Check:
    """``compare`` for arrays too large for a float64 copy: ``ref_chunk(lo, hi)`` gives the float64
    reference of ``out.view(-1)[lo:hi]``; norms are accumulated chunk by chunk."""
    flat = out.detach().reshape(-1)
    num = den = 0.0
    for lo in range(0, flat.numel(), chunk):
        hi = min(lo + chunk, flat.numel())
        o = flat[lo:hi]
        if o.is_floating_point():
            bad = (~torch.isfinite(o)).sum().item()
            if bad:
                return Check(passed=False, tol=tol, reference=reference,
                             detail=f"{bad} elements not finite near index {lo} (unwritten or overflow)")
        r = ref_chunk(lo, hi).to(o.device, torch.float64)
        o64 = o.to(torch.float64)
        num += torch.linalg.vector_norm(o64 - r).item() ** 2
        den += torch.linalg.vector_norm(r).item() ** 2
    err = math.sqrt(num) / math.sqrt(den) if den > 0 else math.sqrt(num)
    ok = math.isfinite(err) and err <= tol
    return Check(passed=ok, rel_err=err, tol=tol, reference=reference,
                 detail="" if ok else f"relative error {err:.3g} > tolerance {tol:.3g}")


def compare_sum(got: float, x: torch.Tensor, tol: float, chunk: int = 1 << 24) -> Check:
    """Check a reduction ``got`` = sum(x) against the float64 sum, the error taken relative to sum |x| (a sum of
    values that cancel has no useful relative error). Summed chunk by chunk: no float64 copy of a huge array."""
    flat = x.detach().reshape(-1)
    ref = l1 = 0.0
    for lo in range(0, flat.numel(), chunk):
        c = flat[lo:lo + chunk].double()
        ref += c.sum().item()
        l1 += c.abs().sum().item()
    err = abs(got - ref) / l1 if l1 > 0 else abs(got - ref)
    ok = math.isfinite(got) and err <= tol
    return Check(passed=ok, rel_err=err, tol=tol, reference="float64 sum (error relative to sum |x|)",
                 detail="" if ok else f"sum {got} vs {ref}: error {err:.3g} x sum|x| > {tol:g}")


def random_tensor(shape, dtype: torch.dtype, device: str, generator: torch.Generator | None = None,
                  scale: float = 1.0) -> torch.Tensor:
    """Random normal data (never zeros or constants), drawn in fp32 and cast."""
    t = torch.randn(shape, dtype=torch.float32, device=device, generator=generator)
    if scale != 1.0:
        t.mul_(scale)
    return t.to(dtype)


def generator(device: str, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
