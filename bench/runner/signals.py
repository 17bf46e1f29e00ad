"""SIGINT and SIGTERM during a run: a first SIGINT stops after the point in flight; a second SIGINT, or a
SIGTERM, abandons it. The handlers are installed for the run only (and only from the main thread)."""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class Signals:
    """What the signals received so far ask of the run; a context manager that installs the handlers."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.stop = False  # stop after the point in flight
        self.abandon = False  # abandon the point in flight
        self.name: str | None = None  # the first signal received
        self.raise_on_abandon = False  # in-process mode: interrupt the point itself
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        if self.enabled:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.name = self.name or signal.Signals(signum).name
        if signum == signal.SIGTERM or self.stop:
            self.abandon = True
        self.stop = True
        if self.abandon and self.raise_on_abandon:
            self.raise_on_abandon = False
            raise KeyboardInterrupt
