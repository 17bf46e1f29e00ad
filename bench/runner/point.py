"""Running points: ``run_one_point`` is the one place a benchmark's ``run_point`` is called; ``run_series``
runs a benchmark's points in order in one process (in a worker, or in the runner itself).

An exception costs its point only: it becomes a failed record, read as out of memory (the larger points of
the same series are then skipped), a CUDA error (the process should not go on) or anything else.
"""
from __future__ import annotations

import gc
import math
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import measurement as meas
from .. import registry, telemetry
from ..measurement import Measurement
from ..registry import Benchmark, Point, RunContext
from .outcomes import SeriesEnd
from .protocol import Event
from .records import point_not_measured

_CUDA_ERROR_TEXT = ("cuda error", "cudaerror", "illegal memory access", "device-side assert", "launch failure",
                    "cublas_status", "cudnn_status", "triton error [cuda]", "misaligned address",
                    "illegal instruction", "cuda driver error", "nccl error")


@dataclass
class PointResult:
    records: list[Measurement]
    oom: bool = False  # the point ran out of memory
    cuda_error: bool = False  # a CUDA error: the context may be unusable from now on


def describe(e: BaseException) -> str:
    """One line: the exception's type, the first line of its message and where it was raised."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first[:300]}{where}"


def is_oom(e: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only when the benchmark loaded it: the runner itself does not need torch
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if t)
    text = str(e).lower()
    return (isinstance(e, MemoryError) or (bool(oom_types) and isinstance(e, oom_types))
            or "out of memory" in text or "cublas_status_alloc_failed" in text)


def is_cuda_error(e: BaseException) -> bool:
    text = str(e).lower()
    return type(e).__name__ == "AcceleratorError" or any(s in text for s in _CUDA_ERROR_TEXT)


def run_one_point(ctx: RunContext, bench: Benchmark, bname: str, point: Point) -> PointResult:
    """Run one sweep point. An exception becomes a failed record with its reason (and says whether it was
    an out-of-memory or a CUDA error)."""
    key = registry.key_of(bname, point)
    sampler = telemetry.sampling(ctx.target)  # NVML samples (clocks, power, throttling) during the point
    failed = None
    try:
        with sampler:
            recs = list(bench.run_point(ctx, point))
    except Exception as e:  # one bad point must not lose the suite
        oom = is_oom(e)
        cuda = not oom and is_cuda_error(e)
        failed = (("out of memory: " if oom else "CUDA error: " if cuda else "") + describe(e), oom, cuda)
    if failed is not None:
        reason, oom, cuda = failed
        if oom:  # here, not in the except block: the exception's traceback held the point's tensors until now
            release_memory(ctx)
        return PointResult([point_not_measured(bname, point, ctx.target, reason)], oom=oom, cuda_error=cuda)
    sampler.stamp(recs)  # each record carries the point's telemetry summary
    for r in recs:
        r.key = key
    return PointResult(recs)


def release_memory(ctx: RunContext) -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and ctx.target.is_cuda:
        try:
            torch.cuda.empty_cache()
        except Exception:  # a broken context: the next point will say so
            pass


def series_size(bench: Benchmark, point: Point) -> tuple[Hashable, float] | None:
    """(series, size) when the benchmark places the point in both, else None (no out-of-memory skipping)."""
    try:
        series, size = bench.series_key(point), bench.size_of(point)
        if series is None or size is None:
            return None
        hash(series)
        return series, float(size)
    except Exception:  # a point the benchmark cannot place: no skipping for it
        return None


class _OutOfMemory:
    """Per series, the smallest size that ran out of memory: points that large or larger are skipped."""

    def __init__(self, bench: Benchmark, points: list[Point]):
        self.smallest: dict[Hashable, float] = {}
        for p in points:
            self.add(series_size(bench, p))

    def add(self, placed: tuple[Hashable, float] | None) -> None:
        if placed:
            series, size = placed
            self.smallest[series] = min(size, self.smallest.get(series, math.inf))

    def too_large(self, placed: tuple[Hashable, float] | None) -> str | None:
        """Why a point is skipped, or None to run it."""
        if not placed or placed[1] < self.smallest.get(placed[0], math.inf):
            return None
        return (f"skipped: a point of this series no larger than this one (size {self.smallest[placed[0]]:g}) "
                "ran out of memory")


def _no_time_left(soft_deadline: float, elapsed: list[float], estimate_s: float | None) -> bool:
    """Whether the next point would end after the deadline, by the median of the points measured here (a
    first point that compiled and autotuned the Triton kernels says little of the rest), else the estimate."""
    now = time.monotonic()
    guess = statistics.median(elapsed) if elapsed else estimate_s
    return now >= soft_deadline or (guess is not None and now + guess > soft_deadline)


def run_series(ctx: RunContext, bname: str, bench: Benchmark, points: list[Point], out_file: Path, *,
               soft_deadline: float | None = None, estimate_s: float | None = None,
               should_stop: Callable[[], bool] | None = None, emit: Callable[[Event], None] | None = None,
               stop_on_cuda_error: bool = False, oom_points: list[Point] | None = None) -> SeriesEnd:
    """Run ``points`` of one benchmark in order, appending each point's records before reporting it.

    ``soft_deadline`` (a ``time.monotonic()`` value, the same clock in every process): a point that would
    end after it is not started; its length is guessed from ``estimate_s`` (the median of points measured
    before) or the points measured here, and with neither the first point starts if the deadline has not
    passed. ``oom_points`` ran out of memory before (in another worker). Events go to ``emit``:
    start/done/skip per point. Returns why it ended.
    """
    emit = emit or (lambda ev: None)
    oom = _OutOfMemory(bench, oom_points or [])
    elapsed: list[float] = []
    for point in points:
        key = registry.key_of(bname, point)
        if should_stop is not None and should_stop():
            return "stopped"
        placed = series_size(bench, point)
        why = oom.too_large(placed)
        if why is not None:
            meas.append(out_file, [point_not_measured(bname, point, ctx.target, why, status="skipped")])
            emit({"ev": "skip", "key": key, "status": "skipped"})
            continue
        if soft_deadline is not None and _no_time_left(soft_deadline, elapsed, estimate_s):
            return "budget"
        emit({"ev": "start", "key": key})
        t0 = time.monotonic()
        res = run_one_point(ctx, bench, bname, point)
        meas.append(out_file, res.records)
        elapsed.append(time.monotonic() - t0)
        status: Literal["ok", "failed"] = "failed" if any(r.status == "failed" for r in res.records) else "ok"
        emit({"ev": "done", "key": key, "status": status, "elapsed_s": elapsed[-1], "oom": res.oom})
        if res.oom:
            oom.add(placed)
        if res.cuda_error and stop_on_cuda_error:
            return "cuda-error"
    return "done"
