"""`rooflab validate --published`'s output: the per-row table and the three summaries (bench/serving/published.py).

Not a command of its own: bench/cli/validate.py calls ``published_cmd`` when --published is given.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich import box

from bench.cli.base import CLIError
from bench.cli.base import console as _console

KIND_TITLES = {"spec": "spec", "published": "published profile", "measured": "measured"}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.0f}%" + ("!" if v > 1.0 else "")


def _rate(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def published_cmd(gpu: str | None, serving: Path | None, json_out: bool) -> None:
    from bench import serving as srv
    from bench.serving import published as pub

    try:
        if gpu is not None:
            srv.rows.spec_profile(gpu)  # an unknown card is a one-line error before anything runs
        rows = srv.load(serving)
        res = pub.run(rows, gpu=gpu)
    except srv.ServingError as e:
        raise CLIError(str(e)) from None
    if json_out:
        typer.echo(json.dumps(res.as_dict(), allow_nan=False))
        return
    _print(res)


def _print(res) -> None:
    from rich.table import Table

    from bench.serving import published as pub

    con = _console(wide=True)
    if not con.is_terminal:
        con.width = max(con.width, 180)  # the per-row table is wide: piped, it is not squeezed
    kinds = [k for k in pub.KINDS if k != "measured" or "measured" in res.kinds]
    t = Table(title="published serving results against the roofline model: tokens/s per GPU (throughput rows) or "
                    "per user (latency rows); ratio = published / predicted", box=box.SIMPLE_HEAD, pad_edge=False)
    for c in ("card", "GPUs tp/ep", "engine", "model", "weights/KV", "in/out", "scenario", "published"):
        t.add_column(c, justify="right" if c == "published" else "left", no_wrap=True)
    for k in kinds:
        t.add_column(KIND_TITLES[k], justify="right", no_wrap=True)
        t.add_column("ratio", justify="right", no_wrap=True)
    for x in res.rows:
        r = x.row
        fmt = "/".join(dict.fromkeys(r.formats)) + " kv " + (r.kv_dtype or "?")
        scen = ("tput" if r.scenario == "throughput" else "lat") + (
            f" b{r.batch}" if r.batch and r.scenario == "throughput" else f" c{r.concurrency}"
            if r.concurrency and r.scenario == "throughput" else "")
        cells = [r.card, f"{r.gpus} {'dp' if r.attention_dp else r.tp}/{r.ep}", r.engine, r.model, fmt,
                 r.lengths.replace("context ", "ctx "), scen, _rate(r.rate)]
        for k in kinds:
            p = x.predictions.get(k)
            if p is None:
                cells += [x.reasons.get(k, "–"), "–"]
            else:
                cells += [_rate(p.rate), _pct(x.ratio(k))]
        t.add_row(*cells)
    con.print(t)

    con.print("\nupper-bound check: a decode roofline slower than a real measured result is a model error",
              markup=False)
    for k in res.kinds:
        flagged = res.upper_bound[k]
        con.print(f"  {KIND_TITLES[k]}: {len(flagged)} of {sum(1 for x in res.rows if x.predictions.get(k))} rows "
                  "above the roofline" + (":" if flagged else ""), markup=False)
        for f in flagged:
            con.print(f"    {f['id']}: published {_rate(f['published'])} > predicted {_rate(f['predicted'])} "
                      f"({_pct(f['ratio'])}, {f['bound']} bound)", markup=False)
    for k in pub.KINDS:
        if k not in res.kinds:
            con.print(f"  {KIND_TITLES[k]}: no profile of this kind for any card", markup=False)

    ft = Table(title="fraction of the roofline reached (median of published / predicted)", box=box.SIMPLE_HEAD)
    for c in ("engine", "card", "scenario", "rows"):
        ft.add_column(c, justify="right" if c == "rows" else "left")
    for k in kinds:
        ft.add_column(KIND_TITLES[k], justify="right")
    for f in res.fractions:
        ft.add_row(f["engine"], f["card"], f["scenario"], str(f["rows"]), *[_pct(f.get(k)) for k in kinds])
    con.print(ft)

    rt = Table(title=f"ranking agreement: each (model, study, lengths) on >= {pub.MIN_CARDS} cards, cards in the "
                     "published order; wrong pairs: A > B published, predicted the other way", box=box.SIMPLE_HEAD)
    for c in ("model", "study", "in/out", "published order"):
        rt.add_column(c)
    for k in kinds:
        rt.add_column(f"{KIND_TITLES[k]}: tau", justify="right")
        rt.add_column("wrong pairs")
    for g in res.rankings:
        cells = [g["model"], g["study"], g["lengths"], " > ".join(g["published_order"])]
        for k in kinds:
            a = g.get(k)
            if not a:
                cells += ["–", "–"]
            else:
                cells += [f"{a['tau']:+.2f}", ", ".join(a["wrong_pairs"] + [f"tie {p}" for p in a["tied_pairs"]])
                          or "none"]
        rt.add_row(*cells)
    con.print(rt)
    totals = pub.ranking_totals(res.rankings, res.kinds)
    for k in res.kinds:
        tt = totals[k]
        tau = "–" if tt["mean_tau"] is None else f"{tt['mean_tau']:+.2f}"
        con.print(f"ranking, {KIND_TITLES[k]}: {tt['groups']} groups, {tt['wrong_pairs']} of {tt['pairs']} pairs in "
                  f"the wrong order, {tt['tied_pairs']} tied; mean tau {tau}; median fraction of the roofline "
                  f"{_pct(pub.median_ratio(res.rows, k))}", markup=False)
    for n in res.notes:
        con.print(f"note: {n}", markup=False)
