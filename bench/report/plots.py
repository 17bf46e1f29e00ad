"""The report's PNG plots (matplotlib, Agg canvas: no display, no pyplot state, safe in any process).

Each ``*_figure`` function takes the normalised :class:`~bench.report.data.ReportData` (or a
:class:`~bench.report.data.Pareto`) and returns a Figure, or None when there is nothing measured to draw.
Conventions, the same in every plot: SI units on the axes (decimal prefixes: 1 TB/s = 1e12 B/s; sizes of
buffers in binary KiB/MiB/GiB as they are powers of two), log scales where the data spans decades, measured
lines solid and spec-sheet lines dashed, and one colour per card, fixed by name (:func:`card_colour`), so a
card looks the same in every plot and every report.
"""
from __future__ import annotations

import functools
import hashlib
import io
import math
import warnings
from collections import defaultdict
from collections.abc import Callable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullFormatter

from .data import Pareto, ReportData
from .document import fmt_rate

DPI = 110
SIZE = (8.8, 5.4)

# One colour per card, fixed: the cards of profiles/specs in a stable order over a 20-colour qualitative
# palette (tab20's dark then light shades); any other name gets a colour from a hash of the name.
_TAB20 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
          "#dbdb8d", "#9edae5"]
CARDS = ["h100-sxm", "h200", "b200", "a100-80gb-sxm", "mi300x", "gb200", "l40s", "h100-pcie", "b300", "l4",
         "a100-40gb-sxm", "h20", "h100-nvl", "a100-80gb-pcie", "mi325x", "rtx-4090", "rtx-5090", "rtx-6000-ada",
         "a40", "a10"]
CARD_COLOURS = dict(zip(CARDS, _TAB20))

DTYPE_COLOURS = {"float64": "#8c564b", "float32": "#1f77b4", "tf32": "#17becf", "bfloat16": "#d62728",
                 "float16": "#ff7f0e", "float8_e4m3fn": "#2ca02c", "float8_e5m2": "#bcbd22", "int8": "#9467bd",
                 "float4": "#e377c2"}
OP_COLOURS = {"copy": "#1f77b4", "read": "#2ca02c", "write": "#d62728", "triad": "#9467bd"}
GROUP_MARKERS = {"hbm": "o", "matmul": "s", "decode": "^"}


def card_colour(name: str) -> str:
    key = name.lower()
    if key in CARD_COLOURS:
        return CARD_COLOURS[key]
    h = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    return _TAB20[h % len(_TAB20)]


def dtype_colour(dt: str) -> str:
    return DTYPE_COLOURS.get(dt, _TAB20[int(hashlib.sha256(dt.encode()).hexdigest(), 16) % 20])


def _fig(ncols: int = 1, size=SIZE) -> tuple[Figure, list]:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
    return fig, axes


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def fmt_size(n: float, _pos=None) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            v = n / div
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.3g} {unit}"
    return f"{n:.0f} B"


def _bytes_axis(ax, values: list[float]) -> None:
    """x axis of buffer/message sizes: log base 2, labelled in KiB/MiB/GiB, at most ~10 labels."""
    ax.set_xscale("log", base=2)
    lo, hi = min(values), max(values)
    span = max(1, math.ceil(math.log2(max(hi, 2) / max(lo, 1))))
    step = max(1, math.ceil(span / 9))
    first = math.floor(math.log2(max(lo, 1)))
    ticks = [2.0**e for e in range(first, math.ceil(math.log2(max(hi, 2))) + 1, step)]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(fmt_size))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _int_log2_axis(ax, values: list[float]) -> None:
    ax.set_xscale("log", base=2)
    lo, hi = min(values), max(values)
    span = max(1, math.ceil(math.log2(max(hi, 2) / max(lo, 1))))
    step = max(1, math.ceil(span / 10))
    ticks = [2.0**e for e in range(math.floor(math.log2(max(lo, 1))), math.ceil(math.log2(max(hi, 2))) + 1, step)]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v / 1024:.0f}k" if v >= 8192 else f"{v:.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _log_axis(ax, values: list[float], fmt, axis: str = "y") -> None:
    """A log axis labelled by ``fmt`` only at 1-2-5 steps (1-10-100 beyond three decades): no 10^x labels."""
    vals = [v for v in values if v and v > 0]
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    a = ax.yaxis if axis == "y" else ax.xaxis
    decades = math.log10(max(vals) / min(vals)) if vals else 4
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,), numticks=15))
    a.set_major_formatter(fmt)
    a.set_minor_formatter(NullFormatter())


