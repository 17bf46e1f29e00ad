"""The result of ``rooflab validate`` as validation.json holds it: one ``Row`` per (model, batch, context) point
with the measured step and both predictions, and the summary of their errors."""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..roofline import StepEstimate
from ..timing import NOISY_SPREAD, Timing
from .probe import drifted


@dataclass
class Row:
    """One (model, batch, context) point: the measured step and the two predictions of it."""

    model: str
    layers: int
    batch: int
    context: int
    status: str  # "ok", "failed" (check failed or the step raised), "skipped" (does not fit)
    reason: str = ""
    measured_s: float | None = None
    measured_p10_s: float | None = None
    measured_p90_s: float | None = None
    reps: int | None = None
    graphs: bool = False  # the step was replayed from a CUDA graph
    moe_path: str | None = None  # "grouped_mm" or "per-expert loop"
    check_rel_err: float | None = None
    check_tol: float | None = None
    # prediction from the measured profile (curves), with the overhead term when the profile has one
    predicted_s: float | None = None
    overhead_s: float | None = None
    predicted_no_overhead_s: float | None = None
    bound: str | None = None
    error: float | None = None
    error_no_overhead: float | None = None
    # the same prediction with the step split in phases (Deployment.phase_split: GEMMs, then attention, each
    # under its own roofline), beside the design's single roofline
    predicted_phases_s: float | None = None
    error_phases: float | None = None
    # prediction from the spec sheet (peaks)
    spec_predicted_s: float | None = None
    spec_bound: str | None = None
    spec_error: float | None = None
    # what the step moves and computes (the model's accounting, from the measured-profile prediction)
    weight_bytes: float | None = None
    kv_bytes: float | None = None
    flops: float | None = None
    kernels_per_step: int | None = None  # what the overhead term multiplies: counted on GPU, else the census
    kernels_census: int | None = None  # the model's census of kernels per step (ModelSpec.decode_kernels)
    # CPU (bench/validate/rates.py): the prediction is made from the rates it reads re-measured between the
    # step's repetitions (their median); ``profile_*`` is the prediction from the profile as measured before the
    # run. ``drift``: the memory-read probe of the last pass relative to the first; ``rates_drift``: the largest
    # move of the prediction from the first pass's rates to a later pass's. Other processes share
    # the CPU and its memory: an ``unsteady`` point is flagged, never corrected.
    profile_predicted_s: float | None = None
    profile_error: float | None = None
    drift: float | None = None
    rates_drift: float | None = None
    probe_Bps: float | None = None  # the memory-read probe of the first pass
    rates_remeasured: int | None = None  # curve points the prediction reads that were re-measured beside the step
    rates_kept: int | None = None  # curve points it reads that kept the profile's value (not this step's shapes)
    # the model's parts of its prediction (measured profile): weight GEMMs' compute and weight streaming, attention
    # compute and KV read, so a point's error can be traced to the term that made it
    matmul_compute_s: float | None = None
    weight_s: float | None = None
    attention_compute_s: float | None = None
    kv_s: float | None = None
    # GPU, diagnostics (never used by the prediction): device time of one eager step's kernels by kind, from the
    # same profiler pass that counts them (no L2 flush there); measured − their sum is the time between kernels
    profiled_kernels_s: float | None = None
    profiled_matmul_s: float | None = None
    profiled_attention_s: float | None = None
    profiled_other_s: float | None = None
    wall_s: float | None = None  # wall time of the whole point: cache, warm-up (JIT, autotune), check, capture, timing

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rel_error(predicted: float | None, measured: float | None) -> float | None:
    """(predicted − measured) / measured: negative when the model is optimistic (predicts a faster step)."""
    if predicted is None or measured is None or not (measured > 0) or not math.isfinite(predicted):
        return None
    return (predicted - measured) / measured


def make_row(model: str, layers: int, batch: int, context: int, *, measured: Timing | None = None,
             pred: StepEstimate | None = None, spec: StepEstimate | None = None,
             profile_pred: StepEstimate | None = None, status: str = "ok", reason: str = "", **extra: Any) -> Row:
    """A table row from a measured timing (None when the point failed or was skipped) and the predictions
    (``StepEstimate`` of the reduced model; None when there is none, e.g. no spec for a CPU): ``pred`` from the
    measured profile (CPU: with the rates it reads re-measured beside the step), ``profile_pred`` from the profile
    as measured before the run when that differs."""
    row = Row(model=model, layers=layers, batch=batch, context=context, status=status, reason=reason, **extra)
    if measured is not None and status == "ok":
        row.measured_s, row.measured_p10_s, row.measured_p90_s = measured.median_s, measured.p10_s, measured.p90_s
        row.reps = measured.n
    if pred is not None:
        row.predicted_s = pred.step_time_s
        row.overhead_s = pred.overhead_time_s
        row.predicted_no_overhead_s = pred.step_time_s - pred.overhead_time_s
        row.bound = pred.bound
        row.weight_bytes, row.kv_bytes, row.flops = pred.weight_bytes, pred.kv_bytes, pred.flops
        row.kernels_per_step = pred.kernels_per_step
        row.matmul_compute_s, row.weight_s = pred.matmul_compute_time_s, pred.weight_time_s
        row.attention_compute_s, row.kv_s = pred.attention_compute_time_s, pred.kv_time_s
        row.error = rel_error(row.predicted_s, row.measured_s)
        row.error_no_overhead = rel_error(row.predicted_no_overhead_s, row.measured_s)
        if pred.phased_roof_s is not None:
            row.predicted_phases_s = pred.phased_roof_s + pred.comm_time_s + pred.overhead_time_s
            row.error_phases = rel_error(row.predicted_phases_s, row.measured_s)
    if spec is not None:
        row.spec_predicted_s, row.spec_bound = spec.step_time_s, spec.bound
        row.spec_error = rel_error(spec.step_time_s, row.measured_s)
    if profile_pred is not None:
        row.profile_predicted_s = profile_pred.step_time_s
        row.profile_error = rel_error(profile_pred.step_time_s, row.measured_s)
    return row


