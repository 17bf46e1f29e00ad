"""All-reduce over torch.distributed: what tensor-parallel decode pays twice per layer.

One point = one world size: its ranks are started by bench.distributed.launch (NCCL on GPUs, one process
per GPU; gloo on CPU ranks over loopback; in place under torchrun) and each rank walks the whole message
sweep, fp32 ``SUM``. Every size is checked exactly first (each rank adds known random integers); the ranks
run the same number of repetitions, a barrier before each, and the slowest rank's timing is reported.
Accounting: algbw = message bytes per rank / time, busbw = algbw x 2(n - 1)/n (bench.collectives, as
nccl-tests defines them), and a latency-bandwidth fit per world size (bench.fit). World size 1 has
nothing to reduce: skipped.

How and why: docs/method.md ("allreduce").
"""
from __future__ import annotations

from typing import Any

import torch

from bench import checks, collectives
from bench.fit import geometric_sizes, try_fit
from bench.measurement import Check, Measurement, ParamValue, measured, not_measured, timed_records
from bench.registry import Benchmark, RunContext

DTYPE = torch.float32
ESIZE = 4
MAX_REPS = 2000
ONE_RANK = "world size 1: all-reduce needs >= 2 ranks (start more GPUs, --ranks N in CPU mode, or torchrun)"


def message_sizes(on_gpu: bool, quick: bool) -> list[int]:
    """Bytes per rank: from 8 B (two fp32) up; GPU reaches 256 MiB (quick) or 1 GiB (full)."""
    if on_gpu:
        top, step = (1 << 28, 4) if quick else (1 << 30, 2)
    else:
        top, step = (1 << 19, 16) if quick else (1 << 23, 4)
    return geometric_sizes(8, top, step)


def _world_sizes(ctx: RunContext) -> list[int]:
    from bench import distributed

    tr = distributed.torchrun_env()
    if tr is not None:
        return [tr.world_size]
    asked = ctx.options.get("ranks")
    if asked:
        return [int(asked)]
    if ctx.target.is_cuda:
        n = torch.cuda.device_count()
        if ctx.quick or n < 4:
            return [n]
        return sorted({*(1 << k for k in range(1, n.bit_length()) if (1 << k) <= n), n})
    return [2] if ctx.quick else [2, 4]


# -- what every rank runs (module level: it is pickled to the spawned ranks) ----------------------------

def rank_sweep(info, sizes: list[int], seed: int, min_time_s: float) -> list[dict]:
    """On every rank: check then time ``all_reduce`` at each size; rank 0's list is the answer."""
    return [_rank_size(info, size, seed, min_time_s) for size in sizes]


