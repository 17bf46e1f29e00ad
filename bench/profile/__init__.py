"""The hardware profile: what rooflab knows about a card, measured or from its spec sheet.

One pydantic schema serves both kinds of profile (``kind``: "measured" or "spec"). The package is split by job:

- ``schema``: the section models, ``Profile``, ``SCHEMA_VERSION`` and the JSON Schema they generate;
- ``rules``: what every number must be (a real number, a plausible magnitude, cited in a spec profile);
- ``io``: strict bounded reading, validation with one-line errors (``ProfileError``), atomic writes;
- ``build``: a measured profile from a run's Measurement records (``from_measurements``);
- ``catalog``: the library of profiles (profiles/specs, profiles/measured): a name or a path to a profile, the
  spec sheet of a measured card;
- ``provenance``: a measured profile merged with its spec, and where every number came from.

The names other modules use are re-exported here (``from bench import profile as prof; prof.resolve(...)``).
The format is described in docs/profile.md.
"""
from __future__ import annotations

from .build import device_info, from_measurements, software_info
from .catalog import (
    LIBRARIES,
    card_for_device,
    library,
    profiles_dir,
    resolve,
    resolve_path,
    schema_path,
    spec_for,
    write_schema,
)
from .io import (
    MAX_PROFILE_BYTES,
    ProfileError,
    atomic_write_bytes,
    atomic_write_text,
    load,
    save,
    validate,
)
from .provenance import merge, with_spec
from .rules import SPEC_SECTIONS, UNIT_LIMITS, StrictModel, has_source, number_paths
from .schema import (
    SCHEMA_VERSION,
    AllReduce,
    AllReduceFit,
    AllReducePoint,
    AllToAllPeak,
    AllToAllPoint,
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
    json_schema,
    schema_shape,
    schema_text,
)

__all__ = [
    "LIBRARIES", "MAX_PROFILE_BYTES", "SCHEMA_VERSION", "SPEC_SECTIONS", "UNIT_LIMITS",
    "AllReduce", "AllReduceFit", "AllReducePoint", "AllToAllPeak", "AllToAllPoint", "Curves", "DecodePoint",
    "DeviceInfo", "HBMPoint", "HostLink", "HostLinkFit", "Interconnect", "LinkFit", "LinkPoint", "LocalMoE",
    "LocalMoEPoint", "MatmulPoint", "MatmulShape", "MoEAllToAllPoint", "OverheadCost", "Overheads", "Peaks",
    "Price", "Profile", "ProfileError", "RunInfo", "Software", "StrictModel",
    "atomic_write_bytes", "atomic_write_text", "card_for_device", "device_info",
    "from_measurements", "has_source", "json_schema", "library", "load", "merge", "number_paths", "profiles_dir",
    "resolve", "resolve_path", "save", "schema_path", "schema_shape", "schema_text", "software_info", "spec_for",
    "validate", "with_spec", "write_schema",
]
