"""The report's content as a list of plain blocks, built once and rendered to Markdown and to HTML.

Every string in a block is plain text (data included: device names, failure reasons, parameters); the
renderers escape it for their format. A section with nothing measured says "not measured", never fails.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .data import ReportData

NOT_MEASURED = "not measured"
SEARCH_ROWS = 5  # rows of the matmul peak search shown per dtype


def fmt_bytes(n: float) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.4g} {unit}"
    return f"{n:.0f} B"


def fmt_rate(x: float | None, unit: str = "B/s") -> str:
    if x is None:
        return "–"
    for p, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g} {p}{unit}"
    return f"{x:.3g} {unit}"


def fmt_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.2g}%"


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str
    strong: bool = False
    missing: bool = False  # a "not measured" / "not available" line


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    name: str  # key in the plots dict; file plots/<name>.png
    alt: str


@dataclass
class Bullets:
    items: list[str] = field(default_factory=list)


Block = Heading | Para | Table | Image | Bullets


def _plot(blocks: list[Block], plots: dict[str, Any] | None, name: str, alt: str) -> None:
    """An Image block when the plot was drawn, its error as a note when it failed, nothing when absent."""
    if plots is None:
        return
    v = plots.get(name)
    if isinstance(v, (bytes, bytearray)):
        blocks.append(Image(name, alt))
    elif isinstance(v, str):
        blocks.append(Para(v, missing=True))


def _missing(what: str = "") -> Para:
    return Para(NOT_MEASURED + (f": {what}" if what else ""), missing=True)


def _selected(rd: ReportData, *names: str) -> bool:
    benches = set(rd.profile.run.benchmarks) if rd.profile.run else set()
    return not benches or bool(benches & set(names))


def _why_missing(rd: ReportData, *names: str) -> str:
    return "" if _selected(rd, *names) else "not in this run's selection"


# --------------------------------------------------------------------------------------------- sections


def _summary(rd: ReportData) -> list[Block]:
    pk = rd.profile.peaks
    rows = []
    if pk.memory_bandwidth_Bps:
        rows.append(["peak memory bandwidth", fmt_rate(pk.memory_bandwidth_Bps), pk.memory_bandwidth_source or ""])
    if pk.copy_bandwidth_Bps:
        rows.append(["copy bandwidth", fmt_rate(pk.copy_bandwidth_Bps), pk.copy_bandwidth_source or ""])
    for dt, v in sorted(rd.compute_roofs.items()):
        rows.append([f"matmul {dt}", fmt_rate(v, "FLOP/s"), "best over the shape scan"])
    if rd.decode:
        best = max(rd.decode, key=lambda d: d.bandwidth_Bps)
        rows.append(["decode attention", fmt_rate(best.bandwidth_Bps),
                     f"best: batch {best.batch}, context {best.context}"])
    if rd.a2a:
        top = max(rd.a2a, key=lambda a: a.busbw_Bps)
        rows.append(["all-to-all bus bandwidth", fmt_rate(top.busbw_Bps),
                     f"best: {top.world_size} ranks, {fmt_bytes(top.message_bytes)} per rank"])
    out: list[Block] = [Heading("Summary")]
    if rd.profile.run and rd.profile.run.mode == "cpu":
        out.append(Para("CPU mode: these are CPU numbers (DRAM, CPU BLAS), not a GPU's; Triton kernels ran in "
                        "the interpreter for correctness only."))
    out.append(Table(["quantity", "measured", "how"], rows) if rows else _missing("no peak in this run"))
    return out


def _verdict(rd: ReportData) -> list[Block]:
    from ..verdict import summary

    out: list[Block] = [Heading("Verdict")]
    if not rd.verdict:
        return out + [_missing()]
    out.append(Para(f"{summary(rd.verdict)}. Card checks hold a measured peak against the spec sheet (pass at the "
                    "threshold a healthy card of its kind reaches, warn down to a stated line below it, fail below); "
                    "kernel checks hold rooflab's Triton kernels against the trusted library on the same card "
                    "(pass or miss)."))

    def val(c, x):
        return "–" if x is None else f"{x * 1e6:,.1f} µs" if c.unit == "s" else fmt_rate(x, c.unit)

    rows = [[c.kind, c.name, c.status.upper() if c.status != "n/a" else "n/a", val(c, c.measured),
             val(c, c.reference), fmt_pct(c.ratio) if c.ratio is not None else "–",
             f"≥ {c.threshold:.0%}" if c.threshold is not None else "", c.detail] for c in rd.verdict]
    out.append(Table(["check", "quantity", "verdict", "measured", "against", "ratio", "needs", "how"], rows))
    return out


def _roofline(rd: ReportData, plots) -> list[Block]:
    out: list[Block] = [Heading("Roofline")]
    if not (rd.memory_roofs or rd.compute_roofs or rd.roof_points):
        return out + [_missing(_why_missing(rd, "hbm", "gemm"))]
    out.append(Para("Attainable FLOP/s vs arithmetic intensity (FLOP per byte moved), log-log. Solid lines are the "
                    "measured roofs (memory bandwidth, matmul peak per dtype), dashed lines the spec sheet's; dots "
                    "are measured kernels at their intensity (bandwidth kernels: triad and read at working sets "
                    "≥ 8× cache; matmul shapes; decode points). A dot's distance below the roof is what that "
                    "kernel leaves on the table."))
    _plot(out, plots, "roofline", "roofline chart")
    rows = [[f"memory, {k}", fmt_rate(v), "–"] for k, v in rd.memory_roofs.items()]
    best_mem = max(rd.memory_roofs.values()) if rd.memory_roofs else None
    rows += [[f"matmul {dt}", fmt_rate(v, "FLOP/s"), f"{v / best_mem:.3g}" if best_mem else "–"]
             for dt, v in sorted(rd.compute_roofs.items())]
    if rd.spec_memory_Bps:
        rows.append(["memory, spec", fmt_rate(rd.spec_memory_Bps), "–"])
    rows += [[f"matmul {dt}, spec", fmt_rate(v, "FLOP/s"),
              f"{v / rd.spec_memory_Bps:.3g}" if rd.spec_memory_Bps else "–"]
             for dt, v in sorted(rd.spec_compute.items())]
    out.append(Table(["roof", "value", "ridge point (FLOP/byte)"], rows))
    return out


def _hbm(rd: ReportData, plots) -> list[Block]:
    out: list[Block] = [Heading("Memory bandwidth")]
    p = rd.profile
    if not p.curves.hbm:
        return out + [_missing(_why_missing(rd, "hbm"))]
    pk = p.peaks
    if pk.memory_bandwidth_Bps:
        out.append(Para(f"Peak memory bandwidth: {fmt_rate(pk.memory_bandwidth_Bps)} ({pk.memory_bandwidth_source}); "
                        f"best copy {fmt_rate(pk.copy_bandwidth_Bps)} ({pk.copy_bandwidth_source}).", strong=True))
    out.append(Para("Bytes counted as read + written; the peak is the best median at working sets ≥ 8× cache."))
    _plot(out, plots, "cache_cliff", "bandwidth vs working-set size")
    rows = [[c.op, c.impl, c.dtype, fmt_bytes(c.working_set_bytes), fmt_rate(c.bandwidth_Bps),
             f"{c.median_s * 1e6:.1f}", f"{c.p90_s / c.p10_s:.2f}", "yes" if c.beyond_cache else "no"]
            for c in p.curves.hbm]
    out.append(Table(["op", "impl", "dtype", "working set", "bandwidth", "median µs", "p90/p10", "≥ 8× cache"], rows))
    interp = [m for m in rd.records if m.benchmark == "hbm" and m.mode == "interpreter"]
    if interp:
        ok = sum(1 for m in interp if m.status == "ok")
        out.append(Para(f"Triton kernels ran in the interpreter (correctness only, not timed): "
                        f"{ok}/{len(interp)} checks passed."))
    return out


def _matmul(rd: ReportData, plots) -> list[Block]:
    out: list[Block] = [Heading("Matmul")]
    if not rd.matmul:
        return out + [_missing(_why_missing(rd, "gemm", "matmul"))]
    out.append(Para("FLOPs counted as 2·M·N·K; FLOP/s = FLOPs / median time. Efficiency is relative to the "
                    "measured peak of the dtype."))
    _plot(out, plots, "matmul", "matmul FLOP/s by shape")
    # the peak search can hold hundreds of shapes: its best few per dtype are shown, the rest are in profile.json
    search_shown: list = []
    for dt in sorted({m.dtype for m in rd.matmul if m.kind == "search"}):
        search_shown += sorted((m for m in rd.matmul if m.kind == "search" and m.dtype == dt),
                               key=lambda m: -m.flops)[:SEARCH_ROWS]
    shown = [m for m in rd.matmul if m.kind != "search"] + search_shown
    rows = [[m.kind, m.dtype, m.impl, m.shape, str(m.M), str(m.N), str(m.K), fmt_rate(m.flops, "FLOP/s"),
             fmt_pct(m.efficiency)]
            for m in sorted(shown, key=lambda m: (m.dtype, m.kind, m.impl, m.shape, m.N, m.K, m.M))]
    out.append(Table(["kind", "dtype", "impl", "layer", "M", "N", "K", "FLOP/s", "efficiency"], rows))
    hidden = len(rd.matmul) - len(shown)
    if hidden:
        out.append(Para(f"{hidden} more shapes of the peak search are in profile.json (curves.matmul)."))
    return out


def _decode(rd: ReportData, plots) -> list[Block]:
    out: list[Block] = [Heading("Decode attention")]
    if not rd.decode:
        return out + [_missing(_why_missing(rd, "decode"))]
    out.append(Para("Bandwidth = bytes the step must read (K and V once, plus q, out and the block table) / median "
                    "time, by batch and context, against the measured HBM roof."))
    _plot(out, plots, "decode", "decode attention bandwidth vs context")
    rows = [[d.config, d.variant, d.dtype, str(d.batch), str(d.context), fmt_rate(d.bandwidth_Bps),
             fmt_pct(d.fraction)]
            for d in sorted(rd.decode, key=lambda d: (d.config, d.variant, d.dtype, d.batch, d.context))]
    out.append(Table(["heads", "kernel", "KV dtype", "batch", "context", "bandwidth", "of measured copy"], rows))
    return out


def _a2a(rd: ReportData, plots) -> list[Block]:
    out: list[Block] = [Heading("All-to-all")]
    if not rd.a2a:
        return out + [_missing(_why_missing(rd, "a2a", "all_to_all"))]
    out.append(Para("Bus bandwidth = algorithm bandwidth × (n−1)/n, as nccl-tests defines it for all-to-all "
                    "(all-reduce rows: × 2(n−1)/n)."))
    _plot(out, plots, "all_to_all", "all-to-all bus bandwidth vs message size")
    rows = [[str(a.world_size), a.impl, fmt_bytes(a.message_bytes), fmt_rate(a.busbw_Bps)]
            for a in sorted(rd.a2a, key=lambda a: (a.world_size, a.impl, a.message_bytes))]
    out.append(Table(["ranks", "impl", "message per rank", "bus bandwidth"], rows))
    return out


def _spec(rd: ReportData, plots) -> list[Block]:
    out: list[Block] = [Heading("Spec vs measured")]
    if rd.spec is None:
        out.append(Para(f"No spec profile for this device{': ' + rd.spec_note if rd.spec_note else ''}; "
                        "measured values only.", missing=True))
    else:
        out.append(Para(f"Compared with the spec profile {rd.spec_name or rd.spec.name}."))
        _plot(out, plots, "spec_vs_measured", "spec vs measured")
    rows = [[c.quantity, fmt_rate(c.measured, c.unit) if c.measured else NOT_MEASURED,
             fmt_rate(c.spec, c.unit) if c.spec else "not in the spec", fmt_pct(c.ratio)] for c in rd.comparisons]
    out.append(Table(["quantity", "measured", "spec", "measured / spec"], rows) if rows else _missing())
    out.append(Heading("Health", 3))
    if rd.health:
        keys = ("check", "name", "status", "verdict", "value", "measured", "expected", "reason")
        cols = [k for k in keys if any(k in v for v in rd.health)] or sorted({k for v in rd.health for k in v})[:6]
        out.append(Table(cols, [[_cell(v.get(k)) for k in cols] for v in rd.health]))
    else:
        out.append(Para("no health verdict in this profile (run rooflab doctor for one)", missing=True))
    return out


def _num3(v: Any) -> str:
    return "–" if v is None else f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _pareto(rd: ReportData, plots) -> list[Block]:
    out: list[Block] = [Heading("Inference: throughput vs interactivity")]
    p = rd.pareto
    if p is None or not any(c.points for c in p.curves):
        return out + [Para(f"not available{': ' + rd.pareto_note if rd.pareto_note else ''}", missing=True)]
    out.append(Para(f"Decode of {p.model} at context {p.context}, by the roofline model: for each card (measured "
                    f"profile solid, spec dashed) the frontier of tokens/s per GPU vs tokens/s per user over batch "
                    f"sizes and the deployments compare tries (GPUs per replica), and $ per million tokens at the "
                    f"price per GPU-hour." + (f" {p.note}" if p.note else "")))
    _plot(out, plots, "pareto", "throughput vs interactivity")
    rows = []
    for c in p.curves:
        for q in c.points:
            usd = q.get("usd_per_mtok")
            gpus = q.get("gpus")
            dep = "–" if gpus is None else f"{gpus} (tp {q.get('tp', '?')}, ep {q.get('ep', '?')})"
            rows.append([c.label, dep, str(q.get("batch")), _num3(q.get("tokens_per_s_per_user")),
                         _num3(q.get("tokens_per_s_per_gpu")), "–" if usd is None else f"${usd:.3g}",
                         str(q.get("bound") or "")])
    out.append(Table(["card", "GPUs", "batch", "tokens/s per user", "tokens/s per GPU", "USD / Mtok", "bound"], rows))
    if p.prices:
        out.append(Para("Prices per GPU-hour: " + ", ".join(f"{k} ${v:.2f}" for k, v in sorted(p.prices.items()))
                        + " (spec profiles' typical rental prices unless given with --price)."))
    return out


def _environment(rd: ReportData) -> list[Block]:
    p = rd.profile
    d, s, r = p.device, p.software, p.run
    rows = [["device", d.name], ["backend", d.backend],
            ["memory", fmt_bytes(d.memory_bytes) if d.memory_bytes else "–"],
            ["compute units", str(d.compute_units or "–")],
            ["cache (L2/LLC)", fmt_bytes(d.cache_bytes) if d.cache_bytes else "–"]]
    for label, v in (("compute capability", d.capability), ("driver", d.driver), ("CUDA", d.cuda_version),
                     ("UUID", d.uuid)):
        if v:
            rows.append([label, v])
    if s:
        rows += [["python", s.python], ["torch", s.torch or "–"], ["triton", s.triton or "–"], ["rooflab", s.rooflab]]
        if s.platform:
            rows.append(["platform", s.platform])
    if r:
        rows.append(["mode", f"{r.mode}: {r.mode_reason}"])
        rows.append(["benchmarks", ", ".join(r.benchmarks) or "–"])
        rows.append(["sweep", "quick" if r.quick else "full"])
        rows.append(["points", f"{r.points_ok} ok, {r.points_failed} failed, {r.points_skipped} skipped"])
        if r.wall_time_s is not None:
            rows.append(["wall time", f"{r.wall_time_s:.1f} s"])
    rows.append(["created", p.created])
    out: list[Block] = [Heading("Environment and provenance"), Table(["", ""], rows), Heading("Telemetry", 3)]
    if rd.telemetry:
        out += _telemetry(rd.telemetry)
    else:
        out.append(Para("no clocks/power/temperature telemetry recorded"
                        + (" (CPU mode: there is no NVML)" if d.backend == "cpu" else ""), missing=True))
    if rd.throttled:
        out.append(Para(f"{len(rd.throttled)} measurement(s) were taken while the GPU was throttling:", strong=True))
        out.append(Bullets(rd.throttled[:50]))
    return out


_STAT = {"min", "median", "max"}


def _telemetry(tel: dict) -> list[Block]:
    """Ranges (min / median / max) as one table, everything else as quantity / value rows."""
    stats = [[k, *(_value(k, v.get(s)) for s in ("min", "median", "max"))]
             for k, v in tel.items() if isinstance(v, dict) and _STAT <= set(v)]
    rest = {k: v for k, v in tel.items() if not (isinstance(v, dict) and _STAT <= set(v))
            and k not in ("throttled_points", "peak_conditions")}
    out: list[Block] = []
    if stats:
        out.append(Table(["quantity", "min", "median", "max"], stats))
    rows = [[k, v] for k, v in _flatten(rest)][:60]
    if rows:
        out.append(Table(["quantity", "value"], rows))
    conds = tel.get("peak_conditions")
    if isinstance(conds, dict) and conds:
        crow = []
        for peak, c in conds.items():
            if isinstance(c, dict):
                sm, pw, tc = (_dict(c.get(k)) for k in ("sm_clock_Hz", "power_W", "gpu_temp_C"))
                crow.append([peak, str(c.get("measurement", "")), _value("sm_clock_Hz", sm.get("median")),
                             _value("power_W", pw.get("median")), _value("gpu_temp_C", tc.get("max")),
                             ", ".join(c.get("throttle_reasons") or []) or ("yes" if c.get("throttled") else "no")])
        if crow:
            out += [Para("Conditions each peak was measured under:"),
                    Table(["peak", "measurement", "SM clock (median)", "power (median)", "GPU temp (max)",
                           "throttled"], crow)]
    return out


def _value(key: str, v: Any) -> str:
    """A value by the unit its name states (SI suffixes): seconds in µs/ms, rates with prefixes."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if key.endswith("_s"):
            return f"{v * 1e6:.3g} µs" if abs(v) < 1e-3 else f"{v * 1e3:.3g} ms" if abs(v) < 1 else f"{v:.3g} s"
        if key.endswith("_Bps"):
            return fmt_rate(v)
        if key.endswith("_flops"):
            return fmt_rate(v, "FLOP/s")
        if key.endswith("_bytes"):
            return fmt_bytes(v)
        unit = next((u for u in ("_Hz", "_W", "_C", "_pct") if key.split(".")[0].endswith(u)), None)
        if unit == "_Hz":
            return f"{v / 1e6:.0f} MHz"
        if unit == "_W":
            return f"{v:.0f} W"
        if unit == "_C":
            return f"{v:.0f} °C"
        if unit == "_pct":
            return f"{v:.0f}%"
        if "share" in key and 0 <= v <= 1:
            return f"{100 * v:.0f}%"
    return _cell(v)