def _rank_size(info, size: int, seed: int, min_time_s: float) -> dict:
    """One message size on every rank; its buffers are freed on return, before the next size allocates."""
    import torch.distributed as dist

    from bench import timing

    tgt, n, r = info.target, info.world_size, info.rank
    dev = info.device
    device_ids = [info.local_rank] if tgt.is_cuda else None  # NCCL: the barrier's device is this rank's GPU
    numel = max(1, size // ESIZE)
    gen = checks.generator(dev, seed + size)  # the same base on every rank
    base = torch.randint(-1000, 1001, (numel,), generator=gen, device=dev, dtype=torch.int32).to(DTYPE)
    pristine = (base + 1) * (r + 1)
    expected = (base + 1) * (n * (n + 1) // 2)
    buf = pristine.clone()
    dist.all_reduce(buf)
    bad = int((buf != expected).sum().item())
    # agree on the verdict: every rank must take the same branch, or the next collective deadlocks
    flag = torch.tensor([float(bad)], device=dev)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    worst = int(flag.item())
    row: dict = {"size_bytes": numel * ESIZE, "bad": worst, "numel": numel}
    if worst:
        return row

    def reset():
        buf.copy_(pristine)
        dist.barrier(device_ids=device_ids)

    def fn():
        dist.all_reduce(buf)

    cal = timing.time_fn(fn, tgt, min_time_s=0.0, min_reps=3, max_reps=3, warmup=2, before_each=reset)
    est = torch.tensor([cal.median_s], dtype=torch.float64, device=dev)
    dist.all_reduce(est, op=dist.ReduceOp.MAX)
    reps = timing.reps_for(float(est.item()), min_time_s, 5, MAX_REPS)
    t = timing.time_fn(fn, tgt, min_time_s=0.0, min_reps=reps, max_reps=reps, warmup=1, before_each=reset)
    mine = torch.tensor([t.median_s, t.min_s, t.max_s, t.mean_s, t.p10_s, t.p90_s, t.total_s],
                        dtype=torch.float64, device=dev)
    every = [torch.empty_like(mine) for _ in range(n)]
    dist.all_gather(every, mine)
    slowest = max(range(n), key=lambda i: every[i][0].item())
    v = every[slowest].tolist()
    row["timing"] = {"median_s": v[0], "min_s": v[1], "max_s": v[2], "mean_s": v[3], "p10_s": v[4],
                     "p90_s": v[5], "total_s": v[6], "n": t.n, "clock": t.clock}
    row["slowest_rank"] = slowest
    row["rank_medians_s"] = [e[0].item() for e in every]
    return row


# -- the benchmark ----------------------------------------------------------------------------------------

class AllReduceBenchmark(Benchmark):
    name = "allreduce"
    title = "All-reduce (torch.distributed: NCCL on GPUs, gloo on CPU ranks)"

    def sweep(self, ctx: RunContext) -> list[dict]:
        return [{"world_size": n} for n in _world_sizes(ctx)]

    def run_point(self, ctx: RunContext, point: dict) -> list[Measurement]:
        from bench import distributed
        from bench.timing import Timing

        t = ctx.target
        n = int(point["world_size"])
        impl = distributed.backend_for(t)
        mode = ctx.torch_mode
        if n < 2:
            return [not_measured(benchmark=self.name, kernel="all_reduce", impl=impl, params=dict(point),
                                 reason=ONE_RANK, mode=mode, device=t.name)]
        sizes = message_sizes(t.is_cuda, ctx.quick)
        seed = ctx.seed_for(point)
        # generous bound: rank start-up (imports, NCCL init) plus every size's budget several times over
        timeout = 120.0 + 20 * len(sizes) * max(ctx.min_time_s, 0.05) + (120.0 if t.is_cuda else 0.0)
        world = None if distributed.torchrun_env() is not None else n
        rows = distributed.launch(rank_sweep, world, target=t, args=(sizes, seed, ctx.min_time_s),
                                  timeout_s=timeout)
        out = []
        for row in rows:
            size = int(row["size_bytes"])
            params: dict[str, ParamValue] = {"world_size": n, "size_bytes": size, "dtype": "float32"}
            ok = row["bad"] == 0
            chk = Check(passed=ok, rel_err=0.0 if ok else None, tol=0.0,
                        reference="exact sum of every rank's known contribution",
                        detail="" if ok else f"{row['bad']} of {row['numel']} elements wrong on some rank")
            tm = Timing(**row["timing"]) if ok else None
            busbw = collectives.busbw_Bps("all_reduce", size / tm.median_s, n) \
                if tm is not None and tm.median_s > 0 else None
            extra = {"busbw_Bps": busbw, "slowest_rank": row.get("slowest_rank"),
                     "rank_medians_s": row.get("rank_medians_s")} if ok else {}
            out.append(measured(benchmark=self.name, kernel="all_reduce", impl=impl, params=params, mode=mode,
                                device=t.name, timing=tm, bytes=size, check=chk,
                                cache="none (collective: a fresh copy of the input before every repetition)",
                                **extra))
        return out

    # -- profile contribution ----------------------------------------------------------------------
    def summarize(self, measurements: list[Measurement], device: dict) -> dict:
        curve: list[dict[str, Any]] = []
        notes: list[str] = []
        for m in measurements:
            if m.status == "skipped" and m.reason and m.reason not in notes:
                notes.append(m.reason)
        for m, timing in timed_records(measurements):
            if m.bandwidth_Bps is None:
                continue
            n = m.int_param("world_size")
            curve.append({"world_size": n, "backend": m.impl, "dtype": m.params.get("dtype", "float32"),
                          "size_bytes": m.int_param("size_bytes"), "median_s": timing.median_s,
                          "p10_s": timing.p10_s, "p90_s": timing.p90_s, "algbw_Bps": m.bandwidth_Bps,
                          "busbw_Bps": collectives.busbw_Bps("all_reduce", m.bandwidth_Bps, n)})
        if not curve:
            return {"interconnect": {"notes": notes}} if notes else {}
        curve.sort(key=lambda c: (c["world_size"], c["backend"], c["size_bytes"]))
        fits = []
        for n, backend in sorted({(c["world_size"], c["backend"]) for c in curve}):
            f = try_fit((c["size_bytes"], c["median_s"]) for c in curve
                        if c["world_size"] == n and c["backend"] == backend)
            if f is not None:
                fits.append({"world_size": n, "backend": backend, **f.as_dict()})
        best = max(curve, key=lambda c: c["busbw_Bps"])
        return {"interconnect": {"all_reduce": {
            "curve": curve, "fits": fits, "peak_busbw_Bps": best["busbw_Bps"],
            "peak_busbw_source": f"{best['backend']} world size {best['world_size']} at {best['size_bytes']} B"},
            **({"notes": notes} if notes else {})}}


BENCHMARK = AllReduceBenchmark()
