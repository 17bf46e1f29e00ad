"""What a card gives for a model: a batch sweep, and cards side by side.

``estimate`` runs the step model (bench/roofline/step.py) over a sweep of batches at one context and gathers
what is derived from it: tokens/s (per GPU, per user), $ per million tokens, the KV capacity (max batch), the
optimal batch, the latency floor and the prefill of a prompt; a measured profile is merged with its card's
spec first and the spec's own estimate is set beside it. ``compare`` puts cards side by side: for each, the
deployment (``candidate_deployments``) and the batch with the best throughput per GPU that still gives each
user a target speed. See docs/model.md.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..models import ModelSpec
from ..profile import Profile, with_spec
from .deployment import Deployment
from .hardware import SERVER_GPUS, Hardware, RooflineError
from .step import Roofline, StepEstimate

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
DEFAULT_CONTEXT = 8192


# ---------------------------------------------------------------------------------------------- batch sweep
@dataclass
class Estimate:
    gpu: str
    gpu_kind: str  # "spec" or "measured"
    model: str
    deployment: dict[str, Any]
    context: int
    price_usd_per_hour: float | None
    optimal_batch: float
    latency_floor_s: float
    hbm_read_time_s: float | None
    max_batch: int | None
    weights_bytes_per_gpu: float
    kv_bytes_per_token: float
    rows: list[StepEstimate]
    prefill: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    spec: Estimate | None = None  # the same on the card's spec sheet, beside a measured estimate

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("rows", "spec")}
        d["rows"] = [r.as_dict() for r in self.rows]
        if self.spec is not None:
            d["spec"] = self.spec.as_dict()
        return d


def estimate(profile: Profile, model: ModelSpec, deployment: Deployment | None = None, *,
             batches: Iterable[int] = DEFAULT_BATCHES, context: int = DEFAULT_CONTEXT,
             price_usd_per_hour: float | None = None, prompt_tokens: int | None = None,
             use_curves: bool | None = None, side_by_side: bool = True, label: str | None = None) -> Estimate:
    """The model on one profile. A measured GPU profile is merged with its card's spec (unmeasured numbers) and,
    with ``side_by_side``, the spec's own estimate is attached as ``spec``."""
    merged, spec = with_spec(profile)
    hw = Hardware(merged, use_curves=use_curves, label=label)
    rl = Roofline(hw, model, deployment, price_usd_per_hour)
    rows = [rl.step(int(b), int(context)) for b in batches]
    est = Estimate(
        gpu=hw.label, gpu_kind=profile.kind, model=model.name, deployment=asdict(rl.dep), context=int(context),
        price_usd_per_hour=rl.price, optimal_batch=rl.optimal_batch(), latency_floor_s=rl.latency_floor_s(),
        hbm_read_time_s=rl.hbm_read_time_s(), max_batch=rl.max_batch(int(context)),
        weights_bytes_per_gpu=rl.resident_bytes_per_gpu(), kv_bytes_per_token=model.kv_bytes_per_token(rl.dep.kv_dtype),
        rows=rows, prefill=rl.prefill(prompt_tokens) if prompt_tokens else None, notes=hw.notes)
    if spec is not None:
        est.notes.append(f"unmeasured numbers from the {spec.card} spec sheet (profile provenance)")
        if side_by_side:
            est.spec = estimate(spec, model, deployment, batches=batches, context=context,
                                price_usd_per_hour=price_usd_per_hour, prompt_tokens=prompt_tokens,
                                side_by_side=False, label=f"{spec.card} (spec)")
    return est


# ------------------------------------------------------------------------------------------------- compare
@dataclass
class CompareRow:
    gpu: str
    kind: str
    gpus: int
    tp: int
    ep: int
    max_batch: int | None
    batch: int | None  # the batch chosen: best throughput per GPU meeting the per-user target
    tokens_per_s_per_gpu: float | None
    tokens_per_s_per_user: float | None
    usd_per_mtok: float | None
    price_usd_per_hour: float | None
    bound: str | None
    step_time_s: float | None
    meets_target: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _deployment_for(model: ModelSpec, n: int, base: Deployment) -> Deployment:
    if model.is_moe:
        return replace(base, tp=1, ep=n, gpus=n)  # experts spread, attention data-parallel
    return replace(base, tp=n, ep=1, gpus=n)


def auto_deployment(model: ModelSpec, hw: Hardware, context: int, max_gpus: int = 64,
                    base: Deployment | None = None) -> Deployment:
    """The fewest GPUs (powers of two) that hold the weights and one sequence at ``context``: tensor parallel for
    a dense model, expert parallel (attention data-parallel) for a MoE model."""
    return candidate_deployments(model, hw, context, max_gpus, base)[0]


