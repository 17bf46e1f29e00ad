"""The telemetry sections of records and profiles: statistics of one window's samples, memory health, and the
run-level summary. Data only: bench.telemetry fills them from NVML. The same number rules as every other
section (StrictModel: finite, strictly typed, within the bounds of the field's unit; a Stat is held to the unit
of the field that holds it, so sm_clock_Hz's min/median/max are clocks)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .rules import StrictModel


class Stat(StrictModel):
    min: float
    median: float
    max: float


class Health(StrictModel):
    """Memory-error counters, read once at the end of a window (they change rarely and cost several calls)."""

    ecc_enabled: bool | None = None
    ecc_volatile_corrected: int | None = None  # since the last driver load / reset
    ecc_volatile_uncorrected: int | None = None
    ecc_aggregate_corrected: int | None = None  # lifetime of the card
    ecc_aggregate_uncorrected: int | None = None
    remapped_rows_correctable: int | None = None  # Ampere and later: rows replaced by spares
    remapped_rows_uncorrectable: int | None = None
    remap_pending: bool | None = None  # a remap waits for a GPU reset
    remap_failure: bool | None = None  # a remap failed: no spare row left
    retired_pages_sbe: int | None = None  # before Ampere: pages retired for repeated single-bit errors
    retired_pages_dbe: int | None = None  # ... for double-bit errors
    retired_pages_pending: bool | None = None


class TelemetrySummary(StrictModel):
    """What the GPU did during one window (a measured point, or a doctor probe)."""

    status: Literal["ok", "unavailable"]
    reason: str | None = None  # why unavailable
    gpu: str | None = None
    uuid: str | None = None
    samples: int = 0
    interval_s: float | None = None
    duration_s: float | None = None
    sm_clock_Hz: Stat | None = None
    sm_clock_max_Hz: float | None = None
    mem_clock_Hz: Stat | None = None
    mem_clock_max_Hz: float | None = None
    # the same over the samples taken under load (see BUSY_UTIL_PCT): a window starts and ends idle, and an idle
    # GPU parks its clocks, so a verdict on clocks reads these
    busy_samples: int | None = None
    sm_clock_busy_Hz: Stat | None = None
    mem_clock_busy_Hz: Stat | None = None
    power_W: Stat | None = None
    power_limit_W: float | None = None  # enforced now
    power_default_limit_W: float | None = None  # the board's default
    gpu_temp_C: Stat | None = None
    mem_temp_C: Stat | None = None  # HBM
    gpu_util_pct: Stat | None = None
    mem_util_pct: Stat | None = None
    memory_used_bytes: Stat | None = None
    pcie_gen: Stat | None = None  # link in use; it drops when idle, so read it under load
    pcie_width: Stat | None = None
    pcie_max_gen: int | None = None  # the best this GPU and this host support together
    pcie_max_width: int | None = None
    processes_max: int | None = None  # compute processes seen on the GPU (ours included)
    mig_enabled: bool | None = None
    clocks_event_share: dict[str, float] = Field(default_factory=dict)  # reason -> share of samples
    throttled: bool = False
    throttle_reasons: list[str] = Field(default_factory=list)  # limiting reasons ≥ THROTTLE_SHARE
    health: Health | None = None
    unsupported: dict[str, str] = Field(default_factory=dict)  # field -> why it could not be read
    errors: dict[str, str] = Field(default_factory=dict)  # field -> unexpected NVML error


class Conditions(StrictModel):
    """The conditions one number was measured under (for each peak of a profile)."""

    measurement: str
    sm_clock_Hz: Stat | None = None
    sm_clock_max_Hz: float | None = None
    mem_clock_Hz: Stat | None = None
    power_W: Stat | None = None
    power_limit_W: float | None = None
    gpu_temp_C: Stat | None = None
    mem_temp_C: Stat | None = None
    throttled: bool = False
    throttle_reasons: list[str] = Field(default_factory=list)


class RunTelemetry(StrictModel):
    """Run-level telemetry in the profile. Ranges: min of the points' minima, median of their medians, max of
    their maxima; clocks-event shares are weighted by each point's sample count."""

    status: Literal["ok", "unavailable"]
    reason: str | None = None
    gpu: str | None = None
    points: int = 0  # points with telemetry
    samples: int = 0
    sm_clock_Hz: Stat | None = None
    sm_clock_max_Hz: float | None = None
    mem_clock_Hz: Stat | None = None
    mem_clock_max_Hz: float | None = None
    power_W: Stat | None = None
    power_limit_W: float | None = None
    power_default_limit_W: float | None = None
    gpu_temp_C: Stat | None = None
    mem_temp_C: Stat | None = None
    clocks_event_share: dict[str, float] = Field(default_factory=dict)
    throttled_points: list[str] = Field(default_factory=list)  # "benchmark {params}: reasons"
    health_start: Health | None = None
    health_end: Health | None = None
    peak_conditions: dict[str, Conditions] = Field(default_factory=dict)  # peak field -> conditions
    unsupported: dict[str, str] = Field(default_factory=dict)


def unavailable(reason: str) -> TelemetrySummary:
    return TelemetrySummary(status="unavailable", reason=reason)