def _rate_axis(ax, values: list[float], unit: str, axis: str = "y") -> None:
    """A rate axis with SI prefixes; log when the values span more than a factor of 30."""
    vals = [v for v in values if v and v > 0]
    fmt = EngFormatter(unit=unit, places=None, sep=" ")
    if vals and max(vals) / min(vals) > 30:
        _log_axis(ax, vals, fmt, axis)
        return
    a = ax.yaxis if axis == "y" else ax.xaxis
    if axis == "y":
        ax.set_ylim(bottom=0, top=max(vals) * 1.12 if vals else None)
    a.set_major_formatter(fmt)
    a.set_minor_formatter(NullFormatter())


def _legend(ax, **kw) -> None:
    h, _ = ax.get_legend_handles_labels()
    if h:
        kw.setdefault("fontsize", "small")
        kw.setdefault("framealpha", 0.85)
        ax.legend(**kw)


def _title(fig: Figure, title: str, rd: ReportData | None = None) -> None:
    sub = ""
    if rd is not None:
        mode = rd.profile.run.mode if rd.profile.run else rd.profile.device.backend
        sub = f"\n{rd.profile.device.name} · mode {mode}" + (" (CPU numbers, not a GPU)" if mode == "cpu" else "")
    fig.suptitle(title + sub, fontsize="medium")


# ------------------------------------------------------------------------------------------------- plots


def roofline_figure(rd: ReportData) -> Figure | None:
    """Attainable FLOP/s vs arithmetic intensity, log-log: measured roofs solid, spec roofs dashed, kernels as dots."""
    if not (rd.memory_roofs or rd.compute_roofs or rd.roof_points):
        return None
    fig, (ax,) = _fig(size=(SIZE[0] * 1.3, SIZE[1]))
    pts = rd.roof_points
    tops = list(rd.compute_roofs.values()) + [v for k, v in rd.spec_compute.items()
                                              if k in rd.compute_roofs or not rd.compute_roofs]
    mems = list(rd.memory_roofs.values()) + ([rd.spec_memory_Bps] if rd.spec_memory_Bps else [])
    best_mem = max(mems) if mems else None
    ridges = [t / best_mem for t in tops] if best_mem else []
    xs = [p.intensity for p in pts] + ridges
    x_lo = 10 ** math.floor(math.log10(min(xs) / 3)) if xs else 1e-2
    x_hi = 10 ** math.ceil(math.log10(max(xs) * 10)) if xs else 1e3
    x_lo, x_hi = min(x_lo, 1e-2), max(x_hi, 10.0)
    y_cap = max(tops) if tops else None

    def mem_line(bw: float, **kw):
        x_end = min(x_hi, y_cap / bw) if y_cap else x_hi
        ax.plot([x_lo, x_end], [bw * x_lo, bw * x_end], **kw)

    # memory roofs in black/grey (colours are the dtypes'); measured solid, spec dashed
    for i, (label, bw) in enumerate(sorted(rd.memory_roofs.items(), key=lambda kv: -kv[1])):
        mem_line(bw, color="black" if i == 0 else "#777777", lw=2.0 if i == 0 else 1.3,
                 label=f"memory, {label}: {fmt_rate(bw)}")
    if rd.spec_memory_Bps:
        mem_line(rd.spec_memory_Bps, color="black", lw=1.3, ls="--",
                 label=f"memory, spec: {fmt_rate(rd.spec_memory_Bps)}")
    for dt, peak in sorted(rd.compute_roofs.items(), key=lambda kv: -kv[1]):
        x0 = peak / best_mem if best_mem else x_lo
        ax.plot([x0, x_hi], [peak, peak], color=dtype_colour(dt), lw=2.2,
                label=f"{dt} matmul, measured: {fmt_rate(peak, 'FLOP/s')}")
    # spec roofs of the dtypes measured (all when none was); dtypes with the same rate share one line
    spec_dts = [dt for dt in rd.spec_compute if dt in rd.compute_roofs] or list(rd.spec_compute)
    same: dict[float, list[str]] = defaultdict(list)
    for dt in spec_dts:
        same[rd.spec_compute[dt]].append(dt)
    for peak, dts in sorted(same.items(), key=lambda kv: -kv[0]):
        x0 = peak / rd.spec_memory_Bps if rd.spec_memory_Bps else x_lo
        ax.plot([x0, x_hi], [peak, peak], color=dtype_colour(dts[0]), lw=1.3, ls="--",
                label=f"{' / '.join(dts)} matmul, spec: {fmt_rate(peak, 'FLOP/s')}")
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for p in pts:
        groups[(p.group, p.dtype)].append(p)
    for (g, dt), ps in sorted(groups.items()):
        ax.scatter([p.intensity for p in ps], [p.flops for p in ps], marker=GROUP_MARKERS.get(g, "D"), s=30,
                   color=dtype_colour(dt), edgecolor="black", linewidth=0.5, zorder=5, alpha=0.85,
                   label=f"{g} kernels, {dt or '?'} ({len(ps)})")
        if g == "hbm":  # few, and each a different kernel: name them
            for p in ps:
                ax.annotate(p.label, (p.intensity, p.flops), textcoords="offset points", xytext=(5, -10),
                            fontsize="x-small")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ys = [p.flops for p in pts] + tops + [m * x_lo for m in mems]
    if ys:
        ax.set_ylim(10 ** math.floor(math.log10(min(ys) / 2)), 10 ** math.ceil(math.log10(max(ys) * 2)))
    ax.yaxis.set_major_formatter(EngFormatter(unit="FLOP/s", sep=" "))
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("attainable FLOP/s")
    if not rd.compute_roofs:
        ax.text(0.02, 0.97, "no matmul peak measured: memory roofs only", transform=ax.transAxes, va="top",
                fontsize="small", color="#555555")
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small")
    _title(fig, "Roofline: measured roofs (solid), spec sheet (dashed), measured kernels (dots)", rd)
    return fig


