"""The runner: walks the selected benchmarks' sweeps and writes what a run produces.

Per point: ``run_one_point`` (the one place a benchmark's ``run_point`` is called) → Measurements appended to
``measurements.jsonl`` (fsync'ed) the moment the point finishes. At the end (also after Ctrl-C, a spent
budget or a crash) ``profile.json`` and the report are written atomically from the records alone.

Isolation. Each benchmark runs its points in a worker process of its own (``python -m bench._worker``, one
at a time, in a process group of its own), which picks the target itself before any kernel is imported. A
point that raises is a failed record and the sweep goes on. A worker that dies (segfault, ``os._exit``, the
OOM killer) or hangs past a limit is killed with its whole process group (ranks it spawned included); the
point in flight is recorded as failed with the reason and a fresh worker goes on with the rest. A CUDA error
(sticky: the context is unusable after it) ends the worker once its point is recorded, and a fresh one goes
on. ``isolate=False`` runs everything in this process (tests, debugging; limits then act between points).

Out of memory. A point that runs out of memory is recorded as failed and the larger points of the same
series are skipped, for benchmarks that say what a series and a size are: optional methods
``series_key(point) -> hashable`` and ``size_of(point) -> number`` (without them nothing is skipped).

Time. Hard limits: ``time_limit_s`` per benchmark (default: the benchmark's ``time_limit_s`` attribute, else
30 min quick / 4 h full) and ``point_limit_s`` per point (default: the benchmark's ``point_limit_s``
attribute, else 15 min; under a budget at most a quarter of it, at least 2 min, so one hang cannot spend
the budget of the benchmarks after it; 0 turns it off), in wall time: a point's from its start, a benchmark's
from its first worker's start (start-up included; never shorter by default than its point limit). ``budget_s``
bounds the whole run: it is shared among the benchmarks by their estimated cost (optional
``estimate_s(ctx, point)``, else a guess from the minimum measured time; then the median of the points measured
so far: a first point that compiled and autotuned Triton kernels is an outlier), points run coarse to fine (each
series' largest, its smallest, then midpoints) and a point that would not fit is not started: it and the
rest are recorded as skipped "budget". A resume measures them.

Signals. A first SIGINT finishes the point in flight, then stops; a second SIGINT, or SIGTERM, abandons it
(the worker is killed). Either way the profile and report are written for what was measured and the result
says which signal stopped it.

Resume. ``run.json`` keeps the settings a run started with; a resume must use the same ones. It skips every
point with a final record in measurements.jsonl and measures again the points recorded as retryable
(skipped for the budget, a time limit or an interruption); their old records are dropped from the log at the
end, so a resumed run ends with the records, and the profile, an uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import measurement as meas
from . import profile as prof
from . import registry, telemetry
from .measurement import Measurement
from .registry import RunContext
from .target import Target

MEASUREMENTS = "measurements.jsonl"
PROFILE = "profile.json"
REPORT = "report.md"
SETTINGS = "run.json"
LOG_DIR = "logs"  # one log per benchmark: its workers' stdout and stderr
# What --force may delete in an existing output directory: only files a run writes.
_OUTPUT_FILES = (MEASUREMENTS, PROFILE, REPORT, "report.html", SETTINGS)
_OUTPUT_GLOBS = (("plots", "*.png"), (LOG_DIR, "*.log"))

DEFAULT_TIME_LIMIT_S = {True: 30 * 60.0, False: 4 * 3600.0}  # per benchmark, by quick
DEFAULT_POINT_LIMIT_S = 900.0  # a point (a few kernels, each checked and timed) that takes longer hangs
# Under --budget a point may take at most this share of the budget (but never less than BUDGET_POINT_FLOOR_S:
# a first point compiles and autotunes its Triton kernels, tens of seconds on a GPU), so one hang cannot spend
# the budget the later benchmarks need.
BUDGET_POINT_SHARE = 0.25
BUDGET_POINT_FLOOR_S = 120.0
RETRY = "retry"  # Measurement.extra flag: the point was not really run (budget, limit, signal); resume redoes it
EXIT_CUDA_ERROR = 3  # worker exit status: a CUDA error left its context unusable, go on in a fresh worker
MAX_SETTINGS_BYTES = 1 << 20

Progress = Callable[[str, int, int, dict], None]
Log = Callable[[str], None]


class RunError(RuntimeError):
    """A run that cannot start (bad output directory, settings that differ from the run resumed); one line."""


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
        """What the CLI exits with: 128 + the signal when one stopped the run, else 0."""
        if not self.interrupted:
            return 0
        return 128 + int(getattr(signal, self.signal or "SIGINT", signal.SIGINT))


# -- settings (run.json) and the output directory ---------------------------------------------------


@dataclass
class Settings:
    """What a run was started with: a resume must use the same, or it would measure other points."""

    selection: list[str]
    quick: bool
    seed: int
    min_time_s: float | None
    options: dict[str, Any]
    backend: str
    device: str

    def to_json(self) -> str:
        return json.dumps({"version": 1, **dataclasses.asdict(self)}, indent=2, allow_nan=False) + "\n"


def load_settings(out: str | Path) -> Settings | None:
    """The settings of the run in ``out`` (None for a run made before run.json existed)."""
    path = Path(out) / SETTINGS
    try:
        if not path.exists():
            return None
        if path.stat().st_size > MAX_SETTINGS_BYTES:
            raise RunError(f"{path} is larger than {MAX_SETTINGS_BYTES} bytes: not a rooflab run file")
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    except ValueError as e:
        raise RunError(f"{path} is not valid JSON: {str(e).splitlines()[0]}") from None
    try:
        if not isinstance(data, dict) or data.get("version") != 1:
            raise TypeError("unknown version")
        s = Settings(
            selection=[str(x) for x in _typed(data["selection"], list)],
            quick=_typed(data["quick"], bool),
            seed=_typed(data["seed"], int),
            min_time_s=None if data["min_time_s"] is None else float(_typed(data["min_time_s"], (int, float))),
            options=_typed(data.get("options", {}), dict),
            backend=_typed(data["backend"], str),
            device=_typed(data["device"], str),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{path} is not a rooflab run file ({type(e).__name__}: {e})") from None
    return s


def _typed(v: Any, t: type | tuple) -> Any:
    if not isinstance(v, t) or (t is int and isinstance(v, bool)):
        raise TypeError(f"{v!r} is not {t}")
    return v


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def default_out_dir(target: Target, root: str | Path = "reports") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / f"{target.slug}-{stamp}"


def prepare_out_dir(out: Path, *, resume: bool = False, force: bool = False) -> None:
    """Refuse to overwrite: a non-empty directory needs ``resume`` (continue it) or ``force`` (start over,
    deleting only the files a run writes)."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise RunError(f"output path {out} exists and is not a directory")
        if resume:
            if not out.is_dir():
                raise RunError(f"nothing to resume: {out} does not exist")
            if not ((out / MEASUREMENTS).exists() or (out / SETTINGS).exists()):
                raise RunError(f"nothing to resume in {out}: it has no {MEASUREMENTS} (not a rooflab run directory)")
        elif out.exists() and any(out.iterdir()):
            if not force:
                raise RunError(f"output directory {out} is not empty: use --resume {out} to continue it "
                               f"or --force to overwrite")
            for name in _OUTPUT_FILES:
                (out / name).unlink(missing_ok=True)
            for sub, pattern in _OUTPUT_GLOBS:
                if (out / sub).is_dir():
                    for p in (out / sub).glob(pattern):
                        p.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot use output directory {out}: {e.strerror or e}") from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise RunError(f"bad output path {str(out)!r}: {e}") from None


