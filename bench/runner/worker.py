"""A worker process: runs one benchmark's points for the runner, isolated from the rest of the run.

Started by ``bench.runner.isolated`` as ``bench.runner.worker --events-fd N`` (through bench/spawn.py, so the
current folder is not on its import path) in a process group of its own; it speaks ``bench.runner.protocol``.
It picks the target itself (``bench.target.configure``) before any kernel module is imported, appends each
point's records to the output file (fsync'ed) before it reports the point done, and on Linux dies with the
runner (PR_SET_PDEATHSIG), so a killed run never leaves a worker appending to its log. Nothing in the runner
imports this module: it runs as ``__main__`` only.
"""
from __future__ import annotations

import importlib
import os
import select
import signal
import sys
from pathlib import Path

from bench.runner.protocol import EXIT_CUDA_ERROR, STOP_LINE, Event, Job, encode_event


class _Control:
    """The runner's side of stdin: the job, then the stop line."""

    def __init__(self, fd: int = 0):
        self.fd = fd
        self.buf = b""
        self.stopped = False

    def read_job(self) -> Job:
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise SystemExit(2)  # the runner went away before sending the job
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return Job.from_json(line)

    def poll(self) -> bool:
        """True once the runner asked to stop (or is gone)."""
        while not self.stopped:
            if STOP_LINE.strip() in self.buf:
                self.stopped = True
                break
            ready, _, _ = select.select([self.fd], [], [], 0)
            if not ready:
                break
            chunk = os.read(self.fd, 4096)
            if not chunk:
                self.stopped = True
            self.buf += chunk
        return self.stopped


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except Exception:  # without it the worker still stops between points when stdin closes
            pass
    if os.getppid() != parent_pid:  # the runner died before the line above took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    events_fd = int(args[args.index("--events-fd") + 1])
    os.set_inheritable(events_fd, False)  # processes it starts (ranks) must not hold the runner's pipe open
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
    ctl = _Control(0)
    job = ctl.read_job()
    _die_with_parent(job.parent_pid)

    def emit(ev: Event) -> None:
        os.write(events_fd, encode_event(ev))

    from bench import target

    if job.target.backend != "cpu":  # under torchrun each rank's worker measures its own GPU, not GPU 0
        from bench import distributed

        distributed.pin_local_device()
    target.configure(job.target.backend)  # sets TRITON_INTERPRET before any kernel module is imported

    from bench.registry import RunContext
    from bench.runner.point import run_series

    bench = importlib.import_module(job.module).BENCHMARK
    ctx = RunContext(target=job.target, quick=job.quick, min_time_s=job.min_time_s, seed=job.seed,
                     options=job.options)
    emit({"ev": "ready", "pid": os.getpid()})
    why = run_series(ctx, job.benchmark, bench, job.points, Path(job.out_file), soft_deadline=job.soft_deadline,
                     estimate_s=job.estimate_s, should_stop=ctl.poll, emit=emit, stop_on_cuda_error=True,
                     oom_points=job.oom_points)
    emit({"ev": "stop", "reason": why})
    return EXIT_CUDA_ERROR if why == "cuda-error" else 0


if __name__ == "__main__":
    try:
        code = main()
    except BrokenPipeError:  # the runner is gone
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: after a CUDA error it can hang; the records are on disk
