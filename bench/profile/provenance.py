"""Where every number of a profile comes from: a profile merged with the less real profiles of its card.

``merge`` takes profiles of one card most real first (measured > published > spec) and builds each spec section
(bench/profile/rules.py: SPEC_SECTIONS) number by number: the most real profile that says something wins, the
others fill the rest. ``provenance`` names the kind every number came from, and ``sources`` keeps the citations
of the numbers taken from each profile (texts from a spec sheet, records from a published profile).
``with_spec`` is what the model and the reports call: a measured or published profile completed by the library's
profiles of its card; ``source_kinds`` labels a profile by the kinds its numbers came from ("published+spec").
See docs/profile.md.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from .catalog import check_card, published_for, spec_for
from .io import ProfileError, validate
from .rules import SPEC_SECTIONS, unit_limits
from .schema import KINDS, Profile

Origin = Callable[[str], str]  # dotted path -> the kind its number came from


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _replaced_citation(high: dict, low: dict, key: str) -> bool:
    """``key`` is a lower profile's ``<name>_source`` field whose numbers a more real one all replaced (e.g. the
    sheet's scale_up_source beside a published scale_up_Bps): kept, it would cite the wrong number."""
    if not key.endswith("_source") or key in high:
        return False
    stem = key[: -len("_source")]
    cited = [k for k in low if k.startswith(stem + "_") and unit_limits(k) and _is_number(low.get(k))]
    return bool(cited) and all(_is_number(high.get(k)) for k in cited)


def _overlay(low: Any, high: Any, path: str, prov: dict[str, str], came: dict[str, int], low_origin: Origin,
             low_index: int) -> Any:
    """``high`` (the more real profiles, merged so far) wins wherever it says something; ``low`` fills the rest,
    and the numbers it gives are marked in ``prov`` (their kind) and ``came`` (which profile)."""
    if isinstance(low, dict) and isinstance(high, dict):
        out = {}
        for k in list(high) + [k for k in low if k not in high]:
            if _replaced_citation(high, low, k):
                continue
            v = _overlay(low.get(k), high.get(k), f"{path}.{k}", prov, came, low_origin, low_index)
            if v is not None:
                out[k] = v
        return out
    if high is None or (isinstance(high, (dict, list)) and not high):
        _mark(low, path, low_origin, low_index, prov, came)
        return low
    return high


def _mark(v: Any, path: str, origin: Origin, index: int, prov: dict[str, str], came: dict[str, int]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _mark(x, f"{path}.{k}", origin, index, prov, came)
    elif _is_number(v):
        prov[path] = origin(path)
        came[path] = index


def _rank(p: Profile) -> int:
    """How real a profile is: its own kind's place (a merged profile is as real as its most real part)."""
    return KINDS.index(p.kind)


def merge(*profiles: Profile) -> Profile:
    """Profiles of one card, most real first (measured, published, spec; each may itself be merged), as one profile:
    in every spec section each number comes from the most real profile that gives it. The result is of the first
    profile's kind, with ``provenance`` ("measured", "published" or "spec" for every number of those sections),
    ``sources`` (the citations of the numbers each profile gave) and ``card`` (the spec's)."""
    ranks = [_rank(p) for p in profiles]
    if len(profiles) < 2 or any(a >= b for a, b in itertools.pairwise(ranks)):
        raise ProfileError("merge wants profiles of different kinds, most real first (measured, published, spec), "
                           f"got {' and '.join(p.kind for p in profiles) or 'none'}")
    dumps = [p.model_dump(mode="json", exclude_none=True) for p in profiles]
    top = dict(dumps[0])
    prov: dict[str, str] = {}
    came: dict[str, int] = {}

    def origin_of(p: Profile) -> Origin:
        return lambda path: p.provenance.get(path, p.kind)

    for sect in SPEC_SECTIONS:  # the first profile's numbers are its own
        if top.get(sect) is not None:
            _mark(top[sect], sect, origin_of(profiles[0]), 0, prov, came)
    for i, (p, d) in enumerate(zip(profiles[1:], dumps[1:]), start=1):
        for sect in SPEC_SECTIONS:
            v = _overlay(d.get(sect), top.get(sect), sect, prov, came, origin_of(p), i)
            if v is not None:
                top[sect] = v
    top["card"] = next((p.card for p in reversed(profiles) if p.card), None)
    top["provenance"] = dict(sorted(prov.items()))
    sources: dict[str, Any] = {}
    for i, d in enumerate(dumps):  # a profile's citations of the numbers it gave, none of those it lost
        for key, cite in d.get("sources", {}).items():
            if key not in sources and any(j == i and (q == key or q.startswith(key + ".")) for q, j in came.items()):
                sources[key] = cite
    top["sources"] = sources
    names = " + ".join(p.card or p.name for p in profiles[1:])
    return validate(top, f"{profiles[0].name} merged with {names}")


def with_spec(p: Profile) -> tuple[Profile, Profile | None]:
    """(profile to model with, the spec sheet used): a measured profile completed by its card's published profile
    and spec sheet, a published one by the spec sheet, whichever the library has. A spec profile, or one already
    merged, is returned as it is."""
    if p.kind == "spec" or p.provenance:
        return p, None
    check_card(p)
    lower = []
    if p.kind == "measured":
        pub = published_for(p)
        if pub is not None:
            lower.append(pub)
    spec = spec_for(p)
    if spec is not None:
        lower.append(spec)
    return (merge(p, *lower), spec) if lower else (p, None)


def source_kinds(p: Profile) -> str:
    """The kinds a profile's numbers came from, most real first: "measured", "published+spec",
    "measured+published+spec", "spec", ..."""
    have = set(p.provenance.values()) or {p.kind}
    return "+".join(k for k in KINDS if k in have)
