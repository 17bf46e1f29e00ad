"""Running a benchmark's points in worker processes (``bench.runner.worker``, see bench/spawn.py), one at a time,
each in a process group of its own: a worker that dies or hangs past a limit is killed with everything it
started, its point in flight is recorded, and a fresh worker goes on with the rest (see docs/runner.md)."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

from .. import measurement as meas
from .. import registry, spawn
from ..jsonio import open_regular
from ..measurement import NotMeasuredStatus
from ..registry import Point, RunContext
from .drive import Log, Tracker
from .outcomes import BenchmarkEnd, Kill, SessionEnd
from .outdir import MEASUREMENTS, log_path
from .plan import Deadlines
from .protocol import EXIT_CUDA_ERROR, STOP_LINE, Event, Job, decode_event
from .records import has_final_record, point_not_measured
from .signals import Signals

WORKER_MODULE = "bench.runner.worker"
POLL_S = 0.2  # how often the runner looks at signals and deadlines while a worker is quiet
EXIT_GRACE_S = 10.0  # a worker that closed its events pipe gets this long to exit before it is killed
REAP_S = 30.0  # after SIGKILL: a process stuck in the driver may never go; it is left behind
LOG_TAIL_BYTES = 8192  # of a worker's log, read for the reason it died


def drive_isolated(ctx: RunContext, tr: Tracker, out: Path, limits: Deadlines, sig: Signals,
                   log: Log) -> BenchmarkEnd:
    """Workers, one after another, until the benchmark's points are done or a limit, the budget or a signal
    ends it."""
    while tr.remaining():
        if sig.stop:
            return "interrupted"
        if time.monotonic() >= limits.hard:
            return limits.hard_reason
        why = _Session(ctx, tr, out, limits, sig, log).run()
        match why:
            case "crashed" | "point-timeout" | "cuda-error":  # its point is recorded: a fresh worker goes on
                continue
            case "failed-start":  # its points are recorded: another worker would fail the same way
                return "done"
            case _:
                return why
    return "done"


class _Worker:
    """One worker process: its stdin, the read end of its events pipe, its log."""

    def __init__(self, job: Job, log_file: Path):
        self.log_file = log_file
        read_fd, write_fd = os.pipe()
        try:
            # never through a link: log_path checked it, O_NOFOLLOW holds to it
            log_fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
            try:
                self.log_start = os.lseek(log_fd, 0, os.SEEK_END)
                self.proc = subprocess.Popen(
                    spawn.command(WORKER_MODULE, "--events-fd", str(write_fd)), stdin=subprocess.PIPE,
                    stdout=log_fd, stderr=subprocess.STDOUT, pass_fds=(write_fd,), start_new_session=True,
                    env=spawn.env())
            finally:
                os.close(log_fd)
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.events_fd = read_fd
        self._buf = b""
        self.send(job.to_json())

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None  # Popen(stdin=PIPE)
        return self.proc.stdin

    def send(self, data: bytes) -> None:
        try:
            self.stdin.write(data)
            self.stdin.flush()
        except OSError:  # it has died: its exit status says why
            pass

    def wait_readable(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.events_fd], [], [], timeout)
        return bool(ready)

    def read_events(self) -> list[Event] | None:
        """The complete events that have arrived (after ``wait_readable``); None at EOF (the worker ended)."""
        chunk = os.read(self.events_fd, 1 << 16)
        if not chunk:
            return None
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        return [ev for ev in map(decode_event, lines) if ev is not None]

    def close(self, killed: bool) -> int:
        """End the worker and everything it started; its exit status (-9 when it cannot be reaped)."""
        os.close(self.events_fd)
        if not killed:  # it is ending: let it set its exit status before anything is killed
            try:
                self.proc.wait(timeout=EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        kill_group(self.proc)  # a hang or an abandon; after a normal end, whatever it left behind
        try:
            self.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=REAP_S)
        except subprocess.TimeoutExpired:  # unkillable (a process stuck in the driver): leave it
            return -9

    def last_log_line(self) -> str:
        """The last line this worker wrote to the log (an exception's last line, typically)."""
        try:
            fd = open_regular(self.log_file, "log", OSError, follow=False)
            try:
                start = max(self.log_start, os.fstat(fd).st_size - LOG_TAIL_BYTES)
                tail = os.pread(fd, LOG_TAIL_BYTES, start).decode("utf-8", "replace")
            finally:
                os.close(fd)
        except OSError:
            return ""
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the worker's whole process group (it leads one: start_new_session), ranks it spawned included."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def exit_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


class _Session:
    """One worker process for the benchmark's remaining points, from its start to the records of how it
    ended."""

    def __init__(self, ctx: RunContext, tr: Tracker, out: Path, limits: Deadlines, sig: Signals, log: Log):
        self.ctx, self.tr, self.limits, self.sig, self.log = ctx, tr, limits, sig, log
        self.name = tr.plan.name
        self.out_file = out / MEASUREMENTS
        self.log_file = log_path(out, self.name)
        self.inflight: str | None = None  # the point the worker was on when it ended

    def run(self) -> SessionEnd:
        job = self._job()
        finished_before = len(self.tr.finished)
        self.tr.stop_reason = None
        try:
            worker = _Worker(job, self.log_file)
        except OSError as e:
            self._record_remaining(f"cannot start a worker: {e}")
            return "failed-start"
        kill: Kill | None = None
        try:
            kill = self._watch(worker)
        finally:
            rc = worker.close(killed=kill is not None)
        self._settle_inflight()
        if kill is not None:
            return self._after_kill(kill)
        return self._after_exit(rc, worker, started_any=len(self.tr.finished) > finished_before)

    def _job(self) -> Job:
        ctx, tr = self.ctx, self.tr
        return Job(parent_pid=os.getpid(), target=ctx.target, benchmark=self.name,
                   module=registry.REGISTRY[self.name], points=[tr.points[k] for k in tr.remaining()],
                   out_file=str(self.out_file.resolve()), quick=ctx.quick, min_time_s=ctx.min_time_s,
                   seed=ctx.seed, options=ctx.options, soft_deadline=self.limits.soft,
                   estimate_s=tr.observed_s(), oom_points=tr.oom_points)

    def _deadline(self) -> tuple[float, Kill]:
        """The next deadline: the benchmark's hard one, or the point in flight's limit if that comes first."""
        tr, plimit = self.tr, self.tr.plan.point_limit_s
        if tr.inflight and plimit and tr.inflight_since + plimit < self.limits.hard:
            return tr.inflight_since + plimit, "point-timeout"
        return self.limits.hard, self.limits.hard_reason

    def _watch(self, worker: _Worker) -> Kill | None:
        """Follow the worker's events until it ends (None) or must be killed (why)."""
        told_stop = False
        while True:
            deadline, why = self._deadline()
            if self.sig.abandon:
                return "interrupted"
            if self.sig.stop and not told_stop:
                told_stop = True
                worker.send(STOP_LINE)
            now = time.monotonic()
            if now >= deadline:
                return why
            if worker.wait_readable(max(0.0, min(POLL_S, deadline - now))):
                events = worker.read_events()
                if events is None:
                    return None  # EOF: the worker has ended
                for ev in events:
                    self.tr.handle(ev)
            elif worker.proc.poll() is not None:
                return None  # ended, but something it spawned still holds the events pipe

    def _settle_inflight(self) -> None:
        """Take over the point the worker was on; one whose records it wrote before dying is finished."""
        self.inflight, self.tr.inflight = self.tr.inflight, None
        if self.inflight and has_final_record(self.out_file, self.inflight):
            self.tr.finished.add(self.inflight)
            self.inflight = None

    def _record_inflight(self, reason: str, status: NotMeasuredStatus = "failed", retry: bool = False) -> None:
        if self.inflight is not None:
            self._append(self.inflight, reason, status, retry)

    def _record_remaining(self, reason: str) -> None:
        """Record every point not run yet as failed, for a resume to try again."""
        for k in self.tr.remaining():
            self._append(k, reason, "failed", retry=True)

    def _append(self, key: str, reason: str, status: NotMeasuredStatus, retry: bool) -> None:
        point: Point = self.tr.points[key]
        meas.append(self.out_file, [point_not_measured(self.name, point, self.ctx.target, reason, status, retry)])
        self.tr.finished.add(key)

    def _after_kill(self, kill: Kill) -> SessionEnd:
        plan = self.tr.plan
        if kill == "interrupted":
            self._record_inflight(f"interrupted: abandoned on {self.sig.name or 'a signal'}", "skipped", retry=True)
        elif kill == "point-timeout":
            self._record_inflight(f"timeout: no result after {plan.point_limit_s:g} s; worker killed")
            self.log(f"{self.name}: a point hung past {plan.point_limit_s:g} s; killed, going on in a fresh worker")
        elif kill == "time limit":
            self._record_inflight(f"timeout: benchmark {self.name} reached its time limit of {plan.limit_s:g} s "
                                  "during this point; worker killed")
        else:
            self._record_inflight("budget: the run's budget ran out during this point; abandoned", "skipped",
                                  retry=True)
        return kill

    def _after_exit(self, rc: int, worker: _Worker, started_any: bool) -> SessionEnd:
        tr = self.tr
        if rc == 0:
            if not tr.remaining() or tr.stop_reason == "done":
                return "done"
            if tr.stop_reason == "budget":
                return "budget"
            if tr.stop_reason == "stopped" or self.sig.stop:
                return "interrupted"
            # ended cleanly without its points: say so rather than lose them
            self._record_remaining(f"the worker ended without running this point (see {self.log_file})")
            return "done"
        if rc == EXIT_CUDA_ERROR:
            self.log(f"{self.name}: CUDA error; going on in a fresh worker")
            return "cuda-error"
        detail = worker.last_log_line()
        detail = f": {detail}" if detail else f" (see {self.log_file})"
        if self.inflight is not None:
            self._record_inflight(f"worker crashed ({exit_text(rc)}) during this point{detail}")
            self.log(f"{self.name}: worker crashed ({exit_text(rc)}); going on in a fresh worker")
            return "crashed"
        if not started_any:  # died before running anything: another try would do the same
            self._record_remaining(f"worker failed ({exit_text(rc)}){detail}")
            return "failed-start"
        return "crashed"
