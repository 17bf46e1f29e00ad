"""MoE all-to-all: expert-parallel dispatch/combine over torch.distributed, and the single-GPU work around it.

**Collective** (``part=collective``, one point per world size, all ranks started by bench.distributed or
torchrun): ``all_to_all_single`` with equal splits over a message-size sweep, then MoE dispatch and combine
at DeepSeek-V3-like and Mixtral-like shapes with a uniform and a skewed router. Every exchange is checked
first (encoded values; regenerated rows; a round trip against a float64 MoE layer). algbw and busbw as
nccl-tests defines them (bench.collectives); uneven traffic counts the busiest rank's bytes
(:func:`moe_traffic_bytes`); the slowest rank's timing is reported.

**Local** (``part=local``, one GPU): kernels/moe.py's permute, weighted un-permute and grouped expert MLPs,
Triton and PyTorch, at the same shapes; accounting in :func:`local_bytes` and :func:`local_flops`.

How and why: docs/method.md ("a2a").
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from typing import Any

import torch

from bench import checks, collectives, dtypes
from bench.fit import geometric_sizes
from bench.measurement import Check, Measurement, measured, not_measured, timed_records
from bench.registry import Benchmark, RunContext

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
WORLD_SIZE_1 = "world size 1: all-to-all needs ≥ 2 ranks"
LOCAL_OPS = ("permute", "unpermute", "grouped_mlp")
CHECK_INTERMEDIATE = 8  # expert MLP width in the round-trip check: it checks routing, not GEMM speed
SKEW_HOT_FRACTION = 0.125  # skewed router: this fraction of experts is hot ...
SKEW_BIAS = 2.0  # ... with this logit bias (≈ e² ≈ 7× the odds of a cold expert)
MIN_REPS, MAX_REPS = 5, 2000
# The round trip runs two fp32 reductions over hidden (7168) per expert plus the weighted combine: ~1e-6
# relative error from fp32 accumulation alone. 1e-5 still fails any misrouted or mis-weighted row by far
# (those err by O(1)); bf16 keeps the table's tolerance.
ROUND_TRIP_MIN_TOL = 1e-5
_P = (1 << 31) - 1  # values of the encoded all-to-all payload live in [0, 2^31 − 1)


@dataclass(frozen=True)
class MoEShape:
    hidden: int
    intermediate: int  # expert MLP width (moe_intermediate_size)
    experts: int
    top_k: int
    local_experts: int  # experts one GPU holds in the local grouped-GEMM point


MODELS: dict[str, MoEShape] = {
    "deepseek-v3": MoEShape(hidden=7168, intermediate=2048, experts=256, top_k=8, local_experts=32),
    "mixtral-8x7b": MoEShape(hidden=4096, intermediate=14336, experts=8, top_k=2, local_experts=8),
    # CPU mode's grouped GEMM: the real experts are GB-sized; this keeps a point to ~10 ms of CPU BLAS
    "cpu-small": MoEShape(hidden=512, intermediate=256, experts=16, top_k=2, local_experts=8),
}




def moe_traffic_bytes(sent_rows: list[int], recv_rows: list[int], hidden: int, esize: int) -> tuple[int, float]:
    """(busiest rank's max(sent, received) bytes, that / the mean rank's bytes sent) for uneven traffic.

    A collective ends when its busiest rank does, and a rank's link carries what it sends and what it
    receives at once, so the bytes that bound the time are the largest max(sent, received) over the ranks
    (rows × hidden × bytes per element); the ratio to the mean is the router's imbalance."""
    per_rank = [max(s, r) * hidden * esize for s, r in zip(sent_rows, recv_rows)]
    busiest = max(per_rank)
    mean_sent = sum(sent_rows) * hidden * esize / len(sent_rows)
    return busiest, (busiest / mean_sent if mean_sent else 1.0)


def local_bytes(op: str, tokens: int, top_k: int, hidden: int, esize: int, intermediate: int = 0,
                active_experts: int = 0) -> int:
    """The fewest bytes a local op must move, with R = tokens · top_k routed rows of ``hidden`` elements:

    * permute: read the T token rows, write the R rows in expert order, read R int64 source indices;
    * unpermute: read the R expert-output rows, write T rows, read R int64 positions and R fp32 weights;
    * grouped_mlp: read the R input rows and write R output rows, and read every active expert's weights
      once (gate and up, [H, 2I], and down, [I, H]: 3·H·I elements)."""
    rows = tokens * top_k
    if op == "permute":
        return (tokens + rows) * hidden * esize + rows * 8
    if op == "unpermute":
        return (rows + tokens) * hidden * esize + rows * (8 + 4)
    if op == "grouped_mlp":
        return (2 * rows * hidden + active_experts * 3 * hidden * intermediate) * esize
    raise ValueError(f"unknown op {op!r}")


