"""`rooflab profile list|show|validate|schema`, `rooflab roofline` and `rooflab compare`: thin shells over
bench.profile, bench.models and bench.roofline. A profile is a name (the most real the library has: measured,
published or spec, completed by the others; spec:NAME, published:NAME, measured:NAME pick one) or a path
everywhere; a model is a preset name or a JSON file (ours or a Hugging Face config.json)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bench.cli.base import CLIError, app, echo_json, int_list, shown, si, usd
from bench.cli.base import console as _console
from bench.cli.base import ms as _ms


def console():
    return _console(wide=True)


profile_app = typer.Typer(name="profile", help="Spec, published and measured profiles: list, show, validate.",
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
    """List the library: spec sheets, published profiles and committed measured profiles."""
    from bench import profile as prof

    items: list[dict[str, Any]] = []
    for kind in prof.KINDS[::-1]:
        for name, path in prof.library(kind).items():
            try:
                p = prof.load(path)
                prof.check_card(p)
            except prof.ProfileError as e:
                items.append({"name": name, "kind": kind, "path": str(path), "error": str(e)})
                continue
            items.append({"name": name, "kind": p.kind, "path": str(path), "device": p.device.name,
                          "numbers": len(prof.number_paths(p)),
                          "memory_bytes": p.device.memory_bytes, "memory_bandwidth_Bps": p.peaks.memory_bandwidth_Bps,
                          "bfloat16_flops": p.peaks.matmul_flops.get("bfloat16"),
                          "usd_per_hour": p.price.usd_per_hour if p.price else None})
    if json_out:
        echo_json({"profiles": items})
        return
    from rich.table import Table

    t = Table(title=f"profiles in {shown(prof.profiles_dir())} (a bare name is the most real, completed by the others)")
    right = ("numbers", "memory", "bandwidth", "bf16 matmul", "$/GPU-h")
    for c in ("name", "kind", "device") + right:
        t.add_column(c, justify="right" if c in right else "left")
    for it in items:
        if "error" in it:
            t.add_row(shown(it["name"]), it["kind"], f"[red]invalid: {shown(it['error'])}[/]", "", "", "", "", "")
            continue
        t.add_row(shown(it["name"]), it["kind"], shown(it["device"]), str(it["numbers"]), si(it["memory_bytes"], "B"),
                  si(it["memory_bandwidth_Bps"], "B/s"), si(it["bfloat16_flops"], "FLOP/s"), usd(it["usd_per_hour"]))
    console().print(t)


def _citation(p, path: str, sibling: str | None = None) -> str:
    """The citation of the number at ``path`` as one short line: a published number's record, a spec number's
    source (its path, a section holding it, or the sibling ``<name>_source``); "" for a measured number."""
    from bench import profile as prof

    origin = p.provenance.get(path) or p.kind
    if origin == "measured":
        return ""
    parts = path.split(".")
    keys = [path] if origin == "published" else [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    found = next((prof.citation_text(p.sources[k]) for k in keys if p.sources.get(k)), sibling or "")
    return found if len(found) <= 90 else found[:87] + "..."


@profile_app.command("show")
def profile_show(
    ref: str = typer.Argument(..., metavar="NAME|PATH",
                              help="A profile: NAME (the most real the library has), spec:NAME, published:NAME, "
                                   "measured:NAME, or a path."),
    merged: bool = typer.Option(False, "--merged", help="A profile file completed by the library's less real "
                                "profiles of its card (a library name is already)."),
    json_out: bool = typer.Option(False, "--json", help="Print the profile as one JSON object."),
) -> None:
    """Show a profile: each number, where it came from (measured, published, spec) and its citation."""
    from bench import profile as prof

    p = _profile(ref)
    if merged:
        try:
            p, _ = prof.with_spec(p)
        except prof.ProfileError as e:
            raise CLIError(str(e)) from None
        if not p.provenance and p.kind != "spec":
            raise CLIError(f"{ref}: no spec or published profile found for device {p.device.name!r} "
                           "(--merged needs one)")
    if json_out:
        typer.echo(p.model_dump_json(exclude_none=True))
        return
    from rich.table import Table

    t = Table(title=f"{shown(p.name)} ({p.kind} profile; numbers from: {prof.source_kinds(p)})")
    for c in ("quantity", "value", "from", "source"):
        t.add_column(c, justify="right" if c == "value" else "left")
    d, pk = p.device, p.peaks
    rows: list[tuple[str, str, str, str | None]] = [
        ("memory", si(d.memory_bytes, "B"), "device.memory_bytes", None),
        ("L2 / last-level cache", si(d.cache_bytes, "B"), "device.cache_bytes", None),
        ("SMs / compute units", str(d.compute_units or "–"), "device.compute_units", None),
        ("boost clock", si(d.boost_clock_Hz, "Hz"), "device.boost_clock_Hz", None),
        ("power", si(d.power_W, "W"), "device.power_W", None),
        ("memory bandwidth (best read)", si(pk.memory_bandwidth_Bps, "B/s"), "peaks.memory_bandwidth_Bps", None),
        ("copy bandwidth", si(pk.copy_bandwidth_Bps, "B/s"), "peaks.copy_bandwidth_Bps", None)]
    rows += [(f"matmul {dt}", si(v, "FLOP/s"), f"peaks.matmul_flops.{dt}", None) for dt, v in pk.matmul_flops.items()]
    lk = p.interconnect
    if lk is not None:
        ar = lk.all_reduce
        rows += [("scale-up link (per GPU, one direction)", si(lk.scale_up_Bps, "B/s"), "interconnect.scale_up_Bps",
                  lk.scale_up_source),
                 ("scale-up domain", str(lk.scale_up_domain or "–"), "interconnect.scale_up_domain", None),
                 ("scale-out (per GPU, one direction)", si(lk.scale_out_Bps, "B/s"), "interconnect.scale_out_Bps",
                  lk.scale_out_source),
                 ("all-reduce bus bandwidth", si(ar.peak_busbw_Bps if ar else None, "B/s"),
                  "interconnect.all_reduce.peak_busbw_Bps", ar.peak_busbw_source if ar else None),
                 ("all-reduce, small message", f"{ar.latency_s * 1e6:.3g} us" if ar and ar.latency_s else "–",
                  "interconnect.all_reduce.latency_s", None)]
    o = p.overheads
    if o is not None:
        rows += [(f"{what} launch per kernel", f"{v * 1e6:.3g} us" if v else "–", f"overheads.{key}", None)
                 for what, key, v in (("eager", "launch_s", o.launch_s), ("CUDA-graph", "graph_launch_s",
                                                                            o.graph_launch_s))]
    h = p.host_link
    if h is not None:
        rows += [("host link (per direction)", (si(h.theoretical_Bps, "B/s") + f" {h.link or ''}").strip(),
                  "host_link.theoretical_Bps", h.theoretical_source),
                 ("host to device (pinned)", si(h.peak_h2d_Bps, "B/s"), "host_link.peak_h2d_Bps", None),
                 ("device to host (pinned)", si(h.peak_d2h_Bps, "B/s"), "host_link.peak_d2h_Bps", None)]
    if p.price:
        rows.append(("price per GPU-hour", f"${p.price.usd_per_hour:g} ({p.price.as_of})", "price.usd_per_hour", None))
    t.add_row("device", shown(d.name), "", "")
    t.add_row("card", shown(p.card or "–"), "", "")
    t.add_row("architecture", shown(d.architecture or "–"), "", "")
    for name, value, path, sibling in rows:
        if value.strip() not in ("–", ""):
            t.add_row(name, shown(value.strip()), p.provenance.get(path) or p.kind, shown(_citation(p, path, sibling)))
    c = p.curves
    if p.kind == "measured":
        t.add_row("curves", f"hbm {len(c.hbm)}, matmul {len(c.matmul)}, decode {len(c.decode)}, "
                            f"all-to-all {len(c.all_to_all)} points", "measured", "")
    con = console()
    con.print(t)
    for n in p.notes:
        con.print(f"- {shown(n, markup=False)}", markup=False)


@profile_app.command("validate")
def profile_validate(
    paths: list[str] = typer.Argument(..., metavar="PATH...", help="Profile JSON files (or library names)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check profiles against the schema and the library (a published profile's card, every number's citation):
    exit 0, or exit 2 with a one-line reason for the first that fails."""
    from bench import profile as prof

    done = []
    for path in paths:
        p = _profile(path)
        try:
            prof.with_spec(p)  # a published profile's card is a spec card, and it merges with that sheet
        except prof.ProfileError as e:
            raise CLIError(str(e)) from None
        done.append({"ok": True, "name": p.name, "kind": p.kind, "schema_version": p.schema_version,
                     "numbers": len(prof.number_paths(p))})
        if not json_out:
            n = done[-1]["numbers"]
            typer.echo(f"ok: {shown(p.name, markup=False)} ({p.kind} profile, schema_version {p.schema_version}, "
                       f"{n} number{'' if n == 1 else 's'})")
    if json_out:
        echo_json(done[0] if len(done) == 1 else {"ok": True, "profiles": done})


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
    _check_range("--price", price, *prof.unit_limits("usd_per_hour") or (0.0, 0.0))
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
    try:
        kinds = prof.source_kinds(prof.with_spec(card)[0])
    except prof.ProfileError as e:
        raise CLIError(str(e)) from None
    _print_estimate(est, kinds)


