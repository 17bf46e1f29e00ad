"""The runner: walks the selected benchmarks' sweeps and writes what a run produces.

Each point's records are appended to ``measurements.jsonl`` (fsync'ed) the moment it finishes; at the end
(also after Ctrl-C, a spent budget or a crash) ``profile.json`` and the report are rebuilt from the records
alone. Benchmarks run in worker processes of their own, under time limits and an optional budget, and a run
resumes where it stopped. How all this behaves is described in docs/runner.md; the parts live in the
modules of this package (settings, outdir, records, point, plan, signals, drive, isolated, protocol, worker).
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import measurement as meas
from .. import profile as prof
from ..measurement import Measurement
from ..profile import build as profile_build
from ..registry import RunContext
from ..target import Target
from .drive import Log, Progress, Tracker, drive_inprocess
from .isolated import drive_isolated
from .outcomes import BenchmarkEnd, RunError
from .outdir import (
    LOG_DIR,
    MEASUREMENTS,
    PROFILE,
    REPORT,
    SETTINGS,
    UNREADABLE,
    Outputs,
    RunLock,
    check_out_dir,
    default_out_dir,
    prepare_out_dir,
    run_file,
)
from .plan import (
    BUDGET_POINT_FLOOR_S,
    DEFAULT_POINT_LIMIT_S,
    Plan,
    bisection_order,
    coarse_to_fine,
    deadlines,
    make_plans,
    points_end,
)
from .point import run_one_point
from .records import (
    RETRY,
    check_same_run,
    compact,
    effective,
    final_keys,
    is_retry,
    mark_failed_for_retry,
    point_not_measured,
    read_log,
    set_aside,
)
from .settings import Settings, load_settings, save_settings
from .signals import Signals

__all__ = [
    "BUDGET_POINT_FLOOR_S", "DEFAULT_POINT_LIMIT_S", "MEASUREMENTS", "PROFILE", "REPORT", "RETRY", "SETTINGS",
    "UNREADABLE", "RunError", "RunLock", "RunResult", "Settings", "bisection_order", "check_out_dir",
    "coarse_to_fine", "default_out_dir", "effective", "finish", "is_retry", "load_settings", "prepare_out_dir",
    "run", "run_one_point",
]


@dataclass
class RunResult:
    out_dir: Path
    profile: prof.Profile
    measurements: list[Measurement]
    interrupted: bool = False
    wall_time_s: float = 0.0
    skipped_existing: int = 0
    failures: list[str] = field(default_factory=list)
    signal: str | None = None  # "SIGINT" / "SIGTERM" when a signal stopped the run
    budget_skipped: int = 0  # points not measured because the budget was spent (a resume measures them)
    plan: list[tuple[str, int, float]] = field(default_factory=list)  # (benchmark, points to run, estimate s)

    @property
    def exit_code(self) -> int:
        """What the CLI exits with: 128 + the signal when one stopped the run; 1 when a point failed (a kernel
        that gave a wrong result, a crash, a hang), so that a script or a nightly job sees it although the
        profile and report of the rest were written; else 0."""
        if self.interrupted:
            return 128 + int(getattr(signal, self.signal or "SIGINT", signal.SIGINT))
        return 1 if self.failures else 0


def finish(out: Path, target: Target, selection: list[str], quick: bool, wall_s: float | None,
           name: str | None = None, log: Log | None = None) -> prof.Profile:
    """(Re)build profile.json and the report from measurements.jsonl alone (replaced records dropped, lines
    without a record moved aside and named to ``log``)."""
    from ..report import build as report_build

    records = compact(out / MEASUREMENTS, log)
    run = prof.RunInfo(mode=target.backend, mode_reason=target.reason, benchmarks=selection, quick=quick,
                       wall_time_s=wall_s)
    profile = profile_build.from_measurements(records, profile_build.device_info(target), run, name=name)
    try:
        prof.save(profile, run_file(out, PROFILE))
    except OSError as e:
        raise RunError(f"cannot write {out / PROFILE}: {e.strerror or e}") from None
    try:
        report_build.write(out, profile, records)  # report.md, report.html, plots/*.png
    except (report_build.ReportError, OSError) as e:
        (log or (lambda msg: None))(f"the report was not written: {getattr(e, 'strerror', None) or e}")
    return profile


def _open_run(out: Path, settings: Settings, target: Target, resume: bool, force: bool, retry_failed: bool,
              log: Log) -> tuple[RunLock, set[str]]:
    """Lock the output directory, prepare it (a resume must repeat the settings it was started with, on the
    same device, and its unreadable lines are moved aside), write run.json; the lock and the keys of the
    points already measured."""
    try:
        settings_json = settings.to_json()
    except (TypeError, ValueError) as e:
        raise RunError(f"run options must be plain JSON values: {e}") from None
    settings.check(target)
    check_out_dir(out)
    if resume:
        prepare_out_dir(out, resume=True)  # reads only: nothing is created for a run that is not there
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot use output directory {out}: {e.strerror or e}") from None
    lock = RunLock(out, log)
    lock.acquire()
    try:
        prepare_out_dir(out, resume=resume, force=force)
        outputs = Outputs(out)
        if resume:
            outputs.adopt()
            stored = load_settings(out)
            if stored is not None:
                diff = stored.differences(settings)
                if diff:
                    raise RunError(f"{out} was started with {'; '.join(diff)}: resume it with the same settings")
        else:
            save_settings(out, settings_json)
        for rel in [MEASUREMENTS] + [f"{LOG_DIR}/{b}.log" for b in settings.selection]:
            outputs.run_file(rel)  # listed before a worker appends to it
        if not resume:
            return lock, set()
        check_same_run(out / MEASUREMENTS, target)  # before anything in the folder changes
        note = set_aside(out / MEASUREMENTS)
        if note:
            log(note)
        if retry_failed:
            n = mark_failed_for_retry(out / MEASUREMENTS)
            log(f"--retry-failed: {n} failed point{'s' if n != 1 else ''} to measure again")
        return lock, final_keys(effective(read_log(out / MEASUREMENTS)))
    except BaseException:
        lock.release()
        raise


def _run_benchmark(ctx: RunContext, plan: Plan, later: list[Plan], end: float | None, out: Path, isolate: bool,
                   sig: Signals, on_progress: Progress | None, log: Log) -> int:
    """Measure one benchmark's points; record those a limit or the budget left out. Returns how many points
    the budget left out."""
    tr = Tracker(plan, on_progress)
    if not plan.points:
        if on_progress:
            on_progress(plan.name, 0, 0, {})
        return 0
    now = time.monotonic()
    limits = deadlines(plan, later, end, now)
    why: BenchmarkEnd
    if end is not None and now >= end:
        why = "budget"
    elif isolate:
        why = drive_isolated(ctx, tr, out, limits, sig, log)
    else:
        why = drive_inprocess(ctx, tr, out, limits.soft, sig)
    left_out = tr.remaining()
    budget_skipped = 0
    if why in ("budget", "time limit") and left_out:
        reason = ("budget: not measured within the run's budget" if why == "budget" else
                  f"time limit: benchmark {plan.name} ran out of its {plan.limit_s:g} s")
        meas.append(out / MEASUREMENTS, [point_not_measured(plan.name, tr.points[k], ctx.target, reason,
                                                            status="skipped", retry=True) for k in left_out])
        budget_skipped = len(left_out) if why == "budget" else 0
    if on_progress:
        on_progress(plan.name, len(tr.finished), len(tr.points), {})
    return budget_skipped


def run(selection: list[str], target: Target, out: Path, *, quick: bool = True, resume: bool = False,
        force: bool = False, min_time_s: float | None = None, seed: int = 0, options: dict[str, Any] | None = None,
        on_progress: Progress | None = None, isolate: bool = True, budget_s: float | None = None,
        time_limit_s: float | None = None, point_limit_s: float | None = None, handle_signals: bool = True,
        log: Log | None = None, retry_failed: bool = False) -> RunResult:
    """Run ``selection`` on ``target`` into ``out``; see docs/runner.md for isolation, limits, budget,
    signals and resume (``retry_failed``: a resume also measures the points that failed again)."""
    out = Path(out)
    log = log or (lambda msg: None)
    if budget_s is not None and not (math.isfinite(budget_s) and budget_s > 0):
        raise RunError(f"the budget must be a positive number of seconds, got {budget_s}")
    ctx = RunContext(target=target, quick=quick, min_time_s=min_time_s, seed=seed, options=dict(options or {}))
    settings = Settings(selection=list(selection), quick=bool(quick), seed=int(seed), min_time_s=min_time_s,
                        options=ctx.options, backend=target.backend, device=target.name)
    if retry_failed and not resume:
        raise RunError("retrying failed points is part of a resume")
    lock, done = _open_run(out, settings, target, resume, force, retry_failed, log)
    try:
        return _run(ctx, selection, target, out, done, quick, on_progress, isolate, budget_s, time_limit_s,
                    point_limit_s, handle_signals, log)
    finally:
        lock.release()


def _run(ctx: RunContext, selection: list[str], target: Target, out: Path, done: set[str], quick: bool,
         on_progress: Progress | None, isolate: bool, budget_s: float | None, time_limit_s: float | None,
         point_limit_s: float | None, handle_signals: bool, log: Log) -> RunResult:
    out_file = out / MEASUREMENTS

    t0 = time.monotonic()
    end = points_end(t0, budget_s)
    plans = make_plans(ctx, selection, done, out_file, budget_s, time_limit_s, point_limit_s)
    if budget_s is not None:
        total_est = sum(p.est_s for p in plans)
        n = sum(len(p.points) for p in plans)
        log(f"budget {budget_s:g} s: {n} points to measure, estimated {total_est:.0f} s"
            + ("; points run coarse to fine, those that do not fit are skipped (--resume measures them)"
               if total_est > budget_s else ""))
    budget_skipped = 0
    with Signals(handle_signals) as sig:
        for i, plan in enumerate(plans):
            if sig.stop:
                break
            budget_skipped += _run_benchmark(ctx, plan, plans[i:], end, out, isolate, sig, on_progress, log)
        wall = time.monotonic() - t0
        # still under the signal handlers: a SIGTERM now (e.g. `timeout` as the points end) is recorded, not fatal,
        # so the profile and report of what was measured are written all the same
        profile = finish(out, target, selection, quick, wall, log=log)
    records = read_log(out_file)
    return RunResult(out_dir=out, profile=profile, measurements=records, interrupted=sig.stop,
                     wall_time_s=wall, skipped_existing=len(done),
                     failures=[f"{m.benchmark}: {m.reason}" for m in records if m.status == "failed"],
                     signal=sig.name if sig.stop else None, budget_skipped=budget_skipped,
                     plan=[(p.name, len(p.points), p.est_s) for p in plans])
