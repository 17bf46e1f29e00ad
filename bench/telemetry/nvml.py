"""NVML through one small adapter over the ``pynvml`` module (nvidia-ml-py), so tests hand it a fake module.

:class:`NvmlDevice` reads one GPU (identity, one sample, memory health) and prefers the current NVML calls,
falling back to deprecated ones when the driver or the binding lacks them; a field the GPU does not support is
recorded as unsupported, never an error. :class:`XidWatcher` collects XID events; :class:`NvmlSession` and
``session()`` open NVML once per process and match a rooflab Target to its GPU. docs/telemetry.md has more.
"""
from __future__ import annotations

import threading
from typing import Any

from ..profile.telemetry import Health

# ---- NVML facts (nvml.h) -----------------------------------------------------------------------------------
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


class Unavailable(RuntimeError):
    """NVML cannot be used here; the message says why, in one line."""


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

