"""The hardware profile: what rooflab knows about a card, measured, published or from its spec sheet.

One pydantic schema serves the three kinds of profile (``kind``: "measured", "published" or "spec"). The package
is split by job:

- ``schema``: the section models, ``Profile``, ``Citation``, ``SCHEMA_VERSION`` and the JSON Schema they generate;
- ``rules``: what every number must be (a real number, a plausible magnitude, cited unless measured);
- ``io``: strict bounded reading, validation with one-line errors (``ProfileError``), atomic writes;
- ``build``: a measured profile from a run's Measurement records (``from_measurements``); not re-exported here,
  so that reading a profile loads no measuring code (``from bench.profile.build import from_measurements``);
- ``catalog``: the library of profiles (profiles/specs, profiles/published, profiles/measured): a name or a path
  to a profile, the spec sheet and published profile of a card;
- ``provenance``: profiles merged number by number (measured > published > spec), where every number came from;
- ``defaults``: cited fixed costs per GPU architecture (profiles/defaults.json) for cards nobody measured.

The names other modules use are re-exported here (``from bench import profile as prof; prof.resolve(...)``).
The format is described in docs/profile.md.
"""
from __future__ import annotations

from .catalog import (
    LIBRARIES,
    card_for_device,
    check_card,
    library,
    profiles_dir,
    published_for,
    resolve,
    resolve_path,
    schema_path,
    spec_for,
    write_schema,
)
from .defaults import Default, default_cost, defaults_path, fixed_cost_defaults
from .io import (
    MAX_PROFILE_BYTES,
    ProfileError,
    atomic_write_bytes,
    atomic_write_text,
    load,
    save,
    validate,
)
from .provenance import merge, source_kinds, with_spec
from .rules import SPEC_SECTIONS, UNIT_LIMITS, StrictModel, has_source, number_paths, unit_limits
from .schema import (
    ARCHITECTURES,
    KINDS,
    SCHEMA_VERSION,
    AllReduce,
    AllReduceFit,
    AllReducePoint,
    AllToAllPeak,
    AllToAllPoint,
    Citation,
    Curves,
    DecodePoint,
    DeviceInfo,
    HBMPoint,
    HostLink,
    HostLinkFit,
    Interconnect,
    LinkFit,
    LinkPoint,
    LocalMoE,
    LocalMoEPoint,
    MatmulPoint,
    MatmulShape,
    MoEAllToAllPoint,
    OverheadCost,
    Overheads,
    Peaks,
    Price,
    Profile,
    RunInfo,
    Software,
    citation_text,
    json_schema,
    schema_shape,
    schema_text,
)

__all__ = [
    "ARCHITECTURES", "KINDS", "LIBRARIES", "MAX_PROFILE_BYTES", "SCHEMA_VERSION", "SPEC_SECTIONS", "UNIT_LIMITS",
    "AllReduce", "AllReduceFit", "AllReducePoint", "AllToAllPeak", "AllToAllPoint", "Citation", "Curves",
    "DecodePoint", "Default", "DeviceInfo", "HBMPoint", "HostLink", "HostLinkFit", "Interconnect", "LinkFit",
    "LinkPoint", "LocalMoE", "LocalMoEPoint", "MatmulPoint", "MatmulShape", "MoEAllToAllPoint", "OverheadCost",
    "Overheads",
    "Peaks", "Price", "Profile", "ProfileError", "RunInfo", "Software", "StrictModel",
    "atomic_write_bytes", "atomic_write_text", "card_for_device", "check_card", "citation_text", "default_cost",
    "defaults_path", "fixed_cost_defaults", "has_source", "json_schema",
    "library", "load", "merge", "number_paths", "profiles_dir", "published_for", "resolve", "resolve_path", "save",
    "schema_path", "schema_shape", "schema_text", "source_kinds", "spec_for", "unit_limits", "validate",
    "with_spec", "write_schema",
]
