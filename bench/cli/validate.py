"""`rooflab validate`: real decode steps of a reduced transformer, measured and predicted (bench/validate/)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bench.cli.base import CLIError, Device, app, configure_target, int_list, seconds, shown
from bench.cli.base import console as _console
from bench.cli.base import ms as _ms

MAX_BATCH = 4096
MAX_CONTEXT = 1 << 20
PROFILE_DIR = "profile"  # the benchmark run inside --out when no --profile is given

if TYPE_CHECKING:
    from rich.console import Console

    from bench.validate.results import Result, Row


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:+.0f}%"


def _apct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.1f}%"


@app.command("validate")
def validate_cmd(
    model: str | None = typer.Option(None, "--model", help="Model preset(s) or JSON file(s), comma-separated "
                                        "(default: llama-3.1-8b,qwen3-30b-a3b: a dense and a MoE model)."),
    layers: int | None = typer.Option(None, "--layers", help="Layers of the reduced model that is built "
                                         "(default 4 on GPU, 1 on CPU); the prediction is for the same layers."),
    batch: str | None = typer.Option(None, "--batch", help="Comma-separated batch sizes (default GPU "
                                        "1,8,64,256; CPU 1,4,16)."),
    context: str | None = typer.Option(None, "--context", help="Comma-separated context lengths in tokens, the "
                                          "new one included (default GPU 512,4096,32768; CPU 512,2048)."),
    device: Device = typer.Option(Device.auto, "--device", help="auto (CUDA if torch sees a GPU), cuda or cpu."),
    profile: str | None = typer.Option(None, "--profile", metavar="NAME|PATH", help="Measured profile of this "
                                          "device to predict from (default: run hbm, gemm, overhead and decode "
                                          "first, quick sweeps, into --out)."),
    spec: str | None = typer.Option(None, "--spec", metavar="NAME|PATH", help="Spec sheet to predict from "
                                       "(default: the card torch reports; none exists for a CPU)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write validation.json (and the benchmark run) "
                                       "(default reports/validate-<device>-<UTC time>/)."),
    force: bool = typer.Option(False, "--force", help="Overwrite a previous validation.json in --out."),
    min_time: float | None = typer.Option(None, "--min-time", help="Measured seconds per point (default: by "
                                             "device, at least 5 steps)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights, caches and inputs."),
    budget: float | None = typer.Option(None, "--budget", metavar="SECONDS", help="Wall-time budget: points run "
                                           "coarse to fine and one that would end past the budget is recorded as "
                                           "skipped (without --profile the benchmarks get 60% of it)."),
    published: bool = typer.Option(False, "--published", help="Hold the published serving results "
                                      "(profiles/serving.json) against the model instead: each row predicted "
                                      "from the spec, published and measured profiles; measures nothing."),
    gpu: str | None = typer.Option(None, "--gpu", metavar="CARD", help="With --published: only this card's rows."),
    serving: Path | None = typer.Option(None, "--serving", metavar="FILE", help="With --published: another "
                                           "serving-results file (default profiles/serving.json)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Measure decode steps of a transformer with a model's real layer shapes (random weights, a random KV cache,
    few layers) and compare them with the roofline model's predictions from this device's measured profile and
    from the card's spec sheet: a table per (batch, context) with both relative errors and the bound. On a CPU
    the rates each prediction reads are measured again between the repetitions of its step; the last lines state the
    conditions a claim needs (how quiet the machine was, what the profile's sweep covers).

    validation.json is rewritten after every point, so a run that is killed keeps what it measured; Ctrl-C or
    SIGTERM stops it after writing the points measured so far (exit 130 / 143).

    With --published: the published serving results against the model (upper-bound check, fraction of the
    roofline per engine and card, ranking agreement), on the CPU in seconds.

    Exits 0 when every point ran, 1 when a point failed its correctness check, 2 for bad usage."""
    import signal
    import time

    measuring = {"--model": model, "--layers": layers, "--batch": batch, "--context": context,
                 "--profile": profile, "--spec": spec, "--out": out, "--min-time": min_time, "--budget": budget,
                 "--device": None if device == Device.auto else device, "--force": force or None,
                 "--seed": seed or None}
    if published:
        given = [k for k, v in measuring.items() if v is not None]
        if given:
            raise CLIError(f"--published measures nothing: drop {', '.join(given)} (it takes --gpu, --serving, --json)")
        from bench.cli.published import published_cmd

        published_cmd(gpu, serving, json_out)
        return
    if gpu is not None or serving is not None:
        raise CLIError(f"{'--gpu' if gpu is not None else '--serving'} goes with --published")

    from bench import runner
    from bench.cli.run import progress_bar
    from bench.profile import atomic_write_text
    from bench.runner.outdir import VALIDATION as RESULT_FILE
    from bench.runner.outdir import run_file
    from bench.validate import driver, plan, prediction
    from bench.validate.errors import ValidateError

    seconds("--min-time", min_time, 3600.0)
    seconds("--budget", budget)
    t_start = time.monotonic()
    if not 0 <= seed < 2**63:
        raise CLIError(f"--seed must be in [0, 2^63), got {seed}")
    batches = None if batch is None else int_list(batch, "--batch", 1, MAX_BATCH)
    contexts = None if context is None else int_list(context, "--context", 1, MAX_CONTEXT)
    try:
        models = plan.parse_models(model)
        for m in models:
            if layers is not None:
                plan.reduced_model(m, layers)  # the range check, with the model's own layer count
    except ValidateError as e:
        raise CLIError(str(e)) from None
    target = configure_target(device.value)
    out_dir = out if out is not None else Path("reports") / f"validate-{runner.default_out_dir(target).name}"
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError(f"--out {out_dir} exists and is not a directory")
    if (out_dir / RESULT_FILE).exists() and not force:
        raise CLIError(f"{out_dir / RESULT_FILE} exists: use --force to overwrite it or another --out")

    try:
        runner.check_out_dir(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        result_path = run_file(out_dir, RESULT_FILE)  # listed in the folder's manifest; never through a link
    except OSError as e:
        raise CLIError(f"cannot create --out {out_dir}: {e.strerror or e}") from None
    except runner.RunError as e:
        raise CLIError(str(e)) from None
    con = _console()
    con.quiet = json_out
    con.print(shown(f"rooflab validate on {target.name} ({target.backend}): {target.reason}", False), markup=False)
    notes: list[str] = []
    try:
        spec_prof, spec_note = prediction.spec_profile_for(target, spec)
        if profile is not None:
            measured, warn = prediction.load_measured(profile, target)
            notes += warn
            label = profile
        else:
            run_dir = out_dir / PROFILE_DIR
            con.print(shown(f"measuring the profile first ({', '.join(prediction.NEEDED_BENCHMARKS)}, quick) into "
                            f"{run_dir}", False), markup=False)
            cb, progress = progress_bar(con, disable=json_out)
            with progress:
                measured = prediction.measure_profile(target, run_dir, on_progress=cb, force=force,
                                                      budget_s=0.6 * budget if budget is not None else None,
                                                      log=(lambda msg: None) if json_out else
                                                      (lambda msg: con.print(shown(msg, False), markup=False)))
            label = str(run_dir / runner.PROFILE)

        def on_point(r: Row) -> None:
            if r.status == "ok":
                moved = (f", drift {_pct(r.drift)} probe / {_pct(r.rates_drift)} rates" if r.drift is not None
                         else "")
                con.print(shown(f"  {r.model}  batch {r.batch}  context {r.context}: measured {_ms(r.measured_s)} "
                                f"ms, model {_ms(r.predicted_s)} ms ({_pct(r.error)}){moved}", False), markup=False)
            else:
                con.print(shown(f"  {r.model}  batch {r.batch}  context {r.context}: {r.status}: {r.reason}", False),
                          markup=False)

        write_error: list[str] = []

        def checkpoint(partial: Result) -> None:  # after every point: a killed run keeps what it measured
            if write_error:
                return
            try:
                atomic_write_text(result_path, json.dumps(partial.as_dict(), indent=2, allow_nan=False)
                                  + "\n")
            except OSError as e:
                write_error.append(f"cannot write {out_dir / RESULT_FILE}: {e.strerror or e}")

        left = budget - (time.monotonic() - t_start) if budget is not None else None
        if left is not None and left <= 0:
            left = 1e-3  # spent on the benchmarks: every point is recorded as skipped "budget"
        old_term = signal.signal(signal.SIGTERM, _interrupt)
        old_int = signal.signal(signal.SIGINT, _interrupt)
        try:
            res = driver.validate(target, models, measured=measured, profile_label=label, spec=spec_prof,
                                  spec_note=spec_note, layers=layers, batches=batches, contexts=contexts,
                                  min_time_s=min_time, seed=seed, notes=notes, on_point=on_point, budget_s=left,
                                  checkpoint=checkpoint)
        finally:
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)
    except ValidateError as e:
        raise CLIError(str(e)) from None
    doc = res.as_dict()
    try:
        atomic_write_text(result_path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    except OSError as e:
        raise CLIError(f"cannot write {out_dir / RESULT_FILE}: {e.strerror or e}") from None
    doc["written"] = str(out_dir / RESULT_FILE)
    if json_out:
        typer.echo(json.dumps(doc, allow_nan=False))
    else:
        _print_tables(con, res)
        con.print(shown(f"wrote {out_dir / RESULT_FILE}", False), markup=False)
    if res.stopped:
        typer.echo(shown(f"rooflab validate: {res.stopped}; the points measured are in {out_dir / RESULT_FILE}", False),
                   err=True)
        raise typer.Exit(143 if "SIGTERM" in res.stopped else 130)
    if res.summary.get("failed"):
        raise typer.Exit(1)


def _interrupt(signum, frame) -> None:
    """SIGINT / SIGTERM while the points run: end the loop (validate() records the rest as not measured)."""
    import signal

    raise KeyboardInterrupt(f"interrupted ({signal.Signals(signum).name})")


def _print_tables(con: Console, res: Result) -> None:
    from rich.table import Table

    from bench.validate.results import unsteady

    has_spec = any(r.spec_predicted_s is not None for r in res.rows)
    has_overhead = any((r.overhead_s or 0) > 0 for r in res.rows)
    has_drift = any(r.drift is not None for r in res.rows)
    has_profile = any(r.profile_error is not None for r in res.rows)
    for model in dict.fromkeys(r.model for r in res.rows):
        rows = [r for r in res.rows if r.model == model]
        t = Table(title=shown(f"{model} on {res.device} ({res.mode}, {res.dtype})"))
        for col in ("batch", "context", "measured ms", "model ms", "error"):
            t.add_column(col, justify="right")
        if has_overhead:
            t.add_column("w/o overhead", justify="right")
        if has_profile:
            t.add_column("profile error", justify="right")
        if has_spec:
            t.add_column("spec ms", justify="right")
            t.add_column("spec error", justify="right")
        if has_drift:
            t.add_column("drift probe/rates", justify="right")
        t.add_column("bound")
        for r in rows:
            meas = (f"{_ms(r.measured_s)} ({_ms(r.measured_p10_s)}–{_ms(r.measured_p90_s)})"
                    if r.measured_s is not None else r.status)
            cells = [str(r.batch), str(r.context), meas, _ms(r.predicted_s), _pct(r.error)]
            if has_overhead:
                cells.append(_pct(r.error_no_overhead))
            if has_profile:
                cells.append(_pct(r.profile_error))
            if has_spec:
                cells += [_ms(r.spec_predicted_s), _pct(r.spec_error)]
            if has_drift:
                cells.append(f"{_pct(r.drift)}/{_pct(r.rates_drift)}" + ("!" if unsteady(r) else ""))
            bound = r.bound or "–"
            if has_spec and r.spec_bound and r.spec_bound != r.bound:
                bound += f" (spec: {r.spec_bound})"
            cells.append(bound if r.status == "ok" else f"{bound}; {r.status}: {r.reason[:60]}")
            t.add_row(*map(shown, cells))
        con.print(t)
    for line in summary_lines(res):
        con.print(shown(line, False), markup=False)
    for n in res.notes:
        con.print(shown(f"note: {n}", False), markup=False)
    for n in res.prediction_notes:
        con.print(shown(f"model: {n}", False), markup=False)


def summary_lines(res: Result) -> list[str]:
    """The summary a claim quotes: the errors (median and max), then the conditions it rests on."""
    from bench.timing import NOISY_SPREAD
    from bench.validate.probe import DRIFT_LIMIT

    s = res.summary
    rates = " (rates re-measured beside each step)" if s.get("median_abs_profile_error") is not None else ""
    out = [f"median |error| over {s['measured']} points: measured profile{rates} {_apct(s['median_abs_error'])}, "
           f"max {_apct(s['max_abs_error'])}"
           + (f" (without the overhead term {_apct(s['median_abs_error_no_overhead'])})"
              if s.get("median_abs_error_no_overhead") is not None else "")
           + (f"; the profile as measured before the run {_apct(s['median_abs_profile_error'])}, max "
              f"{_apct(s['max_abs_profile_error'])}" if rates else "")
           + (f"; by phases {_apct(s['median_abs_error_phases'])}" if s.get("median_abs_error_phases") is not None
              else "")
           + (f"; spec sheet {_apct(s['median_abs_spec_error'])}" if s.get("median_abs_spec_error") is not None
              else "; no spec-sheet prediction")]
    if s.get("unsteady") is not None:
        out.append(f"{s['unsteady']} of {s['measured']} points unsteady (their rates moved > {DRIFT_LIMIT:.0%} "
                   f"across the point, or the step's p90/p10 > {NOISY_SPREAD}: '!'); over the steady ones: "
                   f"{_apct(s.get('median_abs_error_steady'))}")
    for m, b in s["by_model"].items():
        out.append(f"  {m}: measured profile {_apct(b['median_abs_error'])} (max {_apct(b['max_abs_error'])}), "
                   f"spec {_apct(b['median_abs_spec_error'])}, {b['failed']} failed, {b['skipped']} skipped")
    return out + conditions_lines(res.conditions)


def conditions_lines(c: dict) -> list[str]:
    """How quiet the machine was and what the profile's sweep covers (Result.conditions), one line each."""
    out = []
    load = lambda v: "–" if not v else f"{v[0]:.2f}"  # noqa: E731
    others = c.get("others_cpu_share")
    quiet = ("conditions: " + (f"other processes used {others:.0%} of the CPUs during the points; "
                               if others is not None else "")
             + f"load average {load(c.get('load_average_start'))} before the run, "
             f"{load(c.get('load_average_end'))} at the end (this run's own included; {c.get('cpus')} CPUs)")
    if c.get("probe_start_Bps"):
        ref = (f", the profile's read point {c['profile_read_Bps'] / 1e9:.1f} GB/s" if c.get("profile_read_Bps")
               else "")
        quiet += (f"; memory-read probe ({c['probe_bytes'] / 2**20:.0f} MiB) {c['probe_start_Bps'] / 1e9:.1f} GB/s at "
                  f"the start{ref}, {c['probe_min_Bps'] / 1e9:.1f}–{c['probe_max_Bps'] / 1e9:.1f} GB/s over the run")
    if c.get("step_spread_median"):
        quiet += f"; steps' p90/p10 median {c['step_spread_median']:.2f}"
    out.append(quiet)
    sw = c.get("sweep")
    if sw:
        mm = sw["matmul_shapes"] - len(sw["matmul_missing"])
        ms = f" at M {sw['matmul_M'][0]}–{sw['matmul_M'][1]}" if sw.get("matmul_M") else ""
        dec = sw["decode_points"] - len(sw["decode_missing"])
        line = (f"sweep: the profile measured {mm} of the {sw['matmul_shapes']} weight GEMM shapes of these models "
                f"({sw['dtype']}{ms}) and {dec} of the {sw['decode_points']} decode points of this grid")
        missing = sw["matmul_missing"] + sw["decode_missing"]
        if missing:
            line += (f"; not measured: {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''} (rooflab run "
                     "--model NAME measures a model's shapes)")
        out.append(line)
    return out