# -- records -----------------------------------------------------------------------------------------


def _failure(bname: str, point: dict, target: Target, reason: str, status: str = "failed",
             retry: bool = False) -> Measurement:
    return Measurement(benchmark=bname, kernel="*", impl="*", params=point, key=registry.key_of(bname, point),
                       status=status, reason=reason[:500], mode=target.backend, device=target.name,
                       extra={RETRY: True} if retry else {})


def is_retry(m: Measurement) -> bool:
    return bool(m.extra.get(RETRY))


def effective(records: list[Measurement]) -> list[Measurement]:
    """The records that count, in file order: every final record, and a retryable one only while no other
    record of its point replaced it (the last such one)."""
    final = {m.key for m in records if not is_retry(m)}
    last: dict[str, int] = {}
    for i, m in enumerate(records):
        if is_retry(m) and m.key not in final:
            last[m.key] = i
    return [m for i, m in enumerate(records) if not is_retry(m) or last.get(m.key) == i]


def _compact(path: Path) -> list[Measurement]:
    """Drop replaced retryable records (and torn lines) from the log, atomically; return what is left."""
    records = meas.read(path)
    keep = effective(records)
    try:
        with open(path, "rb") as f:
            lines = sum(1 for ln in f if ln.strip())
    except OSError:
        lines = len(records)
    if len(keep) != lines:
        text = "".join(json.dumps(r.model_dump(mode="json"), allow_nan=False) + "\n" for r in keep)
        prof.atomic_write_text(path, text)
    return keep


