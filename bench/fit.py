"""The latency–bandwidth (α–β) fit of a transfer curve: ``time = α + bytes / β``.

Every transfer rooflab measures (host↔device copies, all-reduce) costs a fixed latency α plus a streaming
term bytes / β (Hockney's model; the α–β form NCCL's tuning model and the collective-cost literature use).
Fitted on the measured points, it answers "how long does a 16 KiB all-reduce take" at any size. The fit is
a least-squares solve on the relative residual, α ≥ 0 and β > 0, stated with its median and largest
relative residual.

How and why: docs/method.md ("Latency–bandwidth fits").
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass


class FitError(ValueError):
    """The points cannot support an α–β fit (too few distinct sizes, no growth with size, bad values)."""


@dataclass(frozen=True)
class AlphaBeta:
    alpha_s: float  # fixed latency per transfer
    beta_Bps: float  # asymptotic bandwidth (bytes / s) of the streaming term
    n_points: int
    min_bytes: int
    max_bytes: int
    median_rel_err: float  # median |t̂ − t| / t over the fitted points
    max_rel_err: float  # largest |t̂ − t| / t over the fitted points

    def time_s(self, nbytes: float) -> float:
        """Predicted time of a transfer of ``nbytes`` bytes."""
        if nbytes < 0:
            raise ValueError("a transfer cannot move a negative number of bytes")
        return self.alpha_s + nbytes / self.beta_Bps

    def bandwidth_Bps(self, nbytes: float) -> float:
        """Effective bandwidth nbytes / time at that size (tends to β for large transfers)."""
        return nbytes / self.time_s(nbytes) if nbytes > 0 else 0.0

    @property
    def half_bandwidth_bytes(self) -> float:
        """n½ = α·β: the size at which half of β is reached (Hockney's half-performance length)."""
        return self.alpha_s * self.beta_Bps

    def as_dict(self) -> dict:
        return asdict(self)


def _solve(points: Sequence[tuple[float, float]], fix_alpha_zero: bool) -> tuple[float, float]:
    """Weighted LS for t ≈ α + b·γ with weights 1/t²: minimise Σ (α/t + γ·b/t − 1)²."""
    # rows (x1, x2) = (1/t, b/t), target 1
    s11 = s12 = s22 = r1 = r2 = 0.0
    for b, t in points:
        x1, x2 = 1.0 / t, b / t
        s11 += x1 * x1
        s12 += x1 * x2
        s22 += x2 * x2
        r1 += x1
        r2 += x2
    if fix_alpha_zero:
        if s22 <= 0:
            raise FitError("no point has a positive size")
        return 0.0, r2 / s22
    det = s11 * s22 - s12 * s12
    if det <= 1e-12 * s11 * s22:
        raise FitError("the points cannot separate latency from bandwidth (need >= 2 distinct sizes)")
    alpha = (r1 * s22 - r2 * s12) / det
    gamma = (s11 * r2 - s12 * r1) / det
    return alpha, gamma


def fit_alpha_beta(points: Iterable[tuple[float, float]]) -> AlphaBeta:
    """Fit ``time = α + bytes / β`` to (bytes, time_s) points by least squares on the relative residual
    (t̂ − t) / t; a negative α is pinned at 0 and the fit redone (docs/method.md)."""
    pts = [(float(b), float(t)) for b, t in points]
    if any(not (math.isfinite(b) and math.isfinite(t)) for b, t in pts):
        raise FitError("points must be finite")
    if any(t <= 0 or b < 0 for b, t in pts):
        raise FitError("times must be > 0 and sizes >= 0")
    if len({b for b, _ in pts}) < 2:
        raise FitError(f"need >= 2 distinct sizes to fit latency and bandwidth, got {len({b for b, _ in pts})}")
    alpha, gamma = _solve(pts, fix_alpha_zero=False)
    if alpha < 0:  # latency below zero is noise on a bandwidth-dominated curve: pin it at 0
        alpha, gamma = _solve(pts, fix_alpha_zero=True)
    if not gamma > 0 or not math.isfinite(gamma):
        raise FitError("time does not grow with size: the curve has no bandwidth term to fit")
    res = sorted(abs(alpha + b * gamma - t) / t for b, t in pts)
    mid = len(res) // 2
    median = res[mid] if len(res) % 2 else 0.5 * (res[mid - 1] + res[mid])
    return AlphaBeta(alpha_s=alpha, beta_Bps=1.0 / gamma, n_points=len(pts),
                     min_bytes=int(min(b for b, _ in pts)), max_bytes=int(max(b for b, _ in pts)),
                     median_rel_err=median, max_rel_err=res[-1])


def try_fit(points: Iterable[tuple[float, float]]) -> AlphaBeta | None:
    """``fit_alpha_beta`` or None where the points cannot support a fit (the caller records no fit)."""
    try:
        return fit_alpha_beta(points)
    except FitError:
        return None


def geometric_sizes(lo: int, top: int, step: int) -> list[int]:
    """The sizes of a latency-bandwidth sweep: lo, lo·step, lo·step², … up to ``top``, and ``top`` itself always
    (the largest size sets the bandwidth); empty when ``top`` < ``lo``."""
    out, s = [], lo
    while s <= top:
        out.append(s)
        s *= step
    if out and out[-1] != top:
        out.append(top)
    return out
