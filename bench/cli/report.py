"""`rooflab report`: (re)make a run's Markdown and HTML reports and plots from its files alone."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from bench.cli.base import CLIError, app, shown


@app.command("report")
def report(
    path: Path = typer.Argument(..., metavar="PATH_OR_DIR", help="A run directory (with profile.json and "
                              "measurements.jsonl) or its profile.json."),
    html: bool = typer.Option(False, "--html", help="Also write the self-contained report.html."),
    out: Path | None = typer.Option(None, "--out", help="Where to write (default: the run directory)."),
    model: str = typer.Option("llama-3.1-8b", "--model", help="Model of the throughput–interactivity plot."),
    context: int = typer.Option(8192, "--context", help="Context length (tokens) of that plot."),
    cards: str | None = typer.Option(None, "--cards", help="Comma-separated cards to add to that plot "
                                        "(spec names or paths)."),
    price: list[str] | None = typer.Option(None, "--price", help="CARD=USD per GPU-hour (repeatable); "
                                              "defaults from the spec profiles."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as one JSON object."),
) -> None:
    """Write report.md (and report.html with --html) and plots/*.png from measurements.jsonl + profile.json."""
    from bench.report import build

    if not (1 <= context <= 10_000_000):
        raise CLIError(f"--context must be a positive number of tokens (at most 10M), got {context}")
    try:
        prices = build.parse_prices(price)
        profile, records, run_dir = build.load_run(path)
        out_dir = out if out is not None else run_dir
        if out_dir.exists() and not out_dir.is_dir():
            raise CLIError(f"--out {out_dir} exists and is not a directory")
        card_list = [c.strip() for c in cards.split(",") if c.strip()] if cards else []
        rd = build.report_data(profile, records, model=model, context=context, prices=prices, cards=card_list,
                                strict=True)
        written = build.write(out_dir, profile, records, html=html, rd=rd)
    except build.ReportError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot write the report: {e.strerror or e}: {getattr(e, 'filename', '') or ''}") from None
    if json_out:
        typer.echo(json.dumps({"out": str(out_dir), "files": [str(f) for f in written.files],
                               "plots": written.plots,
                               "pareto": None if rd.pareto is None else {"model": rd.pareto.model,
                                                                         "context": rd.pareto.context},
                               "pareto_note": rd.pareto_note or None}))
        return
    for f in written.files:
        typer.echo(f"wrote {shown(f, markup=False)}")
    for name, state in written.plots.items():
        if state != "ok":
            typer.echo(f"{name}: {shown(state, markup=False)}")