# -- one point, one series -----------------------------------------------------------------------------


@dataclass
class PointResult:
    records: list[Measurement]
    oom: bool = False  # the point ran out of memory
    cuda_error: bool = False  # a CUDA error: the context may be unusable from now on


def _describe(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first[:300]}{where}"


_CUDA_ERROR_TEXT = ("cuda error", "cudaerror", "illegal memory access", "device-side assert", "launch failure",
                    "cublas_status", "cudnn_status", "triton error [cuda]", "misaligned address",
                    "illegal instruction", "cuda driver error", "nccl error")


def _is_oom(e: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only when the benchmark loaded it: the runner itself does not need torch
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if t)
    text = str(e).lower()
    return (isinstance(e, MemoryError) or (bool(oom_types) and isinstance(e, oom_types))
            or "out of memory" in text or "cublas_status_alloc_failed" in text)


def _is_cuda_error(e: BaseException) -> bool:
    text = str(e).lower()
    return type(e).__name__ == "AcceleratorError" or any(s in text for s in _CUDA_ERROR_TEXT)


def run_one_point(ctx: RunContext, bench: Any, bname: str, point: dict) -> PointResult:
    """Run one sweep point: the one place a benchmark's ``run_point`` is called. An exception becomes a
    failed record with its reason (and says whether it was an out-of-memory or a CUDA error)."""
    key = registry.key_of(bname, point)
    sampler = telemetry.sampling(ctx.target)  # issue 9: NVML samples (clocks, power, throttling) during the point
    failed = None
    try:
        with sampler:
            recs = list(bench.run_point(ctx, point))
    except Exception as e:  # one bad point must not lose the suite
        oom = _is_oom(e)
        cuda = not oom and _is_cuda_error(e)
        failed = (("out of memory: " if oom else "CUDA error: " if cuda else "") + _describe(e), oom, cuda)
    if failed is not None:
        reason, oom, cuda = failed
        if oom:  # here, not in the except block: the exception's traceback held the point's tensors until now
            _release_memory(ctx)
        return PointResult([_failure(bname, point, ctx.target, reason)], oom=oom, cuda_error=cuda)
    sampler.stamp(recs)  # issue 9: each record carries the point's telemetry summary
    for r in recs:
        r.key = key
    return PointResult(recs)


def _release_memory(ctx: RunContext) -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and ctx.target.is_cuda:
        try:
            torch.cuda.empty_cache()
        except Exception:  # a broken context: the next point will say so
            pass


def _series_size(bench: Any, point: dict) -> tuple[Any, float] | None:
    """(series, size) when the benchmark defines both, else None (no out-of-memory skipping)."""
    sk, sz = getattr(bench, "series_key", None), getattr(bench, "size_of", None)
    if sk is None or sz is None:
        return None
    try:
        s = sk(point)
        hash(s)
        return s, float(sz(point))
    except Exception:  # a point the benchmark cannot place: no skipping for it
        return None


def estimate_point_s(bench: Any, ctx: RunContext, point: dict) -> float:
    """A guess at one point's wall time before any is measured: the benchmark's ``estimate_s`` if it has
    one, else a few kernels' worth of minimum measured time plus set-up."""
    fn = getattr(bench, "estimate_s", None)
    if fn is not None:
        try:
            v = float(fn(ctx, point))
            if math.isfinite(v) and v > 0:
                return v
        except Exception:  # a bad estimate is only a bad estimate
            pass
    return 0.5 + 10 * float(ctx.min_time_s or 0.1)


