"""Where every number of a profile comes from: a measured profile merged with its card's spec sheet.

``merge`` takes each spec section (bench/profile/rules.py: SPEC_SECTIONS) from the measured profile wherever
it says something and from the spec for the rest (link bandwidths, price, FLOP/s of dtypes not run, ...);
``provenance`` then names the origin of every number in those sections, and ``sources`` keeps the citations
of the numbers taken from the spec. ``with_spec`` is what the model and the reports call: a measured GPU
profile merged with its card's spec when the library has one. See docs/profile.md.
"""
from __future__ import annotations

from typing import Any

from .catalog import spec_for
from .io import ProfileError, validate
from .rules import SPEC_SECTIONS
from .schema import Profile


def _overlay(spec: Any, meas: Any, path: str, prov: dict[str, str]) -> Any:
    """Measured wins wherever it says something; the spec fills the rest. Numbers are marked in ``prov``."""
    if isinstance(spec, dict) and isinstance(meas, dict):
        out = {}
        for k in list(meas) + [k for k in spec if k not in meas]:
            v = _overlay(spec.get(k), meas.get(k), f"{path}.{k}", prov)
            if v is not None:
                out[k] = v
        return out
    empty = meas is None or (isinstance(meas, (dict, list)) and not meas)
    chosen, origin = (spec, "spec") if empty else (meas, "measured")
    _mark(chosen, path, origin, prov)
    return chosen


def _mark(v: Any, path: str, origin: str, prov: dict[str, str]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _mark(x, f"{path}.{k}", origin, prov)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        prov[path] = origin


def merge(measured: Profile, spec: Profile) -> Profile:
    """The measured profile completed by its card's spec: measured numbers override, the spec fills what was not
    measured (link bandwidths, price, FLOP/s of dtypes not run, ...). ``provenance`` marks every number of the
    spec sections "measured" or "spec"; ``sources`` keeps the citations of the numbers taken from the spec."""
    if measured.kind != "measured" or spec.kind != "spec":
        raise ProfileError(f"merge wants a measured and a spec profile, got {measured.kind} and {spec.kind}")
    m = measured.model_dump(mode="json", exclude_none=True)
    s = spec.model_dump(mode="json", exclude_none=True)
    prov: dict[str, str] = {}
    for sect in SPEC_SECTIONS:
        v = _overlay(s.get(sect), m.get(sect), sect, prov)
        if v is not None:
            m[sect] = v
    m["card"] = spec.card or measured.card
    m["provenance"] = dict(sorted(prov.items()))
    m["sources"] = {k: v for k, v in s.get("sources", {}).items()
                    if any(o == "spec" and (q == k or q.startswith(k + ".")) for q, o in prov.items())}
    return validate(m, f"{measured.name} merged with {spec.card or spec.name}")


def with_spec(p: Profile) -> tuple[Profile, Profile | None]:
    """(profile to model with, the spec used): a measured GPU profile merged with its card's spec when known."""
    if p.kind != "measured" or p.provenance:
        return p, None
    spec = spec_for(p)
    return (merge(p, spec), spec) if spec is not None else (p, None)


def source_kinds(p: Profile) -> str:
    """Where a profile's numbers come from, in short: its kind ("spec", "measured"), with "+spec" when a merge
    filled some of them from the card's spec sheet (``provenance``). A minimal reading of the provenance."""
    return p.kind + ("+spec" if p.kind != "spec" and "spec" in p.provenance.values() else "")
