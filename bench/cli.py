"""The `rooflab` command line: a thin typer shell over the library.

Every error a user can cause ends in one line on stderr and a non-zero exit (2 for bad usage or input),
never a traceback. Set ROOFLAB_DEBUG=1 to see the traceback of an internal error.
"""
from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from . import __version__

# click's base exception, found through typer so this works whether typer vendors click or depends on it
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

app = typer.Typer(
    name="rooflab",
    help="Measure a GPU's real roofline (HBM, matmul, decode attention, MoE all-to-all) and model LLM inference on it.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class CLIError(Exception):
    """A user-facing error: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class Device(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rooflab {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """rooflab: measured hardware rooflines for LLM inference."""


def console():
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def configure_target(device: str):
    from .target import TargetError, configure

    try:
        return configure(device)
    except TargetError as e:
        raise CLIError(str(e)) from None


@app.command()
def run(
    device: Device = typer.Option(Device.auto, "--device", help="auto: CUDA if torch sees a GPU, else CPU."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated benchmarks (default: all)."),
    quick: bool = typer.Option(True, "--quick/--full", help="Quick sweep (minutes) or the full one."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default reports/<device>-<UTC time>/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run in --out, skipping finished points."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty output directory."),
    min_time: Optional[float] = typer.Option(None, "--min-time", help="Measured seconds per point (default: by device)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random inputs."),
    json_out: bool = typer.Option(False, "--json", help="Print the profile as JSON instead of the summary table."),
) -> None:
    """Run the benchmarks and write measurements.jsonl, profile.json and report.md."""
    from . import registry

    try:
        selection = registry.parse_selection(only)
    except registry.UnknownBenchmark as e:
        raise CLIError(str(e)) from None
    if min_time is not None and not (0 < min_time <= 3600):
        raise CLIError(f"--min-time must be in (0, 3600] seconds, got {min_time}")
    target = configure_target(device.value)
    from . import runner

    out_dir = out if out is not None else runner.default_out_dir(target)
    con = console()
    if not json_out:
        con.print(f"[bold]rooflab {__version__}[/] on [bold]{target.name}[/] ({target.backend}): {target.reason}")
        con.print(f"output: {out_dir}")
    progress_cb, progress = _progress(con, disable=json_out)
    try:
        with progress:
            res = runner.run(selection, target, out_dir, quick=quick, resume=resume, force=force,
                             min_time_s=min_time, seed=seed, on_progress=progress_cb)
    except runner.RunError as e:
        raise CLIError(str(e)) from None
    if json_out:
        typer.echo(res.profile.model_dump_json(indent=2, exclude_none=True))
    else:
        _summary(con, res)
    if res.interrupted:
        raise CLIError(f"interrupted: kept {len(res.measurements)} records in {out_dir}; continue with --resume",
                       code=130)


def _progress(con, disable: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=con, disable=disable, transient=False)
    tasks: dict[str, int] = {}

    def cb(bname: str, i: int, n: int, point: dict) -> None:
        if bname not in tasks:
            tasks[bname] = progress.add_task(bname, total=n)
        desc = bname + (" " + " ".join(f"{k}={v}" for k, v in point.items()) if point else "")
        progress.update(tasks[bname], completed=i, total=n, description=desc[:60])

    return cb, progress


def _summary(con, res) -> None:
    from rich.table import Table

    from .report.markdown import fmt_rate

    p = res.profile
    t = Table(title=f"rooflab: {p.device.name} ({p.device.backend})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("how")
    if p.peaks.memory_bandwidth_Bps:
        t.add_row("peak memory bandwidth", fmt_rate(p.peaks.memory_bandwidth_Bps), p.peaks.memory_bandwidth_source or "")
    if p.peaks.copy_bandwidth_Bps:
        t.add_row("copy bandwidth", fmt_rate(p.peaks.copy_bandwidth_Bps), p.peaks.copy_bandwidth_source or "")
    for dt, v in sorted(p.peaks.matmul_flops.items()):
        t.add_row(f"matmul {dt}", fmt_rate(v, "FLOP/s"), "")
    r = p.run
    if r:
        t.add_row("points", f"{r.points_ok} ok", f"{r.points_failed} failed, {r.points_skipped} skipped")
    t.add_row("wall time", f"{res.wall_time_s:.1f} s", "")
    con.print(t)
    for f in res.failures[:10]:
        con.print(f"[red]failed[/] {f}")
    con.print(f"wrote {res.out_dir / 'profile.json'}, {res.out_dir / 'report.md'}, {res.out_dir / 'measurements.jsonl'}")


# Further commands live in their own modules and register themselves on `app` when imported here.
# One import line per module; keep this list sorted.
# (issue 6: bench.cli_profiles — profile/roofline/compare; issue 7: bench.cli_report; issue 9: bench.cli_doctor;
#  issue 11: bench.cli_validate)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every user-facing error into one line + exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        args = ["--help"]
    try:
        rv = app(args=args, prog_name="rooflab", standalone_mode=False)
    except typer.Exit as e:
        sys.exit(getattr(e, "exit_code", 0))
    except typer.Abort:
        print("rooflab: aborted", file=sys.stderr)
        sys.exit(130)
    except _ClickException as e:
        msg = " ".join(e.format_message().split())
        if not msg:  # no-args-is-help: the help was printed already
            sys.exit(2)
        print(f"rooflab: error: {msg}", file=sys.stderr)
        sys.exit(e.exit_code if e.exit_code else 2)
    except CLIError as e:
        print(f"rooflab: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        print("rooflab: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # an internal error still gets one line; the traceback only on request
        if os.environ.get("ROOFLAB_DEBUG"):
            raise
        print(f"rooflab: internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]}", file=sys.stderr)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
