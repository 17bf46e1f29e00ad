"""Does this card deliver what its spec sheet promises, and do rooflab's kernels reach the card's roofs?

``evaluate(profile, spec)`` reads a measured profile and gives one :class:`Verdict` per check, in a fixed order:
**card** verdicts grade a measured peak against the spec sheet's figure (pass / warn / fail, through the one
threshold table in bench/thresholds.py, which `rooflab doctor` grades with too); **kernel** verdicts hold
rooflab's own kernels against the trusted library on the same card (pass / miss: a miss says rooflab's kernel
is slow, not the card). A CPU profile gets ``n/a`` everywhere, with the reason. docs/doctor.md explains the
thresholds and their sources.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, Protocol, TypeVar

from . import thresholds
from .profile import Profile
from .thresholds import Band


class _HasImpl(Protocol):
    @property
    def impl(self) -> str: ...


P = TypeVar("P", bound=_HasImpl)

Status = Literal["pass", "warn", "fail", "miss", "n/a"]

# The kernel checks: rooflab's kernel over the library's on the same card (the card checks' thresholds are in
# bench/thresholds.py). Triton's copy must not be the bottleneck of rooflab's own bandwidth numbers; FlashInfer's
# decode attention reaches 82-88% of the HBM spec at the decode point below.
TRITON_COPY_OF_TORCH = 1.0
TRITON_MATMUL_OF_CUBLAS = 0.85
DECODE_OF_COPY = 0.85
# the decode point the kernel checks read: Llama-3-8B-style GQA (32 query / 8 KV heads x 128), bf16 KV cache,
# 64 sequences x 4096 cached tokens (1.07 GB of K and V: far past any L2)
DECODE_POINT = {"batch": 64, "context": 4096, "q_heads": 32, "kv_heads": 8, "head_dim": 128, "dtype": "bfloat16"}


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: a card's measured peak against its spec sheet, or a kernel against the library."""

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


def _card(name: str, measured: float | None, spec: float | None, band: Band, unit: str, how: str,
          no_spec: str) -> Verdict:
    if not measured:
        return Verdict("card", name, "n/a", None, spec, None, band.pass_at, unit, "not measured in this profile")
    if not spec:
        return Verdict("card", name, "n/a", measured, None, None, band.pass_at, unit, no_spec)
    return Verdict("card", name, band.grade(measured, spec), measured, spec, measured / spec, band.pass_at, unit,
                   how)


def _kernel(name: str, measured: float | None, reference: float | None, threshold: float, unit: str, how: str,
            missing: str) -> Verdict:
    if not measured or not reference:
        return Verdict("kernel", name, "n/a", measured, reference, None, threshold, unit, missing)
    r = measured / reference
    return Verdict("kernel", name, "pass" if r >= threshold else "miss", measured, reference, r, threshold, unit, how)


def evaluate(profile: Profile, spec: Profile | None = None) -> list[Verdict]:
    """Every check, in a fixed order; a quantity the profile lacks gives an ``n/a`` check saying so."""
    gpu = profile.device.backend == "cuda"
    no_spec = ("CPU mode: no spec sheet to hold a CPU against" if not gpu
               else "no spec sheet matched this device (pass --spec NAME)")
    pk = profile.peaks
    spk = spec.peaks if spec is not None else None
    spec_bw = spk.memory_bandwidth_Bps if spk is not None else None
    checks = [
        _card("memory bandwidth, best kernel", pk.memory_bandwidth_Bps, spec_bw,
              thresholds.READ_BEST_OF_SPEC, "B/s", f"{pk.memory_bandwidth_source or 'best kernel'} vs spec", no_spec),
        _card("memory bandwidth, copy", pk.copy_bandwidth_Bps, spec_bw,
              thresholds.COPY_OF_SPEC, "B/s", f"{pk.copy_bandwidth_source or 'copy'} (read + write bytes) vs spec",
              no_spec),
    ]
    for dt, band in thresholds.MATMUL_BEST_OF_SPEC.items():
        checks.append(_card(f"matmul {dt}", pk.matmul_flops.get(dt), spk.matmul_flops.get(dt) if spk else None, band,
                            "FLOP/s", f"{pk.matmul_source.get(dt, 'best shape')} vs dense spec", no_spec))

    interp = "CPU mode: Triton runs in the interpreter (correctness only, never timed)"
    # Triton copy vs torch copy_: the best beyond-cache point of each
    copies = [p for p in profile.curves.hbm if p.op == "copy" and p.beyond_cache]
    tri, tor = (_best(copies, impl, lambda p: p.bandwidth_Bps) for impl in ("triton", "torch"))
    checks.append(_kernel(
        "Triton copy vs torch copy_", tri.bandwidth_Bps if tri else None, tor.bandwidth_Bps if tor else None,
        TRITON_COPY_OF_TORCH,
        "B/s", "best beyond-cache copy of each" + (f" (Triton {tri.dtype} at {tri.working_set_bytes / 1e9:.2f} GB)"
                                                    if tri else ""),
        interp if not gpu else "needs both Triton and torch copy points beyond the cache"))
    # Triton bf16 matmul vs cuBLAS: the peak of each over every shape measured
    mm = [p for p in profile.curves.matmul if p.dtype == "bfloat16"]
    tri_m, tor_m = (_best(mm, impl, lambda p: p.flops) for impl in ("triton", "torch"))
    checks.append(_kernel(
        "Triton bf16 matmul vs cuBLAS", tri_m.flops if tri_m else None, tor_m.flops if tor_m else None,
        TRITON_MATMUL_OF_CUBLAS,
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
        "Triton decode attention vs measured copy", tri_d.bandwidth_Bps if tri_d else None, pk.copy_bandwidth_Bps,
        DECODE_OF_COPY, "B/s", f"{tri_d.layout if tri_d else ''} KV cache at {where}; bytes = K + V + q + out",
        missing_d))
    checks.append(_kernel(
        "Triton decode attention vs SDPA", sdpa.median_s if sdpa and tri_d else None,
        tri_d.median_s if tri_d else None, 1.0, "s",
        f"SDPA time / Triton time at {where} (> 1: Triton faster)",
        missing_d if not tri_d else f"needs the SDPA decode point at {where}"))
    return checks


def summary(checks: list[Verdict]) -> str:
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


def _best(points: list[P], impl: str, key: Callable[[P], float]) -> P | None:
    """The point of ``impl`` with the largest ``key``, or None when it has none."""
    return max((p for p in points if p.impl == impl), key=key, default=None)
