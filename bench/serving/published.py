"""`rooflab validate --published`: every published serving result predicted by the roofline model, three ways.

Each row of the serving-results file is predicted (bench/serving/predict.py) from its card's spec profile, its
published profile (``published:CARD``) and a measured profile where the library has one, and set beside the
published number as ratio = published / predicted: the fraction of the roofline the engine reached. Then:

- the upper-bound check: a decode roofline that predicts less than a real, measured result is wrong (the
  result also pays for prefill and scheduling), so every row with ratio > 1 is flagged;
- the fraction of the roofline reached, median per engine and per (engine, card);
- ranking agreement: for every (model, study, scenario, lengths) measured on at least 3 cards, each card's best
  published result against its prediction: Kendall's tau of the two orders and the pairs the model gets wrong.

A row a profile cannot predict is skipped for that profile with the reason; the others go on.
"""
from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import profile as prof
from ..roofline import RooflineError
from .predict import Prediction, predict
from .rows import ServingError, ServingRow

KINDS = ("spec", "published", "measured")
MIN_CARDS = 3  # cards a ranking needs
NO_PUBLISHED = "no published profile"
NO_MEASURED = "no measured profile"


@dataclass
class RowResult:
    row: ServingRow
    predictions: dict[str, Prediction | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # kind -> why there is no prediction

    def ratio(self, kind: str) -> float | None:
        p = self.predictions.get(kind)
        return self.row.rate / p.rate if p is not None and p.rate > 0 else None

    def as_dict(self) -> dict[str, Any]:
        r = self.row
        d: dict[str, Any] = {"id": r.id, "card": r.card, "gpus": r.gpus, "tp": r.tp, "ep": r.ep,
                             "attention_dp": r.attention_dp, "engine": r.engine, "engine_version": r.engine_version,
                             "model": r.model, "weight_dtype": r.weight_dtype,
                             "expert_weight_dtype": r.expert_weight_dtype, "kv_dtype": r.kv_dtype,
                             "lengths": r.lengths, "context": r.decode_context, "scenario": r.scenario,
                             "study": r.study, "unit": r.unit, "published": r.rate, "source": r.source}
        for k in KINDS:
            p = self.predictions.get(k)
            d[k] = (None if p is None else
                    {"predicted": p.rate, "ratio": self.ratio(k), "batch": p.batch, "bound": p.bound,
                     "kv_dtype": p.kv_dtype, "assumed": p.assumed})
            if k in self.reasons:
                d[f"{k}_reason"] = self.reasons[k]
        return d


@dataclass
class Result:
    rows: list[RowResult]
    kinds: list[str]  # the profile kinds that predicted at least one row
    upper_bound: dict[str, list[dict[str, Any]]]
    fractions: list[dict[str, Any]]
    rankings: list[dict[str, Any]]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"rows": [r.as_dict() for r in self.rows], "kinds": self.kinds,
                "summary": {"upper_bound": self.upper_bound, "fractions": self.fractions,
                            "rankings": self.rankings, "ranking_totals": ranking_totals(self.rankings, self.kinds),
                            "median_ratio": {k: median_ratio(self.rows, k) for k in self.kinds}},
                "notes": self.notes}


# ------------------------------------------------------------------------------------------ the profiles
def measured_for(card: str) -> prof.Profile:
    """The newest committed measured profile of ``card`` (by name, else by its card or device name)."""
    try:
        return prof.resolve(f"measured:{card}")
    except prof.ProfileError:
        pass
    found = []
    for path in prof.library("measured").values():
        try:
            p = prof.load(path)
        except prof.ProfileError:
            continue
        if (p.card or prof.card_for_device(p.device.name)) == card:
            found.append(p)
    if not found:
        raise prof.ProfileError(NO_MEASURED)
    return max(found, key=lambda p: str(p.created))


def library_profiles(card: str) -> dict[str, prof.Profile | str]:
    """kind -> the card's profile of that kind, or why there is none."""
    out: dict[str, prof.Profile | str] = {}
    for kind, get in (("spec", lambda: prof.resolve(f"spec:{card}")),
                      ("published", lambda: prof.resolve(f"published:{card}")),
                      ("measured", lambda: measured_for(card))):
        try:
            out[kind] = get()
        except prof.ProfileError as e:
            out[kind] = {"spec": f"no spec profile: {e}", "published": NO_PUBLISHED,
                         "measured": NO_MEASURED}[kind]
    return out


# ------------------------------------------------------------------------------------------ the check
def run(rows: list[ServingRow], *, gpu: str | None = None,
        profiles_of: Callable[[str], dict[str, prof.Profile | str]] = library_profiles) -> Result:
    """Predict every row (of card ``gpu`` only, if given) from each kind of profile and summarise."""
    if gpu is not None:
        rows = [r for r in rows if r.card == gpu]
        if not rows:
            raise ServingError(f"no serving rows for card {gpu!r}")
    cache: dict[str, dict[str, prof.Profile | str]] = {}
    results = []
    for r in rows:
        if r.card not in cache:
            cache[r.card] = profiles_of(r.card)
        res = RowResult(r)
        for kind, p in cache[r.card].items():
            if isinstance(p, str):
                res.predictions[kind] = None
                res.reasons[kind] = p
                continue
            try:
                res.predictions[kind] = predict(r, p)
            except (RooflineError, prof.ProfileError, ServingError) as e:
                res.predictions[kind] = None
                res.reasons[kind] = f"skipped: {e}"
        results.append(res)
    kinds = [k for k in KINDS if any(x.predictions.get(k) is not None for x in results)]
    notes = []
    missing = sorted({x.row.card for x in results if x.predictions.get("published") is None})
    if missing:
        notes.append(f"{NO_PUBLISHED} for {', '.join(missing)}: their published-profile column is empty")
    assumed_kv = sum(1 for x in results if x.row.kv_dtype is None)
    if assumed_kv:
        notes.append(f"{assumed_kv} rows do not state the KV format: predicted with fp8 where the card has FP8 "
                     "(bf16 where not), so the prediction stays an upper bound")
    return Result(results, kinds, upper_bound(results, kinds), fractions(results, kinds), rankings(results, kinds),
                  notes)