def cache_cliff_figure(rd: ReportData) -> Figure | None:
    """Bandwidth vs working-set size per kernel (colour: op, line style: implementation), one panel per dtype:
    where the curve leaves the cache."""
    if not rd.hbm:
        return None
    dtypes = sorted({h.dtype for h in rd.hbm}, key=lambda d: (d != "float32", d))[:3]
    impls = sorted({h.impl for h in rd.hbm}, key=lambda i: (i != "triton", i))
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]
    fig, axes = _fig(len(dtypes), size=(SIZE[0] * (1 + 0.5 * (len(dtypes) - 1)) + 1.6, SIZE[1]))
    sizes = [h.working_set_bytes for h in rd.hbm]
    bws = [h.bandwidth_Bps for h in rd.hbm] + ([rd.spec_memory_Bps] if rd.spec_memory_Bps else [])
    for ax, dt in zip(axes, dtypes):
        kernels: dict[tuple[str, str], list] = defaultdict(list)
        for h in rd.hbm:
            if h.dtype == dt:
                kernels[(h.impl, h.op)].append(h)
        for (impl, op), hs in sorted(kernels.items(), key=lambda kv: (impls.index(kv[0][0]), kv[0][1])):
            hs.sort(key=lambda h: h.working_set_bytes)
            ax.plot([h.working_set_bytes for h in hs], [h.bandwidth_Bps for h in hs],
                    color=OP_COLOURS.get(op, dtype_colour(op)), ls=styles[impls.index(impl) % 4],
                    marker=markers[impls.index(impl) % 4], ms=3.5, lw=1.5, label=f"{impl} {op}")
        if rd.cache_bytes:
            ax.axvline(rd.cache_bytes, color="black", lw=1, ls=":")
            ax.axvspan(8 * rd.cache_bytes, max(sizes) * 2, color="#cccccc", alpha=0.3, lw=0,
                       label="≥ 8× cache: where the peak is taken")
            ax.text(rd.cache_bytes, 0.02, f" cache {fmt_size(rd.cache_bytes)}", transform=ax.get_xaxis_transform(),
                    va="bottom", fontsize="small")
        if rd.spec_memory_Bps:
            ax.axhline(rd.spec_memory_Bps, color="black", ls="--", lw=1.3,
                       label=f"spec: {fmt_rate(rd.spec_memory_Bps)}")
        _bytes_axis(ax, sizes)
        ax.set_xlim(min(sizes) / 1.5, max(sizes) * 2)
        _rate_axis(ax, bws, "B/s")
        ax.set_xlabel("working set (bytes, log scale)")
        ax.set_ylabel("bandwidth (bytes read + written per second)")
        ax.set_title(dt, fontsize="small")
    _legend(axes[-1], loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _title(fig, "Memory bandwidth vs working-set size (the cache cliff)", rd)
    return fig


def matmul_figure(rd: ReportData) -> Figure | None:
    """Matmul FLOP/s: square sizes vs M=N=K (with the peak search's shapes) and LLM shapes vs M, per dtype."""
    if not rd.matmul:
        return None
    square = [m for m in rd.matmul if m.kind in ("square", "search")]
    shaped = [m for m in rd.matmul if m.kind == "llm"]
    panels = [(p, k) for p, k in ((square, "square"), (shaped, "llm")) if p]
    fig, axes = _fig(len(panels), size=(SIZE[0] * (1.45 if len(panels) == 2 else 1), SIZE[1] * 1.1))
    all_fl = [m.flops for m in rd.matmul] + list(rd.compute_roofs.values()) + list(rd.spec_compute.values())
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "v", "D", "P", "X", "*"]
    for ax, (pts, kind) in zip(axes, panels):
        lines: dict[tuple[str, str, str], list] = defaultdict(list)
        search = [m for m in pts if m.kind == "search"]
        for m in pts:
            if m.kind != "search":
                lines[(m.dtype, m.impl, "" if kind == "square" else (m.shape or f"N={m.N} K={m.K}"))].append(m)
        shapes = sorted({k[2] for k in lines})
        impls = sorted({k[1] for k in lines})
        for (dt, impl, shape), ms in sorted(lines.items()):
            ms.sort(key=lambda m: m.M)
            lab = " ".join(x for x in (dt, impl, shape) if x)
            ax.plot([m.M for m in ms], [m.flops for m in ms], color=dtype_colour(dt),
                    ls=styles[impls.index(impl) % 4], marker=markers[shapes.index(shape) % len(markers)], ms=4,
                    lw=1.4, label=lab)
        for dt in sorted({m.dtype for m in search}):
            ms = [m for m in search if m.dtype == dt]
            ax.scatter([(m.M * m.N * m.K) ** (1 / 3) for m in ms], [m.flops for m in ms], marker="x", s=22,
                       color=dtype_colour(dt), alpha=0.7, label=f"{dt} peak search (x = ∛(M·N·K))")
        for dt in sorted({m.dtype for m in pts}):
            if dt in rd.compute_roofs:
                ax.axhline(rd.compute_roofs[dt], color=dtype_colour(dt), lw=0.8, ls="-.", alpha=0.6)
            if dt in rd.spec_compute:
                ax.axhline(rd.spec_compute[dt], color=dtype_colour(dt), lw=1.2, ls="--", label=f"{dt} spec")
        xs = [m.M for m in pts if m.kind != "search"] + [(m.M * m.N * m.K) ** (1 / 3) for m in search]
        _int_log2_axis(ax, xs)
        _rate_axis(ax, all_fl, "FLOP/s")
        ax.set_xlabel("M = N = K" if kind == "square" else "M (rows: tokens in the batch)")
        ax.set_ylabel("FLOP/s (2·M·N·K / time)")
        ax.set_title("square shapes" if kind == "square" else "LLM layer shapes (N×K of a real layer) vs M",
                     fontsize="small")
        _legend(ax, fontsize="x-small", loc="best", ncols=2 if len(lines) > 8 else 1)
    _title(fig, "Dense matmul throughput by shape (dash-dot: measured peak, dashed: spec)", rd)
    return fig