def local_flops(op: str, rows: int, hidden: int, intermediate: int) -> int | None:
    """grouped_mlp: three matmuls per row (gate and up, H → I each, and down, I → H), 2·H·I FLOPs each, so
    6·rows·H·I; permute and unpermute move data and count no FLOPs."""
    return 6 * rows * hidden * intermediate if op == "grouped_mlp" else None


def message_sizes(is_cuda: bool, quick: bool) -> list[int]:
    """Bytes per rank: GPU 1 KiB … 1 GiB, CPU 1 KiB … 4 MiB (full: 64 MiB); ×4 steps quick, ×2 full."""
    top = GIB if is_cuda else (4 * MIB if quick else 64 * MIB)
    step = 4 if quick else 2
    return geometric_sizes(KIB, top, step)


def expert_owner(expert: int, experts: int, world_size: int) -> int:
    """Experts live in contiguous, balanced blocks: expert e on rank e·n // E (works for any n and E)."""
    return expert * world_size // experts


# ---- the benchmark -------------------------------------------------------------------------------------

class A2ABenchmark(Benchmark):
    name = "a2a"
    title = "MoE all-to-all (dispatch/combine) and the local permute / grouped GEMM"
    # one collective point is a whole launch (rank start-up, NCCL init, the message sweep, the MoE points):
    # the runner's per-point limit must outlast the launch's own deadline, which ends a hang first
    point_limit_s = 2700.0

    def estimate_s(self, ctx: RunContext, point: dict) -> float:
        """A guess at one point's wall time, for the runner's budget planning."""
        if point.get("part") == "local":
            return (2.0 if ctx.target.is_cuda else 0.5) + 4 * float(ctx.min_time_s)
        n = int(point.get("world_size", 1))
        if n < 2:
            return 0.1
        plan = self.collective_plan(ctx, n)
        reps = len(plan["sizes"]) + 2 * len(plan["moe"])
        startup = 30.0 if ctx.target.is_cuda else 2.0 + 1.0 * n
        return startup + reps * (3 * float(ctx.min_time_s) + 0.2)

    # -- sweep ---------------------------------------------------------------------------------------------
    def world_sizes(self, ctx: RunContext) -> list[int]:
        from bench.distributed import torchrun_env

        tr = torchrun_env()
        if tr is not None:
            return [tr.world_size]
        ranks = ctx.options.get("ranks")
        if ranks:
            return [int(ranks)]
        if not ctx.target.is_cuda:
            return [2]
        gpus = torch.cuda.device_count()
        if ctx.quick or gpus < 4:
            return [gpus]
        return sorted({w for w in (2, 4, 8) if w < gpus} | {gpus})

    def _local_plan(self, ctx: RunContext) -> list[dict]:
        if ctx.target.is_cuda:
            tokens = (128, 4096) if ctx.quick else (1, 32, 128, 512, 2048, 4096, 8192)
            return [{"part": "local", "op": op, "model": m, "tokens": t}
                    for m in ("deepseek-v3", "mixtral-8x7b") for op in LOCAL_OPS for t in tokens]
        pts = [{"part": "local", "op": op, "model": m, "tokens": 64}
               for m in ("deepseek-v3", "mixtral-8x7b") for op in ("permute", "unpermute")]
        pts.append({"part": "local", "op": "grouped_mlp", "model": "cpu-small", "tokens": 128})
        if not ctx.quick:
            pts += [{"part": "local", "op": op, "model": m, "tokens": 512}
                    for m in ("deepseek-v3", "mixtral-8x7b") for op in ("permute", "unpermute")]
        return pts

    def sweep(self, ctx: RunContext) -> list[dict]:
        return self._local_plan(ctx) + [{"part": "collective", "world_size": w} for w in self.world_sizes(ctx)]

    def run_point(self, ctx: RunContext, point: dict) -> list[Measurement]:
        if ctx.target.is_cuda:  # CUDA events and syncs act on the current device: make it the target's
            torch.cuda.set_device(torch.device(ctx.target.torch_device))
        if point.get("part") == "local":
            return self._run_local(ctx, point)
        if point.get("part") == "collective":
            return self._run_collective(ctx, point)
        raise ValueError(f"unknown a2a point {point}")

    # -- collective part --------------------------------------------------------------------------------
    def collective_plan(self, ctx: RunContext, world_size: int) -> dict:
        cuda = ctx.target.is_cuda
        if cuda:
            tokens = (128, 4096) if ctx.quick else (32, 128, 512, 2048, 4096, 8192)
            moe = [(m, t, tr) for m in ("deepseek-v3", "mixtral-8x7b") for t in tokens
                   for tr in ("uniform", "skewed")]
        else:
            moe = [("mixtral-8x7b", 64, "uniform"), ("mixtral-8x7b", 64, "skewed"),
                   ("deepseek-v3", 16, "uniform"), ("deepseek-v3", 16, "skewed")]
        sizes = ctx.options.get("a2a_sizes") or message_sizes(cuda, ctx.quick)
        if "a2a_moe" in ctx.options:
            moe = [tuple(x) for x in ctx.options["a2a_moe"]]
        return {"sizes": [int(s) for s in sizes], "moe": moe, "min_time_s": float(ctx.min_time_s),
                "seed": ctx.seed_for({"part": "collective", "world_size": world_size}),
                "dtype": "bfloat16" if cuda else "float32", "fail_rank": ctx.options.get("a2a_fail_rank")}

    def _run_collective(self, ctx: RunContext, point: dict) -> list[Measurement]:
        from bench import distributed

        t = ctx.target
        n = int(point["world_size"])
        backend = distributed.backend_for(t)
        if n < 2:
            return [not_measured(benchmark=self.name, kernel=k, impl=backend, params={**point, "traffic": tr},
                                 reason=WORLD_SIZE_1, mode=ctx.torch_mode, device=t.name)
                    for k, tr in (("all_to_all", "equal"), ("dispatch", "moe"), ("combine", "moe"))]
        plan = self.collective_plan(ctx, n)
        default_timeout = (900.0 if ctx.quick else 2400.0) if t.is_cuda else (180.0 if ctx.quick else 900.0)
        timeout_s = float(ctx.options.get("a2a_timeout_s") or default_timeout)
        init_timeout_s = float(ctx.options.get("a2a_init_timeout_s") or (120.0 if t.is_cuda else 60.0))
        if t.is_cuda:
            torch.cuda.empty_cache()  # rank 0 shares GPU 0 with this process
        try:
            dumps = distributed.launch(collective_rank, n, target=t, args=(plan,), timeout_s=timeout_s,
                                       init_timeout_s=init_timeout_s)
        except distributed.DistributedError as e:
            return [not_measured(benchmark=self.name, kernel="all_to_all", impl=backend, params=point,
                                 status="failed", reason=f"{backend} all-to-all with {n} ranks: {e}",
                                 mode=ctx.torch_mode, device=t.name)]
        return [Measurement.model_validate(d) for d in dumps]

    # -- local part ---------------------------------------------------------------------------------------
    def _run_local(self, ctx: RunContext, point: dict) -> list[Measurement]:
        from bench.timing import L2Flusher
        from kernels import moe as kern

        t = ctx.target
        op, model, T = point["op"], point["model"], int(point["tokens"])
        shape = MODELS[model]
        dtype = torch.bfloat16 if t.is_cuda else torch.float32
        esize = torch.empty((), dtype=dtype).element_size()
        gen = checks.generator(t.torch_device, ctx.seed_for(point))
        case = _local_case(kern, op, shape, T, dtype, t.torch_device, gen)
        nbytes = local_bytes(op, T, shape.top_k, shape.hidden, esize, shape.intermediate, case["active"])
        rows = T * shape.top_k
        flop = local_flops(op, rows, shape.hidden, shape.intermediate)
        experts = shape.local_experts if op == "grouped_mlp" else shape.experts
        params = {**point, "dtype": dtypes.name(dtype), "hidden": shape.hidden, "top_k": shape.top_k,
                  "experts": experts, "intermediate": shape.intermediate if op == "grouped_mlp" else None,
                  "rows": rows}
        cache = "flush L2 before each repetition" if t.is_cuda else "CPU: no flush"
        flusher = L2Flusher(t) if t.is_cuda else None
        out: list[Measurement] = []
        for impl in ("triton", "torch"):
            if impl == "triton" and t.triton_interpreted:  # correctness only, on a tiny odd shape
                chk = _check_local(_local_case(kern, op, _tiny(shape), 7, torch.float32, "cpu", gen), "triton")
                out.append(measured(benchmark=self.name, kernel=op, impl=impl, params=params, mode="interpreter",
                                    device=t.name, timing=None, bytes=nbytes, flop_count=flop, check=chk,
                                    cache=None))
                continue
            chk = _check_local(case, impl)
            # primed: a 128-token permute is over before the host has enqueued it (see bench.timing)
            timing = ctx.time(case["fns"][impl], before_each=flusher, prime=True) if chk.passed else None
            mode = t.triton_mode if impl == "triton" else ctx.torch_mode
            out.append(measured(benchmark=self.name, kernel=op, impl=impl, params=params, mode=mode,
                                device=t.name, timing=timing, bytes=nbytes, flop_count=flop, check=chk,
                                cache=cache))
        return out

    # -- profile ---------------------------------------------------------------------------------------------
    def summarize(self, measurements: list[Measurement], device: dict) -> dict:
        curve: list[dict[str, Any]] = []
        moe: list[dict[str, Any]] = []
        local: list[dict[str, Any]] = []
        notes: list[str] = []
        worlds: set[int] = set()
        backends: set[str] = set()
        launchers: set[str] = set()
        nodes: set[int] = set()
        for m in measurements:
            if m.status == "skipped" and m.reason and m.reason not in notes:
                notes.append(m.reason)
        for m, timing in timed_records(measurements):
            p, x = m.params, m.extra
            if p.get("part") == "collective":
                w = m.int_param("world_size")
                worlds.add(w)
                backends.add(m.impl)
                if x.get("launcher") is not None:
                    launchers.add(x["launcher"])
                nodes.add(int(x.get("nodes") or 1))
                base = dict(world_size=w, backend=m.impl, nodes=int(x.get("nodes") or 1),
                            algbw_Bps=x["algbw_Bps"], busbw_Bps=x["busbw_Bps"], median_s=timing.median_s,
                            p10_s=timing.p10_s, p90_s=timing.p90_s)
                if m.kernel == "all_to_all":
                    curve.append({**base, "message_bytes": m.int_param("message_bytes")})
                elif m.bytes is not None:  # dispatch / combine: their bytes are the busiest rank's
                    moe.append({**base, "phase": m.kernel, "traffic": str(p["traffic"]).removeprefix("moe-"),
                                "model": p["model"],
                                "tokens": m.int_param("tokens"), "hidden": int(x["hidden"]),
                                "top_k": int(x["top_k"]), "experts": int(x["experts"]), "dtype": x["dtype"],
                                "bytes": m.bytes, "imbalance": max(1.0, float(x["imbalance"]))})
            elif p.get("part") == "local" and m.bandwidth_Bps and m.bytes is not None:
                copy = (device.get("peaks") or {}).get("copy_bandwidth_Bps")
                local.append({"op": m.kernel, "impl": m.impl, "model": p["model"], "dtype": p["dtype"],
                              "tokens": m.int_param("tokens"), "hidden": m.int_param("hidden"),
                              "top_k": m.int_param("top_k"), "experts": m.int_param("experts"),
                              "intermediate": p.get("intermediate"), "rows": m.int_param("rows"),
                              "bytes": m.bytes, "bandwidth_Bps": m.bandwidth_Bps,
                              "flops": m.flops, "median_s": timing.median_s, "p10_s": timing.p10_s,
                              "p90_s": timing.p90_s,
                              "fraction_of_copy_bandwidth": m.bandwidth_Bps / copy if copy else None})
        for m in measurements:
            if m.status == "failed" and m.params.get("part") == "collective" and m.kernel == "all_to_all" \
                    and "message_bytes" not in m.params and m.reason:
                notes.append(m.reason)  # a launch that failed as a whole
        curve.sort(key=lambda r: (r["world_size"], r["backend"], r["message_bytes"]))
        moe.sort(key=lambda r: (r["world_size"], r["model"], r["tokens"], r["traffic"], r["phase"]))
        out: dict = {}
        if curve:
            out["curves"] = {"all_to_all": curve}
        if curve or moe or notes:
            peaks = []
            for (w, b) in sorted({(r["world_size"], r["backend"]) for r in curve}):
                best = max((r for r in curve if r["world_size"] == w and r["backend"] == b),
                           key=lambda r: r["busbw_Bps"])
                peaks.append({"world_size": w, "backend": b, "busbw_Bps": best["busbw_Bps"],
                              "algbw_Bps": best["algbw_Bps"], "message_bytes": best["message_bytes"]})
            out["interconnect"] = {
                "backend": "/".join(sorted(backends)) or None,
                "launcher": "/".join(sorted(launchers)) or None,
                "nodes": max(nodes) if nodes else None,
                "world_sizes": sorted(worlds), "peak_busbw": peaks, "moe": moe, "notes": notes,
            }
        if local:
            local.sort(key=lambda r: (r["op"], r["model"], r["impl"], r["tokens"]))
            sect: dict = {"points": local}
            for op, key in (("permute", "bandwidth_Bps"), ("unpermute", "bandwidth_Bps"), ("grouped_mlp", "flops")):
                mine = [r for r in local if r["op"] == op and r[key]]
                if mine:
                    best = max(mine, key=lambda r: r[key])
                    field = f"{op}_{'flops' if key == 'flops' else 'bandwidth_Bps'}"
                    sect[field] = best[key]
                    sect[f"{op}_source"] = (f"{best['impl']} {best['model']} tokens={best['tokens']} "
                                            f"{best['dtype']}")
            out["local"] = sect
        return out