def unsteady(row: Row) -> bool:
    """A point measured while the machine moved (CPU, interleaved): the rates its prediction reads moved beyond
    DRIFT_LIMIT between the passes beside its step, or the step's own repetitions spread beyond NOISY_SPREAD
    (bench.timing's noisy point). The probe's ``drift`` is reported beside it and not counted: a 0.1 s read of the
    probe's buffer swings by 30-50% between two reads seconds apart on a shared machine while the rates of the same
    point stay within 5% (docs/validate.md, "Interleaving"), and the rates are what the prediction is made of."""
    if row.rates_drift is None:
        return False
    spread = (row.measured_p90_s / row.measured_p10_s if row.measured_p10_s and row.measured_p90_s else 1.0)
    return drifted(row.rates_drift) or spread > NOISY_SPREAD


def median_abs(values: Iterable[float | None]) -> float | None:
    xs = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return statistics.median(xs) if xs else None


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """Median |relative error| of each prediction over the measured points (overall and per model), the
    largest, how many points are optimistic (predicted faster than measured), and how many points are bound by
    memory / compute / overhead in the measured-profile model."""

    def block(rs: Sequence[Row]) -> dict[str, Any]:
        ok = [r for r in rs if r.status == "ok" and r.measured_s is not None]
        errs = [r.error for r in ok if r.error is not None]
        has_overhead = any((r.overhead_s or 0) > 0 for r in ok)
        out = {
            "points": len(rs), "measured": len(ok),
            "failed": sum(r.status == "failed" for r in rs), "skipped": sum(r.status == "skipped" for r in rs),
            "median_abs_error": median_abs(errs),
            "max_abs_error": max((abs(e) for e in errs), default=None),
            "optimistic": sum(e < 0 for e in errs),
            "median_abs_error_no_overhead": median_abs(r.error_no_overhead for r in ok) if has_overhead else None,
            "median_abs_error_phases": median_abs(r.error_phases for r in ok),
            "median_abs_spec_error": median_abs(r.spec_error for r in ok),
            "max_abs_spec_error": max((abs(r.spec_error) for r in ok if r.spec_error is not None), default=None),
            "bounds": {b: sum(r.bound == b for r in ok) for b in sorted({r.bound for r in ok if r.bound})},
        }
        if any(r.profile_error is not None for r in ok):  # CPU: the profile as measured before the run
            out["median_abs_profile_error"] = median_abs(r.profile_error for r in ok)
            out["max_abs_profile_error"] = max((abs(r.profile_error) for r in ok if r.profile_error is not None),
                                               default=None)
        if any(r.rates_drift is not None for r in ok):  # CPU: did the machine hold still?
            steady = [r for r in ok if not unsteady(r)]
            out["unsteady"] = len(ok) - len(steady)
            out["median_abs_error_steady"] = median_abs(r.error for r in steady)
        return out

    models = list(dict.fromkeys(r.model for r in rows))
    return {**block(rows), "by_model": {m: block([r for r in rows if r.model == m]) for m in models}}


@dataclass
class Result:
    """What validation.json holds: the device, the rows in grid order, notes, the summary, and whether the run
    went through."""

    device: str
    mode: str
    dtype: str
    profile: str  # where the measured profile came from
    spec: str | None
    rows: list[Row]
    notes: list[str]
    prediction_notes: list[str]
    summary: dict[str, Any] = field(default_factory=dict)
    complete: bool = True  # False in the checkpoints written while it runs, and when it was stopped
    stopped: str | None = None  # why it stopped early ("interrupted (SIGTERM)", ...), None when it ran through
    elapsed_s: float | None = None
    # what a claim about the model's error rests on: how quiet the machine was (load average, the memory-read probe
    # over the run, unsteady points) and what the profile's sweep covers of this run's shapes (driver.conditions)
    conditions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = [r.as_dict() for r in self.rows]
        return d
