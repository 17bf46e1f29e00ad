"""Planning a run: each benchmark's points still to measure, their order, their estimated cost, the time
limits of a point and of a benchmark, and each benchmark's share of a budget (see docs/runner.md)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .. import measurement as meas
from .. import registry
from ..registry import Benchmark, Point, RunContext
from .outcomes import Deadline
from .point import describe, series_size
from .records import point_not_measured

DEFAULT_TIME_LIMIT_S = {True: 30 * 60.0, False: 4 * 3600.0}  # per benchmark, by quick
DEFAULT_POINT_LIMIT_S = 900.0  # a point (a few kernels, each checked and timed) that takes longer hangs
# Under --budget a point may take at most this share of the budget (but never less than BUDGET_POINT_FLOOR_S:
# a first point compiles and autotunes its Triton kernels, tens of seconds on a GPU), so one hang cannot spend
# the budget the later benchmarks need.
BUDGET_POINT_SHARE = 0.25
BUDGET_POINT_FLOOR_S = 120.0
# Of a budget, this share (within these bounds) is kept for writing the profile and report.
BUDGET_RESERVE_SHARE = 0.1
BUDGET_RESERVE_S = (0.5, 30.0)


@dataclass
class Plan:
    """One benchmark's part of a run."""

    name: str
    bench: Benchmark
    points: list[Point]  # to measure, in order
    est_point_s: float  # the mean estimated wall time of a point
    limit_s: float  # the benchmark's time limit
    point_limit_s: float | None  # a point's time limit (0 or None: none)

    @property
    def est_s(self) -> float:
        return self.est_point_s * len(self.points)


def estimate_point_s(bench: Benchmark, ctx: RunContext, point: Point) -> float:
    """A guess at one point's wall time before any is measured: the benchmark's ``estimate_s`` if it has
    one, else a few kernels' worth of minimum measured time plus set-up."""
    try:
        v = bench.estimate_s(ctx, point)
        if v is not None and math.isfinite(v := float(v)) and v > 0:
            return v
    except Exception:  # a bad estimate is only a bad estimate
        pass
    return 0.5 + 10 * float(ctx.min_time_s or 0.1)


def bisection_order(n: int) -> list[int]:
    """Indices 0..n-1, last first, then the first, then midpoints level by level: stop anywhere and what was
    taken spans the range."""
    idx = [n - 1] + ([0] if n > 1 else []) if n else []
    spans = [(0, n - 1)] if n else []
    while spans:
        nxt = []
        for lo, hi in spans:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                idx.append(mid)
                nxt += [(lo, mid), (mid, hi)]
        spans = nxt
    return idx


def coarse_to_fine(bench: Benchmark, points: list[Point]) -> list[Point]:
    """The order a budgeted run takes, so that whatever is measured spans the sweep: per series (by size when
    the benchmark says), the largest (where peaks come from), the smallest, then midpoints; series in turn."""
    groups: dict[str, list[tuple[float, int, Point]]] = {}
    for i, p in enumerate(points):
        placed = series_size(bench, p)
        series, size = placed if placed else (None, float(i))
        groups.setdefault(repr(series), []).append((size, i, p))
    orders = []
    for members in groups.values():
        members.sort(key=lambda t: (t[0], t[1]))
        orders.append([members[i][2] for i in bisection_order(len(members))])
    out: list[Point] = []
    for r in range(max((len(o) for o in orders), default=0)):
        out += [o[r] for o in orders if r < len(o)]
    return out


def point_limit(bench: Benchmark, budget_s: float | None, point_limit_s: float | None) -> float | None:
    """A point's time limit: the one asked for, else the benchmark's (else the default), capped under a
    budget to a share of it."""
    if point_limit_s is not None:
        return point_limit_s
    limit = bench.point_limit_s if bench.point_limit_s is not None else DEFAULT_POINT_LIMIT_S
    if budget_s is not None:
        cap = max(BUDGET_POINT_FLOOR_S, BUDGET_POINT_SHARE * budget_s)
        return min(limit, cap) if limit else cap
    return limit


def time_limit(bench: Benchmark, quick: bool, time_limit_s: float | None, point_limit_s: float | None) -> float:
    """A benchmark's time limit: the one asked for, else the benchmark's, else the default (never shorter
    than its point limit)."""
    return float(time_limit_s or bench.time_limit_s or max(DEFAULT_TIME_LIMIT_S[bool(quick)], point_limit_s or 0))


def _unique_new(bname: str, points: list[Point], done: set[str]) -> list[Point]:
    """The points without a final record, each once."""
    seen: set[str] = set()
    todo = []
    for p in points:
        k = registry.key_of(bname, p)
        if k not in seen and k not in done:
            seen.add(k)
            todo.append(p)
    return todo


def make_plans(ctx: RunContext, selection: list[str], done: set[str], out_file: Path, budget_s: float | None,
               time_limit_s: float | None, point_limit_s: float | None) -> list[Plan]:
    """A plan per benchmark of ``selection`` whose sweep can be listed (one that cannot is recorded as a
    failure, retried by a resume), without the points in ``done``."""
    plans = []
    for bname in selection:
        try:
            bench = registry.get(bname)
            points = list(bench.sweep(ctx))
        except Exception as e:  # a benchmark that cannot even list its points: recorded, the others go on
            if registry.key_of(bname, {}) not in done:
                meas.append(out_file, [point_not_measured(bname, {}, ctx.target, f"sweep failed: {describe(e)}",
                                                          retry=True)])
            continue
        todo = _unique_new(bname, points, done)
        if budget_s is not None:
            todo = coarse_to_fine(bench, todo)
        est = (sum(estimate_point_s(bench, ctx, p) for p in todo) / len(todo)) if todo else 0.0
        plimit = point_limit(bench, budget_s, point_limit_s)
        plans.append(Plan(bname, bench, todo, est, time_limit(bench, ctx.quick, time_limit_s, plimit), plimit))
    return plans


def points_end(t0: float, budget_s: float | None) -> float | None:
    """When the points must end under a budget (the rest is for the profile and report); None without one."""
    if budget_s is None:
        return None
    low, high = BUDGET_RESERVE_S
    return t0 + budget_s - min(high, max(low, BUDGET_RESERVE_SHARE * budget_s))


@dataclass
class Deadlines:
    """A benchmark's wall-time deadlines (``time.monotonic()`` values)."""

    soft: float | None  # its share of the budget: a point that would end after it is not started
    hard: float  # its workers are killed then
    hard_reason: Deadline


def deadlines(plan: Plan, rest: list[Plan], end: float | None, now: float) -> Deadlines:
    """From ``now``: the benchmark's time limit, and under a budget ending at ``end`` its share of what is
    left (by its estimated cost among ``rest``, the plans not run yet, itself included)."""
    soft = None
    hard = now + plan.limit_s
    reason: Deadline = "time limit"
    if end is not None:
        left = sum(p.est_s for p in rest)
        soft = now + (end - now) * (plan.est_s / left if left > 0 else 1.0)
        if end <= hard:
            hard, reason = end, "budget"
    return Deadlines(soft, hard, reason)
