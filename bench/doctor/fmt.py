"""Building a check: number formats, one :class:`CardCheck`, the worst of several statuses, and a probe's
telemetry."""
from __future__ import annotations

from typing import Any

from ..telemetry import TelemetrySummary
from .records import CardCheck, CheckStatus, Findings


def rate(x: float | None, unit: str) -> str:
    if x is None:
        return "–"
    for p, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g} {p}{unit}"
    return f"{x:.3g} {unit}"


def ghz(hz: float | None) -> str:
    return f"{hz / 1e9:.2f} GHz" if hz else "–"


def gib(b: float | None) -> str:
    return f"{b / 2**30:.1f} GiB" if b is not None else "–"


def card_check(check: str, status: CheckStatus, measured: str = "", expected: str = "", reason: str = "",
               **data: Any) -> CardCheck:
    return CardCheck(check=check, status=status, measured=measured, expected=expected, reason=reason,
                     data={k: v for k, v in data.items() if v is not None})


_SEVERITY = {"PASS": 0, "SKIP": 0, "WARN": 1, "FAIL": 2}


def worst(*statuses: CheckStatus) -> CheckStatus:
    return max(statuses, key=lambda s: _SEVERITY[s]) if statuses else "PASS"


def band_status(value: float, reference: float, fail_below: float, warn_below: float) -> CheckStatus:
    r = value / reference
    return "FAIL" if r < fail_below else "WARN" if r < warn_below else "PASS"


def probe_telemetry(f: Findings, name: str) -> TelemetrySummary | None:
    p = f.probes.get(name)  # a probe that crashed put no load on the card: its readings say nothing
    return p.telemetry if p and not p.error and p.telemetry and p.telemetry.status == "ok" else None

