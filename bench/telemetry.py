"""GPU telemetry from NVML: a background sampler around every measured point, and summaries of it.

MEASURING.md §8: clocks and power are part of the result. rooflab never locks clocks or changes power
limits; it samples what the card does while each point runs and records it next to the number:

* ``sampling(target)`` → a :class:`Sampler` (a context manager). A daemon thread reads NVML at ~20 Hz while
  the block runs: SM and memory clocks, power draw, GPU and HBM temperature, utilisation, clocks-event
  (throttle) reasons, memory used, the PCIe link in use, and every ~0.5 s the processes on the GPU.
  ``sampler.stamp(records)`` attaches its :class:`TelemetrySummary` (min / median / max of each quantity,
  the share of samples with each clocks-event reason, the card's limits, ECC / row-remap counters read at
  the end; the clocks again over the samples taken under load, ``under_load``) to each Measurement's
  ``telemetry`` dict.
* ``run_summary(records, peaks)`` → :class:`RunTelemetry` for the profile, built from the records alone
  (so a profile rebuilt from ``measurements.jsonl`` has it too): run-wide ranges, the points measured while
  throttling, ECC counters at the start and end, and the conditions each peak was measured under.

Everything NVML goes through one small adapter (:class:`NvmlDevice`) over the ``pynvml`` module (from the
nvidia-ml-py distribution), so tests hand it a fake module with recorded readings. It prefers the current
NVML calls and falls back to the deprecated ones when the driver (``NVMLError_FunctionNotFound``) or the
binding (no such attribute) lacks them; a field the GPU does not support (``NVMLError_NotSupported``) is
recorded as unsupported, never an error. On a CPU target, or without NVML, a summary says "unavailable" and
why; nothing here raises into a benchmark.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# ---- NVML facts (nvml.h; anchors.md "GPU health") ------------------------------------------------------
# Return codes the adapter tells apart. Compared by number: they are stable across NVML versions, while the
# exception subclasses pynvml generates for them are not.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_TIMEOUT = 10
_FUNCTION_NOT_FOUND = 13
_CLOCK_SM, _CLOCK_MEM = 1, 2
_TEMP_GPU = 0
_TEMP_THRESHOLD_SLOWDOWN, _TEMP_THRESHOLD_MEM_MAX = 1, 2
_FI_DEV_MEMORY_TEMP = 82  # NVML_FI_DEV_MEMORY_TEMP: HBM temperature, through nvmlDeviceGetFieldValues
_ECC_CORRECTED, _ECC_UNCORRECTED = 0, 1
_ECC_VOLATILE, _ECC_AGGREGATE = 0, 1
_RETIRE_MULTIPLE_SBE, _RETIRE_DBE = 0, 1
_EVENT_XID_CRITICAL = 0x8  # nvmlEventTypeXidCriticalError

# Clocks-event (formerly "throttle") reason bits, as nvmlDeviceGetCurrentClocksEventReasons reports them.
CLOCKS_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
_REASON_IDLE = 0x1
# Reasons that hold the clocks below what the workload asks for. Idle, application-clock and sync-boost
# settings, and display clocks describe a setting or a quiet GPU, not a limit hit while working.
LIMITING_REASONS: tuple[str, ...] = ("sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
                                     "hw_power_brake_slowdown", "board_limit", "reliability")
# A window counts as throttled when a limiting reason is active in at least this share of its samples:
# one stray sample in a long point is noise, a tenth of them is a condition the number was measured under.
THROTTLE_SHARE = 0.10

DEFAULT_INTERVAL_S = 0.05  # 20 Hz: NVML's power and clock readings update about this often
PROCESSES_EVERY = 10  # listing processes costs two NVML calls and an allocation: every 10th sample
# A sample counts as "under load" unless the GPU says it is idle (clocks-event bit 0x1) or, where the reasons
# cannot be read, its utilisation is below this: clocks judged under load must not include idle samples.
BUSY_UTIL_PCT = 50.0

# ---- the PCIe link's line rate (the one table: bench/doctor.py and bench/benchmarks/transfer.py use it) -------
# Bytes per second per lane and direction after line encoding, by PCIe generation (PCI Express Base
# Specification 1.0–6.0): Gen1/2 2.5 / 5 GT/s with 8b/10b; Gen3/4/5 8 / 16 / 32 GT/s with 128b/130b; Gen6
# 64 GT/s with 242/256 FLIT efficiency. Line rates: packet headers cost a further ~10–20%.
PCIE_LANE_Bps: dict[int, float] = {1: 0.25e9, 2: 0.5e9, 3: 8e9 * 128 / 130 / 8, 4: 16e9 * 128 / 130 / 8,
                                   5: 32e9 * 128 / 130 / 8, 6: 64e9 * 242 / 256 / 8}
PCIE_SOURCE = ("PCI Express Base Specification: per-lane rate x width, after line encoding "
               "(Gen3-5 128b/130b, Gen6 FLIT 242/256), per direction")


def pcie_rate_Bps(generation: Any, width: Any) -> float | None:
    """Theoretical per-direction rate of a PCIe link (generation × width), or None when either is unknown."""
    try:
        gen, lanes = int(generation or 0), int(width or 0)
    except (TypeError, ValueError):
        return None
    if gen not in PCIE_LANE_Bps or lanes <= 0:
        return None
    return PCIE_LANE_Bps[gen] * lanes


def decode_reasons(mask: int) -> list[str]:
    """Names of the clocks-event reason bits set in ``mask`` (unknown bits as hex)."""
    names = [name for bit, name in CLOCKS_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCKS_EVENT_REASONS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return names


class Unavailable(RuntimeError):
    """NVML cannot be used here; the message says why, in one line."""


# ---- records ------------------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Stat(_Model):
    min: float
    median: float
    max: float


class Health(_Model):
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


class TelemetrySummary(_Model):
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


class Conditions(_Model):
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


class RunTelemetry(_Model):
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


# ---- the NVML adapter ------------------------------------------------------------------------------------
def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode(errors="replace") if isinstance(v, (bytes, bytearray)) else str(v)


def _norm_uuid(u: Any) -> str:
    s = (_text(u) or "").strip().lower()
    for prefix in ("gpu-", "mig-"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    return s.replace("-", "")


def _field_value(fv: Any) -> float | None:
    """The number in an nvmlFieldValue_t, by its valueType (NVML_VALUE_TYPE_*)."""
    kind = getattr(fv, "valueType", 1)
    attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(kind, "uiVal")
    v = getattr(getattr(fv, "value", None), attr, None)
    return float(v) if v is not None else None


class NvmlDevice:
    """One GPU through NVML. Every read returns a value or None; why a field is None is kept in
    ``unsupported`` (the GPU, driver or binding lacks it; such a field is not asked again) or ``errors``."""

    def __init__(self, nv: Any, handle: Any, index: int, matched: str = ""):
        self.nv = nv
        self.handle = handle
        self.index = index
        self.matched = matched  # how this handle was matched with the target
        self.unsupported: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self._no_memory_v2 = False

    # One field, trying NVML calls in order of preference: (function name, extra args) ...
    def _read(self, field: str, *attempts: tuple, handle: bool = True) -> Any:
        if field in self.unsupported:
            return None
        why = "not available"
        for name, *args in attempts:
            fn = getattr(self.nv, name, None)
            if fn is None:
                why = f"this nvidia-ml-py has no {name}"
                continue
            try:
                return fn(self.handle, *args) if handle else fn(*args)
            except TypeError as e:  # an older binding with another signature: try the next call
                why = f"{name}: {e}"
                continue
            except Exception as e:
                code = getattr(e, "value", None)
                if code == _FUNCTION_NOT_FOUND:
                    why = f"the driver has no {name}"
                    continue
                if code == _NOT_SUPPORTED:
                    self.unsupported[field] = "not supported on this GPU"
                    return None
                if code == _NO_PERMISSION:
                    self.unsupported[field] = "no permission"
                    return None
                self.errors[field] = f"{name}: {type(e).__name__}: {e}"[:200]
                return None
        self.unsupported[field] = why
        return None

    def _num(self, field: str, *attempts: tuple, scale: float = 1.0) -> float | None:
        v = self._read(field, *attempts)
        try:
            return float(v) * scale if v is not None else None
        except (TypeError, ValueError):
            self.errors[field] = f"not a number: {v!r}"[:200]
            return None

    # -- static facts --------------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Name, PCI device ID, memory, limits, VBIOS, driver, max clocks and PCIe link, MIG and ECC modes."""
        out: dict[str, Any] = {"index": self.index, "matched": self.matched}
        out["name"] = _text(self._read("name", ("nvmlDeviceGetName",)))
        out["uuid"] = _text(self._read("uuid", ("nvmlDeviceGetUUID",)))
        pci = self._read("pci_info", ("nvmlDeviceGetPciInfo",))
        if pci is not None:
            dev_vendor = int(getattr(pci, "pciDeviceId", 0) or 0)
            out["pci_device_id"] = (dev_vendor >> 16) & 0xFFFF  # the SKU: 0x2330 is an H100 SXM5 80GB
            out["pci_vendor_id"] = dev_vendor & 0xFFFF
            sub = getattr(pci, "pciSubSystemId", None)
            out["pci_subsystem_id"] = int(sub) if sub is not None else None
            out["pci_bus_id"] = _text(getattr(pci, "busId", None))
        mem, version = self._memory_info()
        if mem is not None:
            out["memory_total_bytes"] = int(mem.total)
            out["memory_info_version"] = version
        out["power_limit_W"] = self._num("power_limit", ("nvmlDeviceGetEnforcedPowerLimit",), scale=1e-3)
        out["power_default_limit_W"] = self._num("power_default_limit",
                                                 ("nvmlDeviceGetPowerManagementDefaultLimit",), scale=1e-3)
        cons = self._read("power_limit_constraints", ("nvmlDeviceGetPowerManagementLimitConstraints",))
        out["power_max_limit_W"] = float(cons[1]) * 1e-3 if cons else None
        out["vbios"] = _text(self._read("vbios", ("nvmlDeviceGetVbiosVersion",)))
        out["driver"] = _text(self._read("driver", ("nvmlSystemGetDriverVersion",), handle=False))
        out["sm_clock_max_Hz"] = self._num("sm_clock_max", ("nvmlDeviceGetMaxClockInfo", _CLOCK_SM), scale=1e6)
        out["mem_clock_max_Hz"] = self._num("mem_clock_max", ("nvmlDeviceGetMaxClockInfo", _CLOCK_MEM), scale=1e6)
        # MaxPcieLinkGeneration is the best the GPU and this host's slot support together; GpuMax the GPU's own
        out["pcie_max_gen"] = self._int("pcie_max_gen", ("nvmlDeviceGetMaxPcieLinkGeneration",))
        out["pcie_gpu_max_gen"] = self._int("pcie_gpu_max_gen", ("nvmlDeviceGetGpuMaxPcieLinkGeneration",))
        out["pcie_max_width"] = self._int("pcie_max_width", ("nvmlDeviceGetMaxPcieLinkWidth",))
        mig = self._read("mig_mode", ("nvmlDeviceGetMigMode",))
        not_capable = self.unsupported.get("mig_mode") == "not supported on this GPU"
        out["mig_enabled"] = bool(mig[0]) if mig else (False if not_capable else None)
        out["mig_pending"] = bool(mig[1]) if mig else None
        ecc = self._read("ecc_mode", ("nvmlDeviceGetEccMode",))
        out["ecc_enabled"] = bool(ecc[0]) if ecc else None
        out["temp_slowdown_C"] = self._num("temp_slowdown",
                                           ("nvmlDeviceGetTemperatureThreshold", _TEMP_THRESHOLD_SLOWDOWN))
        out["temp_mem_max_C"] = self._num("temp_mem_max",
                                          ("nvmlDeviceGetTemperatureThreshold", _TEMP_THRESHOLD_MEM_MAX))
        return out

    def pcie_link(self) -> dict[str, int | None]:
        """The PCIe link alone (four cheap calls, for a caller that reads it often): the best generation and
        width this GPU and host support together, and those in use now (an idle link trains down)."""
        return {"pcie_max_gen": self._int("pcie_max_gen", ("nvmlDeviceGetMaxPcieLinkGeneration",)),
                "pcie_max_width": self._int("pcie_max_width", ("nvmlDeviceGetMaxPcieLinkWidth",)),
                "pcie_gen": self._int("pcie_gen", ("nvmlDeviceGetCurrPcieLinkGeneration",)),
                "pcie_width": self._int("pcie_width", ("nvmlDeviceGetCurrPcieLinkWidth",))}

    def _int(self, field: str, *attempts: tuple) -> int | None:
        v = self._num(field, *attempts)
        return int(v) if v is not None else None

    def _memory_info(self) -> tuple[Any, int | None]:
        """(memory info, struct version): prefer v2, whose ``used`` leaves out driver-reserved memory."""
        v2 = getattr(self.nv, "nvmlMemory_v2", None)
        if v2 is not None and not self._no_memory_v2:
            m = self._read("memory_info_v2", ("nvmlDeviceGetMemoryInfo", v2))
            if m is not None:
                return m, 2
            # an older driver or binding: v1 is the fallback, not an unsupported field
            self._no_memory_v2 = self.unsupported.pop("memory_info_v2", None) is not None
        m = self._read("memory_info", ("nvmlDeviceGetMemoryInfo",))
        return (m, 1) if m is not None else (None, None)

    # -- one sample ----------------------------------------------------------------------------------------
    def sample(self, processes: bool = False) -> dict[str, Any]:
        s: dict[str, Any] = {}
        s["sm_clock_Hz"] = self._num("sm_clock", ("nvmlDeviceGetClockInfo", _CLOCK_SM), scale=1e6)
        s["mem_clock_Hz"] = self._num("mem_clock", ("nvmlDeviceGetClockInfo", _CLOCK_MEM), scale=1e6)
        s["power_W"] = self._num("power", ("nvmlDeviceGetPowerUsage",), scale=1e-3)
        s["gpu_temp_C"] = self._num("gpu_temp", ("nvmlDeviceGetTemperatureV", _TEMP_GPU),
                                    ("nvmlDeviceGetTemperature", _TEMP_GPU))
        s["mem_temp_C"] = self._mem_temp()
        util = self._read("utilization", ("nvmlDeviceGetUtilizationRates",))
        s["gpu_util_pct"] = float(util.gpu) if util is not None else None
        s["mem_util_pct"] = float(util.memory) if util is not None else None
        reasons = self._read("clocks_event_reasons", ("nvmlDeviceGetCurrentClocksEventReasons",),
                             ("nvmlDeviceGetCurrentClocksThrottleReasons",))
        s["reasons"] = int(reasons) if reasons is not None else None
        mem, _ = self._memory_info()
        s["memory_used_bytes"] = float(mem.used) if mem is not None else None
        s["pcie_gen"] = self._num("pcie_gen", ("nvmlDeviceGetCurrPcieLinkGeneration",))
        s["pcie_width"] = self._num("pcie_width", ("nvmlDeviceGetCurrPcieLinkWidth",))
        if processes:
            procs = self.processes()
            s["processes"] = len(procs) if procs is not None else None
        return s

    def _mem_temp(self) -> float | None:
        if "mem_temp" in self.unsupported:
            return None
        vals = self._read("mem_temp", ("nvmlDeviceGetFieldValues", [_FI_DEV_MEMORY_TEMP]))
        if vals is None:
            return None
        try:
            fv = vals[0]
        except (IndexError, TypeError):
            self.unsupported["mem_temp"] = "no field value returned"
            return None
        ret = int(getattr(fv, "nvmlReturn", 0) or 0)
        if ret != 0:
            self.unsupported["mem_temp"] = ("not supported on this GPU" if ret == _NOT_SUPPORTED
                                            else f"NVML return {ret}")
            return None
        return _field_value(fv)

    def processes(self) -> list[tuple[int, int | None]] | None:
        """(pid, GPU memory bytes) of compute processes. Inside a container the PIDs are the host's."""
        procs = self._read("processes", ("nvmlDeviceGetComputeRunningProcesses",))
        if procs is None:
            return None
        out = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            out.append((int(getattr(p, "pid", -1)), int(used) if isinstance(used, (int, float)) else None))
        return out

    # -- memory health -------------------------------------------------------------------------------------
    def health(self) -> Health:
        h: dict[str, Any] = {}
        ecc = self._read("ecc_mode", ("nvmlDeviceGetEccMode",))
        h["ecc_enabled"] = bool(ecc[0]) if ecc else None
        for name, etype, counter in (("ecc_volatile_corrected", _ECC_CORRECTED, _ECC_VOLATILE),
                                     ("ecc_volatile_uncorrected", _ECC_UNCORRECTED, _ECC_VOLATILE),
                                     ("ecc_aggregate_corrected", _ECC_CORRECTED, _ECC_AGGREGATE),
                                     ("ecc_aggregate_uncorrected", _ECC_UNCORRECTED, _ECC_AGGREGATE)):
            h[name] = self._int(name, ("nvmlDeviceGetTotalEccErrors", etype, counter))
        rows = self._read("remapped_rows", ("nvmlDeviceGetRemappedRows",))
        if rows is not None:
            corr, unc, pending, failure = (list(rows) + [None] * 4)[:4]
            h.update(remapped_rows_correctable=int(corr), remapped_rows_uncorrectable=int(unc),
                     remap_pending=bool(pending), remap_failure=bool(failure))
        for name, cause in (("retired_pages_sbe", _RETIRE_MULTIPLE_SBE), ("retired_pages_dbe", _RETIRE_DBE)):
            pages = self._read(name, ("nvmlDeviceGetRetiredPages", cause))
            h[name] = len(pages) if pages is not None else None
        pend = self._read("retired_pages_pending", ("nvmlDeviceGetRetiredPagesPendingStatus",))
        h["retired_pages_pending"] = bool(pend) if pend is not None else None
        return Health(**h)


