"""Write a run's reports: report.md, report.html and plots/*.png, from measurements.jsonl + profile.json alone.

``write(out, profile, records)`` is what ``rooflab run`` calls at the end of a run and what ``rooflab report``
calls on a finished run directory, so both give the same files. Drawing a plot can fail (a broken font cache,
an odd value) without costing the run its report: the section then says why.
"""
from __future__ import annotations

import os
import types
from dataclasses import dataclass, field
from pathlib import Path

from .. import measurement as meas
from .. import profile as prof
from ..measurement import Measurement
from ..profile import Profile
from . import data as D

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOT_DIR = "plots"
MEASUREMENTS = "measurements.jsonl"
PROFILE = "profile.json"

# The decode model the report's throughput–interactivity plot uses unless told otherwise: a model every
# card in the spec library can hold on one GPU, at a context long enough for the KV cache to matter.
DEFAULT_MODEL = "llama-3.1-8b"
DEFAULT_CONTEXT = 8192
PARETO_MAX_BATCH = 4096  # the largest batch drawn when the memory does not limit it sooner


class ReportError(ValueError):
    """A report that cannot be made (no profile there, bad price ...); one line, fit for the CLI."""


@dataclass
class Written:
    files: list[Path] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)  # name -> "ok" | "not measured" | error text


def load_run(path: str | Path) -> tuple[Profile, list[Measurement], Path]:
    """(profile, records, run directory) from a run directory, its profile.json or its measurements.jsonl.
    The measurements are optional (a profile alone still makes a report, without per-record details). Both
    files are read through bench/jsonio.py: regular files only, bounded."""
    path = Path(path)
    if not os.path.lexists(path):
        raise ReportError(f"{path} does not exist: give a run directory made by rooflab run, or its profile.json")
    if path.is_dir():
        run_dir, prof_path = path, path / PROFILE
    elif path.name.endswith(".jsonl"):
        run_dir, prof_path = path.parent, path.parent / PROFILE
    else:
        run_dir, prof_path = path.parent, path
    if not os.path.lexists(prof_path):
        raise ReportError(f"no {PROFILE} in {run_dir}: give a run directory made by rooflab run, or its profile.json")
    try:
        p = prof.load(prof_path)
    except prof.ProfileError as e:
        raise ReportError(str(e)) from None
    mpath = path if path.name.endswith(".jsonl") else run_dir / MEASUREMENTS
    try:
        return p, meas.read(mpath), run_dir
    except meas.LogError as e:
        raise ReportError(str(e)) from None


def parse_prices(items: list[str] | None) -> dict[str, float]:
    """``["h100-sxm=2.5", ...]`` -> {card: USD per GPU-hour}; a malformed item raises ReportError."""
    out: dict[str, float] = {}
    for item in items or []:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            card, sep, usd = part.partition("=")
            try:
                v = float(usd)
            except ValueError:
                v = float("nan")
            low, high = prof.unit_limits("usd_per_hour") or (0.0, 0.0)
            if not sep or not card.strip() or not (low <= v <= high):
                raise ReportError(f"--price wants CARD=USD_PER_GPU_HOUR with a number in [{low:g}, {high:g}], "
                                  f"got {part!r}")
            out[card.strip()] = v
    return out


# ------------------------------------------------------------------------------ spec profiles and the model


def resolve_spec(p: Profile) -> tuple[Profile | None, str | None, str]:
    """The spec profile of the measured card: (profile, name, note). None with the reason when unknown."""
    if p.kind == "spec":
        return None, None, "this is a spec profile"
    if p.device.backend != "cuda":
        return None, None, "CPU mode: there is no spec sheet for a CPU"
    spec_for = getattr(prof, "spec_for", None)
    if spec_for is None:
        return None, None, "spec profiles are not available in this rooflab"
    spec = spec_for(p)
    if spec is None:
        return None, None, (f"no spec profile in profiles/specs lists the device name {p.device.name!r} "
                            "(its device_names)")
    return spec, spec.card or spec.name, ""