def upper_bound(results: list[RowResult], kinds: list[str]) -> dict[str, list[dict[str, Any]]]:
    """kind -> the rows whose published result beats the roofline's prediction (model errors)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for k in kinds:
        out[k] = [{"id": x.row.id, "card": x.row.card, "engine": x.row.engine, "model": x.row.model,
                   "scenario": x.row.scenario, "published": x.row.rate,
                   "predicted": x.predictions[k].rate,  # type: ignore[union-attr]
                   "ratio": x.ratio(k), "bound": x.predictions[k].bound}  # type: ignore[union-attr]
                  for x in results if (x.ratio(k) or 0.0) > 1.0]
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def median_ratio(results: list[RowResult], kind: str) -> float | None:
    return _median([v for x in results if (v := x.ratio(kind)) is not None])


def fractions(results: list[RowResult], kinds: list[str]) -> list[dict[str, Any]]:
    """Median fraction of the roofline reached per (engine, scenario) and per (engine, card, scenario)."""
    groups: dict[tuple[str, str, str], list[RowResult]] = {}
    for x in results:
        groups.setdefault((x.row.engine, "all cards", x.row.scenario), []).append(x)
        groups.setdefault((x.row.engine, x.row.card, x.row.scenario), []).append(x)
    out = []
    for (engine, card, scenario), xs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2],
                                                                              kv[0][1] != "all cards", kv[0][1])):
        d: dict[str, Any] = {"engine": engine, "card": card, "scenario": scenario, "rows": len(xs)}
        for k in kinds:
            d[k] = _median([v for x in xs if (v := x.ratio(k)) is not None])
        out.append(d)
    return out


def kendall_tau(published: list[float], predicted: list[float]) -> float:
    """Kendall's tau-a of two orders of the same items: (concordant - discordant pairs) / all pairs."""
    n = len(published)
    pairs = n * (n - 1) // 2
    if pairs == 0:
        return math.nan
    s = 0
    for i, j in itertools.combinations(range(n), 2):
        agree = (published[i] - published[j]) * (predicted[i] - predicted[j])
        s += 1 if agree > 0 else -1 if agree < 0 else 0
    return s / pairs


def rankings(results: list[RowResult], kinds: list[str]) -> list[dict[str, Any]]:
    """For each (model, study, scenario, lengths) with rows on at least MIN_CARDS cards: does the predicted order of
    the cards (each card's best published row) match the published order? ``wrong_pairs``: "A > B" where A was
    published ahead of B and predicted behind it; ``tied_pairs``: predicted equal (tau counts them as 0)."""
    groups: dict[tuple[str, str, str, str], dict[str, RowResult]] = {}
    for x in results:
        key = (x.row.model, x.row.study, x.row.scenario, x.row.lengths)
        best = groups.setdefault(key, {})
        old = best.get(x.row.card)
        if old is None or x.row.rate > old.row.rate:
            best[x.row.card] = x
    out = []
    for (model, study, scenario, lengths), by_card in sorted(groups.items()):
        if len(by_card) < MIN_CARDS:
            continue
        cards = sorted(by_card, key=lambda c: -by_card[c].row.rate)
        d: dict[str, Any] = {"model": model, "study": study, "scenario": scenario, "lengths": lengths,
                             "published_order": cards, "ids": [by_card[c].row.id for c in cards]}
        for k in kinds:
            have = [c for c in cards if by_card[c].predictions.get(k) is not None]
            if len(have) < MIN_CARDS:
                d[k] = None
                continue
            pub = [by_card[c].row.rate for c in have]
            pred = [by_card[c].predictions[k].rate for c in have]  # type: ignore[union-attr]
            pairs = list(itertools.combinations(range(len(have)), 2))  # have[i] published ahead of have[j]
            wrong = [f"{have[i]} > {have[j]}" for i, j in pairs if (pub[i] - pub[j]) * (pred[i] - pred[j]) < 0]
            tied = [f"{have[i]} = {have[j]}" for i, j in pairs if pub[i] != pub[j] and pred[i] == pred[j]]
            d[k] = {"tau": kendall_tau(pub, pred), "order": sorted(have, key=lambda c: -pred[have.index(c)]),
                    "pairs": len(pairs), "wrong_pairs": wrong, "tied_pairs": tied}
        out.append(d)
    return out


def ranking_totals(ranks: list[dict[str, Any]], kinds: list[str]) -> dict[str, dict[str, Any]]:
    """kind -> groups ranked, pairs, pairs in the wrong order, mean tau."""
    out = {}
    for k in kinds:
        got = [g[k] for g in ranks if g.get(k)]
        out[k] = {"groups": len(got), "pairs": sum(g["pairs"] for g in got),
                  "wrong_pairs": sum(len(g["wrong_pairs"]) for g in got),
                  "tied_pairs": sum(len(g["tied_pairs"]) for g in got),
                  "mean_tau": statistics.fmean(g["tau"] for g in got) if got else None}
    return out
