"""Building a measured profile from a run's records alone.

``from_measurements`` asks every benchmark the run selected to summarise its own Measurement records (each
contributes its peaks and curves, see bench/registry.py), counts the points, adds the run's telemetry
summary and names the card's spec sheet when the library knows the GPU. A profile can therefore always be
rebuilt from ``measurements.jsonl``. ``device_info`` and ``software_info`` describe the machine it ran on.
"""
from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from .. import registry, telemetry
from ..measurement import Measurement, utc_now
from .catalog import card_for_device
from .schema import DeviceInfo, Profile, RunInfo, Software
from .telemetry import RunTelemetry

if TYPE_CHECKING:
    from ..target import Target


def software_info() -> Software:
    from .. import __version__

    def ver(mod: str) -> str | None:
        try:
            return __import__(mod).__version__
        except Exception:  # not installed (e.g. triton on macOS): recorded as absent
            return None

    return Software(python=platform.python_version(), torch=ver("torch"), triton=ver("triton"),
                    rooflab=__version__, platform=platform.platform())


def device_info(target: Target) -> DeviceInfo:
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
        card=_card_or_none(device),
        telemetry=_telemetry_summary(measurements, data.get("peaks")),
        **data,
    )


def _telemetry_summary(measurements: list[Measurement], peaks: dict | None) -> RunTelemetry | None:
    """The run's telemetry from its records; a record with odd telemetry never fails a profile."""
    try:
        return telemetry.run_summary(measurements, peaks)
    except Exception:
        return None


def _card_or_none(device: DeviceInfo) -> str | None:
    """The spec card of a measured GPU, recorded so the profile names its spec sheet; never fails a run."""
    if device.backend != "cuda":
        return None
    try:
        return card_for_device(device.name)
    except Exception:  # a broken spec library costs the link to the spec, not the run's profile
        return None
