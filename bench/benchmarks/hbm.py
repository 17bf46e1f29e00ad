"""HBM (or DRAM, in CPU mode) bandwidth: copy, read-only, write-only and triad, Triton and PyTorch.

Sweep: working-set sizes from well inside the last-level cache to >= 8x it, fp32 and bf16; one point is a
(dtype, working set), a single random buffer carved into the arrays each op needs. Accounting: bytes read +
bytes written (:func:`bytes_moved`). Every repetition is primed on the GPU; nothing is flushed (the sizes
>= 8x cache are what the peak reads). Peak memory bandwidth = the best median among all timed kernels at
working sets >= 8x cache; the best copy is reported beside it.

How and why: docs/method.md ("hbm").
"""
from __future__ import annotations

import math
from typing import Any

import torch

from bench import checks, dtypes
from bench.measurement import Check, Measurement, Mode, measured, timed_records
from bench.registry import Benchmark, RunContext

OPS = ("copy", "read", "write", "triad")
# arrays each op touches: (read, written)
ARRAYS = {"copy": (1, 1), "read": (1, 0), "write": (0, 1), "triad": (2, 1)}
CACHE_MULTIPLE_FOR_PEAK = 8
DTYPES = ("float32", "bfloat16")
INTERP_ELEMENTS = 10_007  # odd, not a multiple of any block: exercises the masks
READ_TOL = 1e-5  # |sum − ref| ≤ tol × Σ|x| with fp32 accumulation


def bytes_moved(op: str, n_elements: int, element_size: int) -> int:
    """Bytes ``op`` must move through memory on arrays of ``n_elements``: every array it reads is read once
    and every array it writes is written once, so with N = bytes of one array copy moves 2N, read N, write N
    and triad 3N (two reads, one write). Read and written bytes both count, as in BabelStream (nvbandwidth
    counts a copy's bytes once)."""
    reads, writes = ARRAYS[op]
    return (reads + writes) * n_elements * element_size