def decode_figure(rd: ReportData) -> Figure | None:
    """Decode attention bandwidth vs context for each batch (colour) and kernel (line style), per head
    configuration swept over context (the others are single points: in the table), against the HBM roof."""
    if not rd.decode:
        return None
    by_cfg: dict[str, list] = defaultdict(list)
    for d in rd.decode:
        by_cfg[d.config].append(d)
    swept = sorted((c for c, ds in by_cfg.items() if len({d.context for d in ds}) > 1), key=lambda c: -len(by_cfg[c]))
    shown = (swept or sorted(by_cfg, key=lambda c: -len(by_cfg[c])))[:3]
    fig, axes = _fig(len(shown), size=(SIZE[0] * (1 + 0.45 * (len(shown) - 1)), SIZE[1]))
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    cmap = colormaps["viridis"]
    styles = ["-", "--", ":", "-."]
    main_dtype = max({d.dtype for d in rd.decode}, key=lambda t: sum(1 for d in rd.decode if d.dtype == t))
    bws = [d.bandwidth_Bps for d in rd.decode] + list(rd.memory_roofs.values())
    if rd.spec_memory_Bps:
        bws.append(rd.spec_memory_Bps)
    for ax, cfg in zip(axes, shown):
        ds_cfg = by_cfg[cfg]
        batches = sorted({d.batch for d in ds_cfg})
        variant = lambda d: d.variant + (f" {d.dtype}" if d.dtype != main_dtype else "")  # noqa: E731
        variants = sorted({variant(d) for d in ds_cfg})
        lines: dict[tuple[int, str], list] = defaultdict(list)
        for d in ds_cfg:
            lines[(d.batch, variant(d))].append(d)
        colour = {b: cmap(0.9 * i / max(1, len(batches) - 1)) for i, b in enumerate(batches)}
        for (b, v), ds in sorted(lines.items()):
            ds.sort(key=lambda d: d.context)
            ax.plot([d.context for d in ds], [d.bandwidth_Bps for d in ds], color=colour[b], marker="o", ms=4,
                    ls=styles[variants.index(v) % 4], lw=1.5)
        handles = [Line2D([], [], color=colour[b], marker="o", ms=4, label=f"batch {b}") for b in batches]
        if len(variants) > 1:
            handles += [Line2D([], [], color="#444444", ls=styles[i % 4], label=v) for i, v in enumerate(variants)]
        for label, bw in rd.memory_roofs.items():
            handles.append(ax.axhline(bw, color="black" if label == "measured best" else "#777777", lw=1.2,
                                      label=f"HBM roof, {label}: {fmt_rate(bw)}"))
        if rd.spec_memory_Bps:
            handles.append(ax.axhline(rd.spec_memory_Bps, color="black", ls="--", lw=1.2,
                                      label=f"HBM spec: {fmt_rate(rd.spec_memory_Bps)}"))
        _int_log2_axis(ax, [d.context for d in ds_cfg])
        _rate_axis(ax, bws, "B/s")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("achieved bandwidth (KV + q + out bytes / time)")
        ax.set_title(f"{cfg}" + (f", KV {main_dtype}" if main_dtype else ""), fontsize="small")
        ax.legend(handles=handles, fontsize="x-small", loc="best", framealpha=0.85)
    note = "\n(head configurations measured at one context only are in the table)" if len(by_cfg) > len(shown) else ""
    _title(fig, "Decode attention bandwidth vs context, per batch, against the HBM roof" + note, rd)
    return fig


