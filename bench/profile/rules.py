"""What every number in a profile must be, whichever section holds it.

:class:`StrictModel` is the base of every section model: unknown fields are refused, and so are NaN and
infinities, JSON ``true`` or text where a number is expected (a number or text where a boolean is), and
magnitudes outside the physical bounds of the unit a field's name ends in (``UNIT_LIMITS``), so that a
profile that validates always evaluates. ``number_paths`` lists the numbers of a profile's spec sections and
``has_source`` says whether one is cited: a spec profile must cite every one, a published profile every one
with a citation record. The rules and the units are in docs/profile.md.
"""
from __future__ import annotations

import collections.abc
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

# Physical bounds of a number, by the unit its field's name ends in (or is): (unit, smallest, largest) for a
# value that is not 0. Far outside any device on both sides (1 kB/s to 1 PB/s; 1 kFLOP/s to 1 EFLOP/s; up to
# 1 EB, ~30 years, 1 THz, 1 MW), so only absurd or corrupted values are refused; and every rate the roofline
# model divides by is at least the smallest, so a profile that validates evaluates to finite numbers.
UNIT_LIMITS = (("_Bps", 1e3, 1e15), ("flops", 1e3, 1e18), ("bytes", 1.0, 1e18), ("_s", 0.0, 1e9),
               ("_Hz", 1e3, 1e12), ("_W", 1e-3, 1e6), ("usd_per_hour", 1e-6, 1e6))

# The sections a spec sheet or a published profile fills (and a merge combines); curves and run data are measured
# only. (Link rates between GPUs live in ``interconnect``: scale_up_Bps, scale_up_domain, scale_out_Bps.)
SPEC_SECTIONS = ("device", "peaks", "interconnect", "overheads", "price", "host_link")


_MODEL = object()  # stands for a nested model: it checks its own fields


def _scalars(annotation: Any) -> set[Any]:
    """The scalar types a field admits (for a list or a dict: its items'); Any admits everything."""
    if annotation is Any:
        return {Any}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _scalars(args[0])
    if origin is typing.Literal:
        return {type(a) for a in args}
    if origin in (dict, collections.abc.Mapping):
        return _scalars(args[1]) if len(args) == 2 else {Any}
    if origin is not None:  # list, tuple, a union
        return set().union(*(_scalars(a) for a in args)) if args else {Any}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {_MODEL}
    return {annotation}


def _mistyped(v: Any, annotation: Any) -> str | None:
    """Why ``v`` (or an item of it) is the wrong kind of JSON value for the field, or None: JSON ``true`` is no
    number, ``"42e9"`` is no number and ``"yes"`` is no boolean, although pydantic's lax mode reads them so."""
    kinds = _scalars(annotation)
    if Any in kinds:
        return None
    items = list(v.values()) if isinstance(v, dict) else list(v) if isinstance(v, (list, tuple)) else [v]
    if _MODEL in kinds and isinstance(v, (dict, list, tuple)):
        return None
    for x in items:
        if isinstance(x, bool):
            if bool not in kinds:
                return "a boolean where a number or text is expected"
        elif isinstance(x, str):
            if str not in kinds:
                return "text where a number or a boolean is expected"
        elif isinstance(x, (int, float)) and kinds <= {bool, type(None)}:
            return "a number where a boolean is expected"
    return None


def unit_limits(name: str) -> tuple[float, float] | None:
    """(smallest, largest) magnitude of a non-zero value of the field ``name``, by its unit; None: no unit."""
    for unit, low, high in UNIT_LIMITS:
        if name == unit.lstrip("_") or name.endswith(unit if unit.startswith("_") else "_" + unit):
            return low, high
    return None


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_json_types(cls, v: Any, info: ValidationInfo) -> Any:
        """Numbers are JSON numbers and booleans JSON booleans: pydantic's lax mode would read `true` as 1,
        "42e9" as 4.2e10 and "yes" as True."""
        field = cls.model_fields.get(info.field_name or "")
        why = _mistyped(v, field.annotation) if field is not None else None
        if why:
            raise ValueError(why)
        return v

    @model_validator(mode="after")
    def _physical_magnitudes(self):
        for name in type(self).model_fields:
            bounds = unit_limits(name)
            if bounds is None:
                continue
            low, high = bounds
            v = getattr(self, name)
            if isinstance(v, BaseModel) and not any(unit_limits(f) for f in type(v).model_fields):
                v = v.model_dump()  # a unitless record of this field's quantity (min/median/max of a clock)
            for x in v.values() if isinstance(v, dict) else [v]:
                if isinstance(x, (int, float)) and x != 0 and not low <= abs(x) <= high:
                    raise ValueError(f"{name} = {x:g} is not a physical value (it must be within [{low:g}, {high:g}])")
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
