"""The background sampler: a daemon thread reads NVML at ~20 Hz while a block runs, then summarises the window."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from ..profile.telemetry import Health, TelemetrySummary, unavailable
from . import nvml
from .nvml import NvmlDevice, NvmlSession, Unavailable
from .summary import summarize, summary_dict

DEFAULT_INTERVAL_S = 0.05  # 20 Hz: NVML's power and clock readings update about this often
PROCESSES_EVERY = 10  # listing processes costs two NVML calls and an allocation: every 10th sample


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
        self._t0: float | None = None
        self._t1: float | None = None
        self._summary: TelemetrySummary | None = None

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _take(self, dev: NvmlDevice) -> None:
        n = len(self.samples)
        try:
            self.samples.append(dev.sample(processes=n % self.processes_every == 0))
        except Exception as e:
            dev.errors["sample"] = f"{type(e).__name__}: {e}"[:200]

    def _loop(self, dev: NvmlDevice) -> None:
        self._take(dev)  # one at once, so even a short window has a reading from inside it
        while not self._stop.wait(self.interval_s):
            self._take(dev)

    def start(self) -> Sampler:
        dev = self.device
        if dev is None or self._thread is not None:
            return self
        dev.errors.clear()  # errors belong to a window; unsupported fields stay known for the device
        try:
            self.identity = dev.identity()
        except Exception as e:
            dev.errors["identity"] = f"{type(e).__name__}: {e}"[:200]
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, args=(dev,), name="rooflab-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Sampler:
        dev = self.device
        if dev is None or self._thread is None or self._stop.is_set():
            return self
        self._stop.set()
        # NVML calls do not hang in practice; if one does, the daemon thread is left behind, never waited on
        self._thread.join(timeout=max(2.0, 10 * self.interval_s))
        self._t1 = time.monotonic()
        if self._thread.is_alive():  # an NVML call hangs (a GPU fallen off the bus): more calls would hang too
            dev.errors["sample"] = "an NVML call did not return; sampling abandoned"
            return self
        self._take(dev)  # the state at the very end of the window
        try:
            self.health = dev.health()
        except Exception as e:
            dev.errors["health"] = f"{type(e).__name__}: {e}"[:200]
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
        s = nvml_session or nvml.session()
        return Sampler(s.device_for(target), interval_s=interval_s or DEFAULT_INTERVAL_S)
    except Unavailable as e:
        return Sampler(None, reason=str(e))
    except Exception as e:
        return Sampler(None, reason=f"NVML failed: {type(e).__name__}: {e}"[:200])

