"""The report's plots: each draws from real CPU data (the committed fixture) and from GPU-shaped series,
is readable (titles, unit labels, legends, log scales where data spans decades), keeps one colour per card,
and a plot with nothing measured is absent rather than broken."""
from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from bench import profile as P
from bench.measurement import read as read_records
from bench.report import data as D
from bench.report import plots as PL

FIXTURE = Path(__file__).parent / "fixtures" / "report"


def fixture_data() -> D.ReportData:
    return D.build(P.load(FIXTURE / "profile.json"), read_records(FIXTURE / "measurements.jsonl"))


def gpu_like(rd: D.ReportData | None = None) -> D.ReportData:
    """GPU-shaped series (H100-like magnitudes) in the report's own row types, on top of the fixture's profile:
    what the matmul, decode and all-to-all benchmarks feed the report on a GPU, without needing one."""
    rd = rd or fixture_data()
    rd.card, rd.spec_name, rd.spec = "h100-sxm", "h100-sxm", rd.profile
    rd.memory_roofs = {"measured best": 3.1e12, "measured copy": 2.9e12}
    rd.compute_roofs = {"bfloat16": 7.9e14, "float32": 5.1e13}
    rd.spec_memory_Bps, rd.spec_compute, rd.spec_link_Bps = 3.35e12, {"bfloat16": 9.89e14, "float32": 6.7e13}, 450e9
    rd.matmul = [D.MatmulRow(s, s, s, dt, "torch", pk * (1 - math.exp(-s / 1500)))
                 for dt, pk in rd.compute_roofs.items() for s in (256, 1024, 4096, 8192)]
    rd.matmul += [D.MatmulRow(m, 6144, 4096, "bfloat16", "torch", 7.5e14 * m / (m + 64), "llama-3.1-8b qkv")
                  for m in (1, 16, 256, 4096)]
    rd.decode = [D.DecodeRow(b, c, eff * 3.0e12 * (1 - 0.5 ** (b * c / 4096)), "llama-3.1-8b (32q/8kv ×128)", impl,
                             "bfloat16", 0.9, layout)
                 for b in (1, 8, 64) for c in (512, 4096, 32768)
                 for impl, layout, eff in (("triton", "contiguous", 1.0), ("triton", "paged", 0.95),
                                           ("torch_sdpa", "contiguous", 0.6))]
    rd.decode.append(D.DecodeRow(64, 4096, 2.5e12, "gpt-oss-120b (64q/8kv ×64)", "triton", "bfloat16", 0.8,
                                 "contiguous"))
    rd.a2a = [D.A2ARow(s, w, 360e9 * s / (s + 2**20), "nccl") for w in (2, 8) for s in (2**12, 2**20, 2**28)]
    rd.roof_points += [D.RoofPoint("matmul", "torch matmul", m.dtype,
                                   m.M * m.N * m.K / (m.M * m.K + m.K * m.N + m.M * m.N), m.flops)
                       for m in rd.matmul]
    rd.comparisons = D._comparisons(rd)
    rd.pareto = D.Pareto("llama-3.1-8b", 8192, [
        D.ParetoCurve(card, f"{card} ({'measured' if meas else 'spec'})", meas,
                      [dict(batch=b, tokens_per_s_per_user=bw / (16e9 + b * 1e9),
                            tokens_per_s_per_gpu=b * bw / (16e9 + b * 1e9),
                            usd_per_mtok=usd / 3600 / (b * bw / (16e9 + b * 1e9)) * 1e6, bound="memory")
                       for b in (1, 8, 64, 512)])
        for card, bw, meas, usd in (("h100-sxm", 3.1e12, True, 3.0), ("h100-sxm", 3.35e12, False, 3.0),
                                    ("h200", 4.8e12, False, 3.8))], prices={"h100-sxm": 3.0, "h200": 3.8})
    return rd


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _readable(fig) -> None:
    """Every drawn axes has labelled axes with units or names, and a title on the figure."""
    assert fig._suptitle is not None and fig._suptitle.get_text()
    axes = [a for a in fig.axes if a.has_data()]
    assert axes
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel()


def test_fixture_roofline_and_cache_cliff():
    rd = fixture_data()
    roof = PL.roofline_figure(rd)
    _readable(roof)
    ax = roof.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "FLOP / byte" in ax.get_xlabel() and "FLOP/s" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lab.startswith("memory, measured best") for lab in labels)
    assert any("hbm kernels" in lab for lab in labels)
    cliff = PL.cache_cliff_figure(rd)
    _readable(cliff)
    assert [ax.get_title() for ax in cliff.axes] == sorted({h.dtype for h in rd.hbm})  # a panel per dtype
    ax = cliff.axes[-1]
    assert ax.get_xscale() == "log" and "working set" in ax.get_xlabel()
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {f"{h.impl} {h.op}" for h in rd.hbm} <= labels  # one line per kernel
    assert sum(len(a.get_lines()) for a in cliff.axes) >= len({h.kernel for h in rd.hbm})
    w, h = _png_size(PL.png(cliff))
    assert w >= 800 and h >= 500