def run_series(ctx: RunContext, bname: str, bench: Any, points: list[dict], out_file: Path, *,
               soft_deadline: float | None = None, estimate_s: float | None = None,
               should_stop: Callable[[], bool] | None = None, emit: Callable[[dict], None] | None = None,
               stop_on_cuda_error: bool = False, oom_points: list[dict] | None = None) -> str:
    """Run ``points`` of one benchmark in order, appending each point's records before reporting it.

    ``soft_deadline`` (a ``time.monotonic()`` value, the same clock in every process): a point that would
    end after it is not started; its length is guessed from ``estimate_s`` (the mean of points measured
    before) or the points measured here, and with neither the first point starts if the deadline has not
    passed. Events go to ``emit``: start/done/skip per point (with ``key``). Returns why it ended: "done",
    "stopped" (``should_stop``), "budget" (the deadline) or "cuda-error".
    """
    emit = emit or (lambda ev: None)
    oom_at: dict[Any, float] = {}
    for p in oom_points or []:
        ss = _series_size(bench, p)
        if ss:
            oom_at[ss[0]] = min(ss[1], oom_at.get(ss[0], math.inf))
    elapsed: list[float] = []
    for point in points:
        key = registry.key_of(bname, point)
        if should_stop is not None and should_stop():
            return "stopped"
        ss = _series_size(bench, point)
        if ss and ss[1] >= oom_at.get(ss[0], math.inf):
            rec = _failure(bname, point, ctx.target, "skipped: a point of this series no larger than this one "
                           f"(size {oom_at[ss[0]]:g}) ran out of memory", status="skipped")
            meas.append(out_file, [rec])
            emit({"ev": "skip", "key": key, "status": "skipped"})
            continue
        if soft_deadline is not None:
            now = time.monotonic()
            # the median: a first point that compiled and autotuned the Triton kernels says little of the rest
            guess = statistics.median(elapsed) if elapsed else estimate_s
            if now >= soft_deadline or (guess is not None and now + guess > soft_deadline):
                return "budget"
        emit({"ev": "start", "key": key})
        t0 = time.monotonic()
        res = run_one_point(ctx, bench, bname, point)
        meas.append(out_file, res.records)
        elapsed.append(time.monotonic() - t0)
        status = "failed" if any(r.status == "failed" for r in res.records) else "ok"
        emit({"ev": "done", "key": key, "status": status, "elapsed_s": elapsed[-1], "oom": res.oom})
        if res.oom and ss:
            oom_at[ss[0]] = min(ss[1], oom_at.get(ss[0], math.inf))
        if res.cuda_error and stop_on_cuda_error:
            return "cuda-error"
    return "done"


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


def coarse_to_fine(bench: Any, points: list[dict]) -> list[dict]:
    """The order a budgeted run takes, so that whatever is measured spans the sweep: per series (by size when
    the benchmark says), the largest (where peaks come from), the smallest, then midpoints; series in turn."""
    groups: dict[Any, list[tuple[float, int, dict]]] = {}
    for i, p in enumerate(points):
        ss = _series_size(bench, p)
        g, size = (ss if ss else (None, float(i)))
        groups.setdefault(repr(g), []).append((size, i, p))
    orders = []
    for members in groups.values():
        members.sort(key=lambda t: (t[0], t[1]))
        orders.append([members[i][2] for i in bisection_order(len(members))])
    out: list[dict] = []
    for r in range(max((len(o) for o in orders), default=0)):
        out += [o[r] for o in orders if r < len(o)]
    return out


# -- signals -------------------------------------------------------------------------------------------


