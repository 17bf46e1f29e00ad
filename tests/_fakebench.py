"""Fake benchmarks for the runner's reliability tests: tiny, deterministic, and misbehaving on purpose.

``install`` registers them for a test, in its process and in the runner's worker processes. Each fake's
point i does what ``behave[i]`` says:

  "raise"  raises ValueError          "hang"  sleeps for an hour        "die"   SIGKILLs its own process
  "exit"   os._exit(7)                "oom"   raises MemoryError        "cuda"  raises a CUDA-style error
  "spawn"  starts a child process (its pid to the file ``ctx.options["pidfile"]``), then hangs
  "hang_env"  hangs while $ROOFLAB_FAKE_HANG is set (a run another process holds)
  "die_once"  SIGKILLs its own process the first time (a marker file in $ROOFLAB_FAKE_MARKERS says it did)

Otherwise it returns one ok record whose numbers depend on the point alone (so two runs agree exactly),
with the worker's pid in ``extra``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench.measurement import measured
from bench.registry import Benchmark
from bench.timing import Timing


class Fake(Benchmark):
    title = "fake benchmark for tests"

    def __init__(self, name: str, n: int = 4, behave: dict | None = None, sleep_s: float = 0.0,
                 series: tuple[str, ...] = ()):
        self.name, self.n, self.behave, self.sleep_s, self.series = name, n, behave or {}, sleep_s, series

    # OOM skipping needs both hooks; without a series the runner must not skip anything
    def series_key(self, point: dict):
        return point["s"] if self.series else None

    def size_of(self, point: dict):
        return point["size"] if self.series else None

    def sweep(self, ctx) -> list[dict]:
        if self.series:
            return [{"s": s, "i": i, "size": 2 ** i} for s in self.series for i in range(self.n)]
        return [{"i": i} for i in range(self.n)]

    def run_point(self, ctx, point: dict):
        act = self.behave.get(point["i"]) if not self.series else self.behave.get((point["s"], point["i"]))
        if act == "raise":
            raise ValueError("fake failure")
        if act == "hang":
            time.sleep(3600)
        if act == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if act == "hang_env" and os.environ.get("ROOFLAB_FAKE_HANG"):
            time.sleep(3600)
        if act == "die_once":
            marker = os.path.join(os.environ["ROOFLAB_FAKE_MARKERS"], f"{self.name}-{point['i']}")
            if not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
        if act == "exit":
            os._exit(7)
        if act == "oom":
            raise MemoryError("fake: out of memory")
        if act == "cuda":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if act == "spawn":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            with open(ctx.options["pidfile"], "w") as f:
                f.write(str(child.pid))
            time.sleep(3600)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        i = point["i"]
        median = 1e-3 * (i + 1)
        t = Timing(median_s=median, min_s=median * 0.9, max_s=median * 1.2, mean_s=median, p10_s=median * 0.95,
                   p90_s=median * 1.05, n=10, total_s=median * 10, clock="perf_counter")
        nbytes = 1_000_000 * (i + 1) * (1 + len(self.name))
        return [measured(benchmark=self.name, kernel="copy", impl="torch", params=dict(point), mode="cpu",
                         device=ctx.target.name, timing=t, bytes=nbytes, pid=os.getpid())]

    def summarize(self, measurements, device) -> dict:
        curve = [{"op": self.name, "impl": m.impl, "dtype": "float32", "working_set_bytes": m.bytes,
                  "bandwidth_Bps": m.bandwidth_Bps, "median_s": m.timing.median_s, "p10_s": m.timing.p10_s,
                  "p90_s": m.timing.p90_s, "beyond_cache": True} for m in measurements if m.timed]
        curve.sort(key=lambda r: r["working_set_bytes"])
        return {"curves": {"hbm": curve}}


FAKES = {
    "f_ok": Fake("f_ok", n=3),
    "f_ok2": Fake("f_ok2", n=2),
    "f_raise": Fake("f_raise", n=3, behave={1: "raise"}),
    "f_hang": Fake("f_hang", n=3, behave={1: "hang"}),
    "f_die": Fake("f_die", n=3, behave={1: "die"}),
    "f_exit": Fake("f_exit", n=2, behave={0: "exit"}),
    "f_cuda": Fake("f_cuda", n=3, behave={1: "cuda"}),
    "f_spawn": Fake("f_spawn", n=2, behave={0: "spawn"}),
    "f_wait": Fake("f_wait", n=3, behave={1: "hang_env"}),
    "f_die_once": Fake("f_die_once", n=3, behave={1: "die_once"}),
    "f_slow": Fake("f_slow", n=8, sleep_s=0.25),
    "f_budget": Fake("f_budget", n=12, sleep_s=0.2),
    "f_oom": Fake("f_oom", n=5, behave={("a", 2): "oom"}, series=("a", "b")),
    "f_oom_noseries": Fake("f_oom_noseries", n=4, behave={1: "oom"}),
}


def install(monkeypatch, where, *names: str) -> dict[str, str]:
    """Point the registry at the named fakes (only them), in this process and in its worker processes:
    the registry wants a module holding BENCHMARK per benchmark, so one tiny module per fake is written to
    ``where`` and put on the import path (PYTHONPATH too, which the workers inherit)."""
    from bench import registry

    here = os.path.dirname(os.path.abspath(__file__))
    mods = {}
    for n in names:
        mod = f"rooflab_fake_{n}"
        (where / f"{mod}.py").write_text(f"from _fakebench import FAKES\nBENCHMARK = FAKES[{n!r}]\n")
        mods[n] = mod
    for d in (here, str(where)):
        monkeypatch.syspath_prepend(d)
    paths = [str(where), here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setattr(registry, "REGISTRY", mods)
    return mods
