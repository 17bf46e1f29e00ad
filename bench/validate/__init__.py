"""Prove the model: predicted vs measured decode steps of a real transformer on this device.

``validate`` builds a transformer with a preset's real layer shapes but few layers, random weights and a random
KV cache, checks each decode step against float64, times it, and compares it with the roofline model's prediction
of the same reduced model from this device's measured profile and from the card's spec sheet. The method is in
docs/validate.md. Modules: ``plan`` (models, grid, memory), ``transformer`` (the model and its step), ``check``
(the float64 reference and the check), ``point`` (one point checked and timed), ``profiling`` (GPU kernel counts
and times), ``probe`` (the memory-read probe), ``prediction`` (the roofline prediction and its profiles),
``rates`` (CPU: the rates a prediction reads, re-measured beside its step), ``results`` (rows, summary,
validation.json) and ``driver`` (the run).
"""
from __future__ import annotations

from .check import TOLERANCE, Reference, check_step, reference
from .driver import BUDGET_RESERVE_S, validate
from .errors import ValidateError
from .plan import (
    DEFAULT_BATCHES,
    DEFAULT_CONTEXTS,
    DEFAULT_LAYERS,
    DEFAULT_MODELS,
    MEMORY_FRACTION,
    parse_models,
    point_bytes,
    point_order,
    reduced_model,
    sweep_models,
    weights_bytes,
)
from .point import PointResult, measure_point
from .prediction import (
    ATTENTION_IMPL,
    NEEDED_BENCHMARKS,
    Predictor,
    deployment,
    load_measured,
    measure_profile,
    predict,
    spec_profile_for,
    sweep_coverage,
)
from .probe import DRIFT_LIMIT, ConditionsProbe, drifted, read_point
from .profiling import KernelProfile, count_kernels, profile_kernels
from .rates import Interleaver, PointRates, refreshed
from .results import Result, Row, make_row, rel_error, summarize, unsteady
from .transformer import DecodeState, StepOutput, Transformer, grouped_mm_available, step_dtype, supported

__all__ = [
    "ATTENTION_IMPL", "BUDGET_RESERVE_S", "DEFAULT_BATCHES", "DEFAULT_CONTEXTS", "DEFAULT_LAYERS", "DEFAULT_MODELS",
    "DRIFT_LIMIT", "MEMORY_FRACTION", "NEEDED_BENCHMARKS", "TOLERANCE", "ConditionsProbe", "DecodeState",
    "Interleaver", "KernelProfile", "PointRates", "PointResult", "Predictor", "Reference", "Result", "Row",
    "StepOutput", "Transformer", "ValidateError", "check_step", "count_kernels", "deployment", "drifted",
    "grouped_mm_available", "load_measured", "make_row", "measure_point", "measure_profile", "parse_models",
    "point_bytes", "point_order", "predict", "profile_kernels", "read_point", "reduced_model", "reference",
    "refreshed", "rel_error", "spec_profile_for", "step_dtype", "summarize", "supported", "sweep_coverage",
    "sweep_models", "unsteady", "validate", "weights_bytes",
]