class _Signals:
    """SIGINT: stop after the point in flight; a second SIGINT, or SIGTERM: abandon it."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.stop = False
        self.abandon = False
        self.name: str | None = None
        self.raise_on_abandon = False  # in-process mode: interrupt the point itself
        self._old: dict = {}

    def __enter__(self) -> _Signals:
        if self.enabled:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self.name = self.name or signal.Signals(signum).name
        if signum == signal.SIGTERM or self.stop:
            self.abandon = True
        self.stop = True
        if self.abandon and self.raise_on_abandon:
            self.raise_on_abandon = False
            raise KeyboardInterrupt


# -- driving one benchmark -------------------------------------------------------------------------------


@dataclass
class _Plan:
    name: str
    bench: Any
    points: list[dict]
    est_point_s: float
    limit_s: float
    point_limit_s: float | None

    @property
    def est_s(self) -> float:
        return self.est_point_s * len(self.points)


class _Tracker:
    """What the parent knows of a benchmark's points, from the events of its worker(s)."""

    def __init__(self, plan: _Plan, on_progress: Progress | None):
        self.plan = plan
        self.points = {registry.key_of(plan.name, p): p for p in plan.points}
        self.finished: set[str] = set()
        self.inflight: str | None = None
        self.inflight_since = 0.0
        self.elapsed: list[float] = []
        self.oom_points: list[dict] = []
        self.stop_reason: str | None = None
        self.on_progress = on_progress

    def handle(self, ev: dict) -> None:
        kind, key = ev.get("ev"), ev.get("key")
        if kind == "stop":
            self.stop_reason = str(ev.get("reason"))
        elif kind == "start" and key in self.points:
            self.inflight, self.inflight_since = key, time.monotonic()
            if self.on_progress:
                self.on_progress(self.plan.name, len(self.finished), len(self.points), self.points[key])
        elif kind in ("done", "skip") and key in self.points:
            self.finished.add(key)
            if key == self.inflight:
                self.inflight = None
            if isinstance(ev.get("elapsed_s"), (int, float)):
                self.elapsed.append(float(ev["elapsed_s"]))
            if ev.get("oom"):
                self.oom_points.append(self.points[key])

    def remaining(self) -> list[str]:
        return [k for k in self.points if k not in self.finished and k != self.inflight]

    def observed_s(self) -> float | None:
        """Median wall time of the points measured so far, if any (robust to a first point that compiled)."""
        return statistics.median(self.elapsed) if self.elapsed else None


