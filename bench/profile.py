"""The profile: one pydantic schema for measured (and, with the profiles issue, spec) hardware profiles.

Units are SI base units named in the field (``_Bps`` bytes/s, ``_flops`` FLOP/s, ``_s``, ``_bytes``).
``from_measurements`` builds a measured profile from Measurement records alone (each benchmark's
``summarize`` contributes its peaks and curves), so a profile can always be rebuilt from
``measurements.jsonl``.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .measurement import Measurement, utc_now

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DeviceInfo(_Model):
    name: str
    backend: Literal["cuda", "cpu"]
    memory_bytes: int | None = Field(default=None, ge=0)
    compute_units: int | None = Field(default=None, ge=0, description="SMs (GPU) or CPU threads")
    cache_bytes: int | None = Field(default=None, ge=0, description="L2 (GPU) or last-level cache (CPU)")
    capability: str | None = None
    driver: str | None = None
    cuda_version: str | None = None
    uuid: str | None = None


class Software(_Model):
    python: str
    torch: str | None = None
    triton: str | None = None
    rooflab: str
    platform: str | None = None


class Peaks(_Model):
    memory_bandwidth_Bps: float | None = Field(default=None, gt=0)
    memory_bandwidth_source: str | None = None
    copy_bandwidth_Bps: float | None = Field(default=None, gt=0)
    copy_bandwidth_source: str | None = None
    matmul_flops: dict[str, float] = Field(default_factory=dict, description="dense FLOP/s by dtype")


class HBMPoint(_Model):
    op: str
    impl: str
    dtype: str
    working_set_bytes: int = Field(ge=0)
    bandwidth_Bps: float = Field(gt=0)
    median_s: float = Field(gt=0)
    p10_s: float = Field(gt=0)
    p90_s: float = Field(gt=0)
    beyond_cache: bool


class Curves(_Model):
    hbm: list[HBMPoint] = Field(default_factory=list)
    # Each benchmark owns one list here; replace `list[dict]` by its own typed point model.
    matmul: list[dict[str, Any]] = Field(default_factory=list)  # gemm benchmark (issue 3)
    decode: list[dict[str, Any]] = Field(default_factory=list)  # decode attention benchmark (issue 4)
    all_to_all: list[dict[str, Any]] = Field(default_factory=list)  # MoE all-to-all benchmark (issue 5)


class RunInfo(_Model):
    mode: Literal["cuda", "cpu"]
    mode_reason: str
    benchmarks: list[str] = Field(default_factory=list)
    quick: bool = True
    points_ok: int = 0
    points_failed: int = 0
    points_skipped: int = 0
    failures: list[str] = Field(default_factory=list)
    wall_time_s: float | None = None


class Profile(_Model):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["measured", "spec"] = "measured"
    name: str
    created: str = Field(default_factory=utc_now)
    device: DeviceInfo
    software: Software | None = None
    run: RunInfo | None = None
    peaks: Peaks = Field(default_factory=Peaks)
    curves: Curves = Field(default_factory=Curves)
    # Sections owned by later benchmarks/features; each replaces its loose type with a typed model.
    interconnect: dict[str, Any] | None = None  # all-to-all / all-reduce (issues 5, 14)
    overheads: dict[str, Any] | None = None  # launch / graph / sync costs (issue 14)
    host_link: dict[str, Any] | None = None  # host<->device copies (issue 14)
    local: dict[str, Any] | None = None  # single-GPU MoE permute / grouped GEMM numbers (issue 5)
    telemetry: dict[str, Any] | None = None  # run-level NVML summary (issue 9)


class ProfileError(ValueError):
    """A profile that cannot be used; the message is one line, fit for the CLI."""


def software_info() -> Software:
    from . import __version__

    def ver(mod: str) -> str | None:
        try:
            return __import__(mod).__version__
        except Exception:  # not installed (e.g. triton on macOS): recorded as absent
            return None

    return Software(python=platform.python_version(), torch=ver("torch"), triton=ver("triton"),
                    rooflab=__version__, platform=platform.platform())


def device_info(target) -> DeviceInfo:
    return DeviceInfo(
        name=target.name,
        backend=target.backend,
        memory_bytes=target.memory_bytes or None,
        compute_units=target.compute_units,
        cache_bytes=target.cache_bytes,
        capability=f"{target.capability[0]}.{target.capability[1]}" if target.capability else None,
        driver=target.driver,
        cuda_version=target.cuda_version,
        uuid=target.uuid,
    )


def _deep_merge(into: dict, new: dict) -> dict:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        elif isinstance(v, list) and isinstance(into.get(k), list):
            into[k].extend(v)
        else:
            into[k] = v
    return into


def from_measurements(measurements: list[Measurement], device: DeviceInfo, run: RunInfo,
                      name: str | None = None, software: Software | None = None,
                      created: str | None = None) -> Profile:
    """Build the measured profile: every selected benchmark summarises its own records."""
    from . import registry

    data: dict[str, Any] = {}
    for bname in run.benchmarks:
        mine = [m for m in measurements if m.benchmark == bname]
        # `device` also carries the peaks summarised so far (benchmarks run in registry order, hbm first),
        # so e.g. decode attention can state its bandwidth as a fraction of the measured HBM peak.
        dev = {**device.model_dump(), "peaks": dict(data.get("peaks", {}))}
        _deep_merge(data, registry.get(bname).summarize(mine, dev))
    counts = {s: sum(1 for m in measurements if m.status == s) for s in ("ok", "failed", "skipped")}
    run = run.model_copy(update={
        "points_ok": counts["ok"], "points_failed": counts["failed"], "points_skipped": counts["skipped"],
        "failures": [f"{m.benchmark}/{m.impl} {m.kernel} {m.params}: {m.reason}"
                     for m in measurements if m.status == "failed"][:50],
    })
    return Profile(
        name=name or f"{device.name} (measured)",
        created=created or utc_now(),
        device=device,
        software=software or software_info(),
        run=run,
        **data,
    )


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save(profile: Profile, path: str | Path) -> None:
    atomic_write_text(path, profile.model_dump_json(indent=2, exclude_none=True) + "\n")


MAX_PROFILE_BYTES = 16 * 1024 * 1024


def load(path: str | Path) -> Profile:
    """Load and validate a profile JSON file; any problem raises ProfileError with a one-line reason."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ProfileError(f"cannot read profile {path}: {e.strerror or e}") from None
    if size > MAX_PROFILE_BYTES:
        raise ProfileError(f"profile {path} is {size} bytes, over the {MAX_PROFILE_BYTES}-byte limit")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProfileError(f"profile {path} is not valid JSON: {str(e).splitlines()[0]}") from None
    return validate(data, str(path))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def validate(data: Any, where: str = "profile") -> Profile:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile must be a JSON object")
    ver = data.get("schema_version")
    if ver != SCHEMA_VERSION:
        raise ProfileError(f"{where}: schema_version {ver!r} is not supported (this rooflab reads {SCHEMA_VERSION})")
    try:
        return Profile.model_validate(data)
    except ValueError as e:
        errs = getattr(e, "errors", lambda: [])()
        if errs:
            first = errs[0]
            loc = ".".join(str(x) for x in first.get("loc", ())) or "(root)"
            more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
            raise ProfileError(f"{where}: {loc}: {first.get('msg')}{more}") from None
        raise ProfileError(f"{where}: {str(e).splitlines()[0]}") from None