class XidWatcher:
    """Collects XID (critical error) events NVML raises while it is open. Earlier XIDs live only in the
    kernel log (dmesg), which rooflab does not read."""

    def __init__(self, dev: NvmlDevice):
        self.dev = dev
        self.events: list[int] = []
        self.reason: str | None = None
        self._set = None
        nv = dev.nv
        try:
            self._set = nv.nvmlEventSetCreate()
            nv.nvmlDeviceRegisterEvents(dev.handle, _EVENT_XID_CRITICAL, self._set)
        except Exception as e:
            code = getattr(e, "value", None)
            self.reason = ("XID events are not supported here" if code == _NOT_SUPPORTED else
                           "no permission to watch XID events" if code == _NO_PERMISSION else
                           f"cannot watch XID events: {type(e).__name__}: {e}")[:200]
            self.close()

    @property
    def supported(self) -> bool:
        return self.reason is None

    def poll(self) -> list[int]:
        """Drain pending events; returns every XID seen so far."""
        if self._set is None:
            return self.events
        nv = self.dev.nv
        for _ in range(1000):  # a storm of events must not hang the caller
            try:
                data = nv.nvmlEventSetWait(self._set, 0)
            except Exception as e:
                if getattr(e, "value", None) != _TIMEOUT:
                    self.reason = f"reading XID events failed: {e}"[:200]
                break
            if int(getattr(data, "eventType", 0)) & _EVENT_XID_CRITICAL:
                self.events.append(int(getattr(data, "eventData", 0)))
        return self.events

    def close(self) -> None:
        if self._set is not None:
            try:
                self.dev.nv.nvmlEventSetFree(self._set)
            except Exception:
                pass
            self._set = None