def _drive_inprocess(ctx: RunContext, tr: _Tracker, out: Path, soft: float | None, sig: _Signals) -> str:
    todo = [tr.points[k] for k in tr.remaining()]
    sig.raise_on_abandon = True
    try:
        why = run_series(ctx, tr.plan.name, tr.plan.bench, todo, out / MEASUREMENTS, soft_deadline=soft,
                         should_stop=lambda: sig.stop, emit=tr.handle)
    except KeyboardInterrupt:
        sig.stop = sig.abandon = True
        sig.name = sig.name or "SIGINT"
        if tr.inflight:
            meas.append(out / MEASUREMENTS, [_failure(tr.plan.name, tr.points[tr.inflight], ctx.target,
                                                      f"interrupted: abandoned on {sig.name}", "skipped", True)])
            tr.finished.add(tr.inflight)
            tr.inflight = None
        return "interrupted"
    finally:
        sig.raise_on_abandon = False
    return "interrupted" if why == "stopped" else why


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])  # the directory holding the bench package
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the worker's whole process group (it leads one: start_new_session), ranks it spawned included."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def _last_line(log_path: Path, start: int) -> str:
    try:
        with open(log_path, "rb") as f:
            f.seek(start)
            tail = f.read()[-8192:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _has_final_record(out_file: Path, key: str) -> bool:
    return any(m.key == key and not is_retry(m) for m in meas.read(out_file))


def _worker_session(ctx: RunContext, tr: _Tracker, out: Path, soft: float | None, hard: float,
                    hard_reason: str, sig: _Signals, log: Log) -> str:
    """One worker process for the benchmark's remaining points; returns why it ended (see _drive_isolated)."""
    plan, out_file = tr.plan, out / MEASUREMENTS
    todo = [tr.points[k] for k in tr.remaining()]
    t = ctx.target
    job = {
        "parent_pid": os.getpid(), "backend": t.backend, "target": dataclasses.asdict(t),
        "benchmark": plan.name, "module": registry.REGISTRY[plan.name], "points": todo,
        "out_file": str(out_file.resolve()), "quick": ctx.quick, "min_time_s": ctx.min_time_s,
        "seed": ctx.seed, "options": ctx.options, "soft_deadline": soft,
        "estimate_s": tr.observed_s(), "oom_points": tr.oom_points,
    }
    line = (json.dumps(job, allow_nan=False) + "\n").encode()
    log_path = out / LOG_DIR / f"{plan.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    finished_before = len(tr.finished)
    tr.stop_reason = None
    r, w = os.pipe()
    with open(log_path, "ab") as logf:
        log_start = logf.tell()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "bench._worker", "--events-fd", str(w)],
                                    stdin=subprocess.PIPE, stdout=logf, stderr=subprocess.STDOUT,
                                    pass_fds=(w,), start_new_session=True, env=_worker_env())
        except OSError as e:
            os.close(r)
            os.close(w)
            for k in tr.remaining():
                meas.append(out_file, [_failure(plan.name, tr.points[k], t, f"cannot start a worker: {e}",
                                                retry=True)])
                tr.finished.add(k)
            return "failed-start"
    os.close(w)
    try:
        proc.stdin.write(line)
        proc.stdin.flush()
    except OSError:  # it died at once: the exit status says why
        pass
    buf, told_stop, kill = b"", False, None
    try:
        while True:
            now = time.monotonic()
            deadline, why = hard, hard_reason
            if tr.inflight and plan.point_limit_s and tr.inflight_since + plan.point_limit_s < deadline:
                deadline, why = tr.inflight_since + plan.point_limit_s, "point-timeout"
            if sig.abandon:
                kill = "interrupted"
                break
            if sig.stop and not told_stop:
                told_stop = True
                try:
                    proc.stdin.write(b"stop\n")
                    proc.stdin.flush()
                except OSError:
                    pass
            if now >= deadline:
                kill = why
                break
            ready, _, _ = select.select([r], [], [], max(0.0, min(0.2, deadline - now)))
            if ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break  # EOF: the worker has ended
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for ln in lines:
                    try:
                        ev = json.loads(ln)
                    except ValueError:
                        continue
                    if isinstance(ev, dict):
                        tr.handle(ev)
            elif proc.poll() is not None:
                break  # ended, but something it spawned still holds the events pipe
    finally:
        os.close(r)
        if kill is None:  # it is ending: let it set its exit status before anything is killed
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(proc)  # a hang or an abandon; after a normal end, whatever it left behind
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # unkillable (a process stuck in the driver): leave it
            rc = -9
    inflight, tr.inflight = tr.inflight, None
    if inflight and _has_final_record(out_file, inflight):  # it wrote the records, then died before saying so
        tr.finished.add(inflight)
        inflight = None
    point = tr.points.get(inflight) if inflight else None

    def record(reason: str, status: str = "failed", retry: bool = False) -> None:
        if point is not None:
            meas.append(out_file, [_failure(plan.name, point, t, reason, status=status, retry=retry)])
            tr.finished.add(inflight)

    if kill == "interrupted":
        record(f"interrupted: abandoned on {sig.name or 'a signal'}", "skipped", retry=True)
        return "interrupted"
    if kill == "point-timeout":
        record(f"timeout: no result after {plan.point_limit_s:g} s; worker killed")
        log(f"{plan.name}: a point hung past {plan.point_limit_s:g} s; killed, going on in a fresh worker")
        return "point-timeout"
    if kill == "time limit":
        record(f"timeout: benchmark {plan.name} reached its time limit of {plan.limit_s:g} s during this point; "
               "worker killed")
        return "time limit"
    if kill == "budget":
        record("budget: the run's budget ran out during this point; abandoned", "skipped", retry=True)
        return "budget"
    if rc == 0:
        if not tr.remaining() or tr.stop_reason == "done":
            return "done"
        if tr.stop_reason == "budget":
            return "budget"
        if tr.stop_reason == "stopped" or sig.stop:
            return "interrupted"
        for k in tr.remaining():  # ended cleanly without its points: say so rather than lose them
            meas.append(out_file, [_failure(plan.name, tr.points[k], t, "the worker ended without running this "
                                            f"point (see {log_path})", retry=True)])
            tr.finished.add(k)
        return "done"
    if rc == EXIT_CUDA_ERROR:
        log(f"{plan.name}: CUDA error; going on in a fresh worker")
        return "cuda-error"
    detail = _last_line(log_path, log_start)
    detail = f": {detail}" if detail else f" (see {log_path})"
    if point is not None:
        record(f"worker crashed ({_exit_text(rc)}) during this point{detail}")
        log(f"{plan.name}: worker crashed ({_exit_text(rc)}); going on in a fresh worker")
        return "crashed"
    if len(tr.finished) == finished_before:  # died before running anything: another try would do the same
        for k in tr.remaining():
            meas.append(out_file, [_failure(plan.name, tr.points[k], t,
                                            f"worker failed ({_exit_text(rc)}){detail}", retry=True)])
            tr.finished.add(k)
        return "failed-start"
    return "crashed"


