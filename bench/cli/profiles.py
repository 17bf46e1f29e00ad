"""`rooflab profile list|show|validate|schema`, `rooflab roofline` and `rooflab compare`: thin shells over
bench.profile, bench.models and bench.roofline. A profile is a name (profiles/specs or profiles/measured) or a
path everywhere; a model is a preset name or a JSON file (ours or a Hugging Face config.json)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bench.cli.base import CLIError, app, echo_json, int_list, shown, si, usd
from bench.cli.base import console as _console
from bench.cli.base import ms as _ms


def console():
    return _console(wide=True)


profile_app = typer.Typer(name="profile", help="Spec and measured profiles: list, show, validate.",
                          no_args_is_help=True, add_completion=False, rich_markup_mode=None)
app.add_typer(profile_app, name="profile")

MAX_CONTEXT = 10_000_000
MODEL_HELP = "A preset, our model JSON or a HF config.json."
MAX_BATCH = 10_000_000


def _profile(ref: str):
    from bench import profile as prof

    try:
        return prof.resolve(ref)
    except prof.ProfileError as e:
        raise CLIError(str(e)) from None


def _model(ref: str):
    from bench import models

    try:
        return models.resolve(ref)
    except models.ModelError as e:
        raise CLIError(str(e)) from None


def _check_range(name: str, v: float | None, lo: float, hi: float) -> None:
    if v is not None and not (lo <= v <= hi):
        raise CLIError(f"{name} must be in [{lo:g}, {hi:g}], got {v}")


# ------------------------------------------------------------------------------------------------ profile
@profile_app.command("list")
def profile_list(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """List the spec and committed measured profiles."""
    from bench import profile as prof

    items: list[dict[str, Any]] = []
    for kind in ("spec", "measured"):
        for name, path in prof.library(kind).items():
            try:
                p = prof.load(path)
            except prof.ProfileError as e:
                items.append({"name": name, "kind": kind, "path": str(path), "error": str(e)})
                continue
            items.append({"name": name, "kind": p.kind, "path": str(path), "device": p.device.name,
                          "memory_bytes": p.device.memory_bytes, "memory_bandwidth_Bps": p.peaks.memory_bandwidth_Bps,
                          "bfloat16_flops": p.peaks.matmul_flops.get("bfloat16"),
                          "usd_per_hour": p.price.usd_per_hour if p.price else None})
    if json_out:
        echo_json({"profiles": items})
        return
    from rich.table import Table

    t = Table(title=f"profiles in {shown(prof.profiles_dir())}")
    for c in ("name", "kind", "device", "memory", "bandwidth", "bf16 matmul", "$/GPU-h"):
        t.add_column(c, justify="right" if c in ("memory", "bandwidth", "bf16 matmul", "$/GPU-h") else "left")
    for it in items:
        if "error" in it:
            t.add_row(shown(it["name"]), it["kind"], f"[red]invalid: {shown(it['error'])}[/]", "", "", "", "")
            continue
        t.add_row(shown(it["name"]), it["kind"], shown(it["device"]), si(it["memory_bytes"], "B"),
                  si(it["memory_bandwidth_Bps"], "B/s"), si(it["bfloat16_flops"], "FLOP/s"), usd(it["usd_per_hour"]))
    console().print(t)


@profile_app.command("show")
def profile_show(
    ref: str = typer.Argument(..., metavar="NAME|PATH", help="A profile name (see `rooflab profile list`) or a path."),
    merged: bool = typer.Option(False, "--merged", help="A measured profile completed by its card's spec sheet."),
    json_out: bool = typer.Option(False, "--json", help="Print the profile as one JSON object."),
) -> None:
    """Show a profile: its numbers with their sources (spec) or provenance (merged)."""
    from bench import profile as prof

    p = _profile(ref)
    if merged:
        try:
            p, spec = prof.with_spec(p)
        except prof.ProfileError as e:
            raise CLIError(str(e)) from None
        if spec is None and not p.provenance:
            raise CLIError(f"{ref}: no spec profile found for device {p.device.name!r} (--merged needs one)")
    if json_out:
        typer.echo(p.model_dump_json(exclude_none=True))
        return
    from rich.table import Table

    t = Table(title=f"{shown(p.name)} \\[{p.kind} profile"
                    + (f", merged with the {shown(p.card)} spec]" if p.provenance else "]"))
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("source" if p.kind == "spec" else "from")
    d, pk = p.device, p.peaks

    def src(path: str, sibling: str | None = None) -> str:
        if p.provenance:
            return p.provenance.get(path, "")
        if p.kind == "spec":
            parts = path.split(".")
            found = next((p.sources[k] for k in (".".join(parts[:i]) for i in range(len(parts), 0, -1))
                          if p.sources.get(k)), sibling or "")
            return found if len(found) <= 70 else found[:67] + "..."
        return "measured"

    rows = [("device", d.name, ""), ("card", p.card or "–", ""),
            ("memory", si(d.memory_bytes, "B"), src("device.memory_bytes")),
            ("L2 / last-level cache", si(d.cache_bytes, "B"), src("device.cache_bytes")),
            ("SMs / compute units", str(d.compute_units or "–"), src("device.compute_units")),
            ("boost clock", si(d.boost_clock_Hz, "Hz"), src("device.boost_clock_Hz")),
            ("power", si(d.power_W, "W"), src("device.power_W")),
            ("memory bandwidth", si(pk.memory_bandwidth_Bps, "B/s"), src("peaks.memory_bandwidth_Bps")),
            ("copy bandwidth", si(pk.copy_bandwidth_Bps, "B/s"), src("peaks.copy_bandwidth_Bps"))]
    for dt, v in pk.matmul_flops.items():
        rows.append((f"matmul {dt}", si(v, "FLOP/s"), src(f"peaks.matmul_flops.{dt}")))
    lk = p.interconnect
    if lk is not None:
        rows += [("scale-up link (per GPU, one direction)", si(lk.scale_up_Bps, "B/s"),
                  src("interconnect.scale_up_Bps", lk.scale_up_source)),
                 ("scale-up domain", str(lk.scale_up_domain or "–"), src("interconnect.scale_up_domain")),
                 ("scale-out (per GPU, one direction)", si(lk.scale_out_Bps, "B/s"),
                  src("interconnect.scale_out_Bps", lk.scale_out_source))]
    if p.host_link and p.host_link.theoretical_Bps:
        rows.append(("host link (per direction)", si(p.host_link.theoretical_Bps, "B/s") + f" {p.host_link.link or ''}",
                     src("host_link.theoretical_Bps", p.host_link.theoretical_source)))
    if p.price:
        rows.append(("price per GPU-hour", f"${p.price.usd_per_hour:g} ({p.price.as_of})", src("price.usd_per_hour")))
    c = p.curves
    if p.kind == "measured":
        rows.append(("curves", f"hbm {len(c.hbm)}, matmul {len(c.matmul)}, decode {len(c.decode)}, "
                               f"all-to-all {len(c.all_to_all)} points", ""))
    for name, value, source in rows:
        if value not in ("–", "– "):
            t.add_row(shown(name), shown(value.strip()), shown(source))
    console().print(t)


@profile_app.command("validate")
def profile_validate(
    path: str = typer.Argument(..., metavar="PATH", help="A profile JSON file (or a library name)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check a profile against the schema: exit 0, or exit 2 with a one-line reason."""
    p = _profile(path)
    if json_out:
        echo_json({"ok": True, "name": p.name, "kind": p.kind, "schema_version": p.schema_version})
    else:
        typer.echo(f"ok: {shown(p.name, markup=False)} ({p.kind} profile, schema_version {p.schema_version})")


