"""`rooflab compare --html FILE`: one self-contained purchase page for the cards compared.

The page holds the comparison table (deployment, batch, bound, tokens/s per GPU and per user, $/Mtok at the target,
where each card's numbers come from), tokens/s per GPU vs tokens/s per user per card (the throughput–interactivity
frontier, bench/report/plots.py), throughput and $/Mtok at the target, the same comparison from each kind of
profile (spec, published, measured), the closest public serving results with their sources, and the notes. It is
rendered by the report's HTML renderer (bench/report/html.py): plots embedded as data: URIs, inline CSS, no
scripts, nothing fetched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .. import profile as prof
from ..roofline import CompareRow
from ..serving.buyer import Purchase
from ..serving.published import KINDS
from . import build
from . import data as D
from . import plots as PL
from .document import Block, Bullets, Heading, Image, Para, Table
from .html import render_blocks

KIND_TITLES = {"spec": "spec sheet", "published": "published profile", "measured": "measured profile"}
KIND_ALPHA = {"spec": 0.35, "published": 0.65, "measured": 1.0}


def _n(v: float | None, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.0f}" if abs(v) >= 10 ** (digits - 1) else f"{v:.{digits}g}"


def _usd(v: float | None) -> str:
    return "–" if v is None else f"${v:.3g}"


def _target_text(p: Purchase) -> str:
    return f"at >= {p.target:g} tokens/s per user" if p.target else "at the best throughput"


# ------------------------------------------------------------------------------------------------- figures
def pareto_figure(p: Purchase, entries: list[tuple[str, prof.Profile]], model, *, prices, base, fixed) -> Figure | None:
    """Tokens/s per GPU vs per user (and $/Mtok) per card, with the per-user target marked."""
    curves, used, notes = build.pareto_curves([(pr.card or label, label, pr) for label, pr in entries], model,
                                              p.context, prices=prices, deployment=fixed, base=base)
    fig = PL.pareto_figure(D.Pareto(model.name, p.context, curves, used, "; ".join(notes)))
    if fig is not None and p.target:
        for ax in fig.axes:
            ax.axvline(p.target, color="black", ls=":", lw=1.2)
            ax.annotate(f"target {p.target:g} tok/s/user", (p.target, 1.0), xycoords=("data", "axes fraction"),
                        textcoords="offset points", xytext=(3, -12), fontsize="x-small")
    return fig


def at_target_figure(p: Purchase) -> Figure | None:
    """Tokens/s per GPU and $/Mtok at the target, one bar per card."""
    cards = [c for c in p.cards if c.result.tokens_per_s_per_gpu]
    if not cards:
        return None
    fig, (ax, ax2) = PL._fig(2, size=(PL.SIZE[0] * 1.45, PL.SIZE[1] * 0.9))
    xs = list(range(len(cards)))
    cols = [PL.card_colour(c.card or c.label) for c in cards]
    tput = [c.result.tokens_per_s_per_gpu or 0.0 for c in cards]
    ax.bar(xs, tput, color=cols)
    for x, c, v in zip(xs, cards, tput):
        ax.annotate(f"{_n(v)}\n{c.result.gpus} GPU, b={c.result.batch}\n{c.source}", (x, v), ha="center",
                    va="bottom", fontsize="x-small", textcoords="offset points", xytext=(0, 2))
    ax.set_ylabel("tokens/s per GPU")
    ax.set_ylim(0, max(tput) * 1.35)
    ax.set_title(f"throughput {_target_text(p)} (higher is better)", fontsize="small")
    costs = [(x, c, c.result.usd_per_mtok) for x, c in zip(xs, cards) if c.result.usd_per_mtok]
    if costs:
        ax2.bar([x for x, _, _ in costs], [v for _, _, v in costs], color=[PL.card_colour(c.card or c.label)
                                                                           for _, c, _ in costs])
        for x, c, v in costs:
            ax2.annotate(f"${v:.3g}\n@ ${c.result.price_usd_per_hour:.3g}/GPU-h", (x, v), ha="center", va="bottom",
                         fontsize="x-small", textcoords="offset points", xytext=(0, 2))
        ax2.set_ylim(0, max(v for _, _, v in costs) * 1.35)
    else:
        ax2.text(0.5, 0.5, "no price known (--price CARD=USD)", transform=ax2.transAxes, ha="center")
    ax2.set_ylabel("USD per million output tokens")
    ax2.set_title(f"cost {_target_text(p)} (lower is better)", fontsize="small")
    for a in (ax, ax2):
        a.set_xticks(xs, [c.label for c in cards])
        a.grid(False, axis="x")
    fig.suptitle(f"{p.model}, context {p.context}: each card's best deployment {_target_text(p)}", fontsize="medium")
    return fig


def sources_figure(p: Purchase) -> Figure | None:
    """Tokens/s per GPU at the target from each kind of profile the library has for each card."""
    cards = [c for c in p.cards if any(isinstance(v, CompareRow) and v.tokens_per_s_per_gpu
                                       for v in c.by_kind.values())]
    if not cards:
        return None
    fig, (ax,) = PL._fig(1, size=(PL.SIZE[0] * 1.2, PL.SIZE[1] * 0.9))
    width = 0.8 / len(KINDS)
    top = 0.0
    for i, c in enumerate(cards):
        for j, kind in enumerate(KINDS):
            x = i - 0.4 + width * (j + 0.5)
            v = c.by_kind.get(kind)
            if isinstance(v, CompareRow) and v.tokens_per_s_per_gpu:
                ax.bar(x, v.tokens_per_s_per_gpu, width * 0.9, color=PL.card_colour(c.card or c.label),
                       alpha=KIND_ALPHA[kind], edgecolor="black", lw=0.5)
                ax.annotate(_n(v.tokens_per_s_per_gpu), (x, v.tokens_per_s_per_gpu), ha="center", va="bottom",
                            fontsize="xx-small", textcoords="offset points", xytext=(0, 1))
                top = max(top, v.tokens_per_s_per_gpu)
            else:
                ax.annotate(f"no {kind}", (x, 0), ha="center", va="bottom", rotation=90, fontsize="xx-small",
                            textcoords="offset points", xytext=(0, 3), color="#777777")
    ax.set_xticks(range(len(cards)), [c.label for c in cards])
    ax.set_xlim(-0.5, len(cards) - 0.5)
    ax.set_ylim(0, top * 1.25 or 1.0)
    ax.set_ylabel(f"tokens/s per GPU {_target_text(p)}")
    ax.grid(False, axis="x")
    ax.set_title("each card from each kind of profile: left to right spec sheet, published profile, measured profile "
                 "(pale to solid)", fontsize="small")
    return fig


# ------------------------------------------------------------------------------------------------- the page
def blocks(p: Purchase, plots: dict[str, Any]) -> tuple[str, list[Block]]:
    names = ", ".join(c.label for c in p.cards)
    title = f"Purchase comparison: {p.model} on {names}"
    out: list[Block] = [
        Para(f"{p.model}, context {p.context} tokens, weights {p.weight_dtype or 'as released'}, KV cache "
             f"{p.kv_dtype}, each card {_target_text(p)}. Decode throughput from the roofline model (docs/model.md) "
             "on each card's most real profile: measured where the library has a run of the card, else published, "
             "else the spec sheet; the closest published serving results show what engines reached."),
        Heading("Comparison"),
        Table(["card", "numbers from", "GPUs (tp/ep)", "batch", "max batch", "tok/s/GPU", "tok/s/user", "$/GPU-h",
               "$/Mtok", "bound"],
              [[c.label, c.source, f"{c.result.gpus} ({c.result.tp}/{c.result.ep})", _n(c.result.batch),
                _n(c.result.max_batch), _n(c.result.tokens_per_s_per_gpu), _n(c.result.tokens_per_s_per_user),
                _usd(c.result.price_usd_per_hour), _usd(c.result.usd_per_mtok),
                (c.result.bound or "–") + (f" ({c.result.note})" if c.result.note else "")] for c in p.cards]),
    ]
    for name, heading, alt in (("pareto", "Throughput vs interactivity", "tokens/s per GPU vs tokens/s per user"),
                               ("at_target", "At the target", "tokens/s per GPU and $/Mtok at the target"),
                               ("sources", "Spec vs published vs measured", "tokens/s per GPU from each profile")):
        out.append(Heading(heading))
        if name == "sources":
            out.append(Table(["card"] + [KIND_TITLES[k] for k in KINDS],
                             [[c.label] + [_kind_cell(c.by_kind.get(k)) for k in KINDS] for c in p.cards]))
        v = plots.get(name)
        if isinstance(v, bytes):
            out.append(Image(name, alt))
        else:
            out.append(Para(v or "nothing to draw", missing=True))
    out.append(Heading("Public serving results"))
    out.append(Para("The closest published, measured result for this model and weight format on each card "
                    "(profiles/serving.json; `rooflab validate --published` holds every one against the model). "
                    "Fraction: published / the roofline's prediction for that result's own deployment on the card."))
    out.append(Table(["card", "public result", "fraction of its roofline", "source"],
                     [[c.label, c.public.summary(fraction=False) if c.public else c.public_note,
                       "–" if c.public is None or c.public.fraction is None else f"{c.public.fraction:.0%}",
                       c.public.row.source if c.public else "–"] for c in p.cards]))
    out.append(Heading("Notes"))
    out.append(Bullets([
        "numbers from: the kinds of profile a card's numbers come from (measured > published > spec; '+spec' where "
        "a profile's gaps are filled from the spec sheet)",
        "decode steps only: prefill, scheduling and speculative decoding are not in the roofline; the public "
        "results' fractions show how far real engines got",
        "$/Mtok: each card's typical rental price per GPU-hour from its profile unless given with --price",
        *p.notes]))
    return title, out


def _kind_cell(v: CompareRow | str | None) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if v.tokens_per_s_per_gpu is None:
        return v.note or "does not fit"
    return (f"{_n(v.tokens_per_s_per_gpu)} tok/s/GPU, {v.gpus} GPU ({v.tp}/{v.ep}), b={v.batch}, {v.bound}"
            + (f", {_usd(v.usd_per_mtok)}/Mtok" if v.usd_per_mtok else ""))


def render(p: Purchase, entries: list[tuple[str, prof.Profile]], model, *, prices=None, base=None,
           fixed=None) -> str:
    plots: dict[str, Any] = {
        "pareto": PL._draw(lambda: pareto_figure(p, entries, model, prices=prices, base=base, fixed=fixed)),
        "at_target": PL._draw(lambda: at_target_figure(p)),
        "sources": PL._draw(lambda: sources_figure(p)),
    }
    title, out = blocks(p, plots)
    return render_blocks(title, out, plots)


def write(path: str | Path, p: Purchase, entries: list[tuple[str, prof.Profile]], model, *, prices=None, base=None,
          fixed=None) -> Path:
    path = Path(path)
    prof.atomic_write_text(path, render(p, entries, model, prices=prices, base=base, fixed=fixed))
    return path