class NvmlSession:
    """nvmlInit once, the driver version, and GPU handles matched to a rooflab Target."""

    def __init__(self, nv: Any):
        self.nv = nv
        try:
            nv.nvmlInit()
        except Exception as e:
            raise Unavailable(_init_reason(e)) from None
        try:
            self.count = int(nv.nvmlDeviceGetCount())
        except Exception as e:
            raise Unavailable(f"NVML cannot count GPUs: {e}") from None
        self._devices: dict[str, NvmlDevice] = {}

    def names(self) -> list[str]:
        out = []
        for i in range(self.count):
            try:
                out.append(_text(self.nv.nvmlDeviceGetName(self.nv.nvmlDeviceGetHandleByIndex(i))) or f"GPU {i}")
            except Exception:
                out.append(f"GPU {i}")
        return out

    def device_for(self, target: Any) -> NvmlDevice:
        """The NVML device that is ``target``: by UUID, else the only GPU, else by CUDA index."""
        want = _norm_uuid(getattr(target, "uuid", None))
        key = want or str(getattr(target, "torch_device", ""))
        if key in self._devices:
            return self._devices[key]
        if self.count < 1:
            raise Unavailable("NVML sees no NVIDIA GPU")
        nv = self.nv
        dev = None
        if want:
            for i in range(self.count):
                try:
                    h = nv.nvmlDeviceGetHandleByIndex(i)
                    if _norm_uuid(nv.nvmlDeviceGetUUID(h)) == want:
                        dev = NvmlDevice(nv, h, i, "uuid")
                        break
                except Exception:
                    continue
        if dev is None:
            try:
                if self.count == 1:
                    dev = NvmlDevice(nv, nv.nvmlDeviceGetHandleByIndex(0), 0, "the only GPU NVML sees")
                else:
                    idx = _cuda_index(getattr(target, "torch_device", "cuda:0"))
                    dev = NvmlDevice(nv, nv.nvmlDeviceGetHandleByIndex(idx), idx,
                                     f"CUDA index {idx} (no UUID match; CUDA_VISIBLE_DEVICES may reorder GPUs)")
            except Exception as e:
                raise Unavailable(f"NVML cannot open the GPU: {e}") from None
        self._devices[key] = dev
        return dev

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except Exception:
            pass


