"""Markdown report of a run: provenance, peaks, and each benchmark's table."""
from __future__ import annotations

from ..measurement import Measurement
from ..profile import Profile


def fmt_bytes(n: float) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.4g} {unit}"
    return f"{n:.0f} B"


def fmt_rate(x: float | None, unit: str = "B/s") -> str:
    if x is None:
        return "–"
    for p, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g} {p}{unit}"
    return f"{x:.3g} {unit}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _provenance(p: Profile) -> str:
    d, s, r = p.device, p.software, p.run
    rows = [["device", d.name], ["backend", d.backend],
            ["memory", fmt_bytes(d.memory_bytes) if d.memory_bytes else "–"],
            ["compute units", str(d.compute_units or "–")],
            ["cache (L2/LLC)", fmt_bytes(d.cache_bytes) if d.cache_bytes else "–"]]
    if d.capability:
        rows.append(["compute capability", d.capability])
    if d.driver:
        rows.append(["driver", d.driver])
    if d.cuda_version:
        rows.append(["CUDA", d.cuda_version])
    if s:
        rows += [["python", s.python], ["torch", s.torch or "–"], ["triton", s.triton or "–"], ["rooflab", s.rooflab]]
    if r:
        rows.append(["mode", f"{r.mode}: {r.mode_reason}"])
        rows.append(["points", f"{r.points_ok} ok, {r.points_failed} failed, {r.points_skipped} skipped"])
        if r.wall_time_s is not None:
            rows.append(["wall time", f"{r.wall_time_s:.1f} s"])
    rows.append(["created", p.created])
    return _table(["", ""], rows)


def _hbm(p: Profile, records: list[Measurement]) -> str:
    if not p.curves.hbm:
        return "_not measured_"
    lines = []
    if p.peaks.memory_bandwidth_Bps:
        lines.append(f"**Peak memory bandwidth: {fmt_rate(p.peaks.memory_bandwidth_Bps)}** "
                     f"({p.peaks.memory_bandwidth_source}); best copy {fmt_rate(p.peaks.copy_bandwidth_Bps)} "
                     f"({p.peaks.copy_bandwidth_source}). Bytes counted as read + written; peak = best median "
                     f"at working sets ≥ 8× cache.\n")
    rows = [[c.op, c.impl, c.dtype, fmt_bytes(c.working_set_bytes), fmt_rate(c.bandwidth_Bps),
             f"{c.median_s * 1e6:.1f}", f"{c.p90_s / c.p10_s:.2f}", "yes" if c.beyond_cache else "no"]
            for c in p.curves.hbm]
    lines.append(_table(["op", "impl", "dtype", "working set", "bandwidth", "median µs", "p90/p10", "≥ 8× cache"],
                        rows))
    interp = [m for m in records if m.benchmark == "hbm" and m.mode == "interpreter"]
    if interp:
        ok = sum(1 for m in interp if m.status == "ok")
        lines.append(f"\nTriton kernels ran in the interpreter (correctness only, not timed): "
                     f"{ok}/{len(interp)} checks passed.")
    return "\n".join(lines)


SECTIONS = [("Memory bandwidth", "hbm", _hbm)]


def render(p: Profile, records: list[Measurement]) -> str:
    out = [f"# rooflab report: {p.name}", "", _provenance(p), ""]
    benches = set(p.run.benchmarks) if p.run else set()
    for title, key, fn in SECTIONS:
        if key in benches or not benches:
            out += [f"## {title}", "", fn(p, records), ""]
    fails = [m for m in records if m.status == "failed"]
    if fails:
        out += ["## Failures", ""]
        out += [f"- {m.benchmark} {m.impl} {m.kernel} {m.params}: {m.reason}" for m in fails[:100]]
        out.append("")
    return "\n".join(out)