def _drive_isolated(ctx: RunContext, tr: _Tracker, out: Path, soft: float | None, hard: float,
                    hard_reason: str, sig: _Signals, log: Log) -> str:
    """Workers, one after another, until the benchmark's points are done or a limit, the budget or a signal
    ends it. Returns "done", "budget", "time limit" or "interrupted"."""
    while tr.remaining():
        if sig.stop:
            return "interrupted"
        if time.monotonic() >= hard:
            return hard_reason
        why = _worker_session(ctx, tr, out, soft, hard, hard_reason, sig, log)
        if why in ("crashed", "point-timeout", "cuda-error"):
            continue
        return "done" if why == "failed-start" else why
    return "done"


# -- the run ---------------------------------------------------------------------------------------------


def _plan(ctx: RunContext, selection: list[str], done: set[str], out_file: Path, budget_s: float | None,
          time_limit_s: float | None, point_limit_s: float | None) -> list[_Plan]:
    plans = []
    for bname in selection:
        try:
            bench = registry.get(bname)
            points = list(bench.sweep(ctx))
        except Exception as e:  # a benchmark that cannot even list its points: recorded, the others go on
            key = registry.key_of(bname, {})
            if key not in done:
                meas.append(out_file, [_failure(bname, {}, ctx.target, f"sweep failed: {_describe(e)}",
                                                retry=True)])
            continue
        seen: set[str] = set()
        todo = []
        for p in points:
            k = registry.key_of(bname, p)
            if k not in seen and k not in done:
                seen.add(k)
                todo.append(p)
        if budget_s is not None:
            todo = coarse_to_fine(bench, todo)
        est = (sum(estimate_point_s(bench, ctx, p) for p in todo) / len(todo)) if todo else 0.0
        plimit = point_limit_s if point_limit_s is not None else getattr(bench, "point_limit_s", DEFAULT_POINT_LIMIT_S)
        if budget_s is not None and point_limit_s is None:
            cap = max(BUDGET_POINT_FLOOR_S, BUDGET_POINT_SHARE * budget_s)
            plimit = min(plimit, cap) if plimit else cap
        limit = (time_limit_s or getattr(bench, "time_limit_s", None)
                 or max(DEFAULT_TIME_LIMIT_S[bool(ctx.quick)], plimit or 0))
        plans.append(_Plan(bname, bench, todo, est, float(limit), plimit))
    return plans


def finish(out: Path, target: Target, selection: list[str], quick: bool, wall_s: float | None,
           name: str | None = None) -> prof.Profile:
    """(Re)build profile.json and the report from measurements.jsonl alone (replaced records dropped)."""
    from .report import build as report_build

    records = _compact(out / MEASUREMENTS)
    run = prof.RunInfo(mode=target.backend, mode_reason=target.reason, benchmarks=selection, quick=quick,
                       wall_time_s=wall_s)
    profile = prof.from_measurements(records, prof.device_info(target), run, name=name)
    prof.save(profile, out / PROFILE)
    report_build.write(out, profile, records)  # report.md, report.html, plots/*.png
    return profile


