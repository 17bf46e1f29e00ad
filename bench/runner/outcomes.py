"""How the runner's parts end: ``RunError`` for a run that cannot start, and the names of the outcomes of a
series of points, a worker process and a benchmark (see docs/runner.md)."""
from __future__ import annotations

from typing import Literal


class RunError(RuntimeError):
    """A run that cannot start (bad output directory, settings that differ from the run resumed); one line."""


# Why a series of points ended in one process: all done, asked to stop, the budget, or a CUDA error that
# leaves the process unusable.
SeriesEnd = Literal["done", "stopped", "budget", "cuda-error"]
# Which wall-time deadline is a benchmark's hard one: its own time limit, or the run's budget.
Deadline = Literal["time limit", "budget"]
# Why the runner killed a worker: a signal, a point past its limit, or one of the deadlines.
Kill = Literal["interrupted", "point-timeout", "time limit", "budget"]
# How one worker process ended: as the benchmark ends, or in a way a fresh worker goes on from.
SessionEnd = Literal["done", "budget", "time limit", "interrupted", "crashed", "point-timeout", "cuda-error",
                     "failed-start"]
# How a benchmark ended: every point run (or recorded), or what stopped it.
BenchmarkEnd = Literal["done", "budget", "time limit", "interrupted"]