def pareto_curves(entries: list[tuple[str, str, Profile]], model, context: int, *,
                  prices: dict[str, float] | None = None, deployment=None, base=None,
                  max_points_batch: int = PARETO_MAX_BATCH) -> tuple[list[D.ParetoCurve], dict[str, float], list[str]]:
    """Each card's throughput–interactivity frontier for ``model`` at ``context``, from the same building blocks as
    ``bench.roofline.compare``: the profile merged with its spec; every deployment ``compare`` would try (from the
    fewest GPUs that hold the model up to the scale-up domain) unless ``deployment`` fixes one; every batch up to
    the most that fit. Of all those decode steps a card's curve keeps the ones no other step of that card beats on
    both tokens/s per user and tokens/s per GPU (``base``: the deployment's number formats). ``prices`` are keyed
    by card or label.
    Returns (curves, price per card used, notes)."""
    from .. import roofline as R
    from .plots import pareto_frontier

    prices = prices or {}
    candidates = getattr(R, "candidate_deployments", None)
    curves, used, notes = [], {}, []
    for card, label, profile in entries:
        curve = D.ParetoCurve(card, label, profile.kind == "measured")
        curves.append(curve)
        steps = []
        try:
            merged, _spec = prof.with_spec(profile)
            hw = R.Hardware(merged, label=label)
            if deployment is not None:
                deps = [deployment]
            elif candidates is not None:
                deps = candidates(model, hw, context, base=base)
            else:
                deps = [R.auto_deployment(model, hw, context, base=base)]
            for dep in deps:
                rl = R.Roofline(hw, model, dep, prices.get(label, prices.get(card)))
                mb = rl.max_batch(context)
                cap = min(mb if mb is not None else max_points_batch, max_points_batch)
                steps += [(rl.step(b, context), rl.dep)
                          for b in (R.batch_grid(cap, steps_per_octave=2) if cap >= 1 else [])]
                if rl.price:
                    used[card] = rl.price
        except (R.RooflineError, prof.ProfileError) as e:
            notes.append(f"{label}: {e}")
            continue
        if not steps:
            notes.append(f"{label}: {model.name} at context {context} does not fit")
            continue
        keep = set(pareto_frontier([(st.tokens_per_s_per_user, st.tokens_per_s_per_gpu) for st, _d in steps]))
        for st, dep in sorted(steps, key=lambda sd: -sd[0].tokens_per_s_per_user):
            xy = (st.tokens_per_s_per_user, st.tokens_per_s_per_gpu)
            if xy in keep:
                keep.discard(xy)
                curve.points.append({"batch": st.batch, "gpus": st.gpus, "tp": dep.tp, "ep": dep.ep,
                                     "tokens_per_s_per_user": st.tokens_per_s_per_user,
                                     "tokens_per_s_per_gpu": st.tokens_per_s_per_gpu,
                                     "usd_per_mtok": st.usd_per_mtok, "bound": st.bound})
    return curves, used, notes


def resolve_model(name: str):
    from .. import models as MD

    try:
        return MD.resolve(name)
    except MD.ModelError as e:
        raise ReportError(str(e)) from None


def pareto(p: Profile, spec: Profile | None, spec_name: str | None, *, model: str = DEFAULT_MODEL,
           context: int = DEFAULT_CONTEXT, prices: dict[str, float] | None = None,
           cards: list[str] | None = None) -> tuple[D.Pareto | None, str]:
    """The throughput–interactivity curves of the measured card (and its spec, and ``cards``) for ``model``.
    A bad ``model`` or card raises ReportError; a card the model cannot run on gets a note instead of a curve."""
    try:
        from .. import roofline  # noqa: F401  (the model may be absent from an older checkout)
    except ImportError:
        return None, "the LLM-inference roofline model is not available in this rooflab"
    mdl = resolve_model(model)
    entries: list[tuple[str, str, Profile]] = []
    notes: list[str] = []
    if p.device.backend == "cuda" or p.kind == "spec":
        card = spec_name or p.card or p.device.name
        entries.append((card, f"{card} ({p.kind})", p))
        if spec is not None:
            entries.append((card, f"{card} (spec)", spec))
    else:
        notes.append("CPU mode: the inference model is for GPU profiles (add cards with --cards)")
    for ref in cards or []:
        try:
            other = prof.resolve(ref)
        except prof.ProfileError as e:
            raise ReportError(str(e)) from None
        entries.append((other.card or ref, f"{ref} ({other.kind})", other))
    if not entries:
        return None, "; ".join(notes)
    curves, used, more = pareto_curves(entries, mdl, context, prices=prices)
    notes += more
    if not any(c.points for c in curves):
        return None, "; ".join(notes) or "no card gave a decode step"
    return D.Pareto(mdl.name, context, curves, used, "; ".join(notes)), ""


