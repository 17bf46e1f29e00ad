"""`rooflab run`: measure this machine into a run directory, with a progress bar and a summary table."""
from __future__ import annotations

from pathlib import Path

import typer

from bench import __version__
from bench.cli.base import CLIError, Device, app, configure_target, console, seconds, shown


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, ValueError, RuntimeError):
        return str(a) == str(b)


@app.command()
def run(
    device: Device | None = typer.Option(None, "--device", help="auto (the default): CUDA if torch sees a GPU, "
                                            "else CPU. A resumed run keeps the device it was started on."),
    only: str | None = typer.Option(None, "--only", help="Comma-separated benchmarks (default: all)."),
    quick: bool | None = typer.Option(None, "--quick/--full",
                                      help="Quick sweep (minutes; the default) or the full one."),
    out: Path | None = typer.Option(None, "--out", help="Output directory (default reports/<device>-<UTC time>/); "
                                       "a non-empty one is never overwritten without --force."),
    resume: Path | None = typer.Option(None, "--resume", metavar="DIR", help="Continue the interrupted run in DIR, "
                                          "with the settings it was started with, skipping the points it measured."),
    force: bool = typer.Option(False, "--force", help="Start over in --out: removes the files a previous run "
                                  "wrote there (as its manifest lists them), nothing else."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --resume: also measure again the "
                                         "points that failed (a crash, a hang, an exception)."),
    min_time: float | None = typer.Option(None, "--min-time", help="Measured seconds per point (default: by device)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the random inputs (default 0)."),
    budget: float | None = typer.Option(None, "--budget", metavar="SECONDS", help="Wall-time budget of the run: "
                                           "the sweep is planned to fit and stops cleanly when it is spent; points "
                                           "left out are recorded as skipped (--resume measures them)."),
    time_limit: float | None = typer.Option(None, "--time-limit", metavar="SECONDS", help="Time limit of each "
                                               "benchmark (default 30 min quick, 4 h full): one that runs past it is "
                                               "stopped and the suite goes on."),
    ranks: int | None = typer.Option(None, "--ranks", metavar="N", help="Processes for the collective "
                                        "benchmarks (a2a): gloo ranks in CPU mode (default 2), GPUs on CUDA "
                                        "(default all). Under torchrun the launch decides."),
    model: str | None = typer.Option(None, "--model", metavar="NAME[,NAME]", help="Model presets or JSON files "
                                        "whose weight GEMM shapes (gemm) and attention heads (decode) are measured at "
                                        "the shapes `rooflab validate` and `rooflab roofline` read (default: "
                                        "llama-3.1-8b,qwen3-30b-a3b). A resumed run keeps them."),
    json_out: bool = typer.Option(False, "--json", help="Print the profile as JSON instead of the summary table."),
) -> None:
    """Run the benchmarks and write measurements.jsonl, profile.json and the report.

    Each benchmark runs in a process of its own: a crash, CUDA error or hang is recorded as a failure and the
    suite goes on. Ctrl-C finishes the point in flight (a second Ctrl-C or SIGTERM abandons it), writes the
    profile and report for what was measured and exits non-zero; --resume DIR continues.
    """
    from bench import registry, runner
    from bench.runner import settings as rules

    for name, why in (("--min-time", rules.min_time_problem(min_time)),
                      ("--seed", None if seed is None else rules.seed_problem(seed))):
        if why:
            raise CLIError(f"{name} {why}")
    seconds("--budget", budget)
    seconds("--time-limit", time_limit)
    if retry_failed and resume is None:
        raise CLIError("--retry-failed goes with --resume DIR: it measures a run's failed points again")
    if only is not None and not only.strip(" ,"):
        raise CLIError("--only needs at least one benchmark name")
    try:
        wanted = registry.parse_selection(only) if only is not None else None
    except registry.UnknownBenchmark as e:
        raise CLIError(str(e)) from None
    sweep_models = _models_option(model) if model is not None else None
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
                 "--ranks": (ranks, stored.options.get("ranks")),
                 "--model": (sweep_models, stored.options.get("models"))}
        clash = [f"{k} (it was started with {_setting_text(k, v[1])})" for k, v in given.items()
                 if v[0] is not None and v[0] != v[1]]
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
    from bench import distributed

    bad_ranks = distributed.check_ranks(None, ranks)
    if bad_ranks:
        raise CLIError(bad_ranks)
    if ranks is not None and stored is None:
        options["ranks"] = ranks
    if sweep_models is not None and stored is None:
        options["models"] = sweep_models
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

        out = Path(tempfile.mkdtemp(prefix=f"rooflab-rank{launched.rank if launched else 0}-"))

    out_dir = resume if resume is not None else out if out is not None else runner.default_out_dir(target)
    try:
        runner.check_out_dir(out_dir)
    except runner.RunError as e:
        raise CLIError(str(e)) from None
    con = console()
    con.quiet = quiet
    if not json_out:
        con.print(f"[bold]rooflab {__version__}[/] on [bold]{shown(target.name)}[/] ({target.backend}): "
                  f"{shown(target.reason)}")
        con.print(f"output: {shown(out_dir)}" + (" (resumed)" if resume is not None else ""))
    progress_cb, progress = progress_bar(con, disable=json_out)
    try:
        with progress:
            res = runner.run(selection, target, out_dir, quick=quick, resume=resume is not None, force=force,
                             min_time_s=min_time, seed=seed, options=options, on_progress=progress_cb,
                             budget_s=budget, time_limit_s=time_limit, retry_failed=retry_failed,
                             log=lambda msg: _note(con, msg, json_out))
    except runner.RunError as e:
        raise CLIError(str(e)) from None
    if json_out and not quiet:
        typer.echo(res.profile.model_dump_json(indent=2, exclude_none=True))
    else:
        _summary(con, res)
        if res.budget_skipped:
            con.print(f"budget spent: {res.budget_skipped} points not measured; "
                      f"rooflab run --resume {shown(out_dir, False)} measures them", markup=False)
    if quiet:  # a non-zero torchrun rank: its scratch copy of the results is not needed
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)
    measured = sum(1 for m in res.measurements if m.status == "ok")
    if res.interrupted:
        raise CLIError(f"interrupted by {res.signal}: wrote the profile and report for the {measured} records "
                       f"measured in {out_dir}; continue with: rooflab run --resume {out_dir}", code=res.exit_code)
    if res.exit_code:
        if quiet:  # rank 0 says it for the launch
            raise typer.Exit(res.exit_code)
        raise CLIError(f"{len(res.failures)} point(s) failed (listed above and in the report); the profile and "
                       f"report hold the {measured} records measured in {out_dir}; measure the failed points "
                       f"again with: rooflab run --resume {out_dir} --retry-failed", code=res.exit_code)


