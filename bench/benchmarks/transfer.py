"""Host↔device copies over the host link (PCIe): what loading weights or offloading KV cache costs.

Sweep (GPU): buffer sizes from 4 KiB to 1 GiB x host memory kind (pinned, pageable), and GPU-to-GPU peer
copies with >= 2 GPUs. Per point ``h2d``, ``d2h`` and ``bidir`` (both at once, each on its own stream), each
checked bit for bit on fresh random data before it is timed. Accounting: a copy moves its bytes once
through the link (size; bidir 2 x size), bandwidth = bytes / median time. Pinned copies are primed,
pageable ones timed as a program sees them; nothing is flushed. Every (direction, memory) curve gets a
latency-bandwidth fit (bench.fit), and the link's line rate comes from NVML and
``bench.telemetry.PCIE_LANE_Bps``. CPU mode has no device: the point is recorded as skipped.

How and why: docs/method.md ("transfer").
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch

from bench import checks
from bench.fit import geometric_sizes, try_fit
from bench.measurement import Check, Measurement, measured, not_measured, timed_records
from bench.registry import Benchmark, RunContext
from bench.telemetry import PCIE_SOURCE, PCIE_LANE_Bps, pcie_rate_Bps  # noqa: F401 - the one PCIe table

KIB = 1024
MIN_BYTES = 4 * KIB
MAX_BYTES = 1 << 30
PAGEABLE_QUICK_STEP = 16  # --quick: pageable memory at every 16x size (its curve is context, pinned is the link)
NO_DEVICE = "no GPU: host↔device copies need a CUDA device (CPU mode has no host link to measure)"


def sizes(quick: bool, max_bytes: int = MAX_BYTES, step: int | None = None) -> list[int]:
    """4 KiB ... 1 GiB: powers of 4 in a quick sweep, powers of 2 in a full one (or every ``step``×); the
    largest size is always included."""
    return geometric_sizes(MIN_BYTES, max_bytes, step or (4 if quick else 2))


# -- NVML (through bench.telemetry, the one NVML adapter): the link this GPU sits on ------------------------

def pcie_link(target) -> dict:
    """Max PCIe generation/width (what GPU and host slot support together) and the generation/width in use
    now; {} where NVML is absent or cannot open this GPU. Called right after a copy, "now" is under load."""
    from bench import telemetry

    try:
        link = telemetry.session().device_for(target).pcie_link()
    except Exception:  # telemetry.Unavailable, or any NVML trouble: the link is simply unknown
        return {}
    info = {"pcie_generation": link.get("pcie_max_gen"), "pcie_width": link.get("pcie_max_width"),
            "pcie_current_generation": link.get("pcie_gen"), "pcie_current_width": link.get("pcie_width")}
    return {k: int(v) for k, v in info.items() if isinstance(v, (int, float)) and v > 0}


# -- the benchmark ----------------------------------------------------------------------------------------

class TransferBenchmark(Benchmark):
    name = "transfer"
    title = "Host↔device copies (PCIe): pinned and pageable, each direction and both at once"

    def sweep(self, ctx: RunContext) -> list[dict]:
        t = ctx.target
        if not t.is_cuda:
            return [{"memory": "none"}]
        cap = max(MIN_BYTES, t.memory_bytes // 8) if t.memory_bytes else MAX_BYTES
        top = min(MAX_BYTES, 1 << int(math.log2(cap)))
        pts = [{"memory": "pinned", "size_bytes": s} for s in sizes(ctx.quick, top)]
        pts += [{"memory": "pageable", "size_bytes": s}
                for s in sizes(ctx.quick, top, PAGEABLE_QUICK_STEP if ctx.quick else None)]
        if torch.cuda.device_count() >= 2:
            pts += [{"memory": "peer", "size_bytes": s} for s in sizes(ctx.quick, top)]
        return pts

    def run_point(self, ctx: RunContext, point: dict) -> list[Measurement]:
        t = ctx.target
        if not t.is_cuda:
            return [not_measured(benchmark=self.name, kernel=k, impl="torch", params=dict(point),
                                 reason=NO_DEVICE, mode="cpu", device=t.name)
                    for k in ("h2d", "d2h")]
        if point["memory"] == "peer":
            return self._peer(ctx, point)
        size = int(point["size_bytes"])
        pinned = point["memory"] == "pinned"
        n = size // 4
        dev = t.torch_device
        gen = checks.generator(dev, ctx.seed_for(point))
        # fresh random data, drawn on the device (fast) and copied to the host source outside any timing
        dev_src = checks.random_tensor(n, torch.float32, dev, gen)
        ref_h2d = checks.random_tensor(n, torch.float32, dev, gen)
        host_src = torch.empty(n, dtype=torch.float32, pin_memory=pinned)
        host_src.copy_(ref_h2d)
        host_dst = torch.empty(n, dtype=torch.float32, pin_memory=pinned)
        dev_dst = torch.empty(n, dtype=torch.float32, device=dev)
        s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()

        def h2d():
            dev_dst.copy_(host_src, non_blocking=True)

        def d2h():
            host_dst.copy_(dev_src, non_blocking=True)

        def both():
            cur = torch.cuda.current_stream()
            s1.wait_stream(cur)
            s2.wait_stream(cur)
            with torch.cuda.stream(s1):
                h2d()
            with torch.cuda.stream(s2):
                d2h()
            cur.wait_stream(s1)
            cur.wait_stream(s2)

        def check_h2d() -> Check:
            return _same(dev_dst, ref_h2d, "host source (bitwise)")

        def check_d2h() -> Check:
            return _same(host_dst, dev_src, "device source (bitwise)")

        def check_both() -> Check:
            a, b = check_h2d(), check_d2h()
            return a if not a.passed else b

        link = pcie_link(t)
        params = {"memory": point["memory"], "size_bytes": size}
        out = []
        for kernel, fn, chk_fn, nbytes in (("h2d", h2d, check_h2d, size), ("d2h", d2h, check_d2h, size),
                                           ("bidir", both, check_both, 2 * size)):
            checks.poison(dev_dst)
            checks.poison(host_dst)
            fn()
            chk = chk_fn()  # reads the result back to the host: waits for the copy on its stream
            tm = ctx.time(fn, prime=pinned) if chk.passed else None
            after = pcie_link(t) if chk.passed else {}
            out.append(measured(benchmark=self.name, kernel=kernel, impl="torch", params=params, mode="cuda",
                                device=t.name, timing=tm, bytes=nbytes, check=chk, cache="none (PCIe copy)",
                                size_bytes=size, **_link_extra(link, after)))
        return out

    def _peer(self, ctx: RunContext, point: dict) -> list[Measurement]:
        t = ctx.target
        size = int(point["size_bytes"])
        n = size // 4
        out = []
        for src_i, dst_i in ((0, 1), (1, 0)):
            gen = checks.generator(f"cuda:{src_i}", ctx.seed_for({**point, "src": src_i}))
            src = checks.random_tensor(n, torch.float32, f"cuda:{src_i}", gen)
            dst = torch.empty(n, dtype=torch.float32, device=f"cuda:{dst_i}")
            fn = functools.partial(dst.copy_, src, non_blocking=True)
            checks.poison(dst)
            with torch.cuda.device(src_i):
                fn()
                chk = _same(dst, src, f"cuda:{src_i} source (bitwise)")
                tm = ctx.time(fn) if chk.passed else None
            out.append(measured(benchmark=self.name, kernel="d2d", impl="torch",
                                params={"memory": "peer", "size_bytes": size, "src": src_i, "dst": dst_i},
                                mode="cuda", device=t.name, timing=tm, bytes=size, check=chk,
                                cache="none (peer copy)", size_bytes=size))
        return out

    # -- profile contribution ----------------------------------------------------------------------
    def summarize(self, measurements: list[Measurement], device: dict) -> dict:
        curves: list[dict[str, Any]] = []
        link: dict[str, int] = {}
        for m in measurements:
            for k in ("pcie_generation", "pcie_width"):
                if m.extra.get(k):
                    link[k] = m.extra[k]
            for k in ("pcie_current_generation", "pcie_current_width"):  # highest seen under load
                if m.extra.get(k):
                    link[k] = max(link.get(k, 0), m.extra[k])
        for m, timing in timed_records(measurements):
            if m.bandwidth_Bps is None:
                continue
            curves.append({"direction": m.kernel, "memory": m.params["memory"],
                           "size_bytes": m.int_param("size_bytes"), "bytes": m.bytes,
                           "bandwidth_Bps": m.bandwidth_Bps, "median_s": timing.median_s,
                           "p10_s": timing.p10_s, "p90_s": timing.p90_s})
        if not curves and not link:
            return {}
        curves.sort(key=lambda c: (c["direction"], c["memory"], c["size_bytes"]))
        fits = []
        for key in sorted({(c["direction"], c["memory"]) for c in curves}):
            f = try_fit((c["bytes"], c["median_s"]) for c in curves if (c["direction"], c["memory"]) == key)
            if f is not None:
                fits.append({"direction": key[0], "memory": key[1], **f.as_dict()})
        out: dict = {"curves": curves, "fits": fits, **link}
        rate = pcie_rate_Bps(link.get("pcie_generation"), link.get("pcie_width"))
        if rate:
            out["link"] = f"PCIe Gen{link['pcie_generation']} x{link['pcie_width']}"
            out["theoretical_Bps"] = rate
            out["theoretical_source"] = "NVML max link generation and width; " + PCIE_SOURCE
        for d in ("h2d", "d2h"):
            best = [c["bandwidth_Bps"] for c in curves if c["direction"] == d and c["memory"] == "pinned"]
            if best:
                out[f"peak_{d}_Bps"] = max(best)
        return {"host_link": out}


def _same(out: torch.Tensor, ref: torch.Tensor, what: str) -> Check:
    """Bitwise equality of a copy with its source (a copy is exact: no tolerance)."""
    if out.device != ref.device:
        out = out.to(ref.device)
    bad = int((out != ref).sum().item())  # a poisoned (NaN) element never equals its source
    ok = bad == 0
    return Check(passed=ok, rel_err=0.0 if ok else None, tol=0.0, reference=what,
                 detail="" if ok else f"{bad} of {out.numel()} elements differ from the source")


def _link_extra(before: dict, after: dict) -> dict:
    """Max link from the first probe; current generation/width sampled right after the timed copies."""
    out = {k: v for k, v in before.items() if k in ("pcie_generation", "pcie_width")}
    for k in ("pcie_current_generation", "pcie_current_width"):
        if k in after:
            out[k] = after[k]
    return out


BENCHMARK = TransferBenchmark()