BENCHMARK = A2ABenchmark()


# ---- local part: inputs and checks ---------------------------------------------------------------------

def _tiny(shape: MoEShape) -> MoEShape:
    """An odd little shape with the same top-k (capped) for the interpreter: exercises every mask."""
    return MoEShape(hidden=37, intermediate=19, experts=5, top_k=min(shape.top_k, 3), local_experts=3)


def _local_case(kern, op: str, shape: MoEShape, T: int, dtype, device: str, gen) -> dict:
    """Fresh random inputs for one local op, the output buffer, the callables and the float64 reference."""
    H, k = shape.hidden, shape.top_k
    case: dict = {"active": 0, "tol": checks.tolerance(dtype)}
    if op in ("permute", "unpermute"):
        logits = torch.randn((T, shape.experts), device=device, generator=gen)
        ids, w = kern.route(logits, k)
        src, pos, _ = kern.sort_by_expert(ids, shape.experts)
        if op == "permute":
            x = checks.random_tensor((T, H), dtype, device, gen)
            o = torch.empty((T * k, H), dtype=dtype, device=device)
            case.update(out=o, ref=lambda: kern.reference_permute(x, src), tol=0.0,
                        fns={"triton": lambda: kern.triton_permute(x, src, o),
                             "torch": lambda: kern.torch_permute(x, src, o)})
        else:
            y = checks.random_tensor((T * k, H), dtype, device, gen)
            o = torch.empty((T, H), dtype=dtype, device=device)
            case.update(out=o, ref=lambda: kern.reference_unpermute(y, pos, w),
                        fns={"triton": lambda: kern.triton_unpermute(y, pos, w, o),
                             "torch": lambda: kern.torch_unpermute(y, pos, w, o)})
        return case
    E, inter = shape.local_experts, shape.intermediate
    rows = T * k
    # the rows this GPU's experts receive, spread by a uniform router: a multinomial draw per row
    pick = torch.randint(0, E, (rows,), device=device, generator=gen)
    counts = torch.bincount(pick, minlength=E).tolist()
    x = checks.random_tensor((rows, H), dtype, device, gen)
    w13 = checks.random_tensor((E, H, 2 * inter), dtype, device, gen, scale=1 / math.sqrt(H))
    w2 = checks.random_tensor((E, inter, H), dtype, device, gen, scale=1 / math.sqrt(inter))
    sched = kern.grouped_schedule(counts, kern.grouped_block_m(x), device)
    o = torch.empty((rows, H), dtype=dtype, device=device)
    case.update(active=sum(1 for c in counts if c), out=o,
                ref=lambda: kern.reference_grouped_mlp(x, counts, w13, w2),
                fns={"triton": lambda: kern.grouped_mlp(x, counts, w13, w2, "triton", schedule=sched, out=o),
                     "torch": lambda: kern.grouped_mlp(x, counts, w13, w2, "torch", out=o)})
    return case


