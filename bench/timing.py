"""The timing engine: the only place in rooflab that synchronises the device and reads clocks.

``time_fn(fn, target)`` returns a :class:`Timing` (median, min, p10/p90, count), never a bare float: untimed
warm-up calls, a calibration that sizes the repetitions to ``min_time_s`` of measured work, CUDA events
around every repetition on the GPU (``perf_counter_ns`` on the CPU), ``before_each`` (an L2 flush, a buffer
rotation) outside the timed region, ``inner`` back-to-back calls per sample for microsecond kernels, and
``prime`` to keep the device busy while a short repetition is enqueued. :func:`time_host` times what the
host pays for a launch or a round trip; :class:`L2Flusher` evicts the device cache between repetitions.

How and why: docs/method.md ("Timing").
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

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
    """Measured time per point: ≥ 100 ms on GPU, ≥ 0.5 s on CPU (docs/method.md); less in --quick."""
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
    prime: bool = False,
) -> Timing:
    """Time ``fn`` (device work included) and return its statistics per call. ``prime`` (CUDA only, ignored on
    CPU): keep the device busy while each repetition is enqueued, so the events time the device work alone."""
    if inner < 1 or min_reps < 1 or max_reps < min_reps:
        raise ValueError("need inner >= 1 and 1 <= min_reps <= max_reps")
    if target.is_cuda:
        return _time_cuda(fn, min_time_s, min_reps, max_reps, warmup, inner, before_each, prime)
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


# Prime when a repetition's device time is below this multiple of its host enqueue time (the device may have
# waited for the host inside the events); the spin covers PRIME_LEAD x the host time, plus a fixed margin.
PRIME_BELOW = 1.5
PRIME_LEAD = 2.0
PRIME_MARGIN_S = 20e-6
_SPIN_HZ: list[float] = []  # spin-kernel cycles per second, calibrated once per process


def spin_cycles(seconds: float, hz: float) -> int:
    """Cycles of ``torch.cuda._sleep`` that keep the device busy for about ``seconds`` at ``hz`` cycles/s."""
    return max(0, math.ceil(seconds * hz))


def prime_lead_s(host_s: float) -> float:
    """How long the device must be kept busy ahead of a repetition whose enqueue costs the host ``host_s``."""
    return PRIME_LEAD * host_s + PRIME_MARGIN_S


def needs_prime(device_s: float, host_s: float) -> bool:
    """The calibrated device time of a repetition is not clearly above its host cost: the device may idle."""
    return device_s < PRIME_BELOW * host_s


def _spin_hz() -> float:
    """Cycles per second of ``torch.cuda._sleep`` (it counts SM clock cycles); the fastest of a few tries, so a
    later spin at a higher clock is never shorter than asked. 0 if this torch has no ``_sleep``."""
    import torch

    if _SPIN_HZ:
        return _SPIN_HZ[0]
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        _SPIN_HZ.append(0.0)
        return 0.0
    cycles, best = 2_000_000, 0.0
    sleep(cycles)  # first launch: module load, clock ramp-up
    for _ in range(3):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        sleep(cycles)
        e.record()
        e.synchronize()
        dt = s.elapsed_time(e) / 1e3
        if dt > 0:
            best = max(best, cycles / dt)
    _SPIN_HZ.append(best)
    return best


def _time_cuda(fn, min_time_s, min_reps, max_reps, warmup, inner, before_each, prime=False) -> Timing:
    import torch

    def run(n: int, spin: int = 0) -> tuple[list[float], float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        t0 = time.perf_counter()
        for s, e in zip(starts, ends):
            if before_each is not None:
                before_each()
            if spin:
                torch.cuda._sleep(spin)  # device busy while this repetition is enqueued (see ``prime``)
            s.record()
            for _ in range(inner):
                fn()
            e.record()
        host_s = (time.perf_counter() - t0) / n  # enqueue cost per repetition (nothing waits for the device)
        torch.cuda.synchronize()
        return [s.elapsed_time(e) / 1e3 / inner for s, e in zip(starts, ends)], host_s

    torch.cuda.synchronize()
    for _ in range(max(1, warmup)):
        fn()
    torch.cuda.synchronize()
    cal, host_s = run(max(1, min(5, min_reps)))
    est = sorted(cal)[len(cal) // 2]
    spin = 0
    if prime and needs_prime(est * inner, host_s):
        hz = _spin_hz()
        spin = spin_cycles(prime_lead_s(host_s), hz) if hz > 0 else 0
        if spin:  # the calibration was host-bound: measure the device time per call again, primed
            cal, _ = run(max(1, min(5, min_reps)), spin)
            est = sorted(cal)[len(cal) // 2]
    n = reps_for(est * inner, min_time_s, min_reps, max_reps)  # a sample costs `inner` calls
    if spin:  # each primed repetition costs the host at least the spin: bound the wall time to ~2x min_time_s
        n = max(min_reps, min(n, math.ceil(2 * min_time_s / prime_lead_s(host_s))))
    samples, _ = run(n, spin)
    return summarize(samples, "cuda_events (primed)" if spin else "cuda_events")


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
    """Evicts the device cache between timed calls by streaming a buffer of 2× its size through it.

    The buffer is *read* (a sum), not written: a write-flush leaves the cache full of dirty lines, and the timed
    kernel then pays for writing them back (up to a whole L2, ~50 MB on an H100: +5% traffic for a 1 GB decode
    step, far more for a small one). Reading 2× the cache replaces every line with a clean one, and the dirty
    lines the previous repetition left (its outputs) are written back here, outside the timed region.
    """

    def __init__(self, target: Target):
        import torch

        self.target = target
        n = max(2 * target.cache_bytes, 1 << 20) // 4
        self.buf = None
        if target.is_cuda:
            self.buf = torch.empty(n, dtype=torch.int32, device=target.torch_device)
            self.buf.fill_(0x5A5A5A5A)  # defined contents, written once

    def __call__(self) -> None:
        if self.buf is not None:
            self.buf.sum()
