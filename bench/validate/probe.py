"""The memory-read probe: the hbm benchmark's read point measured again, to see the machine move under a run.

A CPU shares its cores and memory bus with whatever else runs. ``ConditionsProbe`` repeats one point of the
profile's HBM curve exactly as the hbm benchmark measured it: its kernel (``torch.sum`` in fp32), its working set
(the largest read point, at >= 8x the last-level cache: the size the profile's memory rate comes from), its buffer
(a tiled random block, bench/benchmarks/hbm.py) and its timing (the benchmark's repetitions). So a difference
between the probe and the profile is the machine's, not the method's (docs/validate.md, "Interleaving": how far a
1 GiB probe of three repetitions and the curve read apart on one machine, and why). The driver reads it before and
after each point (``drift``: the relative change) and reports its range over the run. A change beyond DRIFT_LIMIT
(``drifted``) is what makes a point's re-measured rates unsteady (bench/validate/results.py).
"""
from __future__ import annotations

import torch

from .. import checks, dtypes
from .. import profile as prof
from ..registry import RunContext

DRIFT_LIMIT = 0.2  # a relative change beyond which a point's conditions are called changed
PROBE_CACHE_MULTIPLE = 8  # without a read point in the profile: the hbm benchmark's peak size, 8x the LLC
PROBE_SEED = 1234


def drifted(drift: float | None) -> bool:
    """Whether a point measured at this drift was measured under changed conditions (None: not measured)."""
    return drift is not None and not abs(drift) <= DRIFT_LIMIT


def read_point(profile: prof.Profile) -> prof.HBMPoint | None:
    """The profile's HBM read point the probe repeats: the largest working set among the library's (torch) fp32
    read points beyond the cache (the memory rate a prediction reads at large sizes); None without one."""
    reads = [c for c in profile.curves.hbm if c.op == "read" and c.impl == "torch" and c.dtype == "float32"]
    beyond = [c for c in reads if c.beyond_cache] or reads
    return max(beyond, key=lambda c: c.working_set_bytes) if beyond else None


class ConditionsProbe:
    """The profile's read point (``point``; PROBE_CACHE_MULTIPLE x the LLC without one), measured when it is made
    (``start_Bps``) and on each ``measure``; every reading is kept (``readings``)."""

    def __init__(self, ctx: RunContext, profile: prof.Profile, nbytes: int | None = None):
        from ..benchmarks import hbm

        self.ctx = ctx
        self.point = read_point(profile) if nbytes is None else None
        ws = nbytes or (self.point.working_set_bytes if self.point is not None
                        else PROBE_CACHE_MULTIPLE * ctx.target.cache_bytes)
        dtype = dtypes.torch_dtype("float32")
        esize = torch.empty((), dtype=dtype).element_size()
        device = ctx.target.torch_device
        self.buf = hbm._random_buffer(ws // esize, dtype, device, checks.generator(device, PROBE_SEED))
        self.nbytes = hbm.bytes_moved("read", self.buf.numel(), esize)
        self.readings: list[float] = []
        self.start_Bps = self.measure()

    def measure(self) -> float:
        """The read bandwidth now, in B/s, timed as the hbm benchmark times its read points."""
        from kernels import hbm as kern

        t = self.ctx.time(lambda: kern.torch_read(self.buf))
        bw = self.nbytes / t.median_s
        self.readings.append(bw)
        return bw

    def compare_with(self) -> str:
        """A note: the probe at the start beside the profile's own reading of the same point."""
        now = f"memory read probe at the start: {self.start_Bps / 1e9:.1f} GB/s at {self.nbytes / 2**20:.0f} MiB"
        if self.point is None:
            return now + " (the profile has no read point to compare with)"
        then = self.point.bandwidth_Bps
        return now + (f"; the profile's read point, same kernel and size: {then / 1e9:.1f} GB/s"
                      + (" (the machine has moved since the profile was measured)"
                         if drifted(self.start_Bps / then - 1) else ""))
