"""The memory-bandwidth drift probe: flags the points measured while the machine's conditions changed.

A CPU shares its cores and memory with whatever else runs; a step measured under other load says nothing about
the model. ``ConditionsProbe`` times a fixed memory read once at the start (``start_Bps``) and again on demand
(``measure``); ``drift`` is the relative change. Points are flagged (``drifted``), never corrected.
"""
from __future__ import annotations

import torch

from .. import checks
from .. import profile as prof
from ..registry import RunContext
from ..roofline import interp_log

DRIFT_LIMIT = 0.2  # |drift| of the probe beyond which a point's conditions are called changed
PROBE_BYTES = 1 << 30  # 1 GiB read by the probe: past the last-level cache of any CPU rooflab runs on


def drifted(drift: float) -> bool:
    """Whether a point measured at this drift was measured under changed conditions."""
    return not abs(drift) <= DRIFT_LIMIT


class ConditionsProbe:
    """A memory-read probe: ``torch.sum`` over PROBE_BYTES (the hbm benchmark's read kernel), timed when it is
    made and on each ``measure``/``drift``."""

    def __init__(self, ctx: RunContext, nbytes: int | None = None):
        self.ctx = ctx
        self.nbytes = PROBE_BYTES if nbytes is None else nbytes
        device = ctx.target.torch_device
        self.buf = checks.random_tensor(self.nbytes // 4, torch.float32, device, checks.generator(device, 1234),
                                        scale=0.5).add_(1.0)
        self.start_Bps = self.measure()

    def measure(self) -> float:
        """The read bandwidth now, in B/s."""
        t = self.ctx.time(lambda: torch.sum(self.buf, dtype=torch.float32), min_time_s=0.05, min_reps=3, warmup=1)
        return self.nbytes / t.median_s

    def drift(self) -> float:
        """The read bandwidth now relative to the one at the start, minus 1 (negative: slower now)."""
        return self.measure() / self.start_Bps - 1.0

    def compare_with(self, profile: prof.Profile) -> str:
        """A note: the bandwidth at the start, beside what the profile's read curve says at the probe's size."""
        reads = [(c.working_set_bytes, c.bandwidth_Bps) for c in profile.curves.hbm if c.op == "read"]
        then = interp_log(reads, self.nbytes)
        now = f"memory read probe at the start: {self.start_Bps / 1e9:.1f} GB/s"
        if not then:
            return now
        return now + (f"; the profile's read curve says {then / 1e9:.1f} GB/s at {self.nbytes / 2**30:g} GiB"
                      + (" (the profile was measured under other conditions)"
                         if drifted(self.start_Bps / then - 1) else ""))
