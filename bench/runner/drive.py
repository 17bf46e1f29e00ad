"""Driving one benchmark: what the runner knows of its points (``Tracker``, fed by the events of whatever
runs them), and running them in the runner's own process (``isolate=False``: tests, debugging)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from .. import measurement as meas
from .. import registry
from ..registry import Point, RunContext
from .outcomes import BenchmarkEnd, SeriesEnd
from .outdir import MEASUREMENTS
from .plan import Plan
from .point import run_series
from .protocol import Event
from .records import point_not_measured
from .signals import Signals

Progress = Callable[[str, int, int, Point], None]  # (benchmark, points finished, points, point starting or {})
Log = Callable[[str], None]


class Tracker:
    """What the runner knows of a benchmark's points, from the events of its worker(s)."""

    def __init__(self, plan: Plan, on_progress: Progress | None):
        self.plan = plan
        self.points = {registry.key_of(plan.name, p): p for p in plan.points}
        self.finished: set[str] = set()
        self.inflight: str | None = None
        self.inflight_since = 0.0
        self.elapsed: list[float] = []
        self.oom_points: list[Point] = []
        self.stop_reason: SeriesEnd | None = None
        self.on_progress = on_progress

    def handle(self, ev: Event) -> None:
        if ev["ev"] == "stop":
            self.stop_reason = ev["reason"]
        elif ev["ev"] == "start" and ev["key"] in self.points:
            key = ev["key"]
            self.inflight, self.inflight_since = key, time.monotonic()
            if self.on_progress:
                self.on_progress(self.plan.name, len(self.finished), len(self.points), self.points[key])
        elif ev["ev"] == "done" and ev["key"] in self.points:
            self._finished(ev["key"])
            elapsed = ev.get("elapsed_s")
            if isinstance(elapsed, (int, float)):
                self.elapsed.append(float(elapsed))
            if ev.get("oom"):
                self.oom_points.append(self.points[ev["key"]])
        elif ev["ev"] == "skip" and ev["key"] in self.points:
            self._finished(ev["key"])

    def _finished(self, key: str) -> None:
        self.finished.add(key)
        if key == self.inflight:
            self.inflight = None

    def remaining(self) -> list[str]:
        return [k for k in self.points if k not in self.finished and k != self.inflight]

    def observed_s(self) -> float | None:
        """Median wall time of the points measured so far, if any (robust to a first point that compiled)."""
        return statistics.median(self.elapsed) if self.elapsed else None


def drive_inprocess(ctx: RunContext, tr: Tracker, out: Path, soft: float | None, sig: Signals) -> BenchmarkEnd:
    """Run the benchmark's remaining points here; limits act between points only. A second signal interrupts
    the point itself (KeyboardInterrupt); it is recorded as skipped, for a resume to measure."""
    todo = [tr.points[k] for k in tr.remaining()]
    sig.raise_on_abandon = True
    try:
        why = run_series(ctx, tr.plan.name, tr.plan.bench, todo, out / MEASUREMENTS, soft_deadline=soft,
                         should_stop=lambda: sig.stop, emit=tr.handle)
    except KeyboardInterrupt:
        sig.stop = sig.abandon = True
        sig.name = sig.name or "SIGINT"
        if tr.inflight:
            meas.append(out / MEASUREMENTS, [point_not_measured(tr.plan.name, tr.points[tr.inflight], ctx.target,
                                                                f"interrupted: abandoned on {sig.name}", "skipped",
                                                                retry=True)])
            tr.finished.add(tr.inflight)
            tr.inflight = None
        return "interrupted"
    finally:
        sig.raise_on_abandon = False
    if why == "stopped":
        return "interrupted"
    if why == "cuda-error":  # not without stop_on_cuda_error: here the series goes on after a CUDA error
        return "done"
    return why
