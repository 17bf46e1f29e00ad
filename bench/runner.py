"""The runner: walks the selected benchmarks' sweeps and writes what a run produces.

Per point: ``run_point`` → Measurements appended to ``measurements.jsonl`` (fsync'ed) the moment the point
finishes. A point that raises becomes a failed Measurement and the sweep goes on. At the end (also after
Ctrl-C) ``profile.json`` and ``report.md`` are written atomically from the records alone.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import measurement as meas
from . import profile as prof
from . import registry
from .measurement import Measurement
from .registry import RunContext
from .target import Target

MEASUREMENTS = "measurements.jsonl"
PROFILE = "profile.json"
REPORT = "report.md"


class RunError(RuntimeError):
    """A run that cannot start (bad output directory, ...); one-line message."""


@dataclass
class RunResult:
    out_dir: Path
    profile: prof.Profile
    measurements: list[Measurement]
    interrupted: bool = False
    wall_time_s: float = 0.0
    skipped_existing: int = 0
    failures: list[str] = field(default_factory=list)


def default_out_dir(target: Target, root: str | Path = "reports") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / f"{target.slug}-{stamp}"


def prepare_out_dir(out: Path, *, resume: bool = False, force: bool = False) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"output path {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not (resume or force):
        raise RunError(f"output directory {out} is not empty: use --resume to continue it or --force to overwrite")
    if force and not resume:
        for name in (MEASUREMENTS, PROFILE, REPORT):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _failure(bname: str, point: dict, target: Target, reason: str, status: str = "failed") -> Measurement:
    return Measurement(benchmark=bname, kernel="*", impl="*", params=point, key=registry.key_of(bname, point),
                       status=status, reason=reason, mode=target.backend, device=target.name)


def run_points(ctx: RunContext, selection: list[str], out_file: Path,
               done_keys: set[str] | None = None,
               on_progress: Callable[[str, int, int, dict], None] | None = None) -> list[Measurement]:
    """Run every point not in ``done_keys``; append each point's records to ``out_file`` as it finishes."""
    done_keys = done_keys or set()
    new: list[Measurement] = []
    plans = [(b, registry.get(b)) for b in selection]
    sweeps = [(b, bench, bench.sweep(ctx)) for b, bench in plans]
    for bname, bench, points in sweeps:
        for i, point in enumerate(points):
            key = registry.key_of(bname, point)
            if on_progress:
                on_progress(bname, i, len(points), point)
            if key in done_keys:
                continue
            try:
                recs = bench.run_point(ctx, point)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # one bad point must not lose the suite
                tb = traceback.extract_tb(e.__traceback__)
                where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
                msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{where}"
                recs = [_failure(bname, point, ctx.target, msg)]
            for r in recs:
                r.key = key
            meas.append(out_file, recs)
            new.extend(recs)
        if on_progress:
            on_progress(bname, len(points), len(points), {})
    return new


def finish(out: Path, target: Target, selection: list[str], quick: bool, wall_s: float | None,
           name: str | None = None) -> prof.Profile:
    """(Re)build profile.json and report.md from measurements.jsonl alone."""
    from .report import markdown

    records = meas.read(out / MEASUREMENTS)
    run = prof.RunInfo(mode=target.backend, mode_reason=target.reason, benchmarks=selection, quick=quick,
                       wall_time_s=wall_s)
    profile = prof.from_measurements(records, prof.device_info(target), run, name=name)
    prof.save(profile, out / PROFILE)
    prof.atomic_write_text(out / REPORT, markdown.render(profile, records))
    return profile


def run(selection: list[str], target: Target, out: Path, *, quick: bool = True, resume: bool = False,
        force: bool = False, min_time_s: float | None = None, seed: int = 0, options: dict | None = None,
        on_progress: Callable[[str, int, int, dict], None] | None = None) -> RunResult:
    prepare_out_dir(out, resume=resume, force=force)
    out_file = out / MEASUREMENTS
    existing = meas.read(out_file) if resume else []
    done = {m.key for m in existing if m.key}
    ctx = RunContext(target=target, quick=quick, min_time_s=min_time_s, seed=seed, options=options or {})
    t0 = time.perf_counter()
    interrupted = False
    try:
        run_points(ctx, selection, out_file, done, on_progress)
    except KeyboardInterrupt:
        interrupted = True
    wall = time.perf_counter() - t0
    profile = finish(out, target, selection, quick, wall)
    records = meas.read(out_file)
    return RunResult(out_dir=out, profile=profile, measurements=records, interrupted=interrupted,
                     wall_time_s=wall, skipped_existing=len(done),
                     failures=[f"{m.benchmark}: {m.reason}" for m in records if m.status == "failed"])