def test_roofline_places_bandwidth_kernels_at_their_intensity():
    rd = fixture_data()
    beyond = {(h.op, h.dtype): h for h in rd.hbm if h.beyond_cache and h.impl == "torch"}
    by_label = {(p.label.split()[-1], p.dtype): p for p in rd.roof_points if p.group == "hbm"}
    triad, read = by_label[("triad", "float32")], by_label[("read", "float32")]
    # triad: 2 FLOPs over 3 fp32 elements moved; read: 1 FLOP per fp32 element read
    assert triad.intensity == pytest.approx(2 / 12) and read.intensity == pytest.approx(1 / 4)
    assert triad.flops == pytest.approx(beyond[("triad", "float32")].bandwidth_Bps * 2 / 12)
    assert not any(p.label.endswith(("copy", "write")) for p in rd.roof_points)  # no arithmetic: no dot


def test_every_plot_draws_gpu_like_series():
    rd = gpu_like()
    figs = {name: fn(rd) for name, (_t, fn) in PL.PLOTS.items()}
    figs["pareto"] = PL.pareto_figure(rd.pareto)
    for name, fig in figs.items():
        assert fig is not None, name
        _readable(fig)
        assert name == "spec_vs_measured" or any(ax.get_legend() is not None for ax in fig.axes), name
    # data spanning decades is on log axes
    assert figs["matmul"].axes[0].get_yscale() == "log"
    assert figs["all_to_all"].axes[0].get_xscale() == "log"
    assert all(a.get_xscale() == "log" and a.get_yscale() == "log" for a in figs["pareto"].axes)
    dec = figs["decode"].axes
    assert len(dec) == 1  # the single-point head configuration is in the table, not a panel of its own
    legend = {t.get_text() for t in dec[0].get_legend().get_texts()}
    assert {"batch 1", "batch 8", "batch 64", "triton", "triton paged", "torch_sdpa"} <= legend
    bars = figs["spec_vs_measured"].axes[0].patches
    assert len(bars) == sum(1 for c in rd.comparisons if c.ratio is not None) >= 4
    roof = figs["roofline"].axes[0]
    styles = {(ln.get_label().split(",")[-1].split(":")[0].strip(), ln.get_linestyle()) for ln in roof.get_lines()}
    assert ("measured best", "-") in styles and ("spec", "--") in styles


def test_plots_of_nothing_measured_are_absent():
    p = P.Profile(name="empty", device=P.DeviceInfo(name="nothing", backend="cpu"))
    rd = D.build(p, [])
    for name, (_t, fn) in PL.PLOTS.items():
        assert fn(rd) is None, name
    assert PL.render_all(rd) == dict.fromkeys(PL.PLOTS)
    assert PL.pareto_figure(D.Pareto("m", 1, [D.ParetoCurve("h100-sxm", "x", True, [])])) is None


def test_one_fixed_colour_per_card():
    colours = [PL.card_colour(c) for c in PL.CARDS]
    assert len(set(colours)) == len(colours)
    assert PL.card_colour("H100-SXM") == PL.card_colour("h100-sxm")
    assert PL.card_colour("some new card") == PL.card_colour("some new card")
    rd = gpu_like()
    fig = PL.pareto_figure(rd.pareto)
    for ax in fig.axes:
        for ln in ax.get_lines():
            card = ln.get_label().split(" ")[0]
            if card in PL.CARD_COLOURS:
                assert ln.get_color() == PL.card_colour(card)


def test_pareto_frontier_keeps_only_undominated_points():
    pts = [(1, 100), (2, 90), (2, 50), (3, 95), (10, 10), (5, 5)]
    assert PL.pareto_frontier(pts) == [(1, 100), (3, 95), (10, 10)]


def test_a_failing_plot_becomes_a_message(monkeypatch):
    def broken(rd):
        raise ValueError("bad\nvalue")

    monkeypatch.setitem(PL.PLOTS, "roofline", ("Roofline", broken))
    out = PL.render_all(fixture_data())
    assert out["roofline"].startswith("plot could not be drawn: ValueError: bad value")
    assert isinstance(out["cache_cliff"], bytes)
