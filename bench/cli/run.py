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


def int_list(text: str, what: str, lo: int, hi: int) -> list[int]:
    """A comma-separated option of whole numbers in [lo, hi], sorted and unique; CLIError with one line if not."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise CLIError(f"{what} wants comma-separated whole numbers, got {part!r}") from None
        if not lo <= v <= hi:
            raise CLIError(f"{what} values must be in [{lo}, {hi}], got {v}")
        out.append(v)
    if not out:
        raise CLIError(f"{what} is empty")
    return sorted(set(out))


def configure_target(device: str):
    from .target import TargetError, configure

    try:
        return configure(device)
    except TargetError as e:
        raise CLIError(str(e)) from None


MAX_SECONDS = 7 * 24 * 3600.0  # a week: any longer --budget or --time-limit is a typo


def _seconds(name: str, value: Optional[float], hi: float = MAX_SECONDS) -> Optional[float]:
    """A duration from the command line: finite, > 0 and at most ``hi`` seconds, or a one-line error."""
    import math

    if value is not None and not (math.isfinite(value) and 0 < value <= hi):
        raise CLIError(f"{name} must be a number of seconds in (0, {hi:g}], got {value}")
    return value


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, ValueError, RuntimeError):
        return str(a) == str(b)


@app.command()
def run(
    device: Optional[Device] = typer.Option(None, "--device", help="auto (the default): CUDA if torch sees a GPU, "
                                            "else CPU. A resumed run keeps the device it was started on."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated benchmarks (default: all)."),
    quick: Optional[bool] = typer.Option(None, "--quick/--full", help="Quick sweep (minutes; the default) or the full one."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default reports/<device>-<UTC time>/); "
                                       "a non-empty one is never overwritten without --force."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="DIR", help="Continue the interrupted run in DIR, "
                                          "with the settings it was started with, skipping the points it measured."),
    force: bool = typer.Option(False, "--force", help="Overwrite the outputs of a previous run in --out."),
    min_time: Optional[float] = typer.Option(None, "--min-time", help="Measured seconds per point (default: by device)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the random inputs (default 0)."),
    budget: Optional[float] = typer.Option(None, "--budget", metavar="SECONDS", help="Wall-time budget of the run: "
                                           "the sweep is planned to fit and stops cleanly when it is spent; points "
                                           "left out are recorded as skipped (--resume measures them)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", metavar="SECONDS", help="Time limit of each "
                                               "benchmark (default 30 min quick, 4 h full): one that runs past it is "
                                               "stopped and the suite goes on."),
    ranks: Optional[int] = typer.Option(None, "--ranks", metavar="N", help="Processes for the collective "
                                        "benchmarks (a2a): gloo ranks in CPU mode (default 2), GPUs on CUDA "
                                        "(default all). Under torchrun the launch decides."),
    json_out: bool = typer.Option(False, "--json", help="Print the profile as JSON instead of the summary table."),
) -> None:
    """Run the benchmarks and write measurements.jsonl, profile.json and the report.

    Each benchmark runs in a process of its own: a crash, CUDA error or hang is recorded as a failure and the
    suite goes on. Ctrl-C finishes the point in flight (a second Ctrl-C or SIGTERM abandons it), writes the
    profile and report for what was measured and exits non-zero; --resume DIR continues.
    """
    from . import registry, runner

    _seconds("--min-time", min_time, 3600.0)
    _seconds("--budget", budget)
    _seconds("--time-limit", time_limit)
    if seed is not None and not (0 <= seed < 2**63):
        raise CLIError(f"--seed must be in [0, 2^63), got {seed}")
    if only is not None and not only.strip(" ,"):
        raise CLIError("--only needs at least one benchmark name")
    try:
        wanted = registry.parse_selection(only) if only is not None else None
    except registry.UnknownBenchmark as e:
        raise CLIError(str(e)) from None
    stored = None
    if resume is not None:
        if force:
            raise CLIError("--resume continues a run and --force starts one over: give one of them")
        if out is not None and not _same_dir(out, resume):
            raise CLIError("--resume DIR is the output directory: drop --out")
        try:
            runner.prepare_out_dir(resume, resume=True)
            stored = runner.load_settings(resume)
        except runner.RunError as e:
            raise CLIError(str(e)) from None
    if stored is not None:  # resume as started; an option that says otherwise is a mistake
        given = {"--only": (wanted, stored.selection), "--quick/--full": (quick, stored.quick),
                 "--seed": (seed, stored.seed), "--min-time": (min_time, stored.min_time_s),
                 "--device": (None if device in (None, Device.auto) else device.value, stored.backend),
                 "--ranks": (ranks, stored.options.get("ranks"))}
        clash = [f"{k} (it was started with {v[1]!r})" for k, v in given.items() if v[0] is not None and v[0] != v[1]]
        if clash:
            raise CLIError(f"{resume} is resumed with the settings it was started with: drop {', '.join(clash)}")
        selection, quick, seed, min_time = stored.selection, stored.quick, stored.seed, stored.min_time_s
        choice = stored.backend
    else:
        selection = wanted or registry.names()
        quick = True if quick is None else quick
        seed = 0 if seed is None else seed
        choice = device.value if device is not None else "auto"
    options: dict = dict(stored.options) if stored is not None else {}
    from . import distributed

    if ranks is not None and not 1 <= ranks <= distributed.MAX_RANKS:
        raise CLIError(f"--ranks must be in [1, {distributed.MAX_RANKS}], got {ranks}")
    if ranks is not None and stored is None:
        options["ranks"] = ranks
    launched = distributed.torchrun_env()  # started by torchrun: this process is one rank of the launch
    if launched is not None:
        if resume is not None or budget is not None:
            raise CLIError("--resume and --budget cannot be used under torchrun: every rank must run the same points")
        if ranks is not None and ranks != launched.world_size:
            raise CLIError(f"--ranks {ranks} disagrees with torchrun's WORLD_SIZE={launched.world_size}: drop --ranks")
        if choice != "cpu":
            distributed.pin_local_device(launched)  # each rank measures its own GPU
    target = configure_target(choice)
    bad_ranks = distributed.check_ranks(target, ranks)
    if bad_ranks:
        raise CLIError(bad_ranks)
    quiet = launched is not None and launched.rank != 0
    if quiet:  # only rank 0 writes the results; the other ranks' files go to a scratch directory
        import tempfile

        out = Path(tempfile.mkdtemp(prefix=f"rooflab-rank{launched.rank}-"))

    out_dir = resume if resume is not None else out if out is not None else runner.default_out_dir(target)
    con = console()
    con.quiet = quiet
    if not json_out:
        con.print(f"[bold]rooflab {__version__}[/] on [bold]{target.name}[/] ({target.backend}): {target.reason}")
        con.print(f"output: {out_dir}" + (" (resumed)" if resume is not None else ""))
    progress_cb, progress = _progress(con, disable=json_out)
    try:
        with progress:
            res = runner.run(selection, target, out_dir, quick=quick, resume=resume is not None, force=force,
                             min_time_s=min_time, seed=seed, options=options, on_progress=progress_cb,
                             budget_s=budget, time_limit_s=time_limit,
                             log=(lambda msg: None) if json_out else (lambda msg: con.print(msg, markup=False)))
    except runner.RunError as e:
        raise CLIError(str(e)) from None
    if json_out and not quiet:
        typer.echo(res.profile.model_dump_json(indent=2, exclude_none=True))
    else:
        _summary(con, res)
        if res.budget_skipped:
            con.print(f"budget spent: {res.budget_skipped} points not measured; "
                      f"rooflab run --resume {out_dir} measures them", markup=False)
    if quiet:  # a non-zero torchrun rank: its scratch copy of the results is not needed
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)
    if res.interrupted:
        measured = sum(1 for m in res.measurements if m.status == "ok")
        raise CLIError(f"interrupted by {res.signal}: wrote the profile and report for the {measured} records "
                       f"measured in {out_dir}; continue with: rooflab run --resume {out_dir}", code=res.exit_code)


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


def _summary_rows(p) -> list[tuple[str, str, str]]:
    """(quantity, value, how) for every headline number the profile holds; absent sections add nothing."""
    from .report.markdown import fmt_rate

    rows: list[tuple[str, str, str]] = []
    pk = p.peaks
    if pk.memory_bandwidth_Bps:
        rows.append(("peak memory bandwidth", fmt_rate(pk.memory_bandwidth_Bps), pk.memory_bandwidth_source or ""))
    if pk.copy_bandwidth_Bps:
        rows.append(("copy bandwidth", fmt_rate(pk.copy_bandwidth_Bps), pk.copy_bandwidth_source or ""))
    for dt, v in sorted(pk.matmul_flops.items()):
        rows.append((f"matmul {dt}", fmt_rate(v, "FLOP/s"), pk.matmul_source.get(dt, "")))
    for impl in sorted({d.impl for d in p.curves.decode}):
        best = max((d for d in p.curves.decode if d.impl == impl), key=lambda d: d.bandwidth_Bps)
        frac = f", {best.fraction_of_measured_hbm:.0%} of copy" if best.fraction_of_measured_hbm else ""
        rows.append((f"decode attention, {impl}", fmt_rate(best.bandwidth_Bps),
                     f"{best.layout} {best.model} b{best.batch} ctx {best.context}{frac}"))
    ic = p.interconnect
    if ic is not None:
        for pb in ic.peak_busbw:
            rows.append((f"all-to-all busbw, {pb.world_size} ranks", fmt_rate(pb.busbw_Bps),
                         f"{ic.backend or ''} at {pb.message_bytes} B per rank"))
        if ic.all_reduce is not None and ic.all_reduce.peak_busbw_Bps:
            rows.append(("all-reduce busbw (best)", fmt_rate(ic.all_reduce.peak_busbw_Bps), ic.backend or ""))
    ov = p.overheads
    if ov is not None:
        for name, v in (("launch", ov.launch_s), ("graph launch", ov.graph_launch_s), ("sync round trip", ov.sync_s)):
            if v:
                rows.append((f"{name} per kernel" if name != "sync round trip" else name, f"{v * 1e6:.2f} µs", ""))
    hl = p.host_link
    if hl is not None:
        for name, v in (("host→device pinned", hl.peak_h2d_Bps), ("device→host pinned", hl.peak_d2h_Bps)):
            if v:
                theo = f"link {fmt_rate(hl.theoretical_Bps)} per direction" if hl.theoretical_Bps else ""
                rows.append((name, fmt_rate(v), theo))
    r = p.run
    if r:
        rows.append(("points", f"{r.points_ok} ok", f"{r.points_failed} failed, {r.points_skipped} skipped"))
    return rows


def _verdict(con, p) -> None:
    """The card against its spec sheet and the kernels against the library (bench/verdict.py), one line each."""
    from . import verdict
    from .profile import ProfileError, spec_for

    try:
        spec = spec_for(p)
    except ProfileError:
        spec = None
    checks = verdict.evaluate(p, spec)
    con.print(f"verdict: {verdict.summary(checks)}", markup=False)
    for c in checks:
        if c.status != "n/a":
            con.print(f"  {c.status.upper():4} {c.name}: {c.ratio:.1%} (needs {c.threshold:.0%}); {c.detail}",
                      markup=False)


def _summary(con, res) -> None:
    from rich.table import Table

    p = res.profile
    label = "CPU mode: CPU numbers, not a GPU" if p.device.backend == "cpu" else p.device.backend
    t = Table(title=f"rooflab: {p.device.name} ({label})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("how")
    for row in _summary_rows(p):
        t.add_row(*row)
    t.add_row("wall time", f"{res.wall_time_s:.1f} s", "")
    con.print(t)
    if p.device.backend == "cuda":
        _verdict(con, p)
    for f in res.failures[:10]:
        con.print(f"[red]failed[/] {f}")
    written = [n for n in ("profile.json", "report.md", "report.html", "measurements.jsonl", "plots")
               if (res.out_dir / n).exists()]
    con.print(f"wrote {', '.join(written)} in {res.out_dir}")


# Further commands live in their own modules and register themselves on `app` when imported here.
# One import line per module; keep this list sorted.
# (issue 6: bench.cli_profiles — profile/roofline/compare; issue 7: bench.cli_report; issue 9: bench.cli_doctor;
#  issue 11: bench.cli_validate)
from . import cli_doctor  # noqa: E402,F401
from . import cli_profiles  # noqa: E402,F401
from . import cli_report  # noqa: E402,F401
from . import cli_validate  # noqa: E402,F401


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
