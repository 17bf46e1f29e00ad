"""A worker process: runs one benchmark's points for ``bench.runner``, isolated from the rest of the run.

Started as ``python -m bench._worker --events-fd N`` in a process group of its own. Protocol:

* stdin, first line: the job as JSON (target, benchmark module, points, output file, context, deadline);
  after it, a line ``stop`` asks the worker to stop after the point in flight (EOF, the runner gone, too);
* fd N: events as JSON lines: ``ready``; ``start`` / ``done`` / ``skip`` per point, with its key; ``stop``
  with why the worker ended;
* exit status 0, or ``runner.EXIT_CUDA_ERROR`` after a CUDA error may have left the context unusable.

The worker picks the target itself (``bench.target.configure``) before any kernel module is imported, and
appends each point's records to the output file (fsync'ed) before it reports the point done. On Linux it
dies with the runner (PR_SET_PDEATHSIG), so a killed run never leaves a worker appending to its log.
"""
from __future__ import annotations

import importlib
import json
import os
import select
import signal
import sys
from pathlib import Path


class _Control:
    """The runner's side of stdin: the job, then ``stop``."""

    def __init__(self, fd: int = 0):
        self.fd = fd
        self.buf = b""
        self.stopped = False

    def read_job(self) -> dict:
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise SystemExit(2)  # the runner went away before sending the job
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def poll(self) -> bool:
        """True once the runner asked to stop (or is gone)."""
        while not self.stopped:
            if b"stop" in self.buf:
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
    _die_with_parent(int(job["parent_pid"]))

    def emit(ev: dict) -> None:
        os.write(events_fd, (json.dumps(ev) + "\n").encode())

    from bench import target as T

    if job["backend"] != "cpu":  # under torchrun each rank's worker measures its own GPU, not GPU 0
        from bench import distributed

        distributed.pin_local_device()
    T.configure(job["backend"])  # sets TRITON_INTERPRET before any kernel module is imported
    fields = dict(job["target"])
    cap = fields.get("capability")
    fields["capability"] = tuple(cap) if cap else None
    tgt = T.Target(**fields)  # the runner's target, exactly (it may narrow e.g. the cache size)

    from bench import runner
    from bench.registry import RunContext

    bench = importlib.import_module(job["module"]).BENCHMARK
    ctx = RunContext(target=tgt, quick=job["quick"], min_time_s=job["min_time_s"], seed=job["seed"],
                     options=job["options"])
    emit({"ev": "ready", "pid": os.getpid()})
    why = runner.run_series(ctx, job["benchmark"], bench, job["points"], Path(job["out_file"]),
                            soft_deadline=job.get("soft_deadline"), estimate_s=job.get("estimate_s"),
                            should_stop=ctl.poll, emit=emit, stop_on_cuda_error=True,
                            oom_points=job.get("oom_points"))
    emit({"ev": "stop", "reason": why})
    return runner.EXIT_CUDA_ERROR if why == "cuda-error" else 0


if __name__ == "__main__":
    try:
        code = main()
    except BrokenPipeError:  # the runner is gone
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: after a CUDA error it can hang; the records are on disk
