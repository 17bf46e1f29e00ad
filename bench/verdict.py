"""Does this card deliver what its spec sheet promises, and do rooflab's kernels reach the card's roofs?

Two kinds of check, read off a measured profile (and the spec profile it is compared with):

* **card** checks put a measured peak over the spec sheet's figure. A healthy card reaches a known fraction of
  its datasheet (shared/reference/anchors.md): on Hopper a read-only stream reaches 93-95 % of the HBM spec and a
  copy ~85-87 %; the maximum achievable bf16/fp16 matmul is ~80 % of the dense spec (mamf-finder, and 798 of
  989 TFLOP/s measured on this project's lent H100), fp8 ~71 %. ``pass`` at or above the threshold, ``warn``
  within 80 % of it, ``fail`` below: 0.8 x a healthy figure is where DCGM's per-SKU diagnostics fail a card.
* **kernel** checks compare rooflab's own kernels with the trusted library on the same card (Triton copy vs
  ``torch.Tensor.copy_``, Triton matmul vs cuBLAS, Triton decode attention vs the measured copy bandwidth and vs
  PyTorch SDPA). A miss says rooflab's kernel is slow, not that the card is: ``pass`` or ``miss``.

CPU profiles get no card verdict (no spec sheet) and no kernel verdict (Triton runs in the interpreter there,
correctness only, never timed): every check says ``n/a`` with its reason.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from .profile import Profile

Status = Literal["pass", "warn", "fail", "miss", "n/a"]

# (quantity, threshold as a fraction of the spec figure) for the card checks; the why is in the module doc
MEMORY_BEST_OF_SPEC = 0.92
MEMORY_COPY_OF_SPEC = 0.85
MATMUL_OF_SPEC = {"bfloat16": 0.75, "float16": 0.75, "float8_e4m3fn": 0.65}
WARN_BAND = 0.8  # warn down to 0.8 x the threshold, fail below

TRITON_COPY_OF_TORCH = 1.0
TRITON_MATMUL_OF_CUBLAS = 0.85
DECODE_OF_COPY = 0.85
# the decode point the kernel checks read: Llama-3-8B-style GQA (32 query / 8 KV heads x 128), bf16 KV cache,
# 64 sequences x 4096 cached tokens (1.07 GB of K and V: far past any L2)
DECODE_POINT = {"batch": 64, "context": 4096, "q_heads": 32, "kv_heads": 8, "head_dim": 128, "dtype": "bfloat16"}


@dataclass(frozen=True)
class Check:
    kind: Literal["card", "kernel"]
    name: str
    status: Status
    measured: float | None  # the number checked (B/s, FLOP/s, or a ratio for the kernel checks)
    reference: float | None  # what it is held against, same unit
    ratio: float | None  # measured / reference
    threshold: float | None  # the ratio a pass needs
    unit: str
    detail: str  # how the two numbers were read, or why there is no verdict

    def as_dict(self) -> dict:
        return asdict(self)


def _card(name: str, measured: float | None, spec: float | None, threshold: float, unit: str, how: str,
          no_spec: str) -> Check:
    if not measured:
        return Check("card", name, "n/a", None, spec, None, threshold, unit, "not measured in this profile")
    if not spec:
        return Check("card", name, "n/a", measured, None, None, threshold, unit, no_spec)
    r = measured / spec
    status: Status = "pass" if r >= threshold else "warn" if r >= WARN_BAND * threshold else "fail"
    return Check("card", name, status, measured, spec, r, threshold, unit, how)


def _kernel(name: str, measured: float | None, reference: float | None, threshold: float, unit: str, how: str,
            missing: str) -> Check:
    if not measured or not reference:
        return Check("kernel", name, "n/a", measured, reference, None, threshold, unit, missing)
    r = measured / reference
    return Check("kernel", name, "pass" if r >= threshold else "miss", measured, reference, r, threshold, unit, how)


def evaluate(profile: Profile, spec: Profile | None = None) -> list[Check]:
    """Every check, in a fixed order; a quantity the profile lacks gives an ``n/a`` check saying so."""
    gpu = profile.device.backend == "cuda"
    no_spec = ("CPU mode: no spec sheet to hold a CPU against" if not gpu
               else "no spec sheet matched this device (pass --spec NAME)")
    pk = profile.peaks
    spk = spec.peaks if spec is not None else None
    checks = [
        _card("memory bandwidth, best kernel", pk.memory_bandwidth_Bps, spk and spk.memory_bandwidth_Bps,
              MEMORY_BEST_OF_SPEC, "B/s", f"{pk.memory_bandwidth_source or 'best kernel'} vs spec", no_spec),
        _card("memory bandwidth, copy", pk.copy_bandwidth_Bps, spk and spk.memory_bandwidth_Bps,
              MEMORY_COPY_OF_SPEC, "B/s", f"{pk.copy_bandwidth_source or 'copy'} (read + write bytes) vs spec",
              no_spec),
    ]
    for dt, thr in MATMUL_OF_SPEC.items():
        checks.append(_card(f"matmul {dt}", pk.matmul_flops.get(dt), spk and spk.matmul_flops.get(dt), thr,
                            "FLOP/s", f"{pk.matmul_source.get(dt, 'best shape')} vs dense spec", no_spec))

    interp = "CPU mode: Triton runs in the interpreter (correctness only, never timed)"
    # Triton copy vs torch copy_: the best beyond-cache point of each
    copies = [p for p in profile.curves.hbm if p.op == "copy" and p.beyond_cache]
    tri = max([p for p in copies if p.impl == "triton"], key=lambda p: p.bandwidth_Bps, default=None)
    tor = max([p for p in copies if p.impl == "torch"], key=lambda p: p.bandwidth_Bps, default=None)
    checks.append(_kernel(
        "Triton copy vs torch copy_", tri and tri.bandwidth_Bps, tor and tor.bandwidth_Bps, TRITON_COPY_OF_TORCH,
        "B/s", "best beyond-cache copy of each" + (f" (Triton {tri.dtype} at {tri.working_set_bytes / 1e9:.2f} GB)"
                                                    if tri else ""),
        interp if not gpu else "needs both Triton and torch copy points beyond the cache"))
    # Triton bf16 matmul vs cuBLAS: the peak of each over every shape measured
    mm = [p for p in profile.curves.matmul if p.dtype == "bfloat16"]
    tri_m = max([p for p in mm if p.impl == "triton"], key=lambda p: p.flops, default=None)
    tor_m = max([p for p in mm if p.impl == "torch"], key=lambda p: p.flops, default=None)
    checks.append(_kernel(
        "Triton bf16 matmul vs cuBLAS", tri_m and tri_m.flops, tor_m and tor_m.flops, TRITON_MATMUL_OF_CUBLAS,
        "FLOP/s", "peak of each" + (f" (Triton at {tri_m.M}x{tri_m.N}x{tri_m.K}, cuBLAS at "
                                    f"{tor_m.M}x{tor_m.N}x{tor_m.K})" if tri_m and tor_m else ""),
        interp if not gpu else "needs Triton and torch bf16 matmul points"))
    # decode attention at the reference point
    dec = [p for p in profile.curves.decode if all(getattr(p, k) == v for k, v in DECODE_POINT.items())]
    where = "{batch} x {context}, GQA {q_heads}q/{kv_heads}kv x {head_dim}, {dtype}".format(**DECODE_POINT)
    tri_d = max([p for p in dec if p.impl == "triton"], key=lambda p: p.bandwidth_Bps, default=None)
    sdpa = max([p for p in dec if p.impl != "triton"], key=lambda p: p.bandwidth_Bps, default=None)
    missing_d = interp if not gpu else f"needs the Triton decode point at {where}"
    checks.append(_kernel(
        "Triton decode attention vs measured copy", tri_d and tri_d.bandwidth_Bps, pk.copy_bandwidth_Bps,
        DECODE_OF_COPY, "B/s", f"{tri_d.layout if tri_d else ''} KV cache at {where}; bytes = K + V + q + out",
        missing_d))
    checks.append(_kernel(
        "Triton decode attention vs SDPA", sdpa and tri_d and sdpa.median_s, tri_d and tri_d.median_s, 1.0, "s",
        f"SDPA time / Triton time at {where} (> 1: Triton faster)",
        missing_d if not tri_d else f"needs the SDPA decode point at {where}"))
    return checks


def summary(checks: list[Check]) -> str:
    """One line: the card's verdict and the kernels'."""
    card = [c for c in checks if c.kind == "card" and c.status != "n/a"]
    kern = [c for c in checks if c.kind == "kernel" and c.status != "n/a"]
    if not card:
        card_s = "card: no verdict"
    else:
        worst = "fail" if any(c.status == "fail" for c in card) else "warn" if any(
            c.status == "warn" for c in card) else "pass"
        card_s = f"card: {worst.upper()} ({sum(c.status == 'pass' for c in card)}/{len(card)} at spec targets)"
    if not kern:
        kern_s = "kernels: no verdict"
    else:
        kern_s = f"kernels: {sum(c.status == 'pass' for c in kern)}/{len(kern)} reach their targets"
    return f"{card_s}; {kern_s}"
