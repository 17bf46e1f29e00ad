"""Summaries of telemetry: one window's samples, a profile's run, and one line for a report."""
from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from ..profile.telemetry import Conditions, Health, RunTelemetry, Stat, TelemetrySummary, unavailable
from .reasons import CLOCKS_EVENT_REASONS, LIMITING_REASONS, REASON_IDLE_BIT

# A window counts as throttled when a limiting reason is active in at least this share of its samples:
# one stray sample in a long point is noise, a tenth of them is a condition the number was measured under.
THROTTLE_SHARE = 0.10
# A sample counts as "under load" unless the GPU says it is idle (clocks-event bit 0x1) or, where the reasons
# cannot be read, its utilisation is below this: clocks judged under load must not include idle samples.
BUSY_UTIL_PCT = 50.0


def stat(values: Iterable[float | None]) -> Stat | None:
    xs = sorted(float(v) for v in values if v is not None)
    if not xs:
        return None
    return Stat(min=xs[0], median=statistics.median(xs), max=xs[-1])


def under_load(sample: dict[str, Any]) -> bool:
    """Was the GPU working when this sample was taken? Not when it says it is idle (clocks-event bit 0x1: nothing
    runs and the clocks are dropping). Where the reasons cannot be read, not when its utilisation (the share of
    the last NVML period with a kernel running, a lagging figure) is below BUSY_UTIL_PCT. A sample with neither
    reading counts as under load: nothing says otherwise."""
    reasons, util = sample.get("reasons"), sample.get("gpu_util_pct")
    if reasons is not None:
        return not int(reasons) & REASON_IDLE_BIT
    return util is None or float(util) >= BUSY_UTIL_PCT