def all_to_all_figure(rd: ReportData) -> Figure | None:
    """All-to-all bus bandwidth vs message size, per world size."""
    if not rd.a2a:
        return None
    fig, (ax,) = _fig()
    worlds = sorted({a.world_size for a in rd.a2a})
    impls = sorted({a.impl for a in rd.a2a}, key=lambda i: (i.startswith("all-reduce"), i))
    styles = ["-", "--", ":", "-."]
    lines: dict[tuple[int, str], list] = defaultdict(list)
    for a in rd.a2a:
        lines[(a.world_size, a.impl)].append(a)
    for (w, impl), xs in sorted(lines.items()):
        xs.sort(key=lambda a: a.message_bytes)
        ax.plot([a.message_bytes for a in xs], [a.busbw_Bps for a in xs], marker="o", ms=4,
                color=_TAB20[worlds.index(w) % 10], ls=styles[impls.index(impl) % 4],
                label=f"{w} ranks" + (f" {impl}" if impl else ""))
    vals = [a.busbw_Bps for a in rd.a2a]
    if rd.spec_link_Bps:
        ax.axhline(rd.spec_link_Bps, color="black", ls="--", lw=1.2,
                   label=f"spec scale-up link: {fmt_rate(rd.spec_link_Bps)} per direction")
        vals.append(rd.spec_link_Bps)
    _bytes_axis(ax, [a.message_bytes for a in rd.a2a])
    _rate_axis(ax, vals, "B/s")
    ax.set_xlabel("message size per rank (bytes, log scale)")
    ax.set_ylabel("bus bandwidth (all-to-all: algbw × (n−1)/n)")
    _legend(ax, loc="best")
    _title(fig, "All-to-all bus bandwidth vs message size"
           + (" (and all-reduce: busbw = algbw × 2(n−1)/n)" if any(a.impl.startswith("all-reduce") for a in rd.a2a)
              else ""), rd)
    return fig


