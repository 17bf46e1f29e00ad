"""Fixed costs of running kernels: launch overhead, CUDA-graph replay, host↔device synchronisation.

A roofline holds when kernels are long; a decode step at small batch launches hundreds of short ones, and
what each launch costs is then part of the step. Measured for an (almost) empty Triton kernel and a tiny
PyTorch op (kernels/noop.py): ``launch`` (device time per kernel of N back-to-back eager launches),
``host_launch`` (the host's cost of issuing one), ``graph_launch`` (the same N kernels replayed from one CUDA
graph) and ``sync`` (a host↔device round trip). Accounting: per-kernel cost = time of N launches / N. The
profile's ``overheads`` take the PyTorch op's numbers. CPU mode: the PyTorch op's per-op dispatch time;
graphs and sync are GPU-only (skipped); the Triton no-op is checked in the interpreter, never timed.

How and why: docs/method.md ("overhead").
"""
from __future__ import annotations

import random
from typing import Any

import torch

from bench import checks, timing
from bench.measurement import Check, Measurement, Mode, measured, not_measured, timed_records
from bench.registry import Benchmark, RunContext

LAUNCHES_QUICK = 256  # kernels per timed sample: amortises the events, stays well inside CUDA's launch queue
LAUNCHES_FULL = 512
GRAPH_GPU_ONLY = "CUDA graphs are GPU-only"
SYNC_GPU_ONLY = "no device to synchronise with: the host↔device round trip is GPU-only"
ROLES = {  # profile field <- (kernel, impl)
    "launch_s": ("launch", "torch"),
    "host_launch_s": ("host_launch", "torch"),
    "graph_launch_s": ("graph_launch", "torch"),
    "triton_launch_s": ("launch", "triton"),
    "sync_s": ("sync", "torch"),
}
HOW = {
    "launch": "eager back-to-back launches, device clock around N, / N",
    "host_launch": "host clock around N asynchronous launches, / N",
    "graph_launch": "N launches replayed from one CUDA graph, device clock, / N",
    "sync": "tiny op + device synchronise, host clock",
}


def _skipped(ctx: RunContext, kernel: str, impl: str, params: dict, reason: str) -> Measurement:
    return not_measured(benchmark="overhead", kernel=kernel, impl=impl, params=params, reason=reason,
                        mode=ctx.target.backend, device=ctx.target.name)


