"""GPU telemetry from NVML: a background sampler around every measured point, and summaries of it.

rooflab never locks clocks or changes power limits: it samples what the card does while each point runs
(clocks, power, temperatures, utilisation, clocks-event reasons, memory, the PCIe link in use, processes) and
records the summary next to the number. Without NVML, or on a CPU target, a summary says "unavailable" and why;
nothing here raises into a benchmark. docs/telemetry.md describes what is read and how it is summarised.

Modules: ``nvml`` (the NVML adapter and the process-wide session), ``sampler`` (the background sampler),
``summary`` (window and run summaries; their models are bench.profile.telemetry), ``reasons`` (clocks-event
reason bits), ``pcie`` (PCIe link rates).
"""
from __future__ import annotations

from ..profile.telemetry import Conditions, Health, RunTelemetry, Stat, TelemetrySummary, unavailable
from .nvml import NvmlDevice, NvmlSession, Unavailable, XidWatcher, load_pynvml, reset_session, session
from .pcie import PCIE_SOURCE, PCIE_LANE_Bps, pcie_rate_Bps
from .reasons import CLOCKS_EVENT_REASONS, LIMITING_REASONS, decode_reasons
from .sampler import DEFAULT_INTERVAL_S, PROCESSES_EVERY, Sampler, sampling
from .summary import BUSY_UTIL_PCT, THROTTLE_SHARE, brief, parse, run_summary, stat, summarize, summary_dict, under_load

__all__ = [
    "BUSY_UTIL_PCT",
    "CLOCKS_EVENT_REASONS",
    "DEFAULT_INTERVAL_S",
    "LIMITING_REASONS",
    "PCIE_SOURCE",
    "PROCESSES_EVERY",
    "THROTTLE_SHARE",
    "Conditions",
    "Health",
    "NvmlDevice",
    "NvmlSession",
    "PCIE_LANE_Bps",
    "RunTelemetry",
    "Sampler",
    "Stat",
    "TelemetrySummary",
    "Unavailable",
    "XidWatcher",
    "brief",
    "decode_reasons",
    "load_pynvml",
    "parse",
    "pcie_rate_Bps",
    "reset_session",
    "run_summary",
    "sampling",
    "session",
    "stat",
    "summarize",
    "summary_dict",
    "unavailable",
    "under_load",
]