def _check_local(case: dict, impl: str) -> Check:
    ref_name = "float64 " + ("gather" if case["tol"] == 0.0 else "reference")
    checks.poison(case["out"])
    case["fns"][impl]()
    if "ref_value" not in case:  # one float64 reference for both implementations
        case["ref_value"] = case["ref"]()
    out, ref = case["out"], case["ref_value"]
    if out.shape != ref.shape:
        return Check(passed=False, tol=case["tol"], reference=ref_name,
                     detail=f"shape mismatch: output {tuple(out.shape)} vs reference {tuple(ref.shape)}")
    # compared where they live, chunk by chunk: a 4096-token DeepSeek-V3 permute is 235 M elements, whose float64
    # copies on the host would cost seconds per check
    flat = ref.reshape(-1)
    return checks.compare_chunked(out, lambda lo, hi: flat[lo:hi], case["tol"], ref_name)


# ---- collective part: what every rank runs -------------------------------------------------------------

def collective_rank(info, plan: dict) -> list[dict]:
    """One rank's share of the collective sweep; rank 0's records (as dicts) come back to the parent."""
    import torch.distributed as dist

    if plan.get("fail_rank") is not None and info.rank == int(plan["fail_rank"]):
        os._exit(17)  # tests: a rank that dies mid-run
    recs: list[dict] = []
    comm = _Comm(info)
    for size in plan["sizes"]:
        recs += [m.model_dump(mode="json") for m in _equal_point(comm, plan, int(size))]
    for model, tokens, traffic in plan["moe"]:
        recs += [m.model_dump(mode="json") for m in _moe_point(comm, plan, model, int(tokens), traffic)]
    dist.barrier()
    return recs