def compare_plot(profiles: list[tuple[str, Profile]], model, path: str | Path, *, context: int = DEFAULT_CONTEXT,
                 prices: dict[str, float] | None = None, deployment=None, base=None) -> Path:
    """`rooflab compare --plot FILE`: the throughput–interactivity and $/Mtok plot of the cards compared."""
    from . import plots as PL

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ReportError(f"the plot is a PNG: give a file name ending in .png, not {path.name!r}")
    if path.is_dir():
        raise ReportError(f"{path} is a directory: give a file name ending in .png")
    if not path.parent.is_dir():
        raise ReportError(f"folder {path.parent} does not exist: the plot goes into an existing one")
    entries = [(pr.card or label, label, pr) for label, pr in profiles]
    curves, used, notes = pareto_curves(entries, model, context, prices=prices, deployment=deployment, base=base)
    fig = PL.pareto_figure(D.Pareto(model.name, context, curves, used, "; ".join(notes)))
    if fig is None:
        raise ReportError("nothing to plot: " + ("; ".join(notes) or "no card gave a decode step"))
    prof.atomic_write_bytes(path, PL.png(fig))
    return path


# ------------------------------------------------------------------------------------------------ writing


def report_data(p: Profile, records: list[Measurement], *, model: str = DEFAULT_MODEL,
                context: int = DEFAULT_CONTEXT, prices: dict[str, float] | None = None,
                cards: list[str] | None = None, strict: bool = False) -> D.ReportData:
    """The report's data. ``strict``: a bad ``model``/``cards``/``prices`` choice raises ReportError (the CLI);
    otherwise (the end of a run) any problem with the model costs only its section, with the reason shown."""
    try:
        spec, spec_name, note = resolve_spec(p)
    except Exception as e:  # a broken spec library must not cost the run its report
        spec, spec_name, note = None, None, f"the spec profile could not be read: {type(e).__name__}: {e}"
    rd = D.build(p, records, spec=spec, spec_name=spec_name, spec_note=note)
    try:
        rd.pareto, rd.pareto_note = pareto(p, spec, spec_name, model=model, context=context, prices=prices,
                                           cards=cards)
    except ReportError as e:
        if strict:
            raise
        rd.pareto, rd.pareto_note = None, str(e)
    except Exception as e:  # the model failing on this profile costs the section, not the report
        rd.pareto, rd.pareto_note = None, f"the roofline model failed on this profile: {type(e).__name__}: {e}"
    return rd


def write(out: str | Path, p: Profile, records: list[Measurement], *, html: bool = True, with_plots: bool = True,
          rd: D.ReportData | None = None, **model_kw) -> Written:
    """Write report.md (+ report.html) and plots/*.png into ``out``; returns what was written."""
    from ..runner.outcomes import RunError
    from ..runner.outdir import Outputs, check_out_dir
    from . import html as html_doc
    from . import markdown as markdown_doc

    out = Path(out)
    rd = rd or report_data(p, records, **model_kw)
    w = Written()
    try:
        check_out_dir(out)
        files = Outputs(out)  # only files rooflab wrote are replaced or deleted, never through a link
        md_path = files.run_file(REPORT_MD)
        html_path = files.run_file(REPORT_HTML) if html else None
    except RunError as e:
        raise ReportError(str(e)) from None
    plots: dict[str, bytes | str | None] | None = None
    if with_plots:
        plot_mod: types.ModuleType | None
        try:
            from . import plots as plot_mod
        except ImportError as e:  # matplotlib missing or broken: the text report still gets written
            plot_mod, plots = None, dict.fromkeys(("roofline",), f"plots need matplotlib: {e}")
        if plot_mod is not None:
            plots = plot_mod.render_all(rd)
        for name in (list(plot_mod.PLOTS) + ["pareto"]) if plot_mod is not None else []:
            v = plots.get(name) if plots is not None else None
            rel = f"{PLOT_DIR}/{name}.png"
            try:
                if isinstance(v, bytes):
                    target = files.run_file(rel)
                    prof.atomic_write_bytes(target, v)
                    w.files.append(target)
                    w.plots[name] = "ok"
                else:
                    files.remove(rel)  # a plot of an earlier report of this directory is stale now
                    w.plots[name] = v or "not measured"
            except RunError as e:  # a file rooflab did not write is in the way: this plot is not drawn
                if plots is not None:
                    plots[name] = str(e)
                w.plots[name] = str(e)
    prof.atomic_write_text(md_path, markdown_doc.render(p, records, plots=plots, rd=rd))
    w.files.append(md_path)
    if html_path is not None:
        prof.atomic_write_text(html_path, html_doc.render(p, records, plots=plots, rd=rd))
        w.files.append(html_path)
    return w
