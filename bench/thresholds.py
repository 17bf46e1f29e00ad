"""The performance thresholds a card is graded with, each stated once with its source.

`rooflab doctor` and the verdict of `rooflab run` (bench/verdict.py) both grade through this table, so one
measured number gets one grade. docs/doctor.md explains each threshold and which tool reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Grade = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class Band:
    """Grades ``measured / reference``: pass at or above ``pass_at``, warn from ``warn_at``, fail below."""

    pass_at: float
    warn_at: float

    def grade(self, measured: float, reference: float) -> Grade:
        r = measured / reference
        return "pass" if r >= self.pass_at else "warn" if r >= self.warn_at else "fail"

    def of(self, fraction: float) -> Band:
        """The same band around ``fraction`` of the reference (a healthy card's share of the spec figure)."""
        return Band(self.pass_at * fraction, self.warn_at * fraction)


# ---- against a healthy card's number ---------------------------------------------------------------------
# FAIL below 85% of a healthy card: stricter than DCGM's per-SKU diagnostics, which fail memory bandwidth and SM
# stress below 0.75 x a healthy card's dcgmproftester figure (nvvs/diag-skus.yaml.in in NVIDIA/DCGM) and so catch
# only broken cards. PASS from 95%: SuperBench (microsoft/superbenchmark) calls a node more than 5% below its
# baseline defective. WARN in between.
OF_HEALTHY = Band(pass_at=0.95, warn_at=0.85)

# What a healthy card measures, as a fraction of its spec-sheet figure:
# * copy (torch copy_ or a Triton copy, read + write bytes, working set far past L2): Hopper copies reach ~83-87%
#   of the HBM spec in BabelStream (UoB-HPC/BabelStream) runs; a torch device copy on an H100 SXM and on an H200
#   reached about 90%.
HEALTHY_COPY_OF_SPEC = 0.87
# * bf16 matmul of one fixed 8192^3 shape held for a second or more (the doctor's probe): the best shape reaches
#   ~80% of the dense spec (mamf-finder, in stas00/ml-engineering), and sustained GEMM on an H100 SXM runs at its
#   700 W power cap, about 71%.
HEALTHY_MATMUL_8192_OF_SPEC = 0.72

# ---- copy bandwidth vs spec: ONE rule for both tools ------------------------------------------------------
# The doctor's HBM probe and the verdict's "memory bandwidth, copy" measure the same thing (a copy's read + write
# bytes per second beyond the cache) and ask the same question (does this card copy like a healthy one of its
# kind?), so both grade it here: PASS from 0.95 x 0.87 = 82.65% of spec, WARN from 0.85 x 0.87 = 73.95%.
# (Where a measured profile of the same SKU is committed, the doctor holds its probe against that healthy
# measurement with OF_HEALTHY instead: see docs/doctor.md.)
COPY_OF_SPEC = OF_HEALTHY.of(HEALTHY_COPY_OF_SPEC)

# ---- the doctor's matmul probe vs spec -------------------------------------------------------------------
# A different question from the verdict's matmul check below: one fixed shape sustained at the power limit, not
# the best of a shape search, so a healthy card's figure is lower (0.72, not ~0.8) and so is the band.
MATMUL_8192_OF_SPEC = OF_HEALTHY.of(HEALTHY_MATMUL_8192_OF_SPEC)

# ---- the verdict's best-of-run peaks vs spec ---------------------------------------------------------------
# Each passes at the fraction a healthy card's best reaches and warns down to 0.8 of it (a little above DCGM's
# 0.75 x healthy). The doctor measures neither of these numbers.
VERDICT_WARN_OF_PASS = 0.8


def _best(healthy_of_spec: float) -> Band:
    return Band(healthy_of_spec, VERDICT_WARN_OF_PASS * healthy_of_spec)


# best memory kernel of a run (a read-only stream, usually): read streams reach 93-95% of the HBM spec on Hopper
# (BabelStream's read/dot kernels)
READ_BEST_OF_SPEC = _best(0.92)
# best shape of the run's matmul search, dense spec: mamf-finder reaches ~80% bf16/fp16 on an H100 (798 of 989
# TFLOP/s), ~71% fp8
MATMUL_BEST_OF_SPEC: dict[str, Band] = {"bfloat16": _best(0.75), "float16": _best(0.75),
                                        "float8_e4m3fn": _best(0.65)}