class _Comm:
    """The rank's view: collectives on its device, agreement helpers, and the common record fields."""

    def __init__(self, info):
        import torch.distributed as dist

        self.info, self.dist = info, dist
        self.n, self.rank = info.world_size, info.rank
        self.device = info.device
        self.nodes = 1
        if info.launcher == "torchrun":
            from bench.distributed import torchrun_env

            tr = torchrun_env()
            self.nodes = tr.nodes if tr else 1

    def barrier(self) -> None:
        if self.info.is_cuda:
            self.dist.barrier(device_ids=[torch.device(self.device).index])
        else:
            self.dist.barrier()

    def gather(self, values: list[float]) -> list[list[float]]:
        """Every rank's ``values`` (same length everywhere), on every rank."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        out = [torch.empty_like(t) for _ in range(self.n)]
        self.dist.all_gather(out, t)
        return [o.tolist() for o in out]

    def time(self, fn, min_time_s: float):
        """The slowest rank's Timing of ``fn``, every rank running the same number of repetitions."""
        from bench.timing import Timing, reps_for, time_fn

        tgt = self.info.target
        cal = time_fn(fn, tgt, min_time_s=0.0, min_reps=3, max_reps=3, warmup=2, before_each=self.barrier)
        est = max(r[0] for r in self.gather([cal.median_s]))
        n = reps_for(est, min_time_s, MIN_REPS, MAX_REPS)  # the same on every rank: est was agreed
        t = time_fn(fn, tgt, min_time_s=min_time_s, min_reps=n, max_reps=n, warmup=1, before_each=self.barrier)
        rows = self.gather([t.median_s, t.min_s, t.max_s, t.mean_s, t.p10_s, t.p90_s, float(t.n), t.total_s])
        median, lo, hi, mean, p10, p90, reps, total = max(rows, key=lambda r: r[0])
        return Timing(median_s=median, min_s=lo, max_s=hi, mean_s=mean, p10_s=p10, p90_s=p90, n=int(reps),
                      total_s=total, clock=t.clock + " (slowest rank)")

    def base(self) -> dict:
        mode = "cuda" if self.info.is_cuda else "cpu"
        return dict(benchmark="a2a", impl=self.info.backend, mode=mode, device=self.info.target.name)

    def extra(self) -> dict:
        return {"launcher": self.info.launcher, "nodes": self.nodes}


