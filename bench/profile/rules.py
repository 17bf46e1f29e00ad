"""What every number in a profile must be, whichever section holds it.

:class:`StrictModel` is the base of every section model: unknown fields are refused, and so are NaN and
infinities, JSON ``true`` where a number is expected, and magnitudes no device reaches for the unit a field's
name ends in (``UNIT_LIMITS``). ``number_paths`` lists the numbers of a profile's spec sections and
``has_source`` says whether one is cited: a spec profile must cite every one, a published profile every one
with a citation record. The rules and the units are in docs/profile.md.
"""
from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

# Largest magnitude a number with this unit suffix may have: far beyond any device (1 EB/s, 1e21 FLOP/s,
# 1 EB, ~30 years), so only absurd or corrupted values are refused.
UNIT_LIMITS = (("_Bps", 1e18), ("_flops", 1e21), ("_bytes", 1e18), ("_s", 1e9))

# The sections a spec sheet or a published profile fills (and a merge combines); curves and run data are measured
# only. (Link rates between GPUs live in ``interconnect``: scale_up_Bps, scale_up_domain, scale_out_Bps.)
SPEC_SECTIONS = ("device", "peaks", "interconnect", "overheads", "price", "host_link")


def _has_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    return any(_has_bool(a) for a in typing.get_args(annotation))


def _has_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_has_model(a) for a in typing.get_args(annotation))


def _contains_bool(v: Any, annotation: Any) -> bool:
    """A bool in the value itself, or among the items of a container of plain numbers/text (nested models
    check their own fields)."""
    if isinstance(v, bool):
        return True
    if _has_model(annotation):
        return False
    items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else ()
    return any(isinstance(x, bool) for x in items)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        """JSON `true` is not a number: pydantic's lax mode would read it as 1."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and not _has_bool(field.annotation) and _contains_bool(v, field.annotation):
            raise ValueError("a boolean where a number or text is expected")
        return v

    @model_validator(mode="after")
    def _plausible_magnitudes(self):
        for name in type(self).model_fields:
            v = getattr(self, name)
            for suffix, limit in UNIT_LIMITS:
                if not name.endswith(suffix):
                    continue
                vals = v.values() if isinstance(v, dict) else [v]
                for x in vals:
                    if isinstance(x, (int, float)) and abs(x) > limit:
                        raise ValueError(f"{name} = {x:g} is not a plausible value (limit {limit:g})")
        return self


def number_paths(p: BaseModel, sections: tuple[str, ...] = SPEC_SECTIONS) -> list[str]:
    """Dotted paths of every number set in ``sections`` (lists, e.g. measured curves, are not walked)."""
    out: list[str] = []

    def walk(v: Any, path: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(path)

    d = p.model_dump(exclude_none=True)
    for sect in sections:
        if d.get(sect) is not None:
            walk(d[sect], sect)
    return out


def has_source(sources: dict[str, Any], path: str, data: dict | None = None, *, record: bool = False) -> bool:
    """A citation in ``sources`` for the path itself or for a section containing it ("peaks.matmul_flops"), or
    (given the profile as ``data``) a sibling ``<name>_source`` field, e.g. interconnect.scale_up_source for
    interconnect.scale_up_Bps. ``record``: only a citation record (not a text) at the path itself counts, the
    rule for a published number."""
    if record:
        return isinstance(sources.get(path), BaseModel)
    parts = path.split(".")
    if any(str(sources.get(".".join(parts[:i]), "")).strip() for i in range(len(parts), 0, -1)):
        return True
    if data is None:
        return False
    sect: Any = data
    for k in parts[:-1]:
        sect = sect.get(k) if isinstance(sect, dict) else None
    stem = parts[-1].rsplit("_", 1)[0] if "_" in parts[-1] else parts[-1]
    return isinstance(sect, dict) and bool(str(sect.get(f"{stem}_source") or "").strip())