def run(selection: list[str], target: Target, out: Path, *, quick: bool = True, resume: bool = False,
        force: bool = False, min_time_s: float | None = None, seed: int = 0, options: dict | None = None,
        on_progress: Progress | None = None, isolate: bool = True, budget_s: float | None = None,
        time_limit_s: float | None = None, point_limit_s: float | None = None, handle_signals: bool = True,
        log: Log | None = None) -> RunResult:
    """Run ``selection`` on ``target`` into ``out``; see the module docstring for isolation, limits, budget,
    signals and resume."""
    out = Path(out)
    log = log or (lambda msg: None)
    if budget_s is not None and not (math.isfinite(budget_s) and budget_s > 0):
        raise RunError(f"the budget must be a positive number of seconds, got {budget_s}")
    ctx = RunContext(target=target, quick=quick, min_time_s=min_time_s, seed=seed, options=dict(options or {}))
    settings = Settings(selection=list(selection), quick=bool(quick), seed=int(seed), min_time_s=min_time_s,
                        options=ctx.options, backend=target.backend, device=target.name)
    try:
        settings_json = settings.to_json()
    except (TypeError, ValueError) as e:
        raise RunError(f"run options must be plain JSON values: {e}") from None
    prepare_out_dir(out, resume=resume, force=force)
    out_file = out / MEASUREMENTS
    if resume:
        stored = load_settings(out)
        if stored is not None:
            diff = [f"{k} {getattr(stored, k)!r} (now {getattr(settings, k)!r})"
                    for k in ("selection", "quick", "seed", "min_time_s", "options", "backend", "device")
                    if getattr(stored, k) != getattr(settings, k)]
            if diff:
                raise RunError(f"{out} was started with {'; '.join(diff)}: resume it with the same settings")
    if not resume or load_settings(out) is None:
        prof.atomic_write_text(out / SETTINGS, settings_json)
    existing = effective(meas.read(out_file)) if resume else []
    done = {m.key for m in existing if m.key and not is_retry(m)}

    t0 = time.monotonic()
    points_end = None
    if budget_s is not None:
        reserve = min(30.0, max(0.5, 0.1 * budget_s))  # left for the profile and report
        points_end = t0 + budget_s - reserve
    plans = _plan(ctx, selection, done, out_file, budget_s, time_limit_s, point_limit_s)
    total_est = sum(p.est_s for p in plans)
    if budget_s is not None:
        n = sum(len(p.points) for p in plans)
        log(f"budget {budget_s:g} s: {n} points to measure, estimated {total_est:.0f} s"
            + ("; points run coarse to fine, those that do not fit are skipped (--resume measures them)"
               if total_est > budget_s else ""))
    budget_skipped = 0
    with _Signals(handle_signals) as sig:
        for i, plan in enumerate(plans):
            if sig.stop:
                break
            tr = _Tracker(plan, on_progress)
            if not plan.points:
                if on_progress:
                    on_progress(plan.name, 0, 0, {})
                continue
            now = time.monotonic()
            soft = None
            hard, hard_reason = now + plan.limit_s, "time limit"
            if points_end is not None:
                rest = sum(p.est_s for p in plans[i:])
                soft = now + (points_end - now) * (plan.est_s / rest if rest > 0 else 1.0)
                if points_end <= hard:
                    hard, hard_reason = points_end, "budget"
            if points_end is not None and now >= points_end:
                why = "budget"
            elif isolate:
                why = _drive_isolated(ctx, tr, out, soft, hard, hard_reason, sig, log)
            else:
                why = _drive_inprocess(ctx, tr, out, soft, sig)
            rest_keys = tr.remaining()
            if why in ("budget", "time limit") and rest_keys:
                reason = ("budget: not measured within the run's budget" if why == "budget" else
                          f"time limit: benchmark {plan.name} ran out of its {plan.limit_s:g} s")
                meas.append(out_file, [_failure(plan.name, tr.points[k], target, reason, status="skipped",
                                                retry=True) for k in rest_keys])
                budget_skipped += len(rest_keys) if why == "budget" else 0
            if on_progress:
                on_progress(plan.name, len(tr.finished), len(tr.points), {})
        wall = time.monotonic() - t0
        # still under the signal handlers: a SIGTERM now (e.g. `timeout` as the points end) is recorded, not fatal,
        # so the profile and report of what was measured are written all the same
        profile = finish(out, target, selection, quick, wall)
    records = meas.read(out_file)
    return RunResult(out_dir=out, profile=profile, measurements=records, interrupted=sig.stop,
                     wall_time_s=wall, skipped_existing=len(done),
                     failures=[f"{m.benchmark}: {m.reason}" for m in records if m.status == "failed"],
                     signal=sig.name if sig.stop else None, budget_skipped=budget_skipped,
                     plan=[(p.name, len(p.points), p.est_s) for p in plans])