def spec_vs_measured_figure(rd: ReportData) -> Figure | None:
    """Measured as a percentage of spec, one bar per quantity both have."""
    both = [c for c in rd.comparisons if c.ratio is not None]
    if not both:
        return None
    fig, (ax,) = _fig(size=(SIZE[0], 1.6 + 0.55 * len(both)))
    colour = card_colour(rd.card)
    ys = list(range(len(both)))[::-1]
    ratios = [100 * (c.ratio or 0.0) for c in both]
    ax.barh(ys, ratios, color=colour, alpha=0.85, height=0.6)
    ax.axvline(100, color="black", ls="--", lw=1)
    for y, c, r in zip(ys, both, ratios):
        ax.text(r + 1.5, y, f"{r:.0f}%  ({fmt_rate(c.measured, c.unit)} of {fmt_rate(c.spec, c.unit)})",
                va="center", fontsize="small")
    ax.set_yticks(ys, [c.quantity for c in both])
    ax.set_xlim(0, max(160, max(ratios) * 1.7))
    ax.set_xlabel(f"measured / spec of {rd.spec_name or 'the spec sheet'} (%)")
    ax.set_ylabel("quantity")
    ax.grid(False, axis="y")
    _title(fig, "Spec sheet vs measured", rd)
    return fig


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (higher per-user and higher per-GPU throughput)."""
    best: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if not best or y > best[-1][1]:
            best.append((x, y))
    return sorted(best)


def pareto_figure(p: Pareto) -> Figure | None:
    """Throughput–interactivity: tokens/s per GPU vs tokens/s per user, and $/Mtok, for each card."""
    curves = [c for c in p.curves if c.points]
    if not curves:
        return None
    fig, (ax, ax2) = _fig(2, size=(SIZE[0] * 1.45, SIZE[1] * 1.05))
    everything, xs_all, ys_all, cost_all = [], [], [], []
    for i, c in enumerate(curves):
        pts = sorted((q for q in c.points if q.get("tokens_per_s_per_user") and q.get("tokens_per_s_per_gpu")),
                     key=lambda q: -q["tokens_per_s_per_user"])
        if not pts:
            continue
        col = card_colour(c.card)
        ls, mk = ("-", "o") if c.measured else ("--", "s")
        xs = [q["tokens_per_s_per_user"] for q in pts]
        ax.plot(xs, [q["tokens_per_s_per_gpu"] for q in pts], color=col, ls=ls, marker=mk, ms=4, lw=1.6, label=c.label)
        everything += list(zip(xs, (q["tokens_per_s_per_gpu"] for q in pts)))
        xs_all += xs
        ys_all += [q["tokens_per_s_per_gpu"] for q in pts]
        if i == 0:  # batches on the first card's curve only (they would pile up): powers of 4 and the largest
            marks, last = [], None
            for q in pts:  # every other octave of batch, and wherever the GPUs per replica change
                g = q.get("gpus")
                apart = last is None or last[2] / q["tokens_per_s_per_user"] > 1.4  # labels must not overlap
                if apart and (last is None or q["batch"] >= 4 * last[0] or g != last[1]):
                    marks.append(q)
                    last = (q["batch"], g, q["tokens_per_s_per_user"])
            for q in marks:
                g = q.get("gpus")
                ax.annotate(f"b={q['batch']}" + (f" ×{g} GPUs" if g and g > 1 else ""),
                            (q["tokens_per_s_per_user"], q["tokens_per_s_per_gpu"]),
                            fontsize="x-small", textcoords="offset points", xytext=(-6, -12), color=col)
        cost = [(q["tokens_per_s_per_user"], q["usd_per_mtok"]) for q in pts if q.get("usd_per_mtok")]
        cost_all += [y for _, y in cost]
        if cost:
            price = p.prices.get(c.card)
            ax2.plot([x for x, _ in cost], [y for _, y in cost], color=col, ls=ls, marker=mk, ms=4, lw=1.6,
                     label=c.label + (f" @ ${price:.2f}/GPU-h" if price else ""))
    if len(everything) > 1:
        fr = pareto_frontier(everything)
        ax.plot([x for x, _ in fr], [y for _, y in fr], color="black", lw=6, alpha=0.12, zorder=0,
                label="Pareto frontier (all cards)")
    count = EngFormatter(unit="", sep="")
    for a in (ax, ax2):
        _log_axis(a, xs_all, count, axis="x")
        a.set_xlabel("tokens/s per user (interactivity)")
    _log_axis(ax, ys_all, count)
    ax.set_ylabel("tokens/s per GPU (throughput)")
    ax.set_title("throughput vs interactivity (up and right is better)", fontsize="small")
    ax2.set_ylabel("USD per million output tokens")
    if cost_all:
        _log_axis(ax2, cost_all, FuncFormatter(lambda v, _p: f"${v:.3g}"))
    ax2.set_title("cost vs interactivity (down and right is better)", fontsize="small")
    _legend(ax, fontsize="x-small", loc="best")
    if ax2.get_legend_handles_labels()[0]:
        _legend(ax2, fontsize="x-small", loc="best")
    else:
        ax2.text(0.5, 0.5, "no price known", transform=ax2.transAxes, ha="center")
    fig.suptitle(f"Decode throughput–interactivity frontier: {p.model}, context {p.context} tokens\n"
                 "each card's best over batch and GPUs per replica (roofline model); solid: measured profile, "
                 "dashed: spec sheet" + (f"\n{p.note}" if p.note else ""), fontsize="medium")
    return fig


# name -> (title, figure function of ReportData); the order is the report's order
PLOTS: dict[str, tuple[str, Callable[[ReportData], Figure | None]]] = {
    "roofline": ("Roofline", roofline_figure),
    "cache_cliff": ("Bandwidth vs working set", cache_cliff_figure),
    "matmul": ("Matmul FLOP/s by shape", matmul_figure),
    "decode": ("Decode attention bandwidth vs context", decode_figure),
    "all_to_all": ("All-to-all bus bandwidth", all_to_all_figure),
    "spec_vs_measured": ("Spec vs measured", spec_vs_measured_figure),
}


def render_all(rd: ReportData) -> dict[str, bytes | str | None]:
    """Every plot as PNG bytes; None where nothing was measured; an error message where drawing failed
    (a plot must never cost the run its report)."""
    out: dict[str, bytes | str | None] = {}
    for name, (_, fn) in PLOTS.items():
        out[name] = _draw(functools.partial(fn, rd))
    if rd.pareto is not None:
        out["pareto"] = _draw(functools.partial(pareto_figure, rd.pareto))
    return out


def _draw(make: Callable[[], Figure | None]) -> bytes | str | None:
    try:
        # matplotlib's layout/log-scale warnings would land on stderr, where rooflab promises one line at most
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig = make()
            return png(fig) if fig is not None else None
    except Exception as e:  # reported in the section instead of the plot
        return f"plot could not be drawn: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