def candidate_deployments(model: ModelSpec, hw: Hardware, context: int, max_gpus: int = 64,
                          base: Deployment | None = None) -> list[Deployment]:
    """Powers of two from the fewest GPUs that fit (see auto_deployment) up to the scale-up domain (at least a
    server of SERVER_GPUS, at least that fewest): more GPUs per replica buy KV room and speed per user."""
    base = base or Deployment()
    limit = min(max_gpus, model.routed_experts or max_gpus) if model.is_moe else max_gpus
    n = 1
    while n <= limit:
        dep = _deployment_for(model, n, base)
        mb = Roofline(hw, model, dep).max_batch(context)
        if mb is None or mb >= 1:
            break
        n *= 2
    else:
        raise RooflineError(f"{model.name} at context {context} does not fit on {hw.label} with up to {limit} GPUs")
    links = hw.profile.interconnect
    top = min(limit, max(n, SERVER_GPUS, (links.scale_up_domain or 1) if links else 1))
    out = []
    while n <= top:
        out.append(_deployment_for(model, n, base))
        n *= 2
    return out


def batch_grid(max_batch: int, steps_per_octave: int = 4) -> list[int]:
    """1 … max_batch on a geometric grid (and max_batch itself)."""
    out, x = set(), 1.0
    while x <= max_batch:
        out.add(round(x))
        x *= 2 ** (1 / steps_per_octave)
    out.add(max_batch)
    return sorted(b for b in out if b >= 1)


def compare(profiles: list[tuple[str, Profile]], model: ModelSpec, *, context: int = DEFAULT_CONTEXT,
            target_tokens_per_user: float | None = None, deployment: Deployment | None = None,
            prices: dict[str, float] | None = None, max_batch_cap: int = 1 << 16,
            base: Deployment | None = None) -> list[CompareRow]:
    """Cards side by side for one model: at the best batch that still gives each user ``target_tokens_per_user``
    (none: the batch with the best throughput), tokens/s per GPU, $ per million tokens, max batch and the bound.
    ``deployment``: fixed tp/ep for every card; None tries each card from the fewest GPUs that fit up to its
    scale-up domain (``candidate_deployments``, each a copy of ``base``: its number formats) and keeps the best
    throughput per GPU."""
    rows = []
    for label, prof in profiles:
        merged, _ = with_spec(prof)
        hw = Hardware(merged, label=label)
        try:
            deps = [deployment] if deployment is not None else candidate_deployments(model, hw, context, base=base)
        except RooflineError as e:  # this card cannot run the model: say why in its row, keep the others
            rows.append(_no_row(label, prof.kind, (prices or {}).get(label) or hw.price_usd_per_hour, str(e)))
            continue
        found = []
        for dep in deps:
            try:
                found.append(_best_on(Roofline(hw, model, dep, (prices or {}).get(label)), label, prof.kind,
                                      context, target_tokens_per_user, max_batch_cap))
            except RooflineError as e:
                found.append(_no_row(label, prof.kind, (prices or {}).get(label) or hw.price_usd_per_hour, str(e),
                                     dep.resolved(model)))
        rows.append(max(found, key=lambda r: (r.batch is not None, r.meets_target, r.tokens_per_s_per_gpu or 0.0,
                                              r.tokens_per_s_per_user or 0.0)))
    return rows


def _no_row(label: str, kind: str, price: float | None, note: str, dep: Deployment | None = None) -> CompareRow:
    return CompareRow(gpu=label, kind=kind, gpus=dep.replica_gpus if dep else 0, tp=dep.tp if dep else 0,
                      ep=dep.ep if dep else 0, max_batch=None, batch=None, tokens_per_s_per_gpu=None,
                      tokens_per_s_per_user=None, usd_per_mtok=None, price_usd_per_hour=price, bound=None,
                      step_time_s=None, meets_target=False, note=note)


def _best_on(rl: Roofline, label: str, kind: str, context: int, target: float | None, cap_limit: int) -> CompareRow:
    """The batch with the best throughput per GPU among those giving each user at least ``target`` tokens/s."""
    mb = rl.max_batch(context)
    cap = min(mb if mb is not None else cap_limit, cap_limit)
    unfit = CompareRow(gpu=label, kind=kind, gpus=rl.gpus, tp=rl.dep.tp, ep=rl.dep.ep, max_batch=mb, batch=None,
                       tokens_per_s_per_gpu=None, tokens_per_s_per_user=None, usd_per_mtok=None,
                       price_usd_per_hour=rl.price, bound=None, step_time_s=None, meets_target=False,
                       note="does not fit")
    if cap < 1:
        return unfit
    steps = [rl.step(b, context) for b in batch_grid(cap)]
    ok = [s for s in steps if target is None or s.tokens_per_s_per_user >= target]
    best = max(ok or steps[:1], key=lambda s: s.tokens_per_s_per_gpu)
    return replace(unfit, batch=best.batch, tokens_per_s_per_gpu=best.tokens_per_s_per_gpu,
                   tokens_per_s_per_user=best.tokens_per_s_per_user, usd_per_mtok=best.usd_per_mtok,
                   bound=best.bound, step_time_s=best.step_time_s, meets_target=bool(ok),
                   note="" if ok else "below the target even at batch 1")
