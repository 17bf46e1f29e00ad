"""The benchmark base class and the registry of benchmarks.

A benchmark is one file under ``bench/benchmarks/`` defining ``BENCHMARK``, an instance of a ``Benchmark``
subclass: ``sweep`` lists its points, ``run_point`` measures one (fresh random inputs, every kernel checked
against a reference before it is timed), ``summarize`` builds its part of the profile from the records alone.
The optional hooks the runner calls (out-of-memory series, estimates, time limits) have defaults here; see
docs/runner.md. Adding a benchmark = that file + one line in ``REGISTRY``. Modules are imported lazily,
after the target (and with it ``TRITON_INTERPRET``) is chosen.
"""
from __future__ import annotations

import importlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import Any, Literal

from .measurement import Measurement, point_key
from .target import Target
from .timing import Timing, default_min_time_s, time_fn

# name -> module defining BENCHMARK. Order is the order `rooflab run` runs them in.
REGISTRY: dict[str, str] = {
    "hbm": "bench.benchmarks.hbm",
    "gemm": "bench.benchmarks.gemm",
    "overhead": "bench.benchmarks.overhead",
    "transfer": "bench.benchmarks.transfer",
    "allreduce": "bench.benchmarks.allreduce",
    "decode": "bench.benchmarks.decode",
    "a2a": "bench.benchmarks.a2a",
}


# A sweep point: the benchmark's parameters for one measurement, plain JSON values (it is sent to worker
# processes, stored in every record and written into the point's key).
Point = dict[str, Any]


class UnknownBenchmark(ValueError):
    pass


class RunContext:
    """What a benchmark gets to run a point: the target, the sweep size, the timing budget (``min_time_s``
    None: the target's default), the seed of its random inputs and the run's options."""

    def __init__(self, target: Target, quick: bool = True, min_time_s: float | None = None, seed: int = 0,
                 options: dict[str, Any] | None = None):
        self.target = target
        self.quick = quick
        self.min_time_s: float = default_min_time_s(target, quick) if min_time_s is None else min_time_s
        self.seed = seed
        self.options: dict[str, Any] = {} if options is None else options

    def __repr__(self) -> str:
        return (f"RunContext(target={self.target.name!r}, quick={self.quick}, min_time_s={self.min_time_s}, "
                f"seed={self.seed}, options={self.options!r})")

    @property
    def device(self) -> str:
        return self.target.torch_device

    @property
    def torch_mode(self) -> Literal["cuda", "cpu"]:
        """Mode label of a timed PyTorch kernel: 'cuda' on GPU, 'cpu' on CPU."""
        return self.target.backend

    def time(self, fn: Callable[[], object], **kw: Any) -> Timing:
        kw.setdefault("min_time_s", self.min_time_s)
        return time_fn(fn, self.target, **kw)

    def seed_for(self, point: Point) -> int:
        """A per-point seed: fresh data for every point, reproducible across runs."""
        return random.Random(f"{self.seed}:{sorted(point.items())}").randrange(2**31)


class Benchmark(ABC):
    """What the runner runs. Subclasses define ``name``, ``title`` and the three abstract methods; the other
    hooks are optional and their defaults say "nothing to tell"."""

    name: str
    title: str
    # Wall-time limits in seconds, None for the runner's defaults (0 turns the point limit off).
    point_limit_s: float | None = None
    time_limit_s: float | None = None

    @abstractmethod
    def sweep(self, ctx: RunContext) -> list[Point]:
        """The points to run, fewer with ``ctx.quick``."""

    @abstractmethod
    def run_point(self, ctx: RunContext, point: Point) -> list[Measurement]:
        """Measure one point; a failed check is a failed record, never a number."""

    @abstractmethod
    def summarize(self, measurements: list[Measurement], device: dict) -> dict:
        """This benchmark's contribution to the profile (peaks, curves), from its records alone."""

    def series_key(self, point: Point) -> Hashable | None:
        """The series a point belongs to: an out-of-memory point skips the larger points of its series.
        None (the default): no series, nothing is skipped."""
        return None

    def size_of(self, point: Point) -> float | None:
        """A point's size within its series, growing as its memory use does (None: unknown)."""
        return None

    def estimate_s(self, ctx: RunContext, point: Point) -> float | None:
        """A guess at the point's wall time for budget planning (None: the runner guesses)."""
        return None


def names() -> list[str]:
    return list(REGISTRY)


def parse_selection(only: str | None) -> list[str]:
    """'hbm,gemm' -> ['hbm', 'gemm'] in registry order; None/'' -> all. Unknown names raise."""
    if not only:
        return names()
    wanted = [s.strip() for s in only.split(",") if s.strip()]
    bad = [w for w in wanted if w not in REGISTRY]
    if bad or not wanted:
        raise UnknownBenchmark(
            f"unknown benchmark {', '.join(bad) or repr(only)}: choose from {', '.join(REGISTRY)}"
        )
    return [n for n in REGISTRY if n in wanted]


def get(name: str) -> Benchmark:
    if name not in REGISTRY:
        raise UnknownBenchmark(f"unknown benchmark {name!r}: choose from {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).BENCHMARK


def key_of(name: str, point: Point) -> str:
    return point_key(name, point)