def _note(con, msg: str, json_out: bool) -> None:
    """A message of the runner (a point that hung, lines moved aside, a stale lock taken over): on the console,
    or with --json on stderr, so that stdout stays one JSON document."""
    if json_out:
        if not con.quiet:
            typer.echo(shown(msg, markup=False), err=True)
    else:
        con.print(shown(msg, markup=False), markup=False)


def _setting_text(option: str, value: object) -> str:
    """A stored setting as the clash message names it (``--model``: the models' names)."""
    if option == "--model":
        return ",".join(str(d.get("name")) for d in value) if isinstance(value, list) else "the default models"
    return repr(value)


def _models_option(text: str) -> list[dict]:
    """``--model``: each preset or file resolved now (a one-line error if one is not a model), kept as its fields so
    that the workers and a resume read the same models without the files."""
    from bench import models

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError("--model needs at least one model")
    out: list[dict] = []
    for n in names:
        try:
            spec = models.resolve(n)
        except models.ModelError as e:
            raise CLIError(f"--model: {e}") from None
        out.append(spec.model_dump(mode="json"))
    return out


def progress_bar(con, disable: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=con, disable=disable, transient=False)
    tasks: dict[str, TaskID] = {}

    def cb(bname: str, i: int, n: int, point: dict) -> None:
        if bname not in tasks:
            tasks[bname] = progress.add_task(bname, total=n)
        desc = bname + (" " + " ".join(f"{k}={v}" for k, v in point.items()) if point else "")
        progress.update(tasks[bname], completed=i, total=n, description=shown(desc[:60]))

    return cb, progress


def _summary_rows(p) -> list[tuple[str, str, str]]:
    """(quantity, value, how) for every headline number the profile holds; absent sections add nothing."""
    from bench.report.markdown import fmt_rate

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
    from bench import verdict
    from bench.profile import ProfileError, spec_for

    try:
        spec = spec_for(p)
    except ProfileError:
        spec = None
    checks = verdict.evaluate(p, spec)
    con.print(f"verdict: {shown(verdict.summary(checks), False)}", markup=False)
    for c in checks:
        if c.status != "n/a":
            con.print(shown(f"  {c.status.upper():4} {c.name}: {c.ratio:.1%} (needs {c.threshold:.0%}); {c.detail}",
                            False), markup=False)


def _summary(con, res) -> None:
    from rich.table import Table

    p = res.profile
    label = "CPU mode: CPU numbers, not a GPU" if p.device.backend == "cpu" else p.device.backend
    t = Table(title=f"rooflab: {shown(p.device.name)} ({label})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("how")
    for row in _summary_rows(p):
        t.add_row(*map(shown, row))
    t.add_row("wall time", f"{res.wall_time_s:.1f} s", "")
    con.print(t)
    if p.device.backend == "cuda":
        _verdict(con, p)
    for f in res.failures[:10]:
        con.print(f"[red]failed[/] {shown(f)}")
    written = [n for n in ("profile.json", "report.md", "report.html", "measurements.jsonl", "plots")
               if (res.out_dir / n).exists()]
    con.print(f"wrote {', '.join(written)} in {shown(res.out_dir)}")


