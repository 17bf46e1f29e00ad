"""Fixed costs for a card nobody measured: cited defaults per GPU architecture (profiles/defaults.json).

A decode step pays per-kernel launch costs and, with tensor parallelism, the latency of small all-reduces; a spec
sheet gives neither, and pricing them at zero makes small batches look faster than any real stack runs them.
Where a profile has no measured or published number for one of these costs, the roofline model
(bench/roofline/hardware.py) takes the default of the card's ``device.architecture`` and says so in its notes.
A default is a public measurement: a value with its :class:`~bench.profile.schema.Citation` in the table, or the
number of a published profile (cited there, one home per fact), or another architecture's default where nobody
measured this one, with a note saying why. The table is described in docs/profile.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..jsonio import read_json
from .catalog import library, profiles_dir
from .io import ProfileError, load, one_line
from .rules import StrictModel
from .schema import Architecture, Citation, citation_text

MAX_DEFAULTS_BYTES = 1024 * 1024

CostName = Literal["launch_s", "graph_launch_s", "all_reduce_latency_scale_up_s", "all_reduce_latency_pcie_s"]
# where a published profile keeps each cost
PUBLISHED_PATH: dict[str, str] = {
    "launch_s": "overheads.launch_s", "graph_launch_s": "overheads.graph_launch_s",
    "all_reduce_latency_scale_up_s": "interconnect.all_reduce.latency_s",
    "all_reduce_latency_pcie_s": "interconnect.all_reduce.latency_s",
}


class DefaultCost(StrictModel):
    """One default, in one of three forms: ``value_s`` with its ``citation``; ``published``, a card of
    profiles/published whose number it is; ``architecture``, whose default of the same cost stands in."""

    value_s: float | None = Field(default=None, gt=0)
    citation: Citation | None = None
    published: str | None = Field(default=None, description="a card of profiles/published")
    architecture: Architecture | None = Field(default=None, description="another architecture's default")
    note: str = Field(default="", description="why this measurement stands for the architecture")

    @model_validator(mode="after")
    def _one_form(self) -> DefaultCost:
        forms = [self.value_s is not None or self.citation is not None, self.published is not None,
                 self.architecture is not None]
        if sum(forms) != 1 or (forms[0] and (self.value_s is None or self.citation is None)):
            raise ValueError("a default is value_s with its citation, or published: CARD, or architecture: NAME")
        return self


class ArchitectureCosts(StrictModel):
    """The fixed costs of one architecture; a cost nobody has a public measurement for is left out."""

    launch_s: DefaultCost | None = Field(default=None, description="eager launch, per kernel")
    graph_launch_s: DefaultCost | None = Field(default=None, description="per kernel, replayed from a CUDA graph")
    all_reduce_latency_scale_up_s: DefaultCost | None = Field(
        default=None, description="small-message all-reduce over the scale-up link (NVLink, Infinity Fabric)")
    all_reduce_latency_pcie_s: DefaultCost | None = Field(
        default=None, description="small-message all-reduce between GPUs over PCIe")


class FixedCostDefaults(StrictModel):
    about: str
    architectures: dict[Architecture, ArchitectureCosts]


@dataclass(frozen=True)
class Default:
    """A default resolved to its number: ``value_s``, the ``source`` it comes from (one line) and ``note``."""

    architecture: str
    name: str
    value_s: float
    source: str
    note: str = ""


def defaults_path() -> Path:
    return profiles_dir() / "defaults.json"


@lru_cache(maxsize=4)
def fixed_cost_defaults(path: Path | None = None) -> FixedCostDefaults:
    """The defaults table (profiles/defaults.json unless ``path``); ProfileError with one line if unusable."""
    path = path or defaults_path()
    data = read_json(path, MAX_DEFAULTS_BYTES, "fixed-cost defaults", ProfileError)
    try:
        return FixedCostDefaults.model_validate(data)
    except ValueError as e:
        raise ProfileError(one_line(e, str(path))) from None


def _resolve(table: FixedCostDefaults, architecture: str, name: str, depth: int = 0) -> Default | None:
    costs = table.architectures.get(architecture)  # type: ignore[call-overload]
    entry: DefaultCost | None = getattr(costs, name) if costs is not None else None
    if entry is None:
        return None
    if entry.architecture is not None:
        other = _resolve(table, entry.architecture, name, depth + 1) if depth == 0 else None
        if other is None:
            raise ProfileError(f"fixed-cost defaults: {architecture}.{name} stands in with {entry.architecture}'s, "
                               "which has no value of its own")
        return Default(architecture, name, other.value_s, f"{entry.architecture}'s default: {other.source}",
                       entry.note)
    if entry.published is not None:
        path = library("published").get(entry.published)
        if path is None:
            raise ProfileError(f"fixed-cost defaults: {architecture}.{name} names published profile "
                               f"{entry.published!r}, which the library does not have")
        pub = load(path)
        where = PUBLISHED_PATH[name]
        value = _number_at(pub.model_dump(exclude_none=True), where)
        if value is None:
            raise ProfileError(f"fixed-cost defaults: {architecture}.{name}: published profile {entry.published!r} "
                               f"has no {where}")
        cite = pub.sources.get(where)
        src = f"published {entry.published} {where}" + (f" ({citation_text(cite)})" if cite is not None else "")
        return Default(architecture, name, value, src, entry.note)
    assert entry.value_s is not None and entry.citation is not None  # the model's one-form rule
    return Default(architecture, name, entry.value_s, entry.citation.short(), entry.note)


def _number_at(d: dict, path: str) -> float | None:
    x: object = d
    for k in path.split("."):
        x = x.get(k) if isinstance(x, dict) else None
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


@lru_cache(maxsize=64)
def default_cost(architecture: str | None, name: CostName) -> Default | None:
    """The default ``name`` of ``architecture`` resolved to its number, or None (no architecture, or no public
    measurement of that cost stands for it). ProfileError (one line) if the table is broken."""
    if architecture is None:
        return None
    return _resolve(fixed_cost_defaults(), architecture, name)