def _ws_sizes(cache: int, is_cuda: bool, quick: bool) -> list[int]:
    """Working-set sizes (bytes): powers of two from cache/16 up, ending at the first size ≥ 8× cache
    (on GPU at least 2 GiB, past every L2 there is). Quick sweeps keep every other size (every third on
    CPU), always keeping the largest: the one the peak comes from."""
    lo = 1 << max(16, math.floor(math.log2(max(1, cache // 16))))
    top = CACHE_MULTIPLE_FOR_PEAK * cache
    top = -(-top // (1 << 20)) * (1 << 20)  # round up to whole MiB
    if is_cuda:
        top = max(top, 1 << 31)
    sizes, s = [], lo
    while s * 1.5 < top:  # a power of two just below the top would duplicate it
        sizes.append(s)
        s <<= 1
    sizes.append(top)
    if quick:
        step = 2 if is_cuda else 3
        sizes = sorted(set(sizes[::-step]))
    return sizes


RANDOM_PERIOD = (1 << 22) + 1  # odd: a shifted or strided access cannot line up with the repetition


def _random_buffer(n: int, dtype: torch.dtype, device: str, gen: torch.Generator) -> torch.Tensor:
    """Random normal data with mean 1. On CPU, drawing gigabytes of normals takes longer than the
    benchmark, so a random block of odd length is tiled: still random and non-constant everywhere."""
    if device != "cpu" or n <= RANDOM_PERIOD:
        return checks.random_tensor(n, dtype, device, gen, scale=0.5).add_(1.0)
    block = checks.random_tensor(RANDOM_PERIOD, dtype, device, gen, scale=0.5).add_(1.0)
    out = torch.empty(n, dtype=dtype, device=device)
    for lo in range(0, n, RANDOM_PERIOD):
        hi = min(n, lo + RANDOM_PERIOD)
        out[lo:hi] = block[: hi - lo]
    return out


class HBMBenchmark(Benchmark):
    name = "hbm"
    title = "Memory bandwidth (copy, read, write, triad)"

    def sweep(self, ctx: RunContext) -> list[dict]:
        t = ctx.target
        sizes = _ws_sizes(t.cache_bytes, t.is_cuda, ctx.quick)
        cap = t.memory_bytes // 4 if t.memory_bytes else sizes[-1]  # leave room for checks
        pts = []
        for dt in DTYPES:
            for ws in sizes:
                if ws > cap:
                    continue
                if not t.is_cuda and ctx.quick and dt != "float32":
                    continue  # quick CPU: fp32 only (torch's bf16 CPU reduction crawls at ~1 GB/s)
                pts.append({"dtype": dt, "working_set_bytes": ws})
        return pts

    # Out-of-memory at a point skips the larger working sets of the same dtype (see docs/runner.md).
    @staticmethod
    def series_key(point: dict):
        return point["dtype"]

    @staticmethod
    def size_of(point: dict) -> int:
        return int(point["working_set_bytes"])

    def run_point(self, ctx: RunContext, point: dict) -> list[Measurement]:
        from kernels import hbm as kern

        t = ctx.target
        dtype = dtypes.torch_dtype(point["dtype"])
        ws = int(point["working_set_bytes"])
        esize = torch.empty((), dtype=dtype).element_size()
        gen = checks.generator(t.torch_device, ctx.seed_for(point))
        # one random buffer (mean 1, so sums are well conditioned), carved per op
        buf = _random_buffer(ws // esize, dtype, t.torch_device, gen)
        scalar = 0.4 + torch.rand((), generator=checks.generator("cpu", ctx.seed_for(point))).item()
        out: list[Measurement] = []
        multiple = ws / t.cache_bytes
        cache = (f"working set {multiple:.1f}x cache" + (" (>= 8x: counts for the peak)"
                 if multiple >= CACHE_MULTIPLE_FOR_PEAK else " (inside or near cache: curve only)"))
        mode: Mode = "cuda" if t.is_cuda else "cpu"

        for op in OPS:
            reads, writes = ARRAYS[op]
            n = ws // esize // (reads + writes)
            arrs = [buf[i * n:(i + 1) * n] for i in range(reads + writes)]
            nbytes = bytes_moved(op, n, esize)
            params = {"op": op, "dtype": point["dtype"], "working_set_bytes": ws, "array_bytes": n * esize}
            fns = self._fns(kern, op, arrs, scalar, t.is_cuda)
            for impl in ("triton", "torch"):
                interp = impl == "triton" and t.triton_interpreted
                if interp:  # correctness only, on a small odd size with its own fresh data
                    chk = self._check_small(kern, op, dtype, t.torch_device, gen, scalar)
                    out.append(measured(benchmark=self.name, kernel=op, impl=impl, params=params,
                                        mode="interpreter", device=t.name, timing=None, bytes=nbytes, check=chk,
                                        cache=cache))
                    continue
                run, result, ref_chunk, tol = fns[impl]
                chk = self._check(op, run, result, ref_chunk, tol, arrs)
                # primed on GPU: the small in-cache points are shorter than a launch (bench/timing.py)
                timing = ctx.time(run, prime=True) if chk.passed else None
                out.append(measured(benchmark=self.name, kernel=op, impl=impl, params=params, mode=mode,
                                    device=t.name, timing=timing, bytes=nbytes, check=chk, cache=cache))
        del buf
        return out

    # -- kernels, their checks -------------------------------------------------------------------
    @staticmethod
    def _fns(kern, op, arrs, scalar, on_gpu):
        """impl -> (callable to time, output getter, float64 reference by chunk, tolerance)."""
        tol = checks.tolerance(arrs[0].dtype)
        if op == "copy":
            src, dst = arrs
            ref = lambda lo, hi: src[lo:hi].double()  # noqa: E731
            return {"triton": (lambda: kern.triton_copy(src, dst), lambda: dst, ref, 0.0),
                    "torch": (lambda: kern.torch_copy(src, dst), lambda: dst, ref, 0.0)}
        if op == "write":
            (dst,) = arrs
            val = torch.tensor(scalar, dtype=dst.dtype).item()  # the value as the dtype stores it
            ref = lambda lo, hi: torch.full((hi - lo,), val, dtype=torch.float64)  # noqa: E731
            return {"triton": (lambda: kern.triton_write(dst, scalar), lambda: dst, ref, 0.0),
                    "torch": (lambda: kern.torch_write(dst, scalar), lambda: dst, ref, 0.0)}
        if op == "triad":
            b, c, a = arrs
            ref = lambda lo, hi: b[lo:hi].double() + scalar * c[lo:hi].double()  # noqa: E731
            return {"triton": (lambda: kern.triton_triad(a, b, c, scalar), lambda: a, ref, tol),
                    "torch": (lambda: kern.torch_triad(a, b, c, scalar), lambda: a, ref, tol)}
        (src,) = arrs
        progs, _ = kern.read_programs(src.numel(), on_gpu)
        partial = torch.empty(progs, dtype=torch.float32, device=src.device)
        box: dict = {}
        tri = lambda: box.__setitem__("r", kern.triton_read(src, partial))  # noqa: E731
        tor = lambda: box.__setitem__("r", kern.torch_read(src))  # noqa: E731
        return {"triton": (tri, lambda: box["r"], None, READ_TOL),
                "torch": (tor, lambda: box["r"], None, READ_TOL)}

    @staticmethod
    def _check(op, run, result, ref_chunk, tol, arrs) -> Check:
        if op == "read":
            run()
            return checks.compare_sum(float(result()), arrs[0], tol)
        checks.poison(result())
        run()
        return checks.compare_chunked(result(), ref_chunk, tol, reference="float64 " + op)

    def _check_small(self, kern, op, dtype, device, gen, scalar) -> Check:
        n = INTERP_ELEMENTS
        reads, writes = ARRAYS[op]
        arrs = [checks.random_tensor(n, dtype, device, gen, scale=0.5).add_(1.0) for _ in range(reads + writes)]
        run, result, ref_chunk, tol = self._fns(kern, op, arrs, scalar, on_gpu=False)["triton"]
        return self._check(op, run, result, ref_chunk, tol, arrs)

    # -- profile contribution ----------------------------------------------------------------------
    def summarize(self, measurements: list[Measurement], device: dict) -> dict:
        cache = device.get("cache_bytes") or 1
        curve: list[dict[str, Any]] = []
        best: tuple[Measurement, float] | None = None  # (record, its bandwidth)
        best_copy: tuple[Measurement, float] | None = None
        for m, timing in timed_records(measurements):
            bw = m.bandwidth_Bps
            if bw is None:
                continue
            ws = m.int_param("working_set_bytes")
            beyond = ws >= CACHE_MULTIPLE_FOR_PEAK * cache
            curve.append({
                "op": m.kernel, "impl": m.impl, "dtype": m.params["dtype"], "working_set_bytes": ws,
                "bandwidth_Bps": bw, "median_s": timing.median_s,
                "p10_s": timing.p10_s, "p90_s": timing.p90_s, "beyond_cache": beyond,
            })
            if beyond:
                if best is None or bw > best[1]:
                    best = (m, bw)
                if m.kernel == "copy" and (best_copy is None or bw > best_copy[1]):
                    best_copy = (m, bw)
        curve.sort(key=lambda r: (r["op"], r["impl"], r["dtype"], r["working_set_bytes"]))
        peaks: dict[str, Any] = {}
        if best is not None:
            peaks["memory_bandwidth_Bps"] = best[1]
            peaks["memory_bandwidth_source"] = _label(best[0])
        if best_copy is not None:
            peaks["copy_bandwidth_Bps"] = best_copy[1]
            peaks["copy_bandwidth_source"] = _label(best_copy[0])
        return {"peaks": peaks, "curves": {"hbm": curve}}


def _label(m: Measurement) -> str:
    return (f"{m.impl} {m.kernel} {m.params['dtype']} at working set "
            f"{m.int_param('working_set_bytes') / 2**20:.0f} MiB")


BENCHMARK = HBMBenchmark()