class OverheadBenchmark(Benchmark):
    name = "overhead"
    title = "Fixed costs: kernel launch, CUDA-graph replay, host↔device sync"

    def sweep(self, ctx: RunContext) -> list[dict]:
        n = LAUNCHES_QUICK if ctx.quick else LAUNCHES_FULL
        return [{"op": "launch", "impl": "torch", "launches": n},
                {"op": "launch", "impl": "triton", "launches": n},
                {"op": "sync", "impl": "torch"}]

    def run_point(self, ctx: RunContext, point: dict) -> list[Measurement]:
        from kernels import noop as kern

        t = ctx.target
        gen = checks.generator(t.torch_device, ctx.seed_for(point))
        rng = random.Random(ctx.seed_for(point))
        params = dict(point)

        def record(kernel: str, mode: Mode, tm: timing.Timing | None, chk: Check, **extra: Any) -> Measurement:
            return measured(benchmark=self.name, kernel=kernel, impl=point["impl"], params=params, mode=mode,
                            device=t.name, timing=tm, check=chk, **extra)

        if point["impl"] == "torch":
            x = checks.random_tensor(kern.TINY_ELEMENTS, torch.float32, t.torch_device, gen)
            out = torch.empty_like(x)
            fn = lambda: kern.torch_tiny(x, out)  # noqa: E731

            def check() -> Check:
                checks.poison(out)
                fn()
                return checks.compare(out, kern.torch_tiny_reference(x), checks.tolerance("float32"),
                                      "float64 x + 1")

            def recheck() -> Check:  # after a graph replay: poison, replay, compare again
                return checks.compare(out, kern.torch_tiny_reference(x), checks.tolerance("float32"),
                                      "float64 x + 1 (graph replay)")
        else:
            marker = torch.empty(1, dtype=torch.int32, device=t.torch_device)
            value = rng.randrange(2, 1 << 30)  # never 0/1: a marker a no-op could not leave by accident
            fn = lambda: kern.triton_noop(marker, value)  # noqa: E731

            def check() -> Check:
                checks.poison(marker)
                fn()
                return recheck()

            def recheck() -> Check:
                got = int(marker[0].item())
                ok = got == value
                return Check(passed=ok, rel_err=0.0 if ok else None, tol=0.0, reference="marker value written",
                             detail="" if ok else f"marker is {got}, expected {value}")

        chk = check()
        if point["op"] == "sync":
            if not t.is_cuda:
                return [_skipped(ctx, "sync", point["impl"], params, SYNC_GPU_ONLY)]
            tm = timing.time_host(fn, t, round_trip=True, min_time_s=ctx.min_time_s) if chk.passed else None
            return [record("sync", "cuda", tm, chk, how=HOW["sync"])]

        n = int(point["launches"])
        if point["impl"] == "triton" and t.triton_interpreted:
            # the interpreter runs the no-op correctly, but how long it takes means nothing
            return [record("launch", "interpreter", None, chk),
                    _skipped(ctx, "graph_launch", "triton", params, GRAPH_GPU_ONLY)]
        if not t.is_cuda:
            tm = ctx.time(fn, inner=n) if chk.passed else None
            return [record("launch", "cpu", tm, chk, launches=n,
                           how="per-op dispatch on the CPU: host clock around N calls, / N"),
                    _skipped(ctx, "graph_launch", point["impl"], params, GRAPH_GPU_ONLY)]

        recs: list[Measurement] = []
        tm = ctx.time(fn, inner=n) if chk.passed else None
        recs.append(record("launch", "cuda", tm, chk, launches=n, how=HOW["launch"]))
        tm = timing.time_host(fn, t, inner=n, min_time_s=ctx.min_time_s) if chk.passed else None
        recs.append(record("host_launch", "cuda", tm, chk, launches=n, how=HOW["host_launch"]))
        if not chk.passed:
            recs.append(record("graph_launch", "cuda", None, chk))
            return recs
        graph = _capture(fn, n)
        poison = (lambda: checks.poison(out)) if point["impl"] == "torch" else (lambda: checks.poison(marker))
        gchk = _graph_check(graph, recheck, poison)
        tm = timing.per_call(ctx.time(graph.replay), n) if gchk.passed else None
        replay_host = timing.time_host(graph.replay, t, min_time_s=ctx.min_time_s) if gchk.passed else None
        recs.append(record("graph_launch", "cuda", tm, gchk, launches=n, how=HOW["graph_launch"],
                           replay_host_s=replay_host.median_s if replay_host else None))
        del graph
        return recs

    # -- profile contribution ----------------------------------------------------------------------
    def summarize(self, measurements: list[Measurement], device: dict) -> dict:
        costs: list[dict[str, Any]] = []
        fields: dict[str, float] = {}
        notes: list[str] = []
        for m in measurements:
            if m.status == "skipped" and m.reason and m.reason not in notes:
                notes.append(m.reason)
        for m, tm in timed_records(measurements):
            costs.append({"name": m.kernel, "impl": m.impl, "mode": m.mode, "median_s": tm.median_s,
                          "p10_s": tm.p10_s, "p90_s": tm.p90_s, "n": tm.n,
                          "launches": m.params.get("launches"),
                          "how": m.extra.get("how") or HOW.get(m.kernel, "")})
        for field, (kernel, impl) in ROLES.items():
            best = [c for c in costs if c["name"] == kernel and c["impl"] == impl]
            if best:
                fields[field] = min(c["median_s"] for c in best)
        if not costs and not notes:
            return {}
        costs.sort(key=lambda c: (c["name"], c["impl"]))
        return {"overheads": {**fields, "costs": costs, "notes": notes}}


def _capture(fn, n: int):
    """Capture ``n`` launches of ``fn`` into one CUDA graph (warmed up on a side stream first, as the
    PyTorch CUDA-graph docs require, so lazy initialisation and Triton's JIT stay out of the capture)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(n):
            fn()
    return graph


def _graph_check(graph, check_after, poison) -> Check:
    """The replayed graph must do the work: poison the output, replay once, check it again (the check
    reads the output back to the host, which waits for the replay on the current stream)."""
    poison()
    graph.replay()
    return check_after()


BENCHMARK = OverheadBenchmark()
