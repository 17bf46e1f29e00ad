"""The catalog of profiles (the profile library): where profiles live and how a name finds one.

Profiles are referred to by name everywhere: the file stem of profiles/specs/<name>.json (spec sheets,
hand-written with a source for every number) or profiles/measured/<name>.json (reference runs, generated), or
by path. "spec:NAME" / "measured:NAME" pick one library when a name is in both (a plain name then means the
spec). ``card_for_device`` finds the spec card of the name torch reports for a GPU, ``spec_for`` the spec
profile of a measured one. profiles/schema.json, generated from the schema, lives here too.
"""
from __future__ import annotations

import os
from pathlib import Path

from .io import ProfileError, atomic_write_text, load
from .schema import Profile, schema_text

LIBRARIES = ("specs", "measured")


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
    """{name: path} of the committed profiles; ``kind`` "spec" or "measured" restricts to one library."""
    out: dict[str, Path] = {}
    for lib in LIBRARIES:
        if kind is not None and lib != ("specs" if kind == "spec" else "measured"):
            continue
        d = profiles_dir() / lib
        for f in sorted(d.glob("*.json")) if d.is_dir() else []:
            out.setdefault(f.stem, f)  # a spec wins a name clash (see above)
    return out


def resolve_path(ref: str | Path) -> Path:
    """The file a profile reference names: a path, NAME, spec:NAME or measured:NAME."""
    ref_s = str(ref).strip()
    kind, sep, rest = ref_s.partition(":")
    if sep and kind in ("spec", "measured") and rest:
        found = library(kind).get(rest)
        if found is None:
            raise ProfileError(f"no {kind} profile named {rest!r} (known: {', '.join(library(kind)) or 'none'})")
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
    """Load a profile by name (spec or committed measured) or by path; ProfileError with one line if not."""
    return load(resolve_path(ref))


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


def spec_for(p: Profile) -> Profile | None:
    """The spec profile of a measured profile's card (by ``card``, else by the device name), or None."""
    if p.kind == "spec" or p.device.backend != "cuda":
        return None
    card = p.card or card_for_device(p.device.name)
    if not card:
        return None
    path = library("spec").get(card)
    return load(path) if path is not None else None
