"""Benchmark protocol and registry.

A benchmark is one file under ``bench/benchmarks/`` defining ``BENCHMARK``, an object with:

* ``name`` / ``title``;
* ``sweep(ctx) -> list[dict]``: the points to run (plain JSON-able params), smaller with ``ctx.quick``;
* ``run_point(ctx, point) -> list[Measurement]``: build fresh random inputs, check every kernel against
  a reference, then time it; a failed check yields a failed Measurement, never a number;
* ``summarize(measurements, device) -> dict``: its contribution to the profile (peaks, curves), built from
  the records alone so a profile can be rebuilt from ``measurements.jsonl``.

Adding a benchmark = that file + one line in ``REGISTRY``. Modules are imported lazily, after the target
(and with it ``TRITON_INTERPRET``) is chosen.
"""
from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class UnknownBenchmark(ValueError):
    pass


@dataclass
class RunContext:
    """What a benchmark gets to run a point: the target, the sweep size, the timing budget."""

    target: Target
    quick: bool = True
    min_time_s: float | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.min_time_s is None:
            self.min_time_s = default_min_time_s(self.target, self.quick)

    @property
    def device(self) -> str:
        return self.target.torch_device

    @property
    def torch_mode(self) -> str:
        """Mode label of a timed PyTorch kernel: 'cuda' on GPU, 'cpu' on CPU."""
        return self.target.backend

    def time(self, fn: Callable[[], object], **kw: Any) -> Timing:
        kw.setdefault("min_time_s", self.min_time_s)
        return time_fn(fn, self.target, **kw)

    def seed_for(self, point: dict) -> int:
        """A per-point seed: fresh data for every point, reproducible across runs."""
        return random.Random(f"{self.seed}:{sorted(point.items())}").randrange(2**31)


class Benchmark(Protocol):
    name: str
    title: str

    def sweep(self, ctx: RunContext) -> list[dict]: ...

    def run_point(self, ctx: RunContext, point: dict) -> list[Measurement]: ...

    def summarize(self, measurements: list[Measurement], device: dict) -> dict: ...


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


def key_of(name: str, point: dict) -> str:
    return point_key(name, point)