def _encode(src: int, dst: int, idx: torch.Tensor, salt: int) -> torch.Tensor:
    """Recognisable payload: a value that depends on (source, destination, index, salt), as int32."""
    base = (src * 1_000_003 + dst * 7_919 + salt * 65_537) % _P
    return ((idx * 40_503 + base) % _P).to(torch.int32)


def _equal_point(c: _Comm, plan: dict, size: int) -> list[Measurement]:
    n, me = c.n, c.rank
    per_peer = max(1, size // (n * 4))  # int32 elements per destination
    nbytes = per_peer * n * 4
    salt = random.Random(f"{plan['seed']}:{size}").randrange(1 << 20)
    idx = torch.arange(per_peer, dtype=torch.int64, device=c.device)
    send = torch.empty(per_peer * n, dtype=torch.int32, device=c.device)
    for d in range(n):
        send[d * per_peer:(d + 1) * per_peer] = _encode(me, d, idx, salt)
    recv = checks.poison(torch.empty_like(send))
    c.dist.all_to_all_single(recv, send)
    bad = sum(int((recv[s * per_peer:(s + 1) * per_peer] != _encode(s, me, idx, salt)).sum()) for s in range(n))
    del idx
    bads = [int(r[0]) for r in c.gather([float(bad)])]
    params = {"part": "collective", "traffic": "equal", "world_size": n, "message_bytes": nbytes}
    wrong = [r for r, b in enumerate(bads) if b]
    chk = Check(passed=not wrong, rel_err=None, tol=0.0, reference="encoded (source, destination, index) values",
                detail=(f"ranks {wrong} received {sum(bads)} wrong or misplaced elements" if wrong else ""))
    timing = c.time(lambda: c.dist.all_to_all_single(recv, send), plan["min_time_s"]) if chk.passed else None
    extra = c.extra()
    if timing is not None:
        alg = collectives.algbw_Bps(nbytes, timing.median_s)
        extra.update(algbw_Bps=alg, busbw_Bps=collectives.busbw_Bps("all_to_all", alg, n))
    return [measured(kernel="all_to_all", params=params, timing=timing, bytes=nbytes, check=chk,
                     cache="none: messages cross links", **c.base(), **extra)]


def _router_bias(shape: MoEShape, traffic: str, seed: int, device: str) -> torch.Tensor:
    bias = torch.zeros(shape.experts, dtype=torch.float32)
    if traffic == "skewed":
        hot = random.Random(f"{seed}:hot").sample(range(shape.experts),
                                                  max(1, round(SKEW_HOT_FRACTION * shape.experts)))
        bias[hot] = SKEW_BIAS
    elif traffic != "uniform":
        raise ValueError(f"unknown router traffic {traffic!r}")
    return bias.to(device)


def _rank_tokens(kern, shape: MoEShape, T: int, dtype, device: str, seed: int, rank: int, bias: torch.Tensor):
    """Rank ``rank``'s tokens and routing, reproducible on any rank from (seed, rank)."""
    g = checks.generator(device, seed * 1009 + rank)
    x = checks.random_tensor((T, shape.hidden), dtype, device, g)
    logits = torch.randn((T, shape.experts), device=device, generator=g) + bias
    ids, w = kern.route(logits, shape.top_k)
    src, pos, counts = kern.sort_by_expert(ids, shape.experts)
    return x, ids, w, src, pos, counts


def _expert_weights(shape: MoEShape, e: int, dtype, device: str, seed: int):
    """Expert e's (w13 [H, 2I], w2 [I, H]) for the round-trip check, the same on every rank."""
    g = checks.generator(device, seed * 7919 + e)
    H, inter = shape.hidden, CHECK_INTERMEDIATE
    return (checks.random_tensor((H, 2 * inter), dtype, device, g, scale=1 / math.sqrt(H)),
            checks.random_tensor((inter, H), dtype, device, g, scale=1 / math.sqrt(inter)))


def _moe_point(c: _Comm, plan: dict, model: str, T: int, traffic: str) -> list[Measurement]:
    from kernels import moe as kern

    n, me, dev = c.n, c.rank, c.device
    shape = MODELS[model]
    E, H, k = shape.experts, shape.hidden, shape.top_k
    dtype = dtypes.torch_dtype(plan["dtype"])
    esize = torch.empty((), dtype=dtype).element_size()
    seed = random.Random(f"{plan['seed']}:{model}:{T}:{traffic}").randrange(1 << 30)
    bias = _router_bias(shape, traffic, seed, dev)
    owner = [expert_owner(e, E, n) for e in range(E)]
    mine = [e for e in range(E) if owner[e] == me]
    per_rank = [sum(1 for e in range(E) if owner[e] == r) for r in range(n)]

    x, ids, w, src, pos, counts = _rank_tokens(kern, shape, T, dtype, dev, seed, me, bias)
    send = kern.torch_permute(x, src)  # rows in expert order = grouped by destination rank
    cl = counts.tolist()
    send_splits = [sum(cl[e] for e in range(E) if owner[e] == r) for r in range(n)]
    # layout exchange: each rank learns how many rows per local expert every source will send
    rc = torch.empty(n * len(mine), dtype=counts.dtype, device=dev)
    c.dist.all_to_all_single(rc, counts, [len(mine)] * n, per_rank)
    recv_counts = rc.view(n, len(mine)).tolist()
    recv_splits = [sum(r) for r in recv_counts]

    recv = checks.poison(torch.empty((sum(recv_splits), H), dtype=dtype, device=dev))
    c.dist.all_to_all_single(recv, send, recv_splits, send_splits)
    # check 1: the exact rows, in order, regenerated from every sender's seed
    bad, off = 0, 0
    for s in range(n):
        xs, _, _, srcs, _, cs = (x, ids, w, src, pos, counts) if s == me else \
            _rank_tokens(kern, shape, T, dtype, dev, seed, s, bias)
        csl = cs.tolist()
        lo = sum(csl[e] for e in range(E) if owner[e] < me)
        hi = lo + sum(csl[e] for e in mine)
        expect = xs[srcs[lo:hi]]
        got = recv[off:off + hi - lo]
        bad += int((got != expect).any(dim=1).sum()) if expect.shape == got.shape else max(1, hi - lo)
        off += hi - lo
    # check 2: dispatch -> expert MLPs -> combine -> weighted un-permute == a float64 MoE layer
    # received rows are grouped [source][local expert]; the experts need them grouped by expert
    first, start = {}, 0
    for s in range(n):
        for j in range(len(mine)):
            first[s, j] = start
            start += recv_counts[s][j]
    order = torch.cat([torch.zeros(0, dtype=torch.int64, device=dev)] +
                      [torch.arange(first[s, j], first[s, j] + recv_counts[s][j], device=dev)
                       for j in range(len(mine)) for s in range(n) if recv_counts[s][j]])
    local_counts = [sum(recv_counts[s][j] for s in range(n)) for j in range(len(mine))]
    # every rank derives the same weights per expert; it needs those of its experts that received rows and
    # those its own tokens chose (for the reference)
    active = [j for j, cnt in enumerate(local_counts) if cnt]
    needed = sorted({mine[j] for j in active} | set(torch.unique(ids).tolist()))
    weights: dict[int, tuple] = {e: _expert_weights(shape, e, dtype, dev, seed) for e in needed}
    if active:  # experts without rows drop out: the rows stay in local-expert order
        w13 = torch.stack([weights[mine[j]][0] for j in active])
        w2 = torch.stack([weights[mine[j]][1] for j in active])
        ye = kern.grouped_mlp(recv[order], [local_counts[j] for j in active], w13, w2, "torch")
    else:
        ye = recv[:0]
    y_back = torch.empty_like(recv)
    y_back[order] = ye
    back = checks.poison(torch.empty((T * k, H), dtype=dtype, device=dev))
    c.dist.all_to_all_single(back, y_back, send_splits, recv_splits)
    out = kern.torch_unpermute(back, pos, w)
    tol = max(checks.tolerance(dtype), ROUND_TRIP_MIN_TOL)
    W13 = {e: wt[0] for e, wt in weights.items()}
    W2 = {e: wt[1] for e, wt in weights.items()}
    rt = checks.compare(out, kern.reference_moe(x, ids, w, W13, W2), tol, "float64 single-process MoE layer")
    del W13, W2, weights

    rows = c.gather([float(bad), float(rt.rel_err if rt.rel_err is not None else math.inf), float(rt.passed),
                     float(sum(send_splits)), float(sum(recv_splits))])
    bads = [int(r[0]) for r in rows]
    errs = [r[1] for r in rows]
    ok = not any(bads) and all(r[2] for r in rows)
    detail = ""
    if any(bads):
        detail = f"dispatch: ranks {[r for r, b in enumerate(bads) if b]} received {sum(bads)} wrong or misplaced rows"
    elif not ok:
        worst = max(range(n), key=lambda r: errs[r])
        detail = f"round trip on rank {worst}: relative error {errs[worst]:.3g} > tolerance {tol:.3g}"
    chk = Check(passed=ok, rel_err=max(errs) if all(math.isfinite(e) for e in errs) else None, tol=tol,
                reference="regenerated dispatched rows (exact) + float64 single-process MoE layer", detail=detail)
    nbytes, imbalance = moe_traffic_bytes([int(r[3]) for r in rows], [int(r[4]) for r in rows], H, esize)
    params = {"part": "collective", "traffic": f"moe-{traffic}", "model": model, "tokens": T, "world_size": n}
    shape_info = {"hidden": H, "top_k": k, "experts": E, "dtype": plan["dtype"], "imbalance": imbalance,
                  "message_bytes": nbytes}
    out_recs = []
    for phase, fn in (("dispatch", lambda: c.dist.all_to_all_single(recv, send, recv_splits, send_splits)),
                      ("combine", lambda: c.dist.all_to_all_single(back, y_back, send_splits, recv_splits))):
        timing = c.time(fn, plan["min_time_s"]) if ok else None
        extra = {**c.extra(), **shape_info}
        if timing is not None:
            alg = collectives.algbw_Bps(nbytes, timing.median_s)
            extra.update(algbw_Bps=alg, busbw_Bps=collectives.busbw_Bps("all_to_all", alg, n))
        out_recs.append(measured(kernel=phase, params=params, timing=timing, bytes=nbytes, check=chk,
                                 cache="none: messages cross links", **c.base(), **extra))
    return out_recs


