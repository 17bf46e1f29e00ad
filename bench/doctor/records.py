"""The doctor's records: one :class:`CardCheck` per check, the :class:`DoctorReport`, the probes' results and
the :class:`Findings` (everything read) that the checks are made from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..measurement import utc_now
from ..telemetry import Health, TelemetrySummary

CheckStatus = Literal["PASS", "WARN", "FAIL", "SKIP"]
ReportStatus = Literal["pass", "warn", "fail", "unavailable"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CardCheck(_Model):
    """One check of the card: its status, what was measured and expected, and why."""

    check: str
    status: CheckStatus
    measured: str = ""
    expected: str = ""
    reason: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class DoctorReport(_Model):
    """Everything `rooflab doctor` found, as ``--json`` prints it."""

    status: ReportStatus
    exit_code: int
    reason: str | None = None  # why unavailable
    device: dict[str, Any] = Field(default_factory=dict)
    sku: str | None = None
    expect: str | None = None
    checks: list[CardCheck] = Field(default_factory=list)
    probes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    telemetry: dict[str, dict[str, Any]] = Field(default_factory=dict)  # probe/"idle" -> summary
    quick: bool = False
    wall_time_s: float | None = None
    rooflab: str = ""
    created: str = Field(default_factory=utc_now)


@dataclass
class ProbeResult:
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    passed: bool | None = None  # the correctness check before timing
    detail: str = ""
    error: str | None = None  # the probe could not run
    telemetry: TelemetrySummary | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"values": self.values, "check_passed": self.passed, "detail": self.detail, "error": self.error}


@dataclass
class Findings:
    """Everything the verdicts are made from."""

    identity: dict[str, Any] = field(default_factory=dict)
    target_memory_bytes: int | None = None  # what torch sees (a MIG slice sees its own share)
    target_sms: int | None = None
    nvml_reason: str | None = None  # NVML unusable: why
    idle: dict[str, Any] | None = None  # one sample before any probe
    idle_processes: list[tuple[int, int | None]] | None = None
    own_pid: int = 0
    health_start: Health | None = None
    health_end: Health | None = None
    xids: list[int] | None = None
    xid_reason: str | None = None
    unsupported: dict[str, str] = field(default_factory=dict)
    probes: dict[str, ProbeResult] = field(default_factory=dict)


def exit_code(checks: list[CardCheck]) -> int:
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def overall(checks: list[CardCheck]) -> ReportStatus:
    s = {c.status for c in checks}
    return "fail" if "FAIL" in s else "warn" if "WARN" in s else "pass"