def _flatten(x: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested summary as (dotted key, value) rows; unset values are left out, lists of records counted."""
    rows: list[tuple[str, str]] = []
    if isinstance(x, dict):
        for k, v in x.items():
            if k in ("health", "verdicts") or v is None or v == [] or v == {}:
                continue
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(x, list):
        if all(not isinstance(v, (dict, list)) for v in x) and len(x) <= 8:
            rows.append((prefix, "; ".join(_cell(v) for v in x)))
        else:
            rows.append((prefix, f"{len(x)} {'entry' if len(x) == 1 else 'entries'} (in profile.json)"))
    else:
        rows.append((prefix, _value(prefix, x)))
    return rows


def _other_sections(rd: ReportData) -> list[Block]:
    """Profile sections without a plot of their own (launch overheads, host link, ...), as tables when present."""
    d = rd.profile.model_dump(mode="json")
    out: list[Block] = []
    for key, title in (("overheads", "Overheads"), ("host_link", "Host link"), ("local", "Local MoE kernels"),
                       ("interconnect", "Interconnect")):
        sect = d.get(key)
        if isinstance(sect, dict) and sect:
            rows = [[k, v] for k, v in _flatten(sect) if not k.startswith("all_to_all")][:80]
            if rows:
                out += [Heading(title, 3), Table(["quantity", "value"], rows)]
    return ([Heading("Other measurements")] + out) if out else []


def _failures(rd: ReportData) -> list[Block]:
    fails = [m for m in rd.records if m.status == "failed"]
    if not fails:
        return []
    items = [f"{m.benchmark} {m.impl} {m.kernel} {m.params}: {m.reason}" for m in fails[:100]]
    if len(fails) > 100:
        items.append(f"… and {len(fails) - 100} more")
    return [Heading("Failures"), Bullets(items)]


def build(rd: ReportData, plots: dict[str, Any] | None = None) -> tuple[str, list[Block]]:
    """(title, blocks) of the whole report. ``plots`` maps plot names to PNG bytes (or an error string);
    None means no plots (a text-only report)."""
    blocks: list[Block] = []
    blocks += _summary(rd)
    blocks += _verdict(rd)
    blocks += _roofline(rd, plots)
    blocks += _hbm(rd, plots)
    blocks += _matmul(rd, plots)
    blocks += _decode(rd, plots)
    blocks += _a2a(rd, plots)
    blocks += _spec(rd, plots)
    blocks += _pareto(rd, plots)
    blocks += _other_sections(rd)
    blocks += _environment(rd)
    blocks += _failures(rd)
    return f"rooflab report: {rd.profile.name}", blocks


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}
