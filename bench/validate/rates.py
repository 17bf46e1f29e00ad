"""CPU: the rates a point's prediction reads, measured again between the repetitions of its step.

A prediction reads a few points of the profile's curves: the matmul points of each weight GEMM's (N, K) at the
measured M around the step's, the decode-attention point at (batch × KV heads, context), the memory read. On a
shared CPU those rates move within minutes (other tenants on the memory bus), so a profile measured before the run
cannot be held against a step measured later. ``Interleaver`` finds the points a prediction reads (the Hardware's
``trace``), times each again as its benchmark did (same kernel, shape and dtype, B column-major, inputs rotated past
the LLC) before the step's timing, between its repetitions and after it, and predicts from the profile with those
points' times replaced by their median over the passes. The memory-read probe runs with every pass.
``rates_drift`` (the largest move of the prediction from the first pass's rates) and ``drift`` (the probe, last
against first) say whether the machine held still while the point ran. docs/validate.md, "Interleaving".
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import checks, dtypes, roofline
from .. import profile as prof
from ..registry import RunContext
from ..roofline.hardware import CurvePoint
from .probe import ConditionsProbe
from .transformer import DecodeState, Transformer

SAMPLES = 3  # timed samples of each re-measured point per pass, after a warm-up sample: their median
# A sample lasts at least this long (calls back to back, each on the next rotated input set): a step is a long
# sequence of calls, and on a shared CPU a short call's median sees only the moments between a neighbour's bursts
# (one of two threads losing a 4 ms scheduler tick doubles a 1 ms GEMM and leaves the median of 1 ms calls as it
# was), so the samples span several ticks as the step does
SAMPLE_MIN_S = 0.02
MAX_INNER = 256
MAX_WEIGHT_BYTES = 4 << 30  # a weight the step does not hold (the profile's nearest shape) is made up to this size
SEED = 4321

Times = dict[tuple, float]  # curve point key (Hardware.trace) -> median seconds of one pass


def refreshed(profile: prof.Profile, times: Times, probe_Bps: float | None = None,
              probe_point: prof.HBMPoint | None = None) -> prof.Profile:
    """``profile`` with the curve points in ``times`` re-timed (FLOP/s and bandwidth follow the new time) and the
    probe's read point at ``probe_Bps``."""
    c = profile.curves

    def mm(p: prof.MatmulPoint) -> prof.MatmulPoint:
        t = times.get(("matmul", p.dtype, p.impl, p.M, p.N, p.K))
        if t is None:
            return p
        return p.model_copy(update={"median_s": t, "p10_s": t, "p90_s": t, "flops": 2.0 * p.M * p.N * p.K / t})

    def dec(p: prof.DecodePoint) -> prof.DecodePoint:
        t = times.get(("decode", p.impl, p.layout, p.dtype, p.batch, p.context, p.q_heads, p.kv_heads, p.head_dim))
        if t is None:
            return p
        return p.model_copy(update={"median_s": t, "p10_s": t, "p90_s": t, "bandwidth_Bps": p.bytes / t,
                                    "time_per_token_s": t / p.batch, "graph_median_s": None,
                                    "graph_bandwidth_Bps": None})

    def hbm(p: prof.HBMPoint) -> prof.HBMPoint:
        if probe_Bps is None or p is not probe_point:
            return p
        t = p.working_set_bytes / probe_Bps
        return p.model_copy(update={"bandwidth_Bps": probe_Bps, "median_s": t, "p10_s": t, "p90_s": t})

    curves = c.model_copy(update={"matmul": [mm(p) for p in c.matmul], "decode": [dec(p) for p in c.decode],
                                  "hbm": [hbm(p) for p in c.hbm]})
    return profile.model_copy(update={"curves": curves})


