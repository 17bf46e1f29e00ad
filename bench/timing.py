"""The timing engine: the only place in rooflab that synchronises the device and reads clocks.

``time_fn(fn, target)`` returns a :class:`Timing` (median, min, p10/p90, count), never a bare float.
Method (see ../shared/design/MEASURING.md, points 3–7):

* warm-up calls first (JIT, autotune, cuBLAS handles, clock ramp-up) that are never timed;
* a calibration pass estimates the per-call time so the number of repetitions reaches ``min_time_s``
  of measured work (bounded by ``min_reps``/``max_reps``), as triton.testing.do_bench does;
* on CUDA every repetition is bracketed by its own pair of CUDA events (device time on the device
  clock); ``before_each`` (an L2 flush or a buffer rotation) runs between repetitions, outside the events;
* on CPU, ``time.perf_counter_ns`` around each repetition;
* ``inner`` > 1 times ``inner`` back-to-back calls per sample and divides, for microsecond kernels.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

from .target import Target

NOISY_SPREAD = 1.25  # p90/p10 above this flags a point as noisy (torch.utils.benchmark warns similarly)


@dataclass(frozen=True)
class Timing:
    median_s: float
    min_s: float
    max_s: float
    mean_s: float
    p10_s: float
    p90_s: float
    n: int
    total_s: float
    clock: str  # "cuda_events" or "perf_counter"

    @property
    def spread(self) -> float:
        """p90 / p10: 1.0 is a perfectly steady point."""
        return self.p90_s / self.p10_s if self.p10_s > 0 else math.inf

    @property
    def noisy(self) -> bool:
        return self.spread > NOISY_SPREAD

    def as_dict(self) -> dict:
        d = asdict(self)
        d["spread"] = self.spread
        d["noisy"] = self.noisy
        return d


def percentile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of an already sorted list."""
    if not sorted_xs:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside [0, 100]")
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    frac = pos - lo
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * frac


def summarize(samples_s: list[float], clock: str) -> Timing:
    if not samples_s:
        raise ValueError("no timing samples")
    if any(not math.isfinite(x) or x < 0 for x in samples_s):
        raise ValueError("timing samples must be finite and non-negative")
    xs = sorted(samples_s)
    return Timing(
        median_s=percentile(xs, 50),
        min_s=xs[0],
        max_s=xs[-1],
        mean_s=sum(xs) / len(xs),
        p10_s=percentile(xs, 10),
        p90_s=percentile(xs, 90),
        n=len(xs),
        total_s=sum(xs),
        clock=clock,
    )


def default_min_time_s(target: Target, quick: bool) -> float:
    """Measured time per point: ≥ 100 ms on GPU, ≥ 0.5 s on CPU (MEASURING.md §5); less in --quick."""
    if target.is_cuda:
        return 0.05 if quick else 0.1
    return 0.1 if quick else 0.5


def reps_for(estimate_s: float, min_time_s: float, min_reps: int, max_reps: int) -> int:
    """How many repetitions reach ``min_time_s`` of measured work, within [min_reps, max_reps]."""
    if estimate_s <= 0:
        return max_reps
    return int(min(max_reps, max(min_reps, math.ceil(min_time_s / estimate_s))))


def time_fn(
    fn: Callable[[], object],
    target: Target,
    *,
    min_time_s: float = 0.1,
    min_reps: int = 5,
    max_reps: int = 10_000,
    warmup: int = 2,
    inner: int = 1,
    before_each: Callable[[], object] | None = None,
    clock_ns: Callable[[], int] = time.perf_counter_ns,
) -> Timing:
    """Time ``fn`` (device work included) and return its statistics per call."""
    if inner < 1 or min_reps < 1 or max_reps < min_reps:
        raise ValueError("need inner >= 1 and 1 <= min_reps <= max_reps")
    if target.is_cuda:
        return _time_cuda(fn, min_time_s, min_reps, max_reps, warmup, inner, before_each)
    return _time_host(fn, min_time_s, min_reps, max_reps, warmup, inner, before_each, clock_ns)


def _time_host(fn, min_time_s, min_reps, max_reps, warmup, inner, before_each, clock_ns) -> Timing:
    def one() -> float:
        if before_each is not None:
            before_each()
        t0 = clock_ns()
        for _ in range(inner):
            fn()
        return (clock_ns() - t0) / 1e9 / inner

    for _ in range(max(1, warmup)):
        est = one()
    n = reps_for(est * inner, min_time_s, min_reps, max_reps)  # a sample costs `inner` calls
    return summarize([one() for _ in range(n)], "perf_counter")


def _time_cuda(fn, min_time_s, min_reps, max_reps, warmup, inner, before_each) -> Timing:
    import torch

    def run(n: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for s, e in zip(starts, ends):
            if before_each is not None:
                before_each()
            s.record()
            for _ in range(inner):
                fn()
            e.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) / 1e3 / inner for s, e in zip(starts, ends)]

    torch.cuda.synchronize()
    for _ in range(max(1, warmup)):
        fn()
    torch.cuda.synchronize()
    cal = run(max(1, min(5, min_reps)))
    est = sorted(cal)[len(cal) // 2]
    n = reps_for(est * inner, min_time_s, min_reps, max_reps)  # a sample costs `inner` calls
    return summarize(run(n), "cuda_events")


def time_host(
    fn: Callable[[], object],
    target: Target,
    *,
    round_trip: bool = False,
    min_time_s: float = 0.1,
    min_reps: int = 5,
    max_reps: int = 10_000,
    warmup: int = 2,
    inner: int = 1,
    clock_ns: Callable[[], int] = time.perf_counter_ns,
) -> Timing:
    """Host clock around ``inner`` calls of ``fn``, per call: what the *host* pays (launch overhead).

    The device is drained before every sample, outside the timed region, so queued work never leaks into
    the next sample. Without ``round_trip`` nothing waits for the device inside the region: asynchronous
    launches are timed as the host issues them. With ``round_trip`` every call is followed by a device
    synchronisation inside the region: the host↔device round trip of e.g. a ``.item()``.
    """
    if inner < 1 or min_reps < 1 or max_reps < min_reps:
        raise ValueError("need inner >= 1 and 1 <= min_reps <= max_reps")
    sync = target.synchronize
    body = (lambda: (fn(), sync())) if round_trip else fn
    t = _time_host(body, min_time_s, min_reps, max_reps, warmup, inner, sync, clock_ns)
    return replace(t, clock="perf_counter (host" + (", synchronised)" if round_trip else ")"))


def per_call(t: Timing, calls: int) -> Timing:
    """The Timing of one of ``calls`` calls that were timed together (e.g. a CUDA graph of N kernels)."""
    if calls < 1:
        raise ValueError("calls must be >= 1")
    f = 1.0 / calls
    return replace(t, median_s=t.median_s * f, min_s=t.min_s * f, max_s=t.max_s * f, mean_s=t.mean_s * f,
                   p10_s=t.p10_s * f, p90_s=t.p90_s * f, total_s=t.total_s * f)


class L2Flusher:
    """Evicts the device cache between timed calls by writing a buffer of 2× its size (MEASURING.md §6)."""

    def __init__(self, target: Target):
        import torch

        self.target = target
        n = max(2 * target.cache_bytes, 1 << 20) // 4
        self.buf = torch.empty(n, dtype=torch.int32, device=target.torch_device) if target.is_cuda else None

    def __call__(self) -> None:
        if self.buf is not None:
            self.buf.fill_(0x5A5A5A5A)