_PEAKS = {"spec": "spec peaks", "published": "published peaks, spec where none", "measured": "measured curves"}


def _print_estimate(est, kinds: str = "") -> None:
    from rich.table import Table

    con = console()
    dep = est.deployment
    con.print(f"[bold]{shown(est.model)}[/] on [bold]{shown(est.gpu)}[/] ({est.gpu_kind}): {dep['gpus']} GPU(s), "
              f"tp {dep['tp']}, ep {dep['ep']}, weights {shown(dep['weight_dtype'] or 'as released')}, "
              f"KV {shown(dep['kv_dtype'])}, "
              f"context {est.context}" + (f"; numbers from: {kinds}" if kinds else ""))
    price = f"${est.price_usd_per_hour:g}/GPU-h" if est.price_usd_per_hour else "no price (--price USD)"
    max_batch = est.max_batch if est.max_batch is not None else "–"
    con.print(f"weights per GPU {si(est.weights_bytes_per_gpu, 'B')}, KV per token {si(est.kv_bytes_per_token, 'B')}, "
              f"max batch {max_batch}, optimal batch {est.optimal_batch:.0f}, "
              f"latency floor {_ms(est.latency_floor_s)} ms, HBM read once {_ms(est.hbm_read_time_s)} ms; {price}")
    if est.prefill:
        pf = est.prefill
        con.print(f"prefill of {pf['prompt_tokens']} tokens: {_ms(pf['time_s'])} ms ({pf['bound']} bound)")
    for e in [est] + ([est.spec] if est.spec is not None else []):
        t = Table(title=f"decode on {shown(e.gpu)} ({_PEAKS.get(e.gpu_kind, e.gpu_kind)})")
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
    cards: list[str] = typer.Argument(..., metavar="A B ...", help="Cards by name (each card's most real profile: "
                                      "measured, published, spec), or profile paths."),
    model: str = typer.Option(..., "--model", metavar="NAME|PATH", help=MODEL_HELP),
    context: int = typer.Option(8192, "--context", help="Cached tokens per sequence."),
    target: float | None = typer.Option(None, "--target-tokens-per-user",
                                           help="Per-user speed (tokens/s) each card must give; "
                                                "best throughput under it."),
    tp: int | None = typer.Option(None, "--tp", help="Fix tensor parallelism (default: fewest GPUs that fit)."),
    ep: int | None = typer.Option(None, "--ep", help="Fix expert parallelism (default: fewest GPUs that fit)."),
    weight_dtype: str | None = typer.Option(None, "--weight-dtype", help="bf16, fp8, nvfp4, ... (default: as "
                                               "released); a card without tensor cores for it is refused."),
    kv_dtype: str = typer.Option("bf16", "--kv-dtype", help="KV-cache dtype (fp8 where the card has FP8)."),
    price: list[str] | None = typer.Option(None, "--price", help="CARD=USD per GPU-hour (repeatable)."),
    plot: str | None = typer.Option(None, "--plot", metavar="FILE.png",
                                       help="Also draw tokens/s per GPU vs per user and $/Mtok for each card."),
    html: str | None = typer.Option(None, "--html", metavar="FILE.html",
                                       help="Also write the purchase page: one self-contained HTML file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Cards side by side for a model: throughput per GPU and $/Mtok at a per-user speed, the deployment, batch
    and bound, where each card's numbers come from, and the closest published serving result."""
    from bench import models as md
    from bench import profile as prof
    from bench import roofline, serving
    from bench.serving import buyer

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
    for opt, path in (("--html", html), ("--plot", plot)):
        if path is not None and not path.lower().endswith(".html" if opt == "--html" else ".png"):
            raise CLIError(f"{opt} wants a file name ending in {'.html' if opt == '--html' else '.png'}, not {path!r}")
    profs = [(c, _profile(c)) for c in cards]
    mdl = _model(model)
    try:
        formats = {"--weight-dtype": md.norm_dtype(weight_dtype) if weight_dtype else None,
                   "--kv-dtype": md.norm_dtype(kv_dtype)}
    except md.ModelError as e:
        raise CLIError(str(e)) from None
    lacking = buyer.lacking_formats(profs, formats)
    if lacking:
        raise CLIError("; ".join(lacking) + " (its profile lists no matmul rate for it): drop the card or the format")
    base = _deployment(1, 1, None, weight_dtype, kv_dtype)
    fixed = _deployment(tp or 1, ep or 1, None, weight_dtype, kv_dtype) if tp is not None or ep is not None else None
    try:
        rows = serving.load()
        purchase = buyer.compare_cards(profs, mdl, context=context, target=target, base=base, fixed=fixed,
                                       prices=prices, rows=rows, by_kind=html is not None)
    except (roofline.RooflineError, prof.ProfileError, serving.ServingError) as e:
        raise CLIError(str(e)) from None
    if plot is not None:  # the throughput–interactivity plot (bench.report.build.compare_plot)
        from bench.report import build as report_build

        try:
            report_build.compare_plot(profs, mdl, plot, context=context, prices=prices, deployment=fixed, base=base)
        except (report_build.ReportError, OSError) as e:
            raise CLIError(f"--plot: {e}") from None
    if html is not None:
        from bench.report import purchase as page

        try:
            page.write(html, purchase, profs, mdl, prices=prices, base=base, fixed=fixed)
        except OSError as e:
            raise CLIError(f"--html: cannot write {html}: {e.strerror or e}") from None
    if json_out:
        doc = purchase.as_dict()
        if html is not None:
            doc["html"] = html
        echo_json(doc)
        return
    _print_purchase(purchase, html)


def _count(v: float | None) -> str:
    """A rate for a table: whole numbers from 1000 up (no exponent), 4 significant digits below."""
    return "–" if v is None else f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _print_purchase(purchase, html: str | None) -> None:
    from rich.table import Table

    target = purchase.target
    t = Table(title=f"{shown(purchase.model)}, context {purchase.context}, "
                    f"weights {purchase.weight_dtype or 'as released'}, KV {purchase.kv_dtype}"
                    + (f", at >= {target:g} tokens/s per user" if target else ", best throughput"))
    for c in ("card", "from", "GPUs (tp/ep)", "max batch", "batch", "tok/s/GPU", "tok/s/user", "$/GPU-h", "$/Mtok",
              "bound", "public result"):
        t.add_column(c, justify="left" if c in ("card", "from", "bound", "public result") else "right")
    for c in purchase.cards:
        r, pub = c.result, c.public
        public = "–" if pub is None else (f"{_count(pub.row.rate)} {pub.row.unit}"
                                          + (f" = {pub.fraction:.0%}" if pub.fraction is not None else ""))
        t.add_row(shown(r.gpu), c.source, f"{r.gpus} ({r.tp}/{r.ep})", "–" if r.max_batch is None else str(r.max_batch),
                  "–" if r.batch is None else str(r.batch),
                  _count(r.tokens_per_s_per_gpu), _count(r.tokens_per_s_per_user), usd(r.price_usd_per_hour),
                  usd(r.usd_per_mtok), shown((r.bound or "–") + (f" ({r.note})" if r.note else "")), shown(public))
    con = console()
    con.print(t)
    con.print("from: the kinds of profile each card's numbers come from (measured > published > spec); public "
              "result: the closest published serving result and the fraction of its roofline it reached",
              markup=False)
    for c in purchase.cards:
        if c.public is not None:
            con.print(shown(f"- {c.result.gpu}: {c.public.summary()}; source: {c.public.row.source}", markup=False),
                      markup=False)
        else:
            con.print(shown(f"- {c.result.gpu}: {c.public_note}", markup=False), markup=False)
    if html is not None:
        con.print(shown(f"wrote {html}", markup=False), markup=False)


def _prices(items: list[str] | None) -> dict[str, float]:
    """--price CARD=USD items, parsed by the one parser the report uses too."""
    from bench.report import build

    try:
        return build.parse_prices(items)
    except build.ReportError as e:
        raise CLIError(str(e)) from None
