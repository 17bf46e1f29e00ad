"""The comparison a buyer reads: `rooflab compare`'s cards with where each number came from and what was published.

``compare_cards`` runs ``bench.roofline.compare`` on each card's profile (the most real one the library has for
it) and adds, per card: the kinds of profile its numbers come from (``bench.profile.source_kinds``), the same
comparison from each kind of profile the library has for the card (spec, published, measured), and the closest
public serving result for the model in the same weight formats (bench/serving/rows.py) with the fraction of
this card's roofline prediction for that result's own deployment that it reached. ``lacking_formats`` names the
cards that lack a format asked for (no FP8 or FP4 tensor cores). See docs/serving.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .. import models
from .. import profile as prof
from ..roofline import CompareRow, Deployment, RooflineError, compare, native_support
from .predict import predict
from .published import library_profiles
from .rows import ServingRow


@dataclass
class PublicResult:
    row: ServingRow
    predicted: float | None  # the roofline's rate for the row's own deployment on this card's profile
    note: str = ""  # why there is no prediction

    @property
    def fraction(self) -> float | None:
        return self.row.rate / self.predicted if self.predicted else None

    def as_dict(self) -> dict[str, Any]:
        r = self.row
        return {"id": r.id, "engine": r.engine, "engine_version": r.engine_version, "model": r.model,
                "weight_dtype": r.weight_dtype, "expert_weight_dtype": r.expert_weight_dtype, "kv_dtype": r.kv_dtype,
                "gpus": r.gpus, "tp": r.tp, "ep": r.ep, "lengths": r.lengths, "scenario": r.scenario,
                "published": r.rate, "unit": r.unit, "predicted": self.predicted, "fraction": self.fraction,
                "source": r.source, "note": self.note}

    def summary(self, fraction: bool = True) -> str:
        r = self.row
        layout = f"{r.gpus} GPU" + ("s" if r.gpus > 1 else "") + (
            f", DP attention + EP{r.ep}" if r.attention_dp else f", tp {r.tp}" + (f"/ep {r.ep}" if r.ep > 1 else ""))
        head = (f"{r.engine} {r.engine_version or '(version not stated)'}, {r.model}, {layout}, "
                f"{r.lengths}, {r.scenario}: {r.rate:.4g} {r.unit}")
        if self.fraction is None:
            return f"{head} ({self.note})"
        return f"{head} = {self.fraction:.0%} of this card's roofline for that deployment" if fraction else head


@dataclass
class CardChoice:
    label: str  # as given
    card: str | None  # the card's spec name, when known
    source: str  # the kinds of profile its numbers come from, e.g. "measured+spec"
    result: CompareRow
    public: PublicResult | None = None
    public_note: str = ""
    by_kind: dict[str, CompareRow | str] = field(default_factory=dict)  # kind -> its comparison, or why none

    def as_dict(self) -> dict[str, Any]:
        d = self.result.as_dict()
        d.update(card=self.card, source=self.source, public=self.public.as_dict() if self.public else None,
                 public_note=self.public_note,
                 by_kind={k: (v.as_dict() if isinstance(v, CompareRow) else {"none": v}) for k, v in
                          self.by_kind.items()})
        return d


@dataclass
class Purchase:
    model: str
    context: int
    target: float | None
    weight_dtype: str | None  # None: as released
    kv_dtype: str
    cards: list[CardChoice]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "context": self.context, "target_tokens_per_user": self.target,
                "weight_dtype": self.weight_dtype, "kv_dtype": self.kv_dtype,
                "rows": [c.as_dict() for c in self.cards], "notes": self.notes}


def lacking_formats(entries: list[tuple[str, prof.Profile]], formats: dict[str, str | None]) -> list[str]:
    """"CARD has no FMT" for each card that lacks a format asked for (``formats``: option -> format or None)."""
    out = []
    for label, p in entries:
        merged, _ = prof.with_spec(p)
        for option, fmt in formats.items():
            if fmt is not None and not native_support(merged, fmt):
                out.append(f"{label} has no {fmt} ({option})")
    return out


def same_architecture(a: models.ModelSpec, b: models.ModelSpec) -> bool:
    """Two presets with the same shapes (a re-release under a new name: Llama 3.3 70B is Llama 3.1 70B's)."""
    skip = {"name", "source", "total_params", "active_params", "weight_dtype", "expert_weight_dtype"}
    return a.model_dump(exclude=skip) == b.model_dump(exclude=skip)


def closest_row(rows: list[ServingRow], card: str, model: models.ModelSpec, formats: tuple[str, str],
                context: int) -> ServingRow | None:
    """The public result closest to a comparison: the same card, the model (or one of the same architecture) in
    the same weight formats; a maximum-throughput row before a latency one, then the nearest decode context, then
    the fewest GPUs."""
    found = [r for r in rows if r.card == card and r.formats == formats
             and r.model in models.PRESETS and same_architecture(models.PRESETS[r.model], model)]
    if not found:
        return None
    return min(found, key=lambda r: (r.scenario != "throughput",
                                     abs(math.log(max(r.decode_context, 1) / max(context, 1))), r.gpus, r.id))


def compare_cards(entries: list[tuple[str, prof.Profile]], model: models.ModelSpec, *, context: int,
                  target: float | None, base: Deployment, fixed: Deployment | None = None,
                  prices: dict[str, float] | None = None, rows: list[ServingRow] | None = None,
                  by_kind: bool = True) -> Purchase:
    """Each card's comparison (``bench.roofline.compare``) with its sources and the closest public result;
    ``by_kind``: also the comparison from each kind of profile the library has for the card."""
    results = compare(entries, model, context=context, target_tokens_per_user=target, deployment=fixed,
                      prices=prices, base=base)
    dep = fixed if fixed is not None else base
    formats = model.weight_dtypes(models.norm_dtype(dep.weight_dtype) if dep.weight_dtype else None)
    choices, notes = [], []
    for (label, p), res in zip(entries, results):
        merged, _ = prof.with_spec(p)
        card = merged.card or p.card
        c = CardChoice(label, card, prof.source_kinds(merged), res)
        row = closest_row(rows or [], card, model, formats, context) if card else None
        if row is None:
            c.public_note = (f"no public result for {model.name} in {'/'.join(dict.fromkeys(formats))} on "
                             f"{card or label}")
            other = sorted({"/".join(dict.fromkeys(r.formats)) for r in rows or [] if r.card == card
                            and r.model in models.PRESETS and same_architecture(models.PRESETS[r.model], model)})
            if other:
                c.public_note += f" (published there in {', '.join(other)})"
        else:
            try:
                c.public = PublicResult(row, predict(row, p).rate)
            except (RooflineError, prof.ProfileError) as e:
                c.public = PublicResult(row, None, f"not predicted: {e}")
        if by_kind and card:
            for kind, kp in library_profiles(card).items():
                if isinstance(kp, str):
                    c.by_kind[kind] = kp
                    continue
                try:
                    c.by_kind[kind] = compare([(label, kp)], model, context=context, target_tokens_per_user=target,
                                              deployment=fixed, prices=prices, base=base)[0]
                except (RooflineError, prof.ProfileError) as e:
                    c.by_kind[kind] = str(e)
        choices.append(c)
    if any(c.public is not None for c in choices):
        notes.append("public result: the closest published serving result for this model and weight format on "
                     "the card (profiles/serving.json); its fraction is of the roofline prediction for its own "
                     "deployment, lengths and batch on this card's profile (rooflab validate --published)")
    return Purchase(model.name, context, target, dep.weight_dtype, dep.kv_dtype, choices, notes)