def _cuda_index(torch_device: str) -> int:
    try:
        return int(str(torch_device).split(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _init_reason(e: Exception) -> str:
    code = getattr(e, "value", None)
    if code == 12:  # NVML_ERROR_LIBRARY_NOT_FOUND
        return "NVML (libnvidia-ml.so) not found: no NVIDIA driver is installed"
    if code == 9:  # NVML_ERROR_DRIVER_NOT_LOADED
        return "the NVIDIA driver is not loaded"
    if code == _NO_PERMISSION:
        return "no permission to use NVML"
    return f"nvmlInit failed: {type(e).__name__}: {' '.join(str(e).split())[:160]}"


def load_pynvml() -> Any:
    try:
        import pynvml
    except Exception as e:
        raise Unavailable(f"nvidia-ml-py is not importable ({type(e).__name__}): pip install nvidia-ml-py") from None
    return pynvml


_SESSION_LOCK = threading.Lock()
_SESSION: NvmlSession | None = None
_SESSION_ERROR: str | None = None


def session() -> NvmlSession:
    """The process-wide NVML session, opened on first use; its failure is remembered (one reason, no retries
    per point)."""
    global _SESSION, _SESSION_ERROR
    with _SESSION_LOCK:
        if _SESSION is not None:
            return _SESSION
        if _SESSION_ERROR is not None:
            raise Unavailable(_SESSION_ERROR)
        try:
            _SESSION = NvmlSession(load_pynvml())
        except Unavailable as e:
            _SESSION_ERROR = str(e)
            raise
        return _SESSION


def reset_session(nv: Any | None = None) -> None:
    """Forget the process-wide session (tests; or a fresh start): with ``nv``, open one over that module."""
    global _SESSION, _SESSION_ERROR
    with _SESSION_LOCK:
        if _SESSION is not None:
            _SESSION.close()
        _SESSION, _SESSION_ERROR = None, None
        if nv is not None:
            try:
                _SESSION = NvmlSession(nv)
            except Unavailable as e:
                _SESSION_ERROR = str(e)


# ---- the sampler ---------------------------------------------------------------------------------------
class Sampler:
    """Samples one NVML device on a daemon thread while a block runs. Use as a context manager (or
    start()/stop()); then ``summary()`` or ``stamp(records)``. Without a device it only remembers why."""

    def __init__(self, device: NvmlDevice | None, *, interval_s: float = DEFAULT_INTERVAL_S,
                 reason: str | None = None, processes_every: int = PROCESSES_EVERY):
        if device is None and not reason:
            reason = "no NVML device"
        self.device = device
        self.reason = reason
        self.interval_s = float(interval_s)
        self.processes_every = max(1, int(processes_every))
        self.samples: list[dict[str, Any]] = []
        self.identity: dict[str, Any] = {}
        self.health: Health | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self._t1 = None
        self._summary: TelemetrySummary | None = None

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _take(self) -> None:
        n = len(self.samples)
        try:
            self.samples.append(self.device.sample(processes=n % self.processes_every == 0))
        except Exception as e:
            self.device.errors["sample"] = f"{type(e).__name__}: {e}"[:200]

    def _loop(self) -> None:
        self._take()  # one at once, so even a short window has a reading from inside it
        while not self._stop.wait(self.interval_s):
            self._take()

    def start(self) -> Sampler:
        if self.device is None or self._thread is not None:
            return self
        self.device.errors.clear()  # errors belong to a window; unsupported fields stay known for the device
        try:
            self.identity = self.device.identity()
        except Exception as e:
            self.device.errors["identity"] = f"{type(e).__name__}: {e}"[:200]
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="rooflab-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Sampler:
        if self._thread is None or self._stop.is_set():
            return self
        self._stop.set()
        # NVML calls do not hang in practice; if one does, the daemon thread is left behind, never waited on
        self._thread.join(timeout=max(2.0, 10 * self.interval_s))
        self._t1 = time.monotonic()
        if self._thread.is_alive():  # an NVML call hangs (a GPU fallen off the bus): more calls would hang too
            self.device.errors["sample"] = "an NVML call did not return; sampling abandoned"
            return self
        self._take()  # the state at the very end of the window
        try:
            self.health = self.device.health()
        except Exception as e:
            self.device.errors["health"] = f"{type(e).__name__}: {e}"[:200]
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def summary(self) -> TelemetrySummary:
        if self.device is None:
            return unavailable(self.reason or "no NVML device")
        if self._summary is None:
            self.stop()
            duration = (self._t1 - self._t0) if self._t0 is not None and self._t1 is not None else None
            self._summary = summarize(list(self.samples), self.identity, self.health, interval_s=self.interval_s,
                                      duration_s=duration, unsupported=dict(self.device.unsupported),
                                      errors=dict(self.device.errors))
        return self._summary

    def stamp(self, records: Iterable[Any]) -> None:
        """Attach this window's summary to each record (a Measurement) that has none yet."""
        d = summary_dict(self.summary())
        for r in records:
            if getattr(r, "telemetry", None) is None:
                r.telemetry = dict(d)


def sampling(target: Any, *, interval_s: float | None = None,
             nvml_session: NvmlSession | None = None) -> Sampler:
    """A sampler for ``target``'s GPU (not started: use ``with``). CPU targets and machines without NVML get
    one that records "unavailable" and the reason, at no cost."""
    if not getattr(target, "is_cuda", False):
        return Sampler(None, reason="CPU target: there is no NVIDIA GPU to sample")
    try:
        s = nvml_session or session()
        return Sampler(s.device_for(target), interval_s=interval_s or DEFAULT_INTERVAL_S)
    except Unavailable as e:
        return Sampler(None, reason=str(e))
    except Exception as e:
        return Sampler(None, reason=f"NVML failed: {type(e).__name__}: {e}"[:200])


# ---- summaries -----------------------------------------------------------------------------------------
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
        return not int(reasons) & _REASON_IDLE
    return util is None or float(util) >= BUSY_UTIL_PCT


def summarize(samples: list[dict[str, Any]], identity: dict[str, Any] | None = None, health: Health | None = None,
              *, interval_s: float | None = None, duration_s: float | None = None,
              unsupported: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> TelemetrySummary:
    """One window's summary from its samples (dicts as ``NvmlDevice.sample`` returns them)."""
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
    with_t = [(m, parse(m.telemetry)) for m in records if isinstance(getattr(m, "telemetry", None), dict)]
    with_t = [(m, t) for m, t in with_t if t is not None]
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


__all__ = [
    "BUSY_UTIL_PCT",
    "CLOCKS_EVENT_REASONS",
    "LIMITING_REASONS",
    "PCIE_SOURCE",
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