def summarize(samples: list[dict[str, Any]], identity: dict[str, Any] | None = None, health: Health | None = None,
              *, interval_s: float | None = None, duration_s: float | None = None,
              unsupported: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> TelemetrySummary:
    """One window's summary from its samples (dicts as ``NvmlDevice.sample`` returns them). A value no GPU has
    (NVML reports some unreadable fields as 0xFFFFFFFF) makes the window's telemetry unavailable, with the
    reason, instead of failing the measurement it describes."""
    try:
        return _summary(samples, identity, health, interval_s=interval_s, duration_s=duration_s,
                        unsupported=unsupported, errors=errors)
    except ValueError as e:  # pydantic's ValidationError: a number outside its unit's physical bounds
        return unavailable(f"NVML gave a value outside physical bounds: {' '.join(str(e).split())[:200]}")


def _summary(samples: list[dict[str, Any]], identity: dict[str, Any] | None, health: Health | None, *,
             interval_s: float | None, duration_s: float | None, unsupported: dict[str, str] | None,
             errors: dict[str, str] | None) -> TelemetrySummary:
    ident = identity or {}
    col = lambda k: [s.get(k) for s in samples]  # noqa: E731
    masks = [s["reasons"] for s in samples if s.get("reasons") is not None]
    share: dict[str, float] = {}
    if masks:
        for bit, name in CLOCKS_EVENT_REASONS.items():
            k = sum(1 for m in masks if m & bit)
            if k:
                share[name] = k / len(masks)
    limiting = [r for r in LIMITING_REASONS if share.get(r, 0.0) >= THROTTLE_SHARE]
    procs = [p for p in col("processes") if p is not None]
    busy = [s for s in samples if under_load(s)]
    return TelemetrySummary(
        status="ok",
        gpu=ident.get("name"),
        uuid=ident.get("uuid"),
        samples=len(samples),
        interval_s=interval_s,
        duration_s=duration_s,
        sm_clock_Hz=stat(col("sm_clock_Hz")),
        sm_clock_max_Hz=ident.get("sm_clock_max_Hz"),
        mem_clock_Hz=stat(col("mem_clock_Hz")),
        mem_clock_max_Hz=ident.get("mem_clock_max_Hz"),
        busy_samples=len(busy),
        sm_clock_busy_Hz=stat(b.get("sm_clock_Hz") for b in busy),
        mem_clock_busy_Hz=stat(b.get("mem_clock_Hz") for b in busy),
        power_W=stat(col("power_W")),
        power_limit_W=ident.get("power_limit_W"),
        power_default_limit_W=ident.get("power_default_limit_W"),
        gpu_temp_C=stat(col("gpu_temp_C")),
        mem_temp_C=stat(col("mem_temp_C")),
        gpu_util_pct=stat(col("gpu_util_pct")),
        mem_util_pct=stat(col("mem_util_pct")),
        memory_used_bytes=stat(col("memory_used_bytes")),
        pcie_gen=stat(col("pcie_gen")),
        pcie_width=stat(col("pcie_width")),
        pcie_max_gen=ident.get("pcie_max_gen"),
        pcie_max_width=ident.get("pcie_max_width"),
        processes_max=max(procs) if procs else None,
        mig_enabled=ident.get("mig_enabled"),
        clocks_event_share=share,
        throttled=bool(limiting),
        throttle_reasons=limiting,
        health=health,
        unsupported=dict(unsupported or {}),
        errors=dict(errors or {}),
    )


def summary_dict(s: TelemetrySummary) -> dict[str, Any]:
    """The JSON form stored in ``Measurement.telemetry`` (fields that are None left out; "unavailable" is
    just the status and the reason)."""
    if s.status != "ok":
        return {"status": s.status, "reason": s.reason}
    return s.model_dump(mode="json", exclude_none=True)


def parse(d: Any) -> TelemetrySummary | None:
    """A Measurement's ``telemetry`` dict back as a summary (None if absent or not one of ours)."""
    if not isinstance(d, dict):
        return None
    try:
        return TelemetrySummary.model_validate(d)
    except ValueError:
        return None


def _label(m: Any) -> str:
    params = " ".join(f"{k}={v}" for k, v in (getattr(m, "params", None) or {}).items())
    return f"{m.benchmark} {params}".strip()


def _conditions(label: str, t: TelemetrySummary) -> Conditions:
    return Conditions(measurement=label, sm_clock_Hz=t.sm_clock_Hz, sm_clock_max_Hz=t.sm_clock_max_Hz,
                      mem_clock_Hz=t.mem_clock_Hz, power_W=t.power_W, power_limit_W=t.power_limit_W,
                      gpu_temp_C=t.gpu_temp_C, mem_temp_C=t.mem_temp_C, throttled=t.throttled,
                      throttle_reasons=list(t.throttle_reasons))


def _peak_values(peaks: dict[str, Any]) -> list[tuple[str, float]]:
    out = []
    for k, v in (peaks or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((k, float(v)))
        elif isinstance(v, dict):
            out += [(f"{k}.{kk}", float(vv)) for kk, vv in v.items()
                    if isinstance(vv, (int, float)) and not isinstance(vv, bool)]
    return out


def run_summary(records: list[Any], peaks: dict[str, Any] | None = None) -> RunTelemetry | None:
    """The run-level telemetry of a profile, from the Measurements alone (None when none carries any)."""
    parsed = [(m, parse(m.telemetry)) for m in records if isinstance(getattr(m, "telemetry", None), dict)]
    with_t = [(m, t) for m, t in parsed if t is not None]
    if not with_t:
        return None
    ok = [(m, t) for m, t in with_t if t.status == "ok"]
    if not ok:
        return RunTelemetry(status="unavailable", reason=with_t[0][1].reason)
    # the records of one point share one window: count each window once, in run order
    windows: dict[str, tuple[Any, TelemetrySummary]] = {}
    for i, (m, t) in enumerate(ok):
        windows.setdefault(getattr(m, "key", "") or f"#{i}", (m, t))
    ws = [t for _, t in windows.values()]

    def agg(attr: str) -> Stat | None:
        st = [getattr(t, attr) for t in ws if getattr(t, attr) is not None]
        if not st:
            return None
        return Stat(min=min(s.min for s in st), median=statistics.median(s.median for s in st),
                    max=max(s.max for s in st))

    def last(attr: str) -> Any:
        vals = [getattr(t, attr) for t in ws if getattr(t, attr) is not None]
        return vals[-1] if vals else None

    n = sum(t.samples for t in ws)
    share: dict[str, float] = {}
    if n:
        for t in ws:
            for k, v in t.clocks_event_share.items():
                share[k] = share.get(k, 0.0) + v * t.samples / n
    throttled = [f"{_label(m)}: {', '.join(t.throttle_reasons)}" for m, t in windows.values() if t.throttled]
    healths = [t.health for t in ws if t.health is not None]
    unsupported: dict[str, str] = {}
    for t in ws:
        unsupported.update(t.unsupported)
    conds: dict[str, Conditions] = {}
    for name, value in _peak_values(peaks or {}):
        for m, t in ok:  # the record the peak was copied from carries exactly this value
            if getattr(m, "status", "ok") != "ok":
                continue
            if value in (getattr(m, "bandwidth_Bps", None), getattr(m, "flops", None)):
                conds[name] = _conditions(f"{m.impl} {m.kernel} {_label(m)}", t)
                break
    return RunTelemetry(
        status="ok", gpu=last("gpu"), points=len(ws), samples=n,
        sm_clock_Hz=agg("sm_clock_Hz"), sm_clock_max_Hz=last("sm_clock_max_Hz"),
        mem_clock_Hz=agg("mem_clock_Hz"), mem_clock_max_Hz=last("mem_clock_max_Hz"),
        power_W=agg("power_W"), power_limit_W=last("power_limit_W"),
        power_default_limit_W=last("power_default_limit_W"),
        gpu_temp_C=agg("gpu_temp_C"), mem_temp_C=agg("mem_temp_C"),
        clocks_event_share=dict(sorted(share.items())), throttled_points=throttled[:100],
        health_start=healths[0] if healths else None, health_end=healths[-1] if healths else None,
        peak_conditions=conds, unsupported=unsupported,
    )


def brief(t: Any) -> str:
    """One line for a report: "SM 1.98 GHz (100% of max), 612 W of 700 W, GPU 62 °C; throttled: sw_power_cap"."""
    s = t if isinstance(t, TelemetrySummary) else parse(t)
    if s is None:
        return "no telemetry"
    if s.status != "ok":
        return f"telemetry unavailable: {s.reason}"
    parts = []
    sm = s.sm_clock_busy_Hz or s.sm_clock_Hz  # under load where known: the idle edges of a window park it low
    if sm:
        pct = f" ({sm.median / s.sm_clock_max_Hz:.0%} of max)" if s.sm_clock_max_Hz else ""
        parts.append(f"SM {sm.median / 1e9:.2f} GHz{pct}")
    if s.power_W:
        parts.append(f"{s.power_W.max:.0f} W" + (f" of {s.power_limit_W:.0f} W" if s.power_limit_W else ""))
    if s.gpu_temp_C:
        parts.append(f"GPU {s.gpu_temp_C.max:.0f} °C")
    if s.mem_temp_C:
        parts.append(f"HBM {s.mem_temp_C.max:.0f} °C")
    line = ", ".join(parts) or f"{s.samples} samples"
    if s.throttled:
        line += "; throttled: " + ", ".join(f"{r} {s.clocks_event_share.get(r, 0):.0%}" for r in s.throttle_reasons)
    return line