class Interleaver:
    """Re-measures the curve points a prediction reads, with the step's own weights and KV cache where they are the
    point's shapes (``bind`` the model first)."""

    def __init__(self, ctx: RunContext, profile: prof.Profile, probe: ConditionsProbe):
        self.ctx, self.profile, self.probe = ctx, profile, probe
        self.net: Transformer | None = None
        self._made: dict[tuple[int, int, str], torch.Tensor] = {}
        self.gen = checks.generator(ctx.target.torch_device, SEED)

    def bind(self, net: Transformer | None) -> None:
        """The model whose steps come next (its weights serve as the matmul points' B); None releases it."""
        self.net = net
        self._made.clear()

    def reads(self, predict: Callable[[roofline.Hardware], object]) -> dict[tuple, CurvePoint]:
        """The curve points a prediction reads (``predict`` gets a fresh Hardware of the profile)."""
        hw = roofline.Hardware(self.profile, use_curves=True)
        hw.trace = {}
        predict(hw)
        return dict(hw.trace)

    def session(self, reads: dict[tuple, CurvePoint]) -> PointRates:
        return PointRates(self, reads)

    # ------------------------------------------------------------------------------------------ the timers
    def _weight(self, n: int, k: int, dtype: str) -> torch.Tensor | None:
        """An (N, K) weight: the step's own when it has one of that shape, else a random one (cached)."""
        tdt = dtypes.torch_dtype(dtype)
        if self.net is not None:
            held = [self.net.lm_head] + [t for layer in self.net.layers for t in layer.tensors()]
            for t in held:
                if t.dim() == 2 and tuple(t.shape) == (n, k) and t.dtype == tdt and t.is_contiguous():
                    return t
        key = (n, k, dtype)
        if key not in self._made:
            if n * k * tdt.itemsize > MAX_WEIGHT_BYTES:
                return None
            self._made[key] = checks.random_tensor((n, k), tdt, self.ctx.target.torch_device, self.gen,
                                                   scale=k ** -0.25)
        return self._made[key]

    def time_matmul(self, p: prof.MatmulPoint) -> float | None:
        """One pass over a matmul point: median of SAMPLES calls, inputs rotated as the gemm benchmark does."""
        from kernels import gemm as kern

        from ..benchmarks import gemm

        if p.impl != "torch" or p.dtype not in dtypes.MATMUL or p.dtype == "float8_e4m3fn":
            return None
        w = self._weight(p.N, p.K, p.dtype)
        if w is None:
            return None
        t = self.ctx.target
        a = checks.random_tensor((p.M, p.K), w.dtype, t.torch_device, self.gen, scale=p.K ** -0.25)
        sets, _ = gemm.rotation_sets(t, a, w.t(), torch.empty(p.M, p.N, dtype=w.dtype, device=t.torch_device))
        return self._time(lambda i: kern.torch_matmul(*sets[i % len(sets)]), p.median_s)

    def time_decode(self, p: prof.DecodePoint, st: DecodeState) -> float | None:
        """One pass over a decode point: SDPA on the step's own first-layer cache when the point is this step's
        (batch, context, heads), rotated over copies as the decode benchmark does; None otherwise."""
        from kernels import decode_attention as kern

        from ..benchmarks import decode

        net = self.net
        kc, vc = st.k_cache[0], st.v_cache[0]
        if (net is None or p.impl != "torch_sdpa" or p.layout != "contiguous" or p.dtype != net.dtype_name
                or (p.batch, p.context, p.q_heads, p.kv_heads, p.head_dim) != (st.batch, st.context, net.Hq, net.Hkv,
                                                                                net.D)):
            return None
        q = checks.random_tensor((st.batch, net.Hq, net.D), kc.dtype, self.ctx.target.torch_device, self.gen)
        copies = decode.rotation_copies(2 * kc.numel() * kc.element_size(), self.ctx.target.cache_bytes)
        _, _, gqa = kern.sdpa_inputs(kc, vc, net.Hq)
        box: dict = {}
        run = decode.DecodeBenchmark.rotated_sdpa(kern, q, kc, vc, st.context, net.Hq, copies, gqa, box)
        return self._time(lambda i: run(), p.median_s)

    def _time(self, call: Callable[[int], object], expect_s: float) -> float:
        """Seconds per call: the median of SAMPLES samples of ``inner`` calls back to back (enough for
        SAMPLE_MIN_S at the profile's time of a call, ``expect_s``), each call on the next input set."""
        state = {"i": 0}

        def one() -> None:
            state["i"] += 1
            call(state["i"])

        inner = min(MAX_INNER, max(1, math.ceil(SAMPLE_MIN_S / max(expect_s, 1e-9))))
        return self.ctx.time(one, inner=inner, min_time_s=0.0, min_reps=SAMPLES, max_reps=SAMPLES,
                             warmup=1).median_s


@dataclass
class PointRates:
    """One point's re-measurement: a pass per ``sample`` (measure_point calls it between the step's repetitions
    and after them), then the rates as the profile with the points re-timed (their median over the passes, or
    one pass alone)."""

    owner: Interleaver
    reads: dict[tuple, CurvePoint]
    passes: list[Times] = field(default_factory=list)
    probe: list[float] = field(default_factory=list)
    kept: int = 0  # points read but not re-measured (their profile value stands)

    def sample(self, st: DecodeState) -> None:
        self.probe.append(self.owner.probe.measure())
        out: Times = {}
        for key, p in self.reads.items():
            t = (self.owner.time_matmul(p) if isinstance(p, prof.MatmulPoint) else self.owner.time_decode(p, st))
            if t is not None:
                out[key] = t
        self.kept = len(self.reads) - len(out)
        self.passes.append(out)

    @property
    def complete(self) -> bool:
        return len(self.passes) >= 2

    @property
    def drift(self) -> float | None:
        """The memory-read probe of the last pass relative to the first, minus 1."""
        return self.probe[-1] / self.probe[0] - 1.0 if self.complete else None

    def profile(self, which: int | None = None) -> prof.Profile:
        """The profile with the re-timed points: their median over every pass, or pass ``which`` alone."""
        if which is not None:
            times, probe = self.passes[which], self.probe[which]
        else:
            common = set.intersection(*(set(p) for p in self.passes))
            times = {k: statistics.median(p[k] for p in self.passes) for k in common}
            probe = statistics.median(self.probe)
        return refreshed(self.owner.profile, times, probe, self.owner.probe.point)
