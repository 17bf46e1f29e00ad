"""The catalog of profiles (the profile library): where profiles live and how a name finds one.

Three libraries, one per kind: profiles/specs/<card>.json (spec sheets, a source for every number),
profiles/published/<card>.json (other people's public measurements, a citation record for every number) and
profiles/measured/<name>.json (reference runs, generated). A bare name resolves to the most real profile the
library has for it (measured over published over spec), completed number by number by the less real ones;
"spec:NAME", "published:NAME" and "measured:NAME" choose one (the last two still completed by the kinds below
them); a path is read as it is. ``card_for_device`` finds the spec card of the name torch reports for a GPU,
``spec_for`` / ``published_for`` the library's profiles of a card. profiles/schema.json lives here too.
"""
from __future__ import annotations

import os
from pathlib import Path

from .io import ProfileError, atomic_write_text, load
from .schema import KINDS, Profile, schema_text

LIBRARIES = ("specs", "published", "measured")
_DIRS = {"spec": "specs", "published": "published", "measured": "measured"}


def profiles_dir() -> Path:
    """The repository's profiles/ (next to the package in an editable install or a checkout)."""
    return Path(__file__).resolve().parents[2] / "profiles"


def schema_path() -> Path:
    return profiles_dir() / "schema.json"


def write_schema(path: str | Path | None = None) -> Path:
    """Regenerate profiles/schema.json from the pydantic model (a test keeps the committed file in sync)."""
    path = Path(path) if path is not None else schema_path()
    atomic_write_text(path, schema_text())
    return path


def library(kind: str | None = None) -> dict[str, Path]:
    """{name: path} of the committed profiles; ``kind`` "spec", "published" or "measured" restricts to one
    library. Without it a name in several libraries maps to its most real file."""
    out: dict[str, Path] = {}
    for k in KINDS:
        if kind is not None and k != kind:
            continue
        d = profiles_dir() / _DIRS[k]
        for f in sorted(d.glob("*.json")) if d.is_dir() else []:
            out.setdefault(f.stem, f)
    return out


def _split(ref: str) -> tuple[str | None, str]:
    kind, sep, rest = ref.partition(":")
    return (kind, rest) if sep and kind in _DIRS and rest else (None, ref)


def resolve_path(ref: str | Path) -> Path:
    """The file a profile reference names: a path, NAME (its most real file), spec:NAME, published:NAME or
    measured:NAME."""
    ref_s = str(ref).strip()
    kind, name = _split(ref_s)
    if kind is not None:
        found = library(kind).get(name)
        if found is None:
            raise ProfileError(f"no {kind} profile named {name!r} (known: {', '.join(library(kind)) or 'none'})")
        return found
    path = Path(ref_s)
    if path.exists() or path.suffix == ".json" or "/" in ref_s or os.sep in ref_s:
        return path
    found = library().get(ref_s)
    if found is None:
        raise ProfileError(f"unknown profile {ref_s!r}: give a path to a profile JSON or one of: "
                           f"{', '.join(library()) or '(the library is empty)'}")
    return found


def resolve(ref: str | Path) -> Profile:
    """A profile by reference, ProfileError with one line if there is none. A path is loaded as it is; a library
    name (bare, published: or measured:) is completed by the less real profiles of its card; spec:NAME is the
    sheet alone."""
    from .provenance import with_spec

    ref_s = str(ref).strip()
    kind, _ = _split(ref_s)
    path = resolve_path(ref_s)
    p = load(path)
    by_name = kind is not None or library().get(ref_s) == path
    return with_spec(p)[0] if by_name and kind != "spec" else p


def check_card(p: Profile) -> None:
    """A published profile completes a card of the spec library: ProfileError (one line) when its card is not
    one."""
    if p.kind == "published" and p.card not in library("spec"):
        raise ProfileError(f"{p.name}: published profile of an unknown card {p.card!r} (spec cards: "
                           f"{', '.join(library('spec')) or 'none'})")


def _norm_name(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").split())


def card_for_device(name: str) -> str | None:
    """The spec card whose ``device_names`` list the name torch reports (exact, case- and space-insensitive).
    No guessing from substrings: an "H100 NVL" must never borrow the "H100 SXM" sheet."""
    want = _norm_name(name)
    for card, path in library("spec").items():
        try:
            spec = load(path)
        except ProfileError:
            continue
        if want in {_norm_name(n) for n in spec.device_names} or want == _norm_name(spec.device.name):
            return card
    return None


def _card_of(p: Profile) -> str | None:
    if p.kind == "published":
        return p.card
    if p.kind != "measured" or p.device.backend != "cuda":
        return None
    return p.card or card_for_device(p.device.name)


def spec_for(p: Profile) -> Profile | None:
    """The spec profile of a measured or published profile's card (by ``card``, else by the device name), or
    None."""
    card = _card_of(p)
    path = library("spec").get(card) if card else None
    return load(path) if path is not None else None


def published_for(p: Profile) -> Profile | None:
    """The published profile of a measured profile's card, or None."""
    card = _card_of(p) if p.kind == "measured" else None
    path = library("published").get(card) if card else None
    return load(path) if path is not None else None