@profile_app.command("schema")
def profile_schema(
    write: bool = typer.Option(False, "--write", help="Regenerate profiles/schema.json instead of printing it."),
) -> None:
    """Print the profile JSON Schema (generated from the pydantic model), or write profiles/schema.json."""
    from bench import profile as prof

    if write:
        try:
            typer.echo(f"wrote {prof.write_schema()}")
        except OSError as e:
            raise CLIError(f"cannot write the schema: {e.strerror or e}") from None
    else:
        typer.echo(prof.schema_text(), nl=False)


# ------------------------------------------------------------------------------------------------ roofline
def _deployment(tp: int, ep: int, gpus: int | None, weight_dtype: str | None, kv_dtype: str,
                cuda_graphs: bool = False):
    from bench.roofline import Deployment

    _check_range("--tp", tp, 1, 1024)
    _check_range("--ep", ep, 1, 1024)
    _check_range("--gpus", gpus, 1, 4096)
    return Deployment(tp=tp, ep=ep, gpus=gpus, weight_dtype=weight_dtype, kv_dtype=kv_dtype, cuda_graphs=cuda_graphs)


@app.command("roofline")
def roofline_cmd(
    gpu: str = typer.Option(..., "--gpu", metavar="NAME|PATH", help="A profile: spec or measured, by name or path."),
    model: str = typer.Option(..., "--model", metavar="NAME|PATH", help=MODEL_HELP),
    batch: str = typer.Option(",".join(map(str, (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))), "--batch",
                              help="Comma-separated batch sizes (concurrent sequences per replica)."),
    context: int = typer.Option(8192, "--context", help="Cached tokens per sequence."),
    tp: int = typer.Option(1, "--tp", help="Tensor-parallel degree."),
    ep: int = typer.Option(1, "--ep", help="Expert-parallel degree (MoE)."),
    gpus: int | None = typer.Option(None, "--gpus", help="GPUs per replica (default max(tp, ep))."),
    weight_dtype: str | None = typer.Option(None, "--weight-dtype",
                                            help="bf16, fp8, mxfp4, ... (default: as released)."),
    kv_dtype: str = typer.Option("bf16", "--kv-dtype", help="KV-cache dtype."),
    price: float | None = typer.Option(None, "--price",
                                       help="USD per GPU-hour (default: the profile's typical price)."),
    prompt: int | None = typer.Option(None, "--prompt", help="Also estimate prefill of a prompt of N tokens."),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs",
                                     help="Decode replayed from CUDA graphs: the graph launch cost per kernel."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Decode step time, tokens/s and $/Mtok by batch for a model on a card (measured curves or spec peaks)."""
    from bench import profile as prof
    from bench import roofline

    batches = int_list(batch, "--batch", 1, MAX_BATCH)
    _check_range("--context", context, 0, MAX_CONTEXT)
    _check_range("--price", price, 1e-6, 1e6)
    _check_range("--prompt", prompt, 1, MAX_CONTEXT)
    card, mdl = _profile(gpu), _model(model)
    try:
        est = roofline.estimate(card, mdl, _deployment(tp, ep, gpus, weight_dtype, kv_dtype, cuda_graphs),
                                batches=batches, context=context, price_usd_per_hour=price, prompt_tokens=prompt)
    except (roofline.RooflineError, prof.ProfileError) as e:
        raise CLIError(str(e)) from None
    if json_out:
        echo_json(est.as_dict())
        return
    _print_estimate(est)


def _print_estimate(est) -> None:
    from rich.table import Table

    con = console()
    dep = est.deployment
    con.print(f"[bold]{shown(est.model)}[/] on [bold]{shown(est.gpu)}[/] ({est.gpu_kind}): {dep['gpus']} GPU(s), "
              f"tp {dep['tp']}, ep {dep['ep']}, weights {shown(dep['weight_dtype'] or 'as released')}, "
              f"KV {shown(dep['kv_dtype'])}, context {est.context}")
    price = f"${est.price_usd_per_hour:g}/GPU-h" if est.price_usd_per_hour else "no price (--price USD)"
    max_batch = est.max_batch if est.max_batch is not None else "–"
    con.print(f"weights per GPU {si(est.weights_bytes_per_gpu, 'B')}, KV per token {si(est.kv_bytes_per_token, 'B')}, "
              f"max batch {max_batch}, optimal batch {est.optimal_batch:.0f}, "
              f"latency floor {_ms(est.latency_floor_s)} ms, HBM read once {_ms(est.hbm_read_time_s)} ms; {price}")
    if est.prefill:
        pf = est.prefill
        con.print(f"prefill of {pf['prompt_tokens']} tokens: {_ms(pf['time_s'])} ms ({pf['bound']} bound)")
    for e in [est] + ([est.spec] if est.spec is not None else []):
        t = Table(title=f"decode on {shown(e.gpu)} ({'spec peaks' if e.gpu_kind == 'spec' else 'measured curves'})")
        for c in ("batch", "step ms", "compute ms", "memory ms", "comm ms", "overhead ms", "bound", "tok/s",
                  "tok/s/GPU", "tok/s/user", "$/Mtok", "fits"):
            t.add_column(c, justify="left" if c in ("bound", "fits") else "right")
        for r in e.rows:
            t.add_row(str(r.batch), _ms(r.step_time_s), _ms(r.compute_time_s), _ms(r.memory_time_s),
                      _ms(r.comm_time_s), _ms(r.overhead_time_s), shown(r.bound), f"{r.tokens_per_s:.4g}",
                      f"{r.tokens_per_s_per_gpu:.4g}",
                      f"{r.tokens_per_s_per_user:.4g}", usd(r.usd_per_mtok),
                      "–" if r.fits is None else ("yes" if r.fits else "[red]no[/]"))
        con.print(t)
    for n in est.notes:
        con.print(f"- {shown(n)}")


# ------------------------------------------------------------------------------------------------ compare
@app.command("compare")
def compare_cmd(
    cards: list[str] = typer.Argument(..., metavar="A B ...", help="Profiles (spec or measured), by name or path."),
    model: str = typer.Option(..., "--model", metavar="NAME|PATH", help=MODEL_HELP),
    context: int = typer.Option(8192, "--context", help="Cached tokens per sequence."),
    target: float | None = typer.Option(None, "--target-tokens-per-user",
                                           help="Per-user speed (tokens/s) each card must give; "
                                                "best throughput under it."),
    tp: int | None = typer.Option(None, "--tp", help="Fix tensor parallelism (default: fewest GPUs that fit)."),
    ep: int | None = typer.Option(None, "--ep", help="Fix expert parallelism (default: fewest GPUs that fit)."),
    price: list[str] | None = typer.Option(None, "--price", help="CARD=USD per GPU-hour (repeatable)."),
    plot: str | None = typer.Option(None, "--plot", metavar="FILE.png",
                                       help="Also draw tokens/s per GPU vs per user and $/Mtok for each card."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Cards side by side for a model: throughput per GPU and $/Mtok at a per-user speed, max batch, bound."""
    from bench import profile as prof
    from bench import roofline

    _check_range("--context", context, 0, MAX_CONTEXT)
    _check_range("--target-tokens-per-user", target, 1e-6, 1e9)
    _check_range("--tp", tp, 1, 1024)
    _check_range("--ep", ep, 1, 1024)
    if plot is not None and not Path(plot).parent.is_dir():
        raise CLIError(f"--plot: folder {shown(Path(plot).parent, False)} does not exist")
    prices = _prices(price)
    unknown = sorted(set(prices) - set(cards))
    if unknown:
        raise CLIError(f"--price names {', '.join(unknown)}, which is not among the cards compared")
    profs = [(c, _profile(c)) for c in cards]
    mdl = _model(model)
    dep = None
    if tp is not None or ep is not None:
        dep = _deployment(tp or 1, ep or 1, None, None, "bf16")
    try:
        rows = roofline.compare(profs, mdl, context=context, target_tokens_per_user=target, deployment=dep,
                                prices=prices)
    except (roofline.RooflineError, prof.ProfileError) as e:
        raise CLIError(str(e)) from None
    if plot is not None:  # the throughput–interactivity plot (bench.report.build.compare_plot)
        from bench.report import build as report_build

        try:
            report_build.compare_plot(profs, mdl, plot, context=context, prices=prices, deployment=dep)
        except (report_build.ReportError, OSError) as e:
            raise CLIError(f"--plot: {e}") from None
    if json_out:
        echo_json({"model": mdl.name, "context": context, "target_tokens_per_user": target,
                    "rows": [r.as_dict() for r in rows]})
        return
    from rich.table import Table

    t = Table(title=f"{shown(mdl.name)}, context {context}"
                    + (f", at >= {target:g} tokens/s per user" if target else ", best throughput"))
    for c in ("card", "kind", "GPUs (tp/ep)", "max batch", "batch", "tok/s/GPU", "tok/s/user", "$/GPU-h", "$/Mtok",
              "bound"):
        t.add_column(c, justify="left" if c in ("card", "kind", "bound") else "right")
    for r in rows:
        t.add_row(shown(r.gpu), r.kind, f"{r.gpus} ({r.tp}/{r.ep})", "–" if r.max_batch is None else str(r.max_batch),
                  "–" if r.batch is None else str(r.batch),
                  "–" if r.tokens_per_s_per_gpu is None else f"{r.tokens_per_s_per_gpu:.4g}",
                  "–" if r.tokens_per_s_per_user is None else f"{r.tokens_per_s_per_user:.4g}",
                  usd(r.price_usd_per_hour), usd(r.usd_per_mtok),
                  shown((r.bound or "–") + (f" ({r.note})" if r.note else "")))
    console().print(t)


def _prices(items: list[str] | None) -> dict[str, float]:
    """--price CARD=USD items, parsed by the one parser the report uses too."""
    from bench.report import build

    try:
        return build.parse_prices(items)
    except build.ReportError as e:
        raise CLIError(str(e)) from None
